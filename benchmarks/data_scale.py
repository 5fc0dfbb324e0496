"""Data preparation at growing size: peak memory must stay flat, time must grow linearly.

    python benchmarks/data_scale.py [--corpus data/synth] [--scales 1 3 10] [--workers 1 2]

The quickstart train split (`slp data synth data/synth --n 4000 --seed 0`, ~2 h) is repeated 1x, 3x and
10x in a JSONL manifest; each size is prepared (decode into the Arrow cache + the asr_ctc task's
preprocessing, exactly what `slp train` does first; building the model is not counted) in a fresh child process with an empty cache, and
once more with the cache in place. One table: rows, audio hours, wall time, seconds per audio hour,
peak RSS of the main process and of all decoding workers together, cache size per audio hour, and the
speed-up of the cached second run. Run it alone on an idle machine (PLATFORM_NOTES).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class WorkerPeak:
    """Polls the RSS of this process's children (the decoding workers) and keeps the largest sum."""

    def __init__(self) -> None:
        import threading

        self.peak, self.done = 0.0, False
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        me = str(os.getpid())
        while not self.done:
            total = 0.0
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if fields[1] == me:  # ppid
                    total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20  # rss pages
            self.peak = max(self.peak, total)
            time.sleep(0.2)

    def stop(self) -> float:
        self.done = True
        self.thread.join()
        return self.peak


def child(manifest: str, workers: int) -> dict:
    """Prepare the split as `slp train` does; report time and memory (runs in its own process)."""
    from slp_toolkit.config import load_recipe
    from slp_toolkit.data.prepare import prepare
    from slp_toolkit.data.splits import column, load_split
    from slp_toolkit.tasks import get_task

    recipe = load_recipe(ROOT / "recipes" / "asr" / "ctc_quickstart.yaml", [f"data.train={manifest}",
                         f"data.num_workers={workers}", "data.eval=null"])  # fmt: skip
    task = get_task(recipe.task)
    import datasets  # noqa: F401 - imported by `slp train` before any of this: not part of preparing
    import transformers  # noqa: F401

    poll = WorkerPeak()
    start = time.perf_counter()
    ds = load_split(recipe.data.train, recipe.data, RATE, task.needs)
    decoded = time.perf_counter() - start
    built = time.perf_counter()
    _, processor = task.build(recipe, ds)  # the model, not the data: left out of the time
    start += time.perf_counter() - built
    ds = prepare(ds, task, processor, workers)
    total = time.perf_counter() - start
    workers_mib = poll.stop()
    hours = float(sum(column(ds, "duration"))) / 3600
    return {"rows": len(ds), "hours": hours, "decode_s": decoded, "total_s": total,
            "peak_main_mib": _peak_mib(), "peak_worker_mib": workers_mib}  # fmt: skip


def _run_child(manifest: Path, workers: int, cache: Path) -> dict:
    env = {**os.environ, "SLP_CACHE": str(cache), "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(cache / "hf")}  # fmt: skip
    code = f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import data_scale; " \
           f"print('RESULT', json.dumps(data_scale.child({str(manifest)!r}, {workers})))"  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"child failed:\n{done.stderr[-3000:]}")
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))[7:])


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def manifest_of(corpus: Path, times: int, out: Path) -> Path:
    """The train split's rows `times` over, as absolute paths (each copy decoded again: a bigger corpus)."""
    import csv

    rows = list(csv.DictReader((corpus / "train" / "metadata.csv").open(encoding="utf-8")))
    path = out / f"train_x{times}.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for _ in range(times):
            for r in rows:
                audio = str((corpus / "train" / r["file_name"]).resolve())
                f.write(json.dumps({"audio": audio, "text": r["transcription"], "speaker": r["speaker"]}) + "\n")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", default=str(ROOT / "data" / "synth"), help="a `slp data synth` output dir")
    p.add_argument("--scales", type=int, nargs="+", default=[1, 3, 10])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="decoding processes to compare (at 1x)")
    p.add_argument("--work", default="/tmp/slp_data_scale", help="scratch dir for manifests and caches")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "data_scale.json"))
    args = p.parse_args()
    corpus, work = Path(args.corpus), Path(args.work)
    if not (corpus / "train" / "metadata.csv").is_file():
        from slp_toolkit.synth.corpus import make_corpus

        print(f"making the quickstart corpus in {corpus} (4,000 utterances)")
        make_corpus(corpus, n=4000, seed=0)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    runs = [(s, min(args.workers)) for s in args.scales] + [(min(args.scales), w) for w in args.workers[1:]]
    results = []
    for scale, workers in runs:
        manifest, cache = manifest_of(corpus, scale, work), work / f"cache_x{scale}_w{workers}"
        first = _run_child(manifest, workers, cache)
        second = _run_child(manifest, workers, cache)
        disk = _du(cache)
        results.append({"scale": scale, "workers": workers, **first, "cached_total_s": second["total_s"],
                        "cache_mb_per_hour": disk / 1e6 / first["hours"]})  # fmt: skip
        print(_row(results[-1]), flush=True)
        shutil.rmtree(cache)
    base = results[0]["peak_main_mib"]
    flat = max(abs(r["peak_main_mib"] / base - 1) for r in results if r["workers"] == results[0]["workers"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "results": results, "rss_spread": flat}, indent=2))
    print()
    print(table(results))
    print(f"\npeak RSS spread across sizes: {flat * 100:.1f} % (goal: within 15 %)")


HEADER = ("| scale | workers | rows | audio h | prepare s | s per audio h | peak RSS main MiB | peak RSS of workers (sum) MiB "
          "| cache MB per audio h | cached rerun s | speed-up |")  # fmt: skip


def _row(r: dict) -> str:
    return (f"| {r['scale']}x | {r['workers']} | {r['rows']} | {r['hours']:.2f} | {r['total_s']:.1f} | "
            f"{r['total_s'] / r['hours']:.1f} | {r['peak_main_mib']:.0f} | {r['peak_worker_mib']:.0f} | "
            f"{r['cache_mb_per_hour']:.0f} | {r['cached_total_s']:.2f} | {r['total_s'] / r['cached_total_s']:.0f}x |")  # fmt: skip


def table(results: list[dict]) -> str:
    return "\n".join([HEADER, "|" + " --- |" * (HEADER.count("|") - 1), *map(_row, results)])


if __name__ == "__main__":
    main()
