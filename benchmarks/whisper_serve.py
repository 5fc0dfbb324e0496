"""Whisper serving on CPU: `slp transcribe` against faster-whisper (CTranslate2), same model, same clips.

    pip install faster-whisper==1.2.1            # the peer: this benchmark's own dependency
    python benchmarks/whisper_serve.py [--model outputs/whisper_quickstart] [--split data/synth/test_unseen]
        [--files 160] [--sides fw_float32,fw_int8,ours,ours_int8] [--wait-idle 600]

The default model is what a user serves: the quickstart's fine-tuned whisper-tiny.en (`make quickstart`; LoRA
merged). `slp export --format ct2` converts it once for the peer, which loads it as faster-whisper's README
does, `WhisperModel(dir, device="cpu", compute_type=...)`, and transcribes file by file with its own defaults
(temperature fallback, timestamps) except `beam_size=1`: greedy, as ours decodes (its README example says 5).
Each side is one fresh process run alone: imports, model load, audio decoding, inference; wall of the whole
process, RTF = wall / audio seconds, WER with Whisper's English normaliser against the split's transcripts.
Writes benchmarks/results/whisper_serve.json; prints a table with each side's speed against fw_int8.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from inference import timed_side  # noqa: E402
from train_throughput import ROOT, wait_idle  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "whisper_serve.json"
SIDES = ("fw_float32", "fw_int8", "ours", "ours_int8")
FLAGS = {"ours": ["--precision", "fp32"], "ours_int8": ["--precision", "int8"], "ours_bf16": ["--precision", "bf16"]}


def pick(split: Path, n: int) -> tuple[list[str], list[str]]:
    """n clips of the split in a fixed shuffled order, and their transcripts."""
    with open(split / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = [(str((split / r["file_name"]).resolve()), r["transcription"]) for r in csv.DictReader(f)]
    random.Random(0).shuffle(rows)
    rows = rows[:n]
    return [r[0] for r in rows], [r[1] for r in rows]


def peer_child(ct2_dir: str, files: list[str], compute_type: str) -> list[str]:
    from faster_whisper import WhisperModel

    model = WhisperModel(ct2_dir, device="cpu", compute_type=compute_type)
    texts = []
    for f in files:
        segments, _ = model.transcribe(f, beam_size=1, language="en")
        texts.append("".join(s.text for s in segments))
    return texts


def run_side(side: str, spec: dict) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if side.startswith("ours"):
        cmd = [sys.executable, "-m", "slp_toolkit", "transcribe", spec["model"], *spec["files"], "--json", *FLAGS[side]]
    else:
        cmd = [sys.executable, __file__, "--child", side, "--spec", spec["spec_path"]]
    return timed_side(side, cmd, env, spec["files"])


def wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    from slp_toolkit.metrics import text_normalizer

    norm = text_normalizer("en")
    pairs = [(norm(r), norm(h)) for r, h in zip(refs, hyps) if norm(r).strip()]
    return jiwer.wer([p[0] for p in pairs], [p[1] for p in pairs])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="outputs/whisper_quickstart")
    p.add_argument("--split", default="data/synth/test_unseen")
    p.add_argument("--files", type=int, default=160)
    p.add_argument("--sides", default=",".join(SIDES))
    p.add_argument("--wait-idle", type=float, default=600)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--work", default=str(ROOT / "outputs" / "bench_whisper_serve"), help="the export and the spec")
    p.add_argument("--child", default=None)
    p.add_argument("--spec", default=None)
    args = p.parse_args()
    if args.child:
        spec = json.loads(Path(args.spec).read_text())
        for text in peer_child(spec["ct2"], spec["files"], args.child.removeprefix("fw_")):
            print(json.dumps({"text": text}))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ct2 = work / "ct2"
    if any(side.startswith("fw_") for side in args.sides.split(",")) and not (ct2 / "model.bin").is_file():
        subprocess.run(
            [sys.executable, "-m", "slp_toolkit", "export", args.model, str(ct2), "--force"], check=True, cwd=ROOT
        )
    files, refs = pick(Path(args.split), args.files)
    audio_s = sum(sf.info(f).duration for f in files)
    spec = {"model": args.model, "files": files, "ct2": str(ct2), "spec_path": str(work / "spec.json")}
    Path(spec["spec_path"]).write_text(json.dumps(spec))
    results = {"model": args.model, "split": args.split, "files": len(files), "audio_s": round(audio_s, 1), "sides": {}}
    for side in args.sides.split(","):
        busy = wait_idle(args.wait_idle, side)
        r = run_side(side, spec)
        r.update(
            rtf=round(r["wall_s"] / audio_s, 3), wer=round(wer(refs, r.pop("texts")), 4), busy_before=round(busy, 2)
        )
        results["sides"][side] = r
        print(side, r, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    base = results["sides"].get("fw_int8", {}).get("wall_s")
    print(f"\n{len(files)} clips, {audio_s:.0f} s of audio ({args.split}), model {args.model}\n")
    print("| side | wall s | RTF | WER | vs fw int8 |\n|---|---|---|---|---|")
    for side, r in results["sides"].items():
        ratio = f"{base / r['wall_s']:.2f}x" if base else "-"
        print(f"| {side} | {r['wall_s']} | {r['rtf']} | {r['wer']:.4f} | {ratio} |")


if __name__ == "__main__":
    main()
