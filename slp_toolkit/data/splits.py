"""The data layer shared by every task: decode audio once into a memory-mapped Arrow cache, prepare
features, batch by length.

Decoding is memory-flat: worker processes each decode a contiguous slice of the rows and append them
to their own Arrow shard in small record batches, so no split is ever held in Python lists; training
reads rows memory-mapped. The cache key covers the files (path, size, mtime), the recipe keys that
change the decoded rows, this module's code and the decoding libraries' versions. A cache directory is
renamed into place only once complete, so a half-written cache is never read.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np

from slp_toolkit.config import DataConfig
from slp_toolkit.data.manifest import AUDIO_EXTENSIONS, AudioError, DataError, Row, RowSet, iter_rows, row_set
from slp_toolkit.runtime.storage import disk_error

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioError",
    "DataError",
    "Row",
    "iter_rows",
    "load_split",
    "read_audio",
    "sampling_rate",
]

log = logging.getLogger("slp")
CACHE_VERSION = "2"
WRITER_BATCH = 32  # rows per Arrow record batch: bounds what a writer holds (32 x 20 s x 64 kB = 41 MB)
MIN_ROWS_PER_WORKER = 200  # below this a worker process costs more to start than it saves


def sampling_rate(processor) -> int:
    """The rate a model's processor (or its feature extractor) expects its audio at."""
    return int(getattr(processor, "feature_extractor", processor).sampling_rate)


# ---------------------------------------------------------------- decoding one file
def read_audio(source: str | Path | bytes, sampling_rate: int) -> np.ndarray:
    """Decode any audio file (or its bytes) to mono float32 at `sampling_rate`.

    libsndfile (wav/flac/ogg/mp3) first because it needs nothing else; torchaudio (torchcodec +
    ffmpeg) for the rest (m4a, webm, ...).
    """
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise AudioError("missing file")
    if (Path(source).stat().st_size if isinstance(source, (str, Path)) else len(source)) == 0:
        raise AudioError("empty file (0 bytes)")
    wave, rate = _decode(source)
    if wave.size == 0 or rate <= 0:
        raise AudioError("empty audio")
    wave = wave.mean(axis=0) if wave.ndim == 2 else wave
    if not np.isfinite(wave).all():
        raise AudioError("audio has NaN or infinite samples")
    if rate != sampling_rate:
        wave = resample(wave, rate, sampling_rate)
    return np.ascontiguousarray(wave, dtype=np.float32)


def resample(wave: np.ndarray, orig: int, new: int) -> np.ndarray:
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(np.asarray(wave, np.float32)), orig, new).numpy()


def _decode(source: str | Path | bytes) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        data, rate = sf.read(io.BytesIO(source) if isinstance(source, bytes) else str(source), dtype="float32")
        return data.T, rate  # (channels, n) or (n,)
    except Exception:  # noqa: BLE001 - libsndfile's errors vary; fall back to ffmpeg
        pass
    try:
        import torchaudio

        wave, rate = torchaudio.load(io.BytesIO(source) if isinstance(source, bytes) else str(source))
        return wave.numpy(), int(rate)
    except Exception:  # noqa: BLE001 - the libraries' messages are long and vary: one reason, counted as one
        raise AudioError("unreadable audio (neither libsndfile nor ffmpeg decodes it)") from None


class Filtered(Exception):
    """A readable clip outside [data.min_seconds, data.max_seconds]; the message says which side."""


def decode_row(row: Row, cfg: DataConfig, sampling_rate: int, needs: tuple[str, ...]) -> dict:
    """One row as {audio, duration, path, speaker, text/raw_text/label}; AudioError or Filtered if unusable."""
    fields = dict(row.fields)
    if "text" in needs:
        from slp_toolkit.data.text import normalize_text

        fields["raw_text"] = fields["text"]
        # None (no task chose: `slp data inspect`, a DataConfig of one's own) normalises, as the recipe default did
        fields["text"] = normalize_text(fields["text"]) if cfg.normalize_text is not False else fields["text"].strip()
        if not fields["text"]:
            raise AudioError("empty text")
    if "label" in needs and not fields["label"].strip():
        raise AudioError("empty label")
    if row.source is None or row.source == "":
        raise AudioError("no audio path")
    wave = read_audio(row.source, sampling_rate)
    duration = len(wave) / sampling_rate
    if duration < cfg.min_seconds:
        raise Filtered("too_short")
    if duration > cfg.max_seconds:
        raise Filtered("too_long")
    path = str(row.source) if not isinstance(row.source, bytes) else row.where
    return {"audio": wave, "duration": duration, "path": path, "speaker": fields.pop("speaker", ""), **fields}


