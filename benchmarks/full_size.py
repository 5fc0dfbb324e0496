"""Every Hub recipe at full size on this machine: train, evaluate, load in pipeline(), merge, stage.

    python benchmarks/full_size.py [--steps 4] [--work /tmp/slp_full_size] [--only whisper_small_lora ...]

Each shipped Hub recipe runs unchanged except for `model.name_or_path=<its full-size twin>` (`slp tiny
--full-size`: published architecture and processor, random weights), a small synthetic corpus, a short
batch and `--steps` optimizer steps; variants switch gradient checkpointing and bf16 autocast (when the
CPU has avx512_bf16/AMX). Per run: parameters, trainable parameters, seconds per step (steps 2..N, the
first one warms up), training audio-s/s, peak RSS of the training process. Then each recipe's first
variant is evaluated with `slp eval`, loaded with plain `transformers.pipeline()` (a LoRA output after
`slp merge`), and staged with `slp push --dry-run`. One table; the JSON beside it. Run it alone (2 cores
shared with anything else slow both several times over). The TTS recipe uses `speaker_embedding: table`
(x-vectors need speechbrain's Hub model) and the HiFi-GAN twin as its vocoder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLP = [sys.executable, "-m", "slp_toolkit"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

# name -> (recipe, twin, corpus, batch_seconds, extra overrides, pipeline task)
RECIPES = {
    "wav2vec2_base_ctc": ("asr/wav2vec2_base_ctc.yaml", "facebook/wav2vec2-base", "asr", 32, [],
                          "automatic-speech-recognition"),
    "wav2vec2_base_960h_ctc": ("asr/wav2vec2_base_ctc.yaml", "facebook/wav2vec2-base-960h", "asr", 32, [],
                               "automatic-speech-recognition"),
    "librispeech_wav2vec2_base": ("asr/librispeech_wav2vec2_base.yaml", "facebook/wav2vec2-base", "asr", 32, [],
                                  "automatic-speech-recognition"),
    # Whisper batches count 30-s windows: 150 s = 5 clips, as the 12 s of audio (~5 clips) measured before
    "whisper_small_lora": ("asr/whisper_small_lora.yaml", "openai/whisper-small", "asr", 150,
                           ["model.max_new_tokens=8"], "automatic-speech-recognition"),
    "wav2vec2_base_iemocap": ("emotion/wav2vec2_base_iemocap.yaml", "facebook/wav2vec2-base", "emotion", 32,
                              ["model.labels=null", "train.epochs=null"], "audio-classification"),
    "speecht5_finetune_hub": ("tts/speecht5_finetune_hub.yaml", "microsoft/speecht5_tts", "asr", 32,
                              ["model.speaker_embedding=table"], "text-to-speech"),
    "w2v_bert_ctc": ("asr/w2v_bert_ctc.yaml", "facebook/w2v-bert-2.0", "asr", 16, [], "automatic-speech-recognition"),
    "parakeet_ctc": ("asr/parakeet_ctc.yaml", "nvidia/parakeet-ctc-0.6b", "asr", 16, [],
                     "automatic-speech-recognition"),
    # 60 s = 2 windows of 30 s: 2 clips a step
    "whisper_large_v3_turbo_lora": ("asr/whisper_large_v3_turbo_lora.yaml", "openai/whisper-large-v3-turbo", "asr", 60,
                                    ["model.max_new_tokens=8"], "automatic-speech-recognition"),
    "moonshine_base": ("asr/moonshine_base.yaml", "UsefulSensors/moonshine-base", "asr", 32,
                       ["model.max_new_tokens=8"], "automatic-speech-recognition"),
    "wavlm_base_plus": ("emotion/wavlm_base_plus.yaml", "microsoft/wavlm-base-plus", "emotion", 32,
                        ["train.epochs=null"], "audio-classification"),
}  # fmt: skip
# variants per recipe: (gradient checkpointing, mixed precision); the first is what evaluation uses
VARIANTS = {
    "wav2vec2_base_ctc": [(False, "no"), (True, "no"), (False, "bf16")],
    "wav2vec2_base_960h_ctc": [(False, "no")],
    "librispeech_wav2vec2_base": [(False, "bf16")],
    "whisper_small_lora": [(True, "no"), (False, "no"), (True, "bf16")],
    "wav2vec2_base_iemocap": [(False, "no"), (True, "no")],
    "speecht5_finetune_hub": [(False, "no"), (False, "bf16")],
    "w2v_bert_ctc": [(True, "bf16")],
    "parakeet_ctc": [(True, "bf16")],
    "whisper_large_v3_turbo_lora": [(True, "bf16")],
    "moonshine_base": [(False, "no")],
    "wavlm_base_plus": [(False, "no")],
}


def cpu_has_bf16() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags


def run(cmd: list[str], log: Path) -> tuple[int, float, float]:
    """Run a command; (exit status, wall seconds, peak RSS in MiB of its largest process)."""
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024


def prepare(work: Path, names: list[str]) -> dict[str, Path]:
    corpora = {"asr": work / "synth", "emotion": work / "emotion"}
    if not (corpora["asr"] / "test").is_dir():
        subprocess.run([*SLP, "data", "synth", str(corpora["asr"]), "--n", "240", "--seed", "0"], check=True,
                       env=ENV, stdout=subprocess.DEVNULL)  # fmt: skip
    if not (corpora["emotion"] / "test").is_dir():
        subprocess.run([*SLP, "data", "synth", str(corpora["emotion"]), "--n", "160", "--seed", "0", "--task",
                        "emotion"], check=True, env=ENV, stdout=subprocess.DEVNULL)  # fmt: skip
    twins = sorted({RECIPES[n][1] for n in names} | ({"microsoft/speecht5_hifigan"} if "speecht5_finetune_hub" in names
                                                        else set()))  # fmt: skip
    subprocess.run([*SLP, "tiny", str(work / "twins"), *(f"--full-size={t}" for t in twins)], check=True, env=ENV)
    return corpora


def train(name: str, gc: bool, precision: str, steps: int, work: Path, corpora: dict) -> dict:
    recipe, twin, corpus, batch_seconds, extra, _ = RECIPES[name]
    data, twins = corpora[corpus], work / "twins"
    out = work / "runs" / f"{name}-gc{int(gc)}-{precision}"
    if name == "speecht5_finetune_hub":
        extra = [*extra, f"model.vocoder={twins / 'speecht5_hifigan'}"]
    cmd = [*SLP, "train", str(ROOT / "recipes" / recipe), f"model.name_or_path={twins / twin.split('/')[-1]}",
           f"data.train={data / 'train'}", f"data.eval={data / 'validation'}", "data.format=auto",
           "data.max_eval_samples=2", "data.streaming=false", f"train.max_steps={steps}", f"train.eval_every={steps}",
           "train.log_every=1", f"train.batch_seconds={batch_seconds}", f"train.mixed_precision={precision}",
           f"model.gradient_checkpointing={str(gc).lower()}", "train.num_threads=2", f"output_dir={out}", *extra]  # fmt: skip
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    status, wall, peak = run(cmd, work / "logs" / f"{out.name}.log")
    row = {"recipe": name, "gc": gc, "precision": precision, "status": status, "wall_s": round(wall, 1),
           "peak_rss_mib": round(peak), "out": str(out)}  # fmt: skip
    if status == 0:
        history = [h for h in json.loads((out / "history.json").read_text()) if "loss" in h]
        times = [h["elapsed"] for h in history]
        row["s_per_step"] = round((times[-1] - times[0]) / max(len(times) - 1, 1), 2)
        row["audio_s_per_s"] = json.loads((out / "metrics.json").read_text()).get("audio_seconds_per_second")
        row["loss"] = [round(h["loss"], 3) for h in history]
        row.update(parameters(work / "logs" / f"{out.name}.log"))
    return row


def parameters(log: Path) -> dict:
    """Total and trainable parameters, from the `model: N parameters, M trainable` line of `slp train`."""
    for line in log.read_text().splitlines():
        if "model:" in line and "trainable" in line:
            words = line.replace(",", "").split()
            total, trainable = int(words[words.index("parameters") - 1]), int(words[words.index("trainable") - 1])
            return {"parameters_m": round(total / 1e6, 1), "trainable_m": round(trainable / 1e6, 2)}
    return {}


def check_outputs(name: str, row: dict, work: Path, corpora: dict) -> dict:
    """slp eval, plain pipeline() (a LoRA output merged first) and slp push --dry-run of one run."""
    out, (_, _, corpus, _, _, tag) = Path(row["out"]), RECIPES[name]
    logs, checks = work / "logs", {}
    test = corpora[corpus] / "test"
    status, wall, peak = run(
        [*SLP, "eval", str(out), "--data", str(test), "--max-samples", "4"], logs / f"{out.name}-eval.log"
    )
    checks["eval"] = "ok" if status == 0 else f"exit {status}"
    checks["eval_s"] = round(wall, 1)
    model_dir = out
    if (out / "adapter_config.json").is_file():
        model_dir = work / "merged" / out.name
        status, wall, _ = run([*SLP, "merge", str(out), str(model_dir)], logs / f"{out.name}-merge.log")
        checks["merge"] = "ok" if status == 0 else f"exit {status}"
    vocoder = (
        f", vocoder=SpeechT5HifiGan.from_pretrained({str(work / 'twins' / 'speecht5_hifigan')!r})"
        if tag == "text-to-speech"
        else ""
    )
    call = (
        'p("Hello there.", forward_params={"speaker_embeddings": torch.zeros(1, 512)})'
        if vocoder
        else "p(np.zeros(16000, dtype=np.float32))"
    )
    code = (f"import numpy as np, torch; from transformers import pipeline, SpeechT5HifiGan; "
            f"p = pipeline({tag!r}, model={str(model_dir)!r}{vocoder}); print({call})")  # fmt: skip
    status, _, _ = run([sys.executable, "-c", code], logs / f"{out.name}-pipeline.log")
    checks["pipeline"] = "ok" if status == 0 else f"exit {status}"
    stage = work / "stage" / out.name
    import shutil

    shutil.rmtree(stage, ignore_errors=True)
    status, _, _ = run(
        [*SLP, "push", str(out), "--repo-id", f"me/{name}", "--dry-run", str(stage)], logs / f"{out.name}-push.log"
    )
    checks["push_dry_run"] = "ok" if status == 0 else f"exit {status}"
    return checks


def table(rows: list[dict]) -> str:
    head = ("| recipe | grad ckpt | precision | params (M) | trainable (M) | s/step | audio-s/s | peak RSS (GiB) "
            "| eval | pipeline() | merge | push --dry-run |")  # fmt: skip
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        c = r.get("checks", {})
        lines.append(
            f"| {r['recipe']} | {'on' if r['gc'] else 'off'} | {r['precision']} | {r.get('parameters_m', '-')} "
            f"| {r.get('trainable_m', '-')} | {r.get('s_per_step', 'exit ' + str(r['status']))} "
            f"| {r.get('audio_s_per_s', '-')} | {r['peak_rss_mib'] / 1024:.2f} | {c.get('eval', '')} "
            f"| {c.get('pipeline', '')} | {c.get('merge', '-' if c else '')} | {c.get('push_dry_run', '')} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps per run (>= 3: step 1 is warm-up)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/slp_full_size"))
    ap.add_argument("--only", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    ap.add_argument("--json", type=Path, default=None, help="default: WORK/full_size.json")
    args = ap.parse_args()
    (args.work / "logs").mkdir(parents=True, exist_ok=True)
    corpora = prepare(args.work, args.only)
    rows, started = [], time.perf_counter()
    for name in args.only:
        for i, (gc, precision) in enumerate(VARIANTS[name]):
            if precision == "bf16" and not cpu_has_bf16():
                continue
            row = train(name, gc, precision, args.steps, args.work, corpora)
            if i == 0 and row["status"] == 0:
                row["checks"] = check_outputs(name, row, args.work, corpora)
            rows.append(row)
            print(json.dumps(row), flush=True)
    report = table(rows)
    print(f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {args.steps} steps per run, "
          f"{(time.perf_counter() - started) / 60:.1f} min in all\n\n{report}")  # fmt: skip
    (args.json or args.work / "full_size.json").write_text(json.dumps(rows, indent=2))
    if any(r["status"] != 0 or "exit" in json.dumps(r.get("checks", {})) for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
