#!/usr/bin/env bash
# GPU check: full-size whisper-small LoRA and wav2vec2-base CTC recipes, 200 bf16 steps on CUDA, our loop vs
# transformers' Seq2SeqTrainer/Trainer on the same clips (benchmarks/gpu_check.py); JSON + table into $OUT
# (or /tmp). Under 8 minutes on one H100/H200-class GPU.
#
#   bash benchmarks/gpu_check.sh --prepare   # here, with pip: corpus, Whisper vocab and missing wheels -> .gpu_carry
#   bash benchmarks/gpu_check.sh             # on the GPU machine (its image has torch, accelerate, pyarrow, ...);
#                                            # through the device tool: run(command=..., carry=[".gpu_carry"])
#
# The GPU machine has no network: --prepare writes everything it lacks into .gpu_carry/ (git-ignored), which
# must travel with the tree. It installs nothing else: the image's torch (CUDA) is used as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu_carry

if [ "${1:-}" = "--prepare" ]; then
  PY=${PYTHON:-.venv/bin/python}
  mkdir -p "$CARRY/cache" "$CARRY/whl"
  [ -f "$CARRY/synth/test/metadata.csv" ] || "$PY" -m slp_toolkit data synth "$CARRY/synth" --n 400 --seed 0
  # the converted multilingual Whisper tokenizer (made from the tiktoken file in slp_toolkit/resources)
  XDG_CACHE_HOME="$PWD/$CARRY/cache" "$PY" -c "from slp_toolkit.runtime.whisper_vocab import whisper_tokenizer_dir as d; print(d())"
  # pinned versions of what the GPU image lacks or holds at another version (pyproject.toml); pure Python
  # except soundfile (bundles libsndfile) and rapidfuzz, for CPython 3.12 manylinux
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$CARRY/whl" "transformers==5.24.*" "tokenizers==0.23.*" "huggingface_hub==2.4.*" "datasets==5.2.*" \
    "peft==0.21.2" "jiwer==4.0.*" rapidfuzz soundfile dill multiprocess
  du -sh "$CARRY"
  exit 0
fi

OUT=${OUT:-/tmp}
if ls "$CARRY"/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$CARRY"/whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export XDG_CACHE_HOME="$PWD/$CARRY/cache" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())"
timeout 470 python3 benchmarks/gpu_check.py --corpus "$CARRY/synth" --steps "${STEPS:-200}" --out "$OUT/gpu_check.json" \
  2>"$OUT/gpu_check.err" | tee "$OUT/gpu_check.txt"
