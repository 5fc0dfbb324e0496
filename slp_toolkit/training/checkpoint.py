"""Checkpoints and exports of a run: written whole or not at all, and checked before they are resumed.

A checkpoint (Accelerate's model/optimizer/RNG state, our TrainState and each process's data position)
is written into `.tmp-step-N`, flushed to disk, sealed with `complete.json` (every file with its size)
and only then renamed to `step-N`. `--resume` takes the newest checkpoint whose seal matches its files
and that loads; a torn one (truncated file, missing file, unreadable state) is named in a warning and
the one before it used. A write that fails for want of space leaves the previous checkpoints as they
were and stops the run with one line.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slp_toolkit.errors import UserError
from slp_toolkit.runtime.storage import disk_error, save_pretrained, share

log = logging.getLogger("slp")
SEAL = "complete.json"
LOW_SPACE = 64 * 2**20  # below this, a save that failed without saying why ran out of disk


def _not_tied_weights(record: logging.LogRecord) -> bool:
    # Whisper's and SpeechT5's output layer is their token embedding (tied weights): Accelerate stores it once
    # and warns at every save, yet loading the embedding restores both, so a resume is exact (tests).
    return "Removed shared tensor" not in record.getMessage()  # Accelerate prefixes "[RANK n] "


logging.getLogger("accelerate.utils.other").addFilter(_not_tied_weights)


class CheckpointError(UserError):
    """No checkpoint can be written or resumed; the message says which and what to do."""


@dataclass
class TrainState:
    step: int = 0
    position: dict = field(default_factory=dict)  # the main process's data position (see batches.py)
    elapsed: float = 0.0  # seconds of this run, summed over resumes
    audio_seconds: float = 0.0
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    skipped_steps: int = 0  # NaN/inf loss or gradient: no update
    history: list = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> TrainState:
        return cls(**json.loads(path.read_text()))


def checkpoints(out: Path) -> list[Path]:
    return sorted((out / "checkpoints").glob("step-*"))


def clean_partial(out: Path) -> None:
    """Remove what a killed run left half-written (temp checkpoint and export dirs): never read, only in the way."""
    for tmp in [*(out / "checkpoints").glob(".tmp-step-*"), *out.glob(".tmp-*")]:
        shutil.rmtree(tmp, ignore_errors=True)


def seal(path: Path) -> None:
    """Flush every file of `path` to disk, then list them with their sizes in SEAL (written last)."""
    files = {}
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name != SEAL):
        with f.open("rb") as handle:
            os.fsync(handle.fileno())  # a rename can reach the disk before the data it names
        files[str(f.relative_to(path))] = f.stat().st_size
    (path / SEAL).write_text(json.dumps(files))


def broken(path: Path) -> str | None:
    """Why the checkpoint at `path` cannot be resumed, or None when it is whole."""
    try:
        TrainState.load(path / "state.json")
    except (OSError, ValueError, TypeError) as err:
        return f"state.json unreadable ({type(err).__name__})"
    if not (path / SEAL).is_file():
        return None  # written before checkpoints were sealed: its rename was its only proof, as then
    try:
        files = json.loads((path / SEAL).read_text())
    except (OSError, ValueError):
        return f"{SEAL} unreadable"
    for name, size in files.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, {size} were written"
    return None


def restore(accelerator, out: Path, strict: bool) -> tuple[TrainState, Path]:
    """Load the newest whole checkpoint into the prepared model/optimizer; older ones where newer are torn."""
    reasons = []
    for ckpt in reversed(checkpoints(out)):
        why = broken(ckpt)
        if why is None:
            try:
                accelerator.load_state(str(ckpt), strict=strict)  # LoRA (strict=False): trainable weights only
            except Exception as err:  # noqa: BLE001 - any failure to load means: try the one before
                why = f"does not load ({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})"
        if why is None:
            state = TrainState.load(ckpt / "state.json")
            log.info("resumed from %s (step %d)", ckpt, state.step)
            return state, ckpt
        log.warning("%s: %s; resuming from the checkpoint before it", ckpt, why)
        reasons.append(f"{ckpt.name}: {why}")
    raise CheckpointError(f"{out / 'checkpoints'}: no checkpoint can be resumed ({'; '.join(reasons)})")


def save(accelerator, out: Path, state: TrainState, position: dict, keep: int) -> None:
    """Write checkpoint `step-N` (N = state.step) atomically, then drop all but the newest `keep`."""
    ckpts = out / "checkpoints"
    final, tmp = ckpts / f"step-{state.step:07d}", ckpts / f".tmp-step-{state.step:07d}"
    main = accelerator.is_main_process
    with _space_for(final, tmp, ckpts):
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        # each process's own data position: streaming processes read different rows
        (tmp / f"data-rank{accelerator.process_index}.json").write_text(json.dumps(position))
        accelerator.wait_for_everyone()
        if main:
            state.position = position
            state.save(tmp / "state.json")
            share(tmp)
            seal(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
    if main:
        for old in checkpoints(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def export(model, processor, target: Path, state_dict: dict | None = None) -> None:
    """save_pretrained model + processor into `target`, swapped in atomically; `state_dict`: the weights to
    write instead of the model's own (a sharded model's, gathered)."""
    tmp = target.with_name(f".tmp-{target.name}")
    with _space_for(target, tmp, target.parent):
        shutil.rmtree(tmp, ignore_errors=True)
        generation = getattr(model, "generation_config", None)
        with inference_settings(model.config, generation):
            model.save_pretrained(tmp, **({"state_dict": state_dict} if state_dict is not None else {}))
            if generation is not None and not (tmp / "generation_config.json").exists():
                generation.save_pretrained(tmp)  # a LoRA adapter's save leaves out its decoding settings
        save_pretrained(tmp, processor)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)


def gathered_state_dict(model) -> dict:
    """A sharded model's full weights, gathered to the CPU of the main process (the others get {}): what a
    plain `save_pretrained` then writes. Every process must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def copy_into(source: Path, out: Path) -> None:
    """The best model's files into the output dir itself (what pipeline(out) loads)."""
    with _space_for(out, None, out):
        for f in source.iterdir():
            if f.is_dir():  # e.g. a TTS run's speaker_embeddings/
                shutil.copytree(f, out / f.name, dirs_exist_ok=True)
            else:
                shutil.copy2(f, out / f.name)


