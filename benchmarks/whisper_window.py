"""Whisper on shorter windows (`model.window_seconds`): WER and time zero-shot, and after equal-time LoRA fine-tunes.

    python benchmarks/whisper_window.py zero-shot                  # tiny.en cropped to 30/20/10 s, test_unseen
    python benchmarks/whisper_window.py train                      # the quickstart recipe at 30 and 10 s, equal time
    python benchmarks/whisper_window.py table

Zero-shot rows crop an imported model (runtime/whisper_window.crop_window) and save it, then `slp eval` it, so each
row is one reproducible command on a model dir. The fine-tune rows run `recipes/asr/whisper_quickstart.yaml` with
`model.window_seconds=W data.max_seconds=W` (packing fills W-s windows) for the recipe's 7 minutes, then score the
same split. Run alone: two processes on 2 cores slow each other several times over.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path("benchmarks/results/whisper_window.json")
RUNS = Path("outputs/whisper_window")
SLP = [sys.executable, "-m", "slp_toolkit"]


def slp(*args: str) -> float:
    print("+ slp " + " ".join(args), flush=True)
    began = time.perf_counter()
    subprocess.run([*SLP, *args], check=True)
    return time.perf_counter() - began


def score(model: str, data: str, samples: int, out: Path) -> dict:
    seconds = slp("eval", model, "--data", data, "--max-samples", str(samples), "--output-dir", str(out),
                  "--precision", "fp32")  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wer": metrics["wer"], "cer": metrics["cer"], "loops": metrics.get("loops"), "n": metrics["n"],
            "eval_seconds": round(seconds, 1)}  # fmt: skip


def cropped(base: str, seconds: int) -> str:
    """`base` cropped to a `seconds` window, saved once (the full window is `base` itself)."""
    if seconds == 30:
        return base
    from transformers import AutoProcessor, WhisperForConditionalGeneration

    from slp_toolkit.runtime.whisper_window import crop_window

    out = RUNS / f"{Path(base).name}-{seconds}s"
    if not (out / "config.json").is_file():
        model = WhisperForConditionalGeneration.from_pretrained(base)
        processor = AutoProcessor.from_pretrained(base)
        crop_window(model, processor, seconds, base)
        model.save_pretrained(out)
        processor.save_pretrained(out)
    return str(out)


def zero_shot(args, results: dict) -> None:
    for seconds in args.windows:
        key = f"zero-shot/{Path(args.base).name}/{seconds}s"
        if key not in results:
            model = cropped(args.base, seconds)
            results[key] = {"command": f"slp eval {model} --data {args.data} --max-samples {args.samples}",
                            **score(model, args.data, args.samples, RUNS / "eval" / key)}  # fmt: skip
            save(results)


def train(args, results: dict) -> None:
    for seconds in args.windows:
        key = f"lora/{seconds}s"
        out = RUNS / f"lora-{seconds}s"
        overrides = [f"model.window_seconds={seconds}", f"data.max_seconds={seconds}", f"output_dir={out}"]
        minutes = slp("train", args.recipe, *overrides) / 60
        history = json.loads((out / "history.json").read_text())
        last = max((h for h in history if "elapsed" in h), key=lambda h: h["step"])
        results[key] = {"command": f"slp train {args.recipe} " + " ".join(overrides), "train_minutes": round(minutes, 1),
                        "steps": last["step"], "seconds_per_step": round(last["elapsed"] / last["step"], 2),
                        **score(str(out), args.data, args.samples, out / "eval" / Path(args.data).name)}  # fmt: skip
        save(results)


def save(results: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(RESULTS)


def table() -> None:
    print("| run | window | WER | CER | loops | eval s | train min | steps | s/step |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key, r in json.loads(RESULTS.read_text()).items():
        run, window = key.rsplit("/", 1)
        print(f"| {run} | {window} | {r['wer']:.3f} | {r['cer']:.3f} | {r.get('loops') or 0:.2f} | {r['eval_seconds']} | "
              f"{r.get('train_minutes', '-')} | {r.get('steps', '-')} | {r.get('seconds_per_step', '-')} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", choices=["zero-shot", "train", "table"])
    ap.add_argument("--base", default="models/whisper-tiny.en")
    ap.add_argument("--recipe", default="recipes/asr/whisper_quickstart.yaml")
    ap.add_argument("--data", default="data/synth/test_unseen")
    ap.add_argument("--samples", type=int, default=120)
    ap.add_argument("--windows", type=int, nargs="+", default=None)
    args = ap.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if args.cmd == "zero-shot":
        args.windows = args.windows or [30, 20, 10]
        zero_shot(args, results)
    elif args.cmd == "train":
        args.windows = args.windows or [30, 10]
        train(args, results)
    table()


if __name__ == "__main__":
    main()
