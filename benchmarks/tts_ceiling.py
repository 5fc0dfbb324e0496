"""The ceiling a TTS model is measured against: the same metrics on the recordings themselves.

    python benchmarks/tts_ceiling.py --data data/tts/test --judge outputs/ctc_quickstart [--tts outputs/tts_scratch]

For each clip of --data: the judge ASR's CER/WER on the real espeak audio (what a perfect synthesiser
would score), and on Griffin-Lim copy-synthesis (real audio -> SpeechT5 log-mel -> Griffin-Lim: a
perfect acoustic model heard through our vocoder), with that copy's MCD against the recording. With
--tts, the model's own scores on the same clips (`slp eval`'s numbers). Writes a JSON summary to
benchmarks/results/tts_ceiling.json and prints it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from slp_toolkit.config import DataConfig
from slp_toolkit.data.prepare import usable
from slp_toolkit.data.splits import load_split
from slp_toolkit.inference.evaluate import evaluate_split, examples_at
from slp_toolkit.metrics import asr_metrics, mel_cepstral_distortion
from slp_toolkit.runtime.scratch import speecht5_processor
from slp_toolkit.tasks.tts import judge
from slp_toolkit.tasks.tts_audio import griffin_lim

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/tts/test")
    parser.add_argument("--judge", default="outputs/ctc_quickstart")
    parser.add_argument("--tts", default=None, help="a trained TTS dir to score on the same clips")
    parser.add_argument("--max-samples", type=int, default=100)
    args = parser.parse_args()

    ds = load_split(args.data, DataConfig(normalize_text=False, min_seconds=0.0), 16000, ("text",), args.max_samples)
    rows = examples_at(ds, list(range(len(ds))))
    texts = [r["raw_text"] for r in rows]
    extractor = speecht5_processor(texts).feature_extractor
    real = [np.asarray(r["audio"], dtype=np.float32) for r in rows]
    copies = [griffin_lim(_mel(extractor, w), extractor) for w in real]
    summary = {
        "data": args.data,
        "judge": args.judge,
        "n": len(rows),
        "real_audio": _scores(judge(args.judge, real, 16000), texts),
        "griffin_lim_copy": {
            **_scores(judge(args.judge, copies, 16000), texts),
            "mcd": float(np.mean([mel_cepstral_distortion(r, c, 16000) for r, c in zip(real, copies, strict=True)])),
        },
    }
    if args.tts:
        from slp_toolkit.tasks import get_task

        task = get_task("tts")
        model, processor = task.load(args.tts)
        processor.judge_asr = args.judge
        metrics, _ = evaluate_split(task, model, processor, usable(ds, task, processor), 120.0)
        summary["model"] = {"dir": args.tts, **{k: v for k, v in metrics.items() if "/" not in k}}
    out = ROOT / "benchmarks" / "results" / "tts_ceiling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


def _mel(extractor, wave):
    import torch

    return torch.as_tensor(extractor(audio_target=wave, sampling_rate=16000).input_values[0])


def _scores(hypotheses: list[str], texts: list[str]) -> dict:
    m = asr_metrics(hypotheses, texts)
    return {k: m[k] for k in ("cer", "wer", "cer_raw", "wer_raw")}


if __name__ == "__main__":
    main()
