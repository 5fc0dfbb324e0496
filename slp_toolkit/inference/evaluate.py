"""Evaluation: task.predict over a split, batched by length, then task.metrics -> metrics.json."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from slp_toolkit.data.batches import clip_costs, examples_at, length_batches
from slp_toolkit.data.splits import column
from slp_toolkit.runtime.memory import trim
from slp_toolkit.tasks import Task, window_seconds

log = logging.getLogger("slp")

# Audio seconds per prediction batch when none is asked for. On CPU small batches are faster: 100 files of the
# wav2vec2-base twin (2 cores, bf16) ran 14.2x real time in 120-s batches, 17-19x in 10-30 s ones (fp32: 7.3x
# vs 9.8-10.4x); the activations of a short batch stay in cache and leave no heap to trim. GPUs want big ones.
BATCH_SECONDS = {"cpu": 16.0, "other": 120.0}
# A fixed-window model (Whisper) pays a whole window per clip whatever its length, so its batches count clips:
# 32 short clips through the imported whisper-tiny.en (2 cores, greedy) took 27.8 s one by one, 23.2 s in 4s,
# 21.3 s in 8s, 22.1 s in 16s.
WINDOWS_PER_BATCH = {"cpu": 8, "other": 32}


def default_batch_seconds(model, window: float | None = None) -> float:
    device = getattr(model, "device", None)
    kind = "cpu" if device is None or device.type == "cpu" else "other"
    return WINDOWS_PER_BATCH[kind] * window if window else BATCH_SECONDS[kind]


def predict_split(
    task: Task,
    model,
    processor,
    ds,
    batch_seconds: float | None,
    max_batch_size: int = 32,
    compute: list | None = None,
    shard: tuple[int, int] = (0, 1),
    lockstep: bool = False,
    counts: dict | None = None,
) -> list:
    """Predictions in dataset order, computed in length-sorted batches (little padding; `batch_seconds`
    None: BATCH_SECONDS; a fixed-window model's clips count a window each). `compute`, when given, receives
    each example's share of its batch's wall time (split by audio duration).

    `shard` (rank, world): this process predicts every world-th batch from its rank on (the others stay
    None). `lockstep`: every process runs the same number of batches, the shorter shards repeating one
    whose output is dropped, as a sharded model (FSDP) needs every process in each forward. `counts`, when
    given, receives this process's number of batches and of rounds (its batches plus fillers)."""
    import time

    window = window_seconds(processor)
    batch_seconds = batch_seconds or default_batch_seconds(model, window)
    durations = np.asarray(column(ds, "duration"), dtype=np.float64)
    costs = clip_costs(durations, window)
    batches = length_batches(costs, batch_seconds, max_batch_size, seed=0, epoch=0, shuffle=False)
    rank, world = shard
    mine = batches[rank::world]
    rounds = -(-len(batches) // world) if lockstep else len(mine)
    if counts is not None:
        counts.update(batches=len(mine), rounds=rounds)
    predictions: list = [None] * len(ds)
    if compute is not None:
        compute[:] = [0.0] * len(ds)
    model.eval()
    for j in range(rounds):
        idx = mine[j] if j < len(mine) else batches[0]
        began = time.perf_counter()
        found = task.predict(model, processor, examples_at(ds, idx))
        if j >= len(mine):
            continue  # a lockstep filler
        for i, p in zip(idx, found, strict=True):
            predictions[i] = p
        if compute is not None:
            took, total = time.perf_counter() - began, max(float(durations[idx].sum()), 1e-9)
            for i in idx:
                compute[i] = took * float(durations[i]) / total
        trim()  # batches of every length fragment the heap (see memory.py)
    return predictions


def evaluate_split(
    task: Task, model, processor, ds, batch_seconds: float | None, state=None, lockstep: bool = False
) -> tuple[dict | None, list | None]:
    """(metrics, predictions) of the model on a split. With `state` (an Accelerate state of several
    processes) each process predicts its shard and the main process scores them all; the others get
    (None, None)."""
    world = state.num_processes if state is not None else 1
    rank = state.process_index if state is not None else 0
    counts: dict = {}
    predictions = predict_split(
        task, model, processor, ds, batch_seconds, shard=(rank, world), lockstep=lockstep, counts=counts
    )
    if world > 1:
        from accelerate.utils import gather_object

        mine = [(i, p) for i, p in enumerate(predictions) if p is not None]
        log.info(
            "evaluation: process %d of %d predicted %d of %d clips in %d batches (%d rounds)",
            rank,
            world,
            len(mine),
            len(ds),
            counts["batches"],
            counts["rounds"],
        )
        gathered = gather_object(mine)
        if not state.is_main_process:
            return None, None
        for i, p in gathered:
            predictions[i] = p
    examples = examples_at(ds, list(range(len(ds))))
    return task.metrics(predictions, examples), predictions


def load_for_eval(
    task: Task, model_dir: str, spec: str, cfg, max_samples: int | None = None, device: str | None = "auto"
) -> tuple:
    """(model, processor, split): a model dir on `device` (see device.py) and a split read at its processor's
    rate, prepared for it. The one way `slp eval` and speaker folds read a model and its test data."""
    from slp_toolkit.data.prepare import prepare
    from slp_toolkit.data.splits import load_split, sampling_rate
    from slp_toolkit.runtime.device import load_placed

    model, processor = load_placed(task, model_dir, device)
    ds = load_split(spec, cfg, sampling_rate(processor), task.needs, max_samples)
    return model, processor, prepare(ds, task, processor)


def write_metrics(metrics: dict, path: Path) -> None:
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(clean, indent=2))
    tmp.replace(path)


def format_table(metrics: dict) -> str:
    """A plain two-column table: headline metrics first, per-group breakdown after."""
    head = [(k, v) for k, v in metrics.items() if "/" not in k]
    groups = [(k, v) for k, v in metrics.items() if "/" in k]
    width = max((len(k) for k, _ in head + groups), default=10)
    lines = [f"{k:<{width}}  {_fmt(v)}" for k, v in head]
    if groups:
        lines.append("")
        lines += [f"{k:<{width}}  {_fmt(v)}" for k, v in groups]
    return "\n".join(lines)


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


COMPARED = ("n", "wer", "cer", "wer_raw", "cer_raw")


def compare_table(runs: list[tuple[str, dict]], keys: tuple[str, ...] = COMPARED) -> str:
    """Runs side by side, a row each: the headline metrics several `slp eval`s wrote (e.g. before/after)."""
    keys = tuple(k for k in keys if any(k in m for _, m in runs))
    width = max(len(label) for label, _ in runs)
    lines = [f"{'':<{width}}  " + "  ".join(f"{k:>8}" for k in keys)]
    lines += [f"{label:<{width}}  " + "  ".join(f"{_fmt(m.get(k, '-')):>8}" for k in keys) for label, m in runs]
    return "\n".join(lines)
