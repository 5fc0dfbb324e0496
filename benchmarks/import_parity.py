"""A Whisper decoded by slp_toolkit (transformers) against the ctranslate2 runtime on the same weights.

    python benchmarks/import_parity.py models/whisper-tiny.en CT2_DIR data/synth/test_unseen --n 20
    python benchmarks/import_parity.py outputs/whisper_quickstart EXPORTED_CT2 data/synth/test_unseen --n 20

MODEL is what `slp eval` takes (a model dir, or a LoRA output dir); CT2_DIR the same weights in CTranslate2
(the package's files for an import, `slp export`'s output for a fine-tune). Both get the same log-mel (the
model's extractor), the same prompt (<|startoftranscript|>[<|en|><|transcribe|>]<|notimestamps|>) and token
budget; each decodes greedily with the model's suppressed tokens. Prints how many clips give identical token
ids (transformers' generate, clip by clip) and identical text (`slp transcribe`'s batched path).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf


def clips(split: Path, n: int) -> list[np.ndarray]:
    rows = list(csv.DictReader(open(split / "metadata.csv")))[:n]
    return [sf.read(split / r["file_name"], dtype="float32")[0] for r in rows]


def compare(model_dir: str, ct2_dir: str, audio: list[np.ndarray]) -> dict:
    import ctranslate2
    import torch
    from transformers.utils import logging

    from slp_toolkit.tasks import asr_seq2seq

    logging.set_verbosity_error()
    model, processor = asr_seq2seq.load(model_dir)
    gen, tok = model.generation_config, processor.tokenizer
    prompt = ["<|startoftranscript|>"] + (["<|en|>", "<|transcribe|>"] if gen.is_multilingual else [])
    prompt_ids = [tok.convert_tokens_to_ids(t) for t in [*prompt, "<|notimestamps|>"]]
    limit = gen.max_new_tokens or 200
    ct2 = ctranslate2.models.Whisper(ct2_dir, device="cpu", compute_type="float32")
    texts = asr_seq2seq.predict(model, processor, [{"audio": a} for a in audio])  # slp transcribe's path
    same_ids = same_text = 0
    rows = []
    for wave, text in zip(audio, texts, strict=True):
        feats = processor.feature_extractor(wave, sampling_rate=16000, return_tensors="pt").input_features
        budget = asr_seq2seq.token_budget(len(wave) / 16000, limit)
        kwargs = {"language": "en", "task": "transcribe"} if gen.is_multilingual else {}
        with torch.no_grad():
            ids = model.generate(input_features=feats, num_beams=1, do_sample=False, max_new_tokens=budget,
                                 max_length=None, **kwargs)[0].tolist()  # fmt: skip
        ids = ids[len(prompt_ids) :] if ids[: len(prompt_ids)] == prompt_ids else ids  # transformers 5: no prompt
        ours = [i for i in ids if i != gen.eos_token_id]
        # ctranslate2 4.8's Whisper max_length does not count as max_new_tokens does (16 gave 8 tokens after a
        # 4-token prompt): ask for more and keep the same budget
        result = ct2.generate(ctranslate2.StorageView.from_array(feats.numpy()), [prompt_ids], beam_size=1,
                              max_length=len(prompt_ids) + 4 * budget, suppress_blank=True, suppress_tokens=[-1])  # fmt: skip
        theirs = [i for i in result[0].sequences_ids[0][:budget] if i != gen.eos_token_id]
        theirs_text = tok.decode(theirs, skip_special_tokens=True).strip()
        same_ids += ours == theirs
        same_text += text == theirs_text
        rows.append({"same_ids": ours == theirs, "slp": text, "ct2": theirs_text})
    return {"clips": len(audio), "identical_ids": same_ids, "identical_text": same_text, "rows": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("ct2_dir")
    p.add_argument("split", type=Path)
    p.add_argument("--n", type=int, default=20)
    args = p.parse_args()
    out = compare(args.model, args.ct2_dir, clips(args.split, args.n))
    for r in out["rows"]:
        if not r["same_ids"] or r["slp"] != r["ct2"]:
            print(json.dumps(r))
    print(f"{args.model} vs ctranslate2 on {out['clips']} clips: greedy ids identical on {out['identical_ids']}, "
          f"text identical to slp transcribe's on {out['identical_text']}")  # fmt: skip
    return 0 if out["identical_ids"] == out["identical_text"] == out["clips"] else 1


if __name__ == "__main__":
    sys.exit(main())
