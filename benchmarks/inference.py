"""Inference throughput: `slp transcribe DIR` against `pipeline("automatic-speech-recognition")` used
file by file and with `batch_size`, as its docs show.

    python benchmarks/inference.py [--model DIR] [--files 400] [--batch-size 8] [--threads 2] [--wait-idle 600]

Each side is one fresh process that loads the same model and transcribes the same files (the corpus'
test splits, in a fixed shuffled order): wall time of the whole process (imports, model load, decoding,
inference), one after the other. The default model is the full-size twin of facebook/wav2vec2-base-960h
(94 M parameters, random weights: the cost of a real checkpoint, not its accuracy), built once.
Prints one table; writes benchmarks/results/inference.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from train_throughput import ROOT, busy_cores, cores_used, find_corpus, wait_idle  # noqa: E402

GOALS = {"per_file": 3.0, "batched": 1.5}  # ours over each pipeline side
SIDES = ("ours", "ours_bf16", "per_file", "batched")


def twin(root: Path) -> Path:
    from slp_toolkit.synth.twins import write_twin

    return write_twin("facebook/wav2vec2-base-960h", root)  # kept when already built


def pick_files(corpus: Path, n: int) -> list[str]:
    files = sorted(
        str(p.resolve()) for split in ("test", "test_unseen", "validation") for p in (corpus / split).glob("*.flac")
    )
    if len(files) < n:
        sys.exit(f"error: {corpus} has {len(files)} test/validation clips, fewer than --files {n}")
    random.Random(0).shuffle(files)  # lengths in no order, as a folder of user files
    return files[:n]


def pipeline_child(model: str, files: list[str], batch_size: int, threads: int) -> list[str]:
    """The peer, as the transformers docs use it."""
    import torch
    from transformers import pipeline

    torch.set_num_threads(threads)
    asr = pipeline("automatic-speech-recognition", model=model, device="cpu")
    if batch_size <= 1:
        return [asr(f)["text"] for f in files]
    return [r["text"] for r in asr(files, batch_size=batch_size)]


def run_side(side: str, spec: dict) -> dict:
    work = Path(spec["work"])
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(spec["threads"]), TOKENIZERS_PARALLELISM="false")
    if side.startswith("ours"):
        cmd = [sys.executable, "-m", "slp_toolkit", "transcribe", spec["model"], spec["folder"], "--json"]
        cmd += ["--precision", "bf16"] if side == "ours_bf16" else []
    else:
        cmd = [sys.executable, __file__, "--child", side, "--spec", str(work / "spec.json")]
    r = timed_side(side, cmd, env, spec["files"])
    return r | {"files_per_s": round(len(r["texts"]) / r["wall_s"], 2)}


def timed_side(side: str, cmd: list[str], env: dict, files: list[str]) -> dict:
    """One side's process, alone: its wall time, the cores it kept busy, and the texts it printed as JSON lines
    (ours, `slp transcribe --json`, checked to keep the files' order)."""
    before, began = busy_cores(), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"error: side {side} failed:\n{done.stderr[-3000:]}")
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    if side.startswith("ours"):
        assert [x["path"] for x in lines] == files, "slp transcribe changed the order"
    return {"wall_s": round(wall, 1), "texts": [x["text"] for x in lines],
            "cores": round(cores_used(before, busy_cores()), 2)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="a CTC or Whisper model dir (default: the wav2vec2-base-960h twin)")
    p.add_argument("--files", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=8, help="the batched pipeline's batch_size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--corpus", help="a `slp data synth` dir (default as benchmarks/train_throughput.py)")
    p.add_argument("--wait-idle", type=float, default=0, help="wait up to this many seconds for an idle machine")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inference.json"))
    p.add_argument("--child", choices=("per_file", "batched"), help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        spec = json.loads(Path(args.spec).read_text())
        size = 1 if args.child == "per_file" else spec["batch_size"]
        for text in pipeline_child(spec["model"], spec["files"], size, spec["threads"]):
            print(json.dumps({"text": text}))
        return 0

    from slp_toolkit.data.splits import cache_root

    work = cache_root() / "bench" / "inference"
    work.mkdir(parents=True, exist_ok=True)
    model = args.model or str(twin(work / "twin"))
    import soundfile as sf

    folder = work / "files"  # `slp transcribe DIR`: links named in the shuffled order, which DIR order keeps
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    files = []
    for i, source in enumerate(pick_files(find_corpus(args.corpus, "asr"), args.files)):
        (folder / f"{i:05d}.flac").symlink_to(source)
        files.append(str(folder / f"{i:05d}.flac"))
    audio = sum(sf.info(f).duration for f in files)
    spec = {
        "model": model,
        "folder": str(folder),
        "files": files,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "work": str(work),
    }
    (work / "spec.json").write_text(json.dumps(spec))
    print(f"{len(files)} files, {audio / 60:.1f} min of audio; model {model}; {args.threads} threads", flush=True)
    sides = {}
    for side in SIDES:
        busy = wait_idle(args.wait_idle, side)
        print(f"running '{side}' ...", flush=True)
        sides[side] = run_side(side, spec) | {"busy_cores_before": round(busy, 2)}
        sides[side]["x_real_time"] = round(audio / sides[side]["wall_s"], 1)
    agree = {
        s: sum(a == b for a, b in zip(sides["ours"]["texts"], sides[s]["texts"])) / len(files)
        for s in (*GOALS, "ours_bf16")
    }
    print(table(sides, agree))
    report = {"files": len(files), "audio_s": round(audio, 1), "model": model, "threads": args.threads,
              "batch_size": args.batch_size, "sides": {k: {x: y for x, y in v.items() if x != "texts"}
                                                        for k, v in sides.items()},
              "same_text_as_ours": agree, "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


def table(sides: dict, agree: dict) -> str:
    """Each side's times; for the pipeline sides, how many times faster ours (fp32, and bf16) is."""
    head = (
        f"{'side':<10} {'wall s':>7} {'files/s':>8} {'x real time':>11} {'ours is':>8} {'bf16 is':>8} {'same text':>9}"
    )
    lines = [head, "-" * len(head)]
    for name, r in sides.items():
        fp32, bf16 = (r["wall_s"] / sides[s]["wall_s"] for s in ("ours", "ours_bf16"))
        goal = f"  goal {GOALS[name]:g}x: {'met' if fp32 >= GOALS[name] else 'NOT met'}" if name in GOALS else ""
        goal += f" ({'met' if bf16 >= GOALS[name] else 'not met'} in bf16)" if name in GOALS else ""
        same = f"{agree[name]:.0%}" if name in agree else "-"
        lines.append(f"{name:<10} {r['wall_s']:>7.1f} {r['files_per_s']:>8.2f} {r['x_real_time']:>11.1f} "
                     f"{fp32:>7.2f}x {bf16:>7.2f}x {same:>9}{goal}")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
