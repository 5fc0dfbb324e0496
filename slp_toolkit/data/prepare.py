"""Per-example preparation of a decoded split, cached beside its audio: the rows a task can use
(`task.caps.keep`), then `task.preprocess` once (labels, crop lengths...), joined column by column to the
memory-mapped audio so preparing never copies it. Used by training every run and by evaluation."""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from pathlib import Path
from typing import Any

from slp_toolkit.errors import UserError

log = logging.getLogger("slp")
Task = Any  # slp_toolkit.tasks.Task: the data layer does not import the tasks


def processor_fingerprint(processor) -> str:
    """A stable hash of what preprocessing depends on, so cached features match their processor."""
    h = hashlib.sha256()
    for part in ("feature_extractor", "tokenizer"):
        obj = getattr(processor, part, None)
        if obj is not None and hasattr(obj, "get_vocab"):
            h.update(json.dumps(sorted(obj.get_vocab().items())).encode())
            # the special tokens it adds: Whisper's language and task tokens change with model.language/task
            h.update(json.dumps(obj("a").input_ids).encode())
        elif obj is not None and hasattr(obj, "to_json_string"):
            h.update(obj.to_json_string().encode())
    if hasattr(processor, "to_json_string") and not hasattr(processor, "feature_extractor"):
        h.update(processor.to_json_string().encode())
    h.update(str(getattr(processor, "fingerprint_extra", "")).encode())  # e.g. a TTS speaker table
    return h.hexdigest()[:16]


def usable(ds, task: Task, processor, name: str = "data"):
    """The rows the task's `keep` accepts (all rows when it has none); the others are counted in the log."""
    if task.caps.keep is None:
        return ds
    fingerprint = hashlib.sha256(f"{ds._fingerprint}|{task.name}|keep|{processor_fingerprint(processor)}".encode())
    kept = ds.filter(
        lambda ex: task.caps.keep(ex, processor),
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
            "%s: %d of %d rows left out (the model cannot use them%s), e.g. %s",
            name,
            len(ds) - len(kept),
            len(ds),
            f": {task.caps.keep_why}" if task.caps.keep_why else "",
            ", ".join(map(str, ds.select(left_out)["path"])),
        )
    return kept


def prepare(ds, task: Task, processor, num_workers: int = 1):
    """Run the task's per-example preprocessing once, cached beside the decoded audio.

    Only the new columns are written (bounded record batches); they are joined to the memory-mapped
    audio column by column, so preparing never copies the audio."""
    import datasets

    from slp_toolkit.data.splits import WRITER_BATCH, environment_fingerprint

    ds = usable(ds, task, processor)
    code = hashlib.sha256(Path(inspect.getfile(task.preprocess)).read_bytes()).hexdigest()[:16]  # edits invalidate
    key = f"{ds._fingerprint}|{task.name}|{code}|{processor_fingerprint(processor)}|{environment_fingerprint()}"
    procs = num_workers if num_workers > 1 and len(ds) >= 4 * WRITER_BATCH * num_workers else None
    # rows left out by `keep` sit behind an indices mapping that a column join would copy through: then
    # write every column once instead
    joined = ds._indices is None
    source = ds.select_columns(list(task.caps.preprocess_reads)) if joined and task.caps.preprocess_reads else ds
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