class Tally:
    """Counts of skipped and filtered rows, with the first few bad rows' file:line."""

    def __init__(self) -> None:
        self.rows, self.kept, self.too_short, self.too_long = 0, 0, 0, 0
        self.skipped: Counter = Counter()
        self.examples: list[str] = []

    def bad(self, row: Row, err: Exception) -> None:
        self.skipped[str(err)] += 1
        if len(self.examples) < 3:
            self.examples.append(f"{row.where} ({err})")

    def add(self, other: dict) -> None:
        self.rows += other["rows"]
        self.kept += other["kept"]
        self.too_short += other["too_short"]
        self.too_long += other["too_long"]
        self.skipped.update(other["skipped"])
        self.examples += other["examples"][: 3 - len(self.examples)]

    def as_dict(self) -> dict:
        return {
            "rows": self.rows,
            "kept": self.kept,
            "too_short": self.too_short,
            "too_long": self.too_long,
            "skipped": dict(self.skipped),
            "examples": self.examples,
        }


def decode_rows(rows, cfg: DataConfig, sampling_rate: int, needs: tuple[str, ...], tally: Tally):
    """Decoded examples of `rows`; bad and filtered rows are counted in `tally`, never raised."""
    for row in rows:
        tally.rows += 1
        try:
            example = decode_row(row, cfg, sampling_rate, needs)
        except AudioError as err:
            tally.bad(row, err)
            continue
        except Filtered as why:
            setattr(tally, str(why), getattr(tally, str(why)) + 1)
            continue
        tally.kept += 1
        yield example


# ---------------------------------------------------------------- the decode cache
def cache_root() -> Path:
    return Path(os.environ.get("SLP_CACHE", Path.home() / ".cache" / "slp_toolkit"))


@lru_cache(maxsize=1)
def environment_fingerprint() -> str:
    """This package's data code and the versions of the libraries that decode and store audio: a
    change to either can change decoded rows or features, so it is part of every cache key."""
    from importlib import metadata

    h = hashlib.sha256(CACHE_VERSION.encode())
    here = Path(__file__).parent
    for name in ("splits.py", "manifest.py", "text.py"):
        h.update((here / name).read_bytes())
    for lib in ("numpy", "soundfile", "torch", "torchaudio", "datasets", "pyarrow", "transformers", "tokenizers"):
        try:
            h.update(f"{lib}={metadata.version(lib)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{lib}=none".encode())
    return h.hexdigest()[:16]


def cache_key(rows: RowSet, cfg: DataConfig, sampling_rate: int, needs: tuple[str, ...]) -> str:
    normalised = cfg.normalize_text is not False
    h = hashlib.sha256(repr((sampling_rate, cfg.min_seconds, cfg.max_seconds, normalised, needs)).encode())
    h.update(rows.fingerprint().encode())
    h.update(environment_fingerprint().encode())
    return h.hexdigest()[:24]


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) - 1) if hasattr(os, "sched_getaffinity") else 1


def workers_for(cfg: DataConfig, rows: int) -> int:
    wanted = cfg.num_workers or default_workers()
    return max(1, min(wanted, rows // MIN_ROWS_PER_WORKER))


def load_split(
    spec: str,
    cfg: DataConfig,
    sampling_rate: int,
    needs: tuple[str, ...] = ("text",),
    max_samples: int | None = None,
    with_report: bool = False,
):
    """Decode a split into a memory-mapped `datasets.Dataset` with columns audio, duration, path, speaker
    and the fields in `needs` (text is normalised when `cfg.normalize_text`; the original is `raw_text`).

    Bad rows (missing file, unreadable or empty audio, empty text) are skipped and reported in one
    warning line with their file:line; clips outside [min_seconds, max_seconds] are dropped and counted.
    """
    rows = row_set(spec, cfg, needs, max_samples)
    key = cache_key(rows, cfg, sampling_rate, needs)
    target = cache_root() / "audio" / key
    if not (target / "report.json").is_file():
        workers = workers_for(cfg, len(rows))
        log.info(
            "%s: decoding %d clips at %d Hz with %d process(es), cached for the next run",
            rows.src,
            len(rows),
            sampling_rate,
            workers,
        )
        _decode_split(rows, cfg, sampling_rate, needs, target, workers)
    report = json.loads((target / "report.json").read_text())
    _report(rows.src, report)
    ds = open_cache(target, key)
    return (ds, report) if with_report else ds


def open_cache(target: Path, fingerprint: str):
    """The decoded shards of a cache dir as one memory-mapped dataset (no copy)."""
    import datasets

    parts = [datasets.Dataset.from_file(str(f)) for f in sorted(target.glob("shard-*.arrow"))]
    ds = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    ds._fingerprint = fingerprint  # stable across runs: preparation caches are keyed on it
    return ds.with_format("numpy")


def column(ds, name: str) -> list:
    """A whole column as a list, read in one piece from Arrow: `ds[name]` on a formatted dataset
    formats row by row (seconds for a large split). A plain dict of lists works too."""
    if isinstance(ds, dict):
        return list(ds[name])
    return ds.select_columns([name]).with_format(None)[:][name]


def features_for(needs: tuple[str, ...]):
    import datasets

    text = [k for k in ("text", "raw_text", "label") if k in needs or (k == "raw_text" and "text" in needs)]
    return datasets.Features({
        "audio": datasets.List(datasets.Value("float32")),
        "duration": datasets.Value("float32"),
        "path": datasets.Value("string"),
        "speaker": datasets.Value("string"),
        **{k: datasets.Value("string") for k in text},
    })  # fmt: skip


def write_shard(job: tuple) -> dict:
    """Decode rows[start:stop] into one Arrow stream file, WRITER_BATCH rows at a time."""
    import pyarrow as pa

    rows, cfg, sampling_rate, needs, schema, path = job
    tally, buffer = Tally(), []
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for example in decode_rows(rows.rows(), cfg, sampling_rate, needs, tally):
            buffer.append(example)
            if len(buffer) >= WRITER_BATCH:
                writer.write_batch(_record_batch(buffer, schema))
                buffer = []
        if buffer:
            writer.write_batch(_record_batch(buffer, schema))
    return tally.as_dict()


def _record_batch(examples: list[dict], schema):
    """Columns straight from numpy: the audio list column is built from offsets, not Python floats."""
    import pyarrow as pa

    lengths = np.fromiter((len(e["audio"]) for e in examples), dtype=np.int64, count=len(examples))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    audio = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate([e["audio"] for e in examples])))
    columns = {"audio": audio}
    for name in schema.names[1:]:
        columns[name] = pa.array([e[name] for e in examples], type=schema.field(name).type)
    return pa.RecordBatch.from_pydict(columns, schema=schema)


