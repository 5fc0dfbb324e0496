"""The data layer shared by every task: find rows, decode audio once, filter, cache, batch by length.

A split spec is an audiofolder directory (`metadata.csv` or `metadata.jsonl` beside the audio), a
`.csv`/`.tsv`/`.jsonl` manifest (audio paths relative to it), or `hf:NAME[:CONFIG]@SPLIT`.
Decoded audio (mono float32 at the model's rate) is cached on disk keyed by the files' sizes and
times, so an identical second run reads arrays instead of decoding again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slp_toolkit.config import DataConfig, UserError
from slp_toolkit.text import normalize_text

log = logging.getLogger("slp")

AUDIO_EXTENSIONS = {
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".mp3",
    ".opus",
    ".m4a",
    ".aac",
    ".webm",
    ".aif",
    ".aiff",
}
AUDIO_COLUMNS = ("file_name", "audio", "path", "audio_path", "audio_filepath", "filepath", "file", "wav")
TEXT_COLUMNS = ("transcription", "text", "sentence", "transcript", "normalized_text", "raw_text")
CACHE_VERSION = "1"


class DataError(UserError):
    """A data problem the user can fix; the message names the file, column or row."""


class AudioError(UserError):
    """One clip could not be used (missing, unreadable, empty)."""


# ---------------------------------------------------------------- decoding
def read_audio(source: str | Path | bytes, sampling_rate: int) -> np.ndarray:
    """Decode any audio file (or its bytes) to mono float32 at `sampling_rate`.

    libsndfile (wav/flac/ogg/mp3) first because it needs nothing else; torchaudio (torchcodec +
    ffmpeg) for the rest (m4a, webm, ...).
    """
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise AudioError("missing file")
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
    except Exception as err:  # noqa: BLE001
        raise AudioError(f"unreadable audio ({type(err).__name__})") from None


# ---------------------------------------------------------------- rows
@dataclass(frozen=True)
class Row:
    where: str  # "file:line" for messages
    source: Any  # path or bytes
    fields: dict[str, Any]


def _read_manifest(path: Path) -> list[dict]:
    try:
        if path.suffix == ".jsonl":
            rows = []
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise DataError(f"{path}:{i}: not valid JSON ({err.msg})") from None
            return rows
        delimiter = "\t" if path.suffix == ".tsv" else ","
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter=delimiter))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text manifest") from None


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, src: str) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"{src}: no {what} column {wanted!r} (columns: {', '.join(columns)})")
        return wanted
    for name in candidates:
        if name in columns:
            return name
    raise DataError(
        f"{src}: cannot find the {what} column (looked for {', '.join(candidates)}; columns: "
        f"{', '.join(columns)}); set data.{what}_column"
    )


def _local_rows(spec: str) -> tuple[list[dict], Path, str]:
    path = Path(spec)
    if path.is_dir():
        for name in ("metadata.csv", "metadata.jsonl", "metadata.tsv"):
            if (path / name).is_file():
                return _read_manifest(path / name), path, str(path / name)
        raise DataError(f"{path}: no metadata.csv or metadata.jsonl in this audiofolder")
    if path.suffix not in (".csv", ".tsv", ".jsonl"):
        raise DataError(f"{path}: expected a directory or a .csv/.tsv/.jsonl manifest")
    if not path.is_file():
        raise DataError(f"{path}: no such file or directory")
    return _read_manifest(path), path.parent, str(path)


def _hub_rows(spec: str, audio_column: str | None) -> tuple[list[dict], str]:
    """`hf:NAME[:CONFIG]@SPLIT` -> rows whose audio is raw bytes (decoded by us, not datasets)."""
    import datasets

    body, _, split = spec[3:].partition("@")
    name, _, config = body.partition(":")
    try:
        ds = datasets.load_dataset(name, config or None, split=split or "train")
    except Exception as err:  # noqa: BLE001 - offline, missing, gated: one line, not a traceback
        raise DataError(f"{spec}: cannot load Hub dataset ({type(err).__name__}: {str(err)[:200]})") from None
    column = _pick(list(ds.column_names), audio_column, AUDIO_COLUMNS, "audio", spec)
    ds = ds.cast_column(column, datasets.Audio(decode=False))
    rows = []
    for row in ds:
        ref = row[column] or {}
        row[column] = ref.get("bytes") or ref.get("path")
        rows.append(row)
    return rows, spec


def iter_rows(spec: str, cfg: DataConfig, needs: tuple[str, ...]) -> tuple[list[Row], str]:
    """The rows of a split with their audio source and the fields a task needs, by name."""
    if spec.startswith("hf:"):
        raw, src = _hub_rows(spec, cfg.audio_column)
        base, line0 = None, 0
    else:
        raw, base, src = _local_rows(spec)
        line0 = 1 if src.endswith((".csv", ".tsv")) else 0
    if not raw:
        raise DataError(f"{src}: no rows")
    columns = list(raw[0].keys())
    audio_col = _pick(columns, cfg.audio_column, AUDIO_COLUMNS, "audio", src)
    wanted = {
        "text": lambda: _pick(columns, cfg.text_column, TEXT_COLUMNS, "text", src),
        "label": lambda: _pick(columns, cfg.label_column, (cfg.label_column,), "label", src),
        "speaker": lambda: _pick(columns, cfg.speaker_column, (cfg.speaker_column,), "speaker", src),
    }
    cols = {need: wanted[need]() for need in needs}
    if cfg.speaker_column in columns:
        cols.setdefault("speaker", cfg.speaker_column)
    rows = []
    for i, r in enumerate(raw):
        source = r.get(audio_col)
        if isinstance(source, str) and base is not None:
            source = base / source
        fields = {k: ("" if r.get(c) is None else str(r.get(c))) for k, c in cols.items()}
        rows.append(Row(f"{src}:{i + 1 + line0}", source, fields))
    return rows, src


# ---------------------------------------------------------------- decoding a split, with a cache
def cache_root() -> Path:
    return Path(os.environ.get("SLP_CACHE", Path.home() / ".cache" / "slp_toolkit"))


def _cache_key(rows: list[Row], cfg: DataConfig, sampling_rate: int, needs: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    h.update(repr((CACHE_VERSION, sampling_rate, cfg.min_seconds, cfg.max_seconds, cfg.normalize_text)).encode())
    h.update(repr(needs).encode())
    for row in rows:
        src = row.source
        if isinstance(src, Path):
            st = src.stat() if src.is_file() else None
            h.update(f"{src.resolve()}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}".encode())
        elif isinstance(src, bytes):
            h.update(hashlib.sha1(src).digest())
        else:
            h.update(repr(src).encode())
        h.update(repr(sorted(row.fields.items())).encode())
    return h.hexdigest()[:24]


def load_split(
    spec: str,
    cfg: DataConfig,
    sampling_rate: int,
    needs: tuple[str, ...] = ("text",),
    max_samples: int | None = None,
):
    """Decode a split into a `datasets.Dataset` with columns audio, duration, path, speaker and the
    fields in `needs` (text is normalised when `cfg.normalize_text`; the original is `raw_text`).

    Bad rows (missing file, unreadable or empty audio, empty text) are skipped and reported in one
    warning line; clips outside [min_seconds, max_seconds] are dropped and counted.
    """
    import datasets

    rows, src = iter_rows(spec, cfg, needs)
    if max_samples is not None:
        rows = rows[:max_samples]
    target = cache_root() / "audio" / _cache_key(rows, cfg, sampling_rate, needs)
    if not (target / "report.json").is_file():
        log.info("%s: decoding %d clips at %d Hz (cached for the next run)", src, len(rows), sampling_rate)
        _decode_split(rows, cfg, sampling_rate, needs, target)
    report = json.loads((target / "report.json").read_text())
    _report(src, report)
    return datasets.load_from_disk(str(target / "dataset")).with_format("numpy")


def _decode_split(rows, cfg, sampling_rate, needs, target: Path) -> None:
    import datasets

    stats = {"rows": len(rows), "skipped": Counter(), "examples": [], "too_short": 0, "too_long": 0}

    def gen() -> Iterator[dict]:
        for row in rows:
            try:
                yield _decode_row(row, cfg, sampling_rate, needs, stats)
            except AudioError as err:
                stats["skipped"][str(err)] += 1
                if len(stats["examples"]) < 3:
                    stats["examples"].append(f"{row.where} ({err})")
            except _Filtered:
                pass

    features = datasets.Features(
        {
            "audio": datasets.List(datasets.Value("float32")),
            "duration": datasets.Value("float32"),
            "path": datasets.Value("string"),
            "speaker": datasets.Value("string"),
            **{k: datasets.Value("string") for k in ("text", "raw_text", "label") if k in _columns(needs)},
        }
    )
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    items = list(gen())
    ds = datasets.Dataset.from_dict({k: [row[k] for row in items] for k in features}, features=features)
    ds.save_to_disk(str(tmp / "dataset"))
    stats["skipped"] = dict(stats["skipped"])
    stats["kept"] = len(items)
    (tmp / "report.json").write_text(json.dumps(stats))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)  # atomic: a half-written cache is never read


def _columns(needs: tuple[str, ...]) -> set[str]:
    cols = set(needs)
    if "text" in needs:
        cols.add("raw_text")
    return cols


class _Filtered(Exception):
    pass


def _decode_row(row: Row, cfg: DataConfig, sampling_rate: int, needs, stats) -> dict:
    fields = dict(row.fields)
    if "text" in needs:
        fields["raw_text"] = fields["text"]
        fields["text"] = normalize_text(fields["text"]) if cfg.normalize_text else fields["text"].strip()
        if not fields["text"]:
            raise AudioError("empty text")
    if "label" in needs and not fields["label"].strip():
        raise AudioError("empty label")
    if row.source is None or row.source == "":
        raise AudioError("no audio path")
    wave = read_audio(row.source, sampling_rate)
    duration = len(wave) / sampling_rate
    if duration < cfg.min_seconds:
        stats["too_short"] += 1
        raise _Filtered
    if duration > cfg.max_seconds:
        stats["too_long"] += 1
        raise _Filtered
    path = str(row.source) if not isinstance(row.source, bytes) else row.where
    return {"audio": wave, "duration": duration, "path": path, "speaker": fields.pop("speaker", ""), **fields}


def _report(src: str, report: dict) -> None:
    skipped = sum(report["skipped"].values())
    if skipped:
        reasons = ", ".join(f"{n} {why}" for why, n in report["skipped"].items())
        log.warning(
            "%s: skipped %d of %d rows (%s); first: %s",
            src, skipped, report["rows"], reasons, "; ".join(report["examples"]),
        )  # fmt: skip
    if report["too_short"] or report["too_long"]:
        log.warning(
            "%s: dropped %d clips shorter than data.min_seconds and %d longer than data.max_seconds",
            src, report["too_short"], report["too_long"],
        )  # fmt: skip
    if report["kept"] == 0:
        raise DataError(f"{src}: no usable rows out of {report['rows']} (see the warnings above)")


# ---------------------------------------------------------------- batching
def length_batches(
    durations: np.ndarray,
    batch_seconds: float,
    max_batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    multiple_of: int = 1,
) -> list[list[int]]:
    """Group clip indices into batches whose padded audio (longest x count) fits `batch_seconds`.

    Clips are shuffled, then sorted by length inside windows of ~50 batches, so batches hold similar
    lengths (little padding) while the order still changes every epoch. Deterministic in (seed,
    epoch). Each batch size is rounded down to a multiple of `multiple_of` (the process count), so
    every process gets an equal share of every global batch.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(durations)) if shuffle else np.arange(len(durations))
    mean = float(np.mean(durations)) if len(durations) else 1.0
    window = max(1, int(50 * batch_seconds / max(mean, 1e-3)))
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: -durations[i])
        batch: list[int] = []
        for i in chunk:
            longest = durations[batch[0]] if batch else durations[i]
            if batch and (longest * (len(batch) + 1) > batch_seconds or len(batch) >= max_batch_size):
                batches.append(batch)
                batch = []
            batch.append(int(i))
        if batch:
            batches.append(batch)
    if multiple_of > 1:
        batches = [b[: len(b) - len(b) % multiple_of] for b in batches]
        batches = [b for b in batches if b]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play `audio` `factor` times faster (pitch and formants move with it), by linear interpolation:
    cheap enough to run per clip per step, and the lost top band matters little to the models here."""
    audio = np.asarray(audio, dtype=np.float32)
    if factor == 1.0 or len(audio) < 2:
        return audio
    positions = np.arange(0, len(audio) - 1, factor, dtype=np.float64)
    return np.interp(positions, np.arange(len(audio)), audio).astype(np.float32)
