"""Evaluation: task.predict over a split, batched by length, then task.metrics -> metrics.json."""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
from pathlib import Path

import numpy as np

from slp_toolkit.batches import examples_at
from slp_toolkit.config import UserError
from slp_toolkit.data import column, length_batches
from slp_toolkit.memory import trim
from slp_toolkit.tasks import Task

log = logging.getLogger("slp")


def processor_fingerprint(processor) -> str:
    """A stable hash of what preprocessing depends on, so cached features match their processor."""
    h = hashlib.sha256()
    for part in ("feature_extractor", "tokenizer"):
        obj = getattr(processor, part, None)
        if obj is not None and hasattr(obj, "get_vocab"):
            h.update(json.dumps(sorted(obj.get_vocab().items())).encode())
        elif obj is not None and hasattr(obj, "to_json_string"):
            h.update(obj.to_json_string().encode())
    if hasattr(processor, "to_json_string") and not hasattr(processor, "feature_extractor"):
        h.update(processor.to_json_string().encode())
    h.update(str(getattr(processor, "fingerprint_extra", "")).encode())  # e.g. a TTS speaker table
    return h.hexdigest()[:16]


def usable(ds, task: Task, processor, name: str = "data"):
    """The rows the task's `keep` accepts (all rows when it has none); the others are counted in the log."""
    if task.keep is None:
        return ds
    fingerprint = hashlib.sha256(f"{ds._fingerprint}|{task.name}|keep|{processor_fingerprint(processor)}".encode())
    kept = ds.filter(
        lambda ex: task.keep(ex, processor),
        new_fingerprint=fingerprint.hexdigest()[:16],
        desc=f"{task.name}: selecting rows",
    )
    if len(ds) and not len(kept):
        raise UserError(
            f"{name}: none of its {len(ds)} rows can be used by this model (see the task's `keep`: e.g. speakers without an embedding)"
        )
    if len(kept) == len(ds):
        return ds  # no indices mapping: later steps can join columns without copying the audio
    if len(kept) < len(ds):
        left_out = sorted(set(range(len(ds))) - set(kept._indices.column(0).to_pylist()))[:3]
        log.warning(
            "%s: %d of %d rows left out (the model cannot use them%s), e.g. %s", name, len(ds) - len(kept), len(ds),
            f": {task.keep_why}" if task.keep_why else "", ", ".join(map(str, ds.select(left_out)["path"])),
        )  # fmt: skip
    return kept


def prepare(ds, task: Task, processor, num_workers: int = 1):
    """Run the task's per-example preprocessing once, cached beside the decoded audio.

    Only the new columns are written (bounded record batches); they are joined to the memory-mapped
    audio column by column, so preparing never copies the audio."""
    import datasets

    from slp_toolkit.data import WRITER_BATCH, environment_fingerprint

    ds = usable(ds, task, processor)
    code = hashlib.sha256(Path(inspect.getfile(task.preprocess)).read_bytes()).hexdigest()[:16]  # edits invalidate
    key = f"{ds._fingerprint}|{task.name}|{code}|{processor_fingerprint(processor)}|{environment_fingerprint()}"
    procs = num_workers if num_workers > 1 and len(ds) >= 4 * WRITER_BATCH * num_workers else None
    # rows left out by `keep` sit behind an indices mapping that a column join would copy through: then
    # write every column once instead
    joined = ds._indices is None
    source = ds.select_columns(list(task.preprocess_reads)) if joined and task.preprocess_reads else ds
    new = source.map(
        lambda ex: task.preprocess(ex, processor),
        remove_columns=source.column_names if joined else None,
        writer_batch_size=WRITER_BATCH,
        num_proc=procs,
        new_fingerprint=hashlib.sha256(key.encode()).hexdigest()[:16],
        desc=f"{task.name}: preprocessing",
    )
    if not joined:
        return new.with_format("numpy")
    kept = ds.remove_columns([c for c in new.column_names if c in ds.column_names])
    return datasets.concatenate_datasets([kept, new], axis=1).with_format("numpy")


def predict_split(
    task: Task, model, processor, ds, batch_seconds: float, max_batch_size: int = 32, compute: list | None = None
) -> list:
    """Predictions in dataset order, computed in length-sorted batches (little padding). `compute`, when
    given, receives each example's share of its batch's wall time (split by audio duration)."""
    import time

    durations = np.asarray(column(ds, "duration"), dtype=np.float64)
    batches = length_batches(durations, batch_seconds, max_batch_size, seed=0, epoch=0, shuffle=False)
    predictions: list = [None] * len(ds)
    if compute is not None:
        compute[:] = [0.0] * len(ds)
    model.eval()
    for idx in batches:
        began = time.perf_counter()
        for i, p in zip(idx, task.predict(model, processor, examples_at(ds, idx)), strict=True):
            predictions[i] = p
        if compute is not None:
            took, total = time.perf_counter() - began, max(float(durations[idx].sum()), 1e-9)
            for i in idx:
                compute[i] = took * float(durations[i]) / total
        trim()  # batches of every length fragment the heap (see memory.py)
    return predictions


def evaluate_split(task: Task, model, processor, ds, batch_seconds: float) -> tuple[dict, list]:
    predictions = predict_split(task, model, processor, ds, batch_seconds)
    examples = examples_at(ds, list(range(len(ds))))
    return task.metrics(predictions, examples), predictions


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