@contextmanager
def _space_for(what: Path, tmp: Path | None, where: Path):
    """A write that fails for want of space or permission: the temp dir goes, the error is one line."""
    try:
        yield
    except Exception as err:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        why = _write_failure(err, where)
        if why is None:
            raise
        kept = [p.name for p in checkpoints(where.parent if where.name == "checkpoints" else where)]
        before = f"; {kept[-1]} is intact: free space, then `slp train RECIPE --resume`" if kept else ""
        raise CheckpointError(f"{what}: cannot write ({why}) in {where}{before}") from None


def _write_failure(err: Exception, where: Path) -> str | None:
    """Why a save failed, if for want of space or permission (None: some other error, raised as is).

    torch.save's writer reports a full disk without an errno ("unexpected pos ..."): the free space says it."""
    if (code := disk_error(err)) is not None:
        return os.strerror(code)
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return None
    return f"{os.strerror(errno.ENOSPC)}: {free / 2**20:.1f} MiB free" if free < LOW_SPACE else None


@contextmanager
def inference_settings(*configs):
    """Saved models get their KV cache back: gradient checkpointing turns `use_cache` off for training,
    and a model saved that way decodes every token from scratch (whisper-small: ~10x slower)."""
    changed = [c for c in configs if c is not None and getattr(c, "use_cache", None) is False]
    for c in changed:
        c.use_cache = True
    try:
        yield
    finally:
        for c in changed:
            c.use_cache = False


def load_position(checkpoint: Path, rank: int, state: TrainState) -> dict:
    mine = checkpoint / f"data-rank{rank}.json"
    if mine.is_file():
        return json.loads(mine.read_text())
    return dict(state.position)