def _worker_init() -> None:
    # N decoding processes on N cores: one thread each (read by torch when resampling first imports it;
    # workers import neither torch nor datasets unless they must, to stay small)
    os.environ["OMP_NUM_THREADS"] = "1"


def _decode_split(rows: RowSet, cfg: DataConfig, sampling_rate: int, needs, target: Path, workers: int) -> None:
    n_shards = 1 if workers == 1 else workers * 4  # several shards per worker balance uneven files
    bounds = np.linspace(0, len(rows), n_shards + 1).astype(int)
    tmp = target.with_name(f".tmp-{target.name}-{os.getpid()}")
    _remove_stale(target)
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        schema = features_for(needs).arrow_schema
        jobs = [
            (rows.slice(a, b), cfg, sampling_rate, needs, schema, tmp / f"shard-{i:05d}.arrow")
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))
        ]
        tally = Tally()
        if workers == 1:
            for job in jobs:
                tally.add(write_shard(job))
        else:
            import multiprocessing

            # spawn, not fork: a forked child of a process that already ran torch's OpenMP pool can hang
            with multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
                for report in pool.imap(write_shard, jobs):
                    tally.add(report)
        (tmp / "report.json").write_text(json.dumps(tally.as_dict()))
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if (code := disk_error(err)) is not None:
            raise DataError(
                f"{target.parent}: cannot write the decode cache ({os.strerror(code)}); "
                "free space there or point SLP_CACHE at a larger disk"
            ) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists() and not (target / "report.json").is_file():
        shutil.rmtree(target)  # not a finished cache (none of ours is renamed before its report exists)
    try:
        os.replace(tmp, target)  # atomic: a half-written cache is never read
    except OSError:  # another run finished the same cache first: theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "report.json").is_file():
            raise


def _remove_stale(target: Path) -> None:
    """Temp dirs of this cache left by killed runs (their pid is gone): never read, only taking space."""
    for tmp in target.parent.glob(f".tmp-{target.name}-*"):
        try:
            os.kill(int(tmp.name.rsplit("-", 1)[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError):  # not our naming, or another user's live process
            pass


def _report(src: str, report: dict) -> None:
    skipped = sum(report["skipped"].values())
    if skipped:
        reasons = ", ".join(f"{n} {why}" for why, n in report["skipped"].items())
        log.warning(
            "%s: skipped %d of %d rows (%s); first: %s",
            src,
            skipped,
            report["rows"],
            reasons,
            "; ".join(report["examples"]),
        )
    if report["too_short"] or report["too_long"]:
        log.warning(
            "%s: dropped %d clips shorter than data.min_seconds and %d longer than data.max_seconds",
            src,
            report["too_short"],
            report["too_long"],
        )
    if report["kept"] == 0:
        raise DataError(f"{src}: no usable rows out of {report['rows']} (see the warnings above)")


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play `audio` `factor` times faster (pitch and formants move with it), by linear interpolation:
    cheap enough to run per clip per step, and the lost top band matters little to the models here."""
    audio = np.asarray(audio, dtype=np.float32)
    if factor == 1.0 or len(audio) < 2:
        return audio
    positions = np.arange(0, len(audio) - 1, factor, dtype=np.float64)
    return np.interp(positions, np.arange(len(audio)), audio).astype(np.float32)
