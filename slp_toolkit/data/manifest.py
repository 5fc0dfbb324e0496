"""Where rows come from: audiofolders, .csv/.tsv/.jsonl manifests, LibriSpeech folders, Hub datasets.

A split spec is an audiofolder directory (`metadata.csv` / `metadata.jsonl` beside the audio), a
manifest (audio paths relative to it), a folder in LibriSpeech's on-disk layout
(`SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac` + `SPEAKER-CHAPTER.trans.txt`), or `hf:NAME[:CONFIG]@SPLIT`.
`RowSet` holds only metadata (paths, transcripts; for a Hub dataset its memory-mapped table), never
audio, and hands out contiguous slices so decoding can run in parallel processes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from slp_toolkit.config import DataConfig, UserError

AUDIO_EXTENSIONS = {
    ".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".m4a", ".aac", ".webm", ".aif", ".aiff",
}  # fmt: skip
AUDIO_COLUMNS = ("file_name", "audio", "path", "audio_path", "audio_filepath", "filepath", "file", "wav")
log = logging.getLogger("slp")
TEXT_COLUMNS = ("transcription", "text", "sentence", "transcript", "normalized_text", "raw_text")


class DataError(UserError):
    """A data problem the user can fix; the message names the file, column or row."""


class AudioError(UserError):
    """One clip could not be used (missing, unreadable, empty)."""


@dataclass(frozen=True)
class Row:
    where: str  # "file:line" for messages
    source: Any  # path or bytes
    fields: dict[str, Any]


# ---------------------------------------------------------------- readers of each on-disk form
def read_manifest(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each row of a .jsonl/.csv/.tsv manifest, read lazily."""
    try:
        if path.suffix == ".jsonl":
            with path.open(encoding="utf-8") as f:
                for i, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            yield i, json.loads(line)
                        except json.JSONDecodeError as err:
                            raise DataError(f"{path}:{i}: not valid JSON ({err.msg})") from None
            return
        delimiter = "\t" if path.suffix == ".tsv" else ","
        with path.open(newline="", encoding="utf-8") as f:
            for i, record in enumerate(csv.DictReader(f, delimiter=delimiter), 2):  # line 1 is the header
                yield i, record
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text manifest") from None


def is_librispeech(path: Path) -> bool:
    return path.is_dir() and next(path.glob("*/*/*.trans.txt"), None) is not None


def read_librispeech(root: Path) -> Iterator[tuple[str, dict]]:
    """(transcript file:line, record) for each utterance of a LibriSpeech-layout folder.

    Each `SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt` line is `UTTERANCE-ID TRANSCRIPT`; the audio is
    `UTTERANCE-ID.flac` (or another audio extension) beside it."""
    transcripts = sorted(root.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise DataError(f"{root}: no SPEAKER/CHAPTER/*.trans.txt transcripts (data.format: librispeech)")
    for trans in transcripts:
        chapter = trans.parent
        audio = {p.stem: p for p in chapter.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS}
        try:
            lines = trans.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise DataError(f"{trans}: not a UTF-8 transcript file") from None
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            utt, _, text = line.strip().partition(" ")
            path = audio.get(utt, chapter / f"{utt}.flac")  # a missing file is reported at decode time
            yield (
                f"{trans}:{i}",
                {
                    "file_name": str(path),
                    "text": text,
                    "speaker": chapter.parent.name,
                    "chapter": chapter.name,
                    "id": utt,
                },
            )


def write_manifest(rows: Iterator[dict], path: Path) -> int:
    """Write records as JSONL atomically; returns the count."""
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for record in rows:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, src: str) -> str:
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


# ---------------------------------------------------------------- a split's rows
@dataclass
class RowSet:
    """The rows of one split: metadata only. `records` is [(where, record)] for local data; `hub` a
    `datasets.Dataset` whose audio column holds undecoded {bytes, path}."""

    src: str
    audio_col: str
    cols: dict[str, str]  # need -> column
    base: Path | None = None
    records: list[tuple[str, dict]] | None = None
    hub: Any = None
    stop: int | None = None  # max_samples
    first: int = 0  # row number of hub row 0 (a slice's offset), for messages
    # a Hub ClassLabel column's names (column -> names): rows carry "ang", not the id 0, so the saved model's
    # id2label says what pipeline() users read
    names: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        n = len(self.records) if self.records is not None else len(self.hub)
        return n if self.stop is None else min(n, self.stop)

    def rows(self, start: int = 0, stop: int | None = None) -> Iterator[Row]:
        stop = len(self) if stop is None else min(stop, len(self))
        if self.records is not None:
            for where, record in self.records[start:stop]:
                yield self.row(where, record)
            return
        for i, record in enumerate(self.hub.select(range(start, stop)), self.first + start):
            yield self.row(f"{self.src}:row {i}", record)

    def slice(self, start: int, stop: int) -> RowSet:
        """Rows [start, stop) as their own RowSet: what one decoding process is sent."""
        stop = min(stop, len(self))
        if self.records is not None:
            return replace(self, records=self.records[start:stop], stop=None)
        return replace(self, hub=self.hub.select(range(start, stop)), stop=None, first=self.first + start)

    def row(self, where: str, record: dict) -> Row:
        source = record.get(self.audio_col)
        if isinstance(source, dict):  # a Hub Audio(decode=False) cell
            source = source.get("bytes") or source.get("path")
        if isinstance(source, str) and source and self.base is not None:
            source = self.base / source
        fields = {
            k: ("" if record.get(c) is None else str(self._named(c, record.get(c)))) for k, c in self.cols.items()
        }
        return Row(where, source, fields)

    def _named(self, column: str, value):
        names = self.names.get(column)
        return names[value] if names and isinstance(value, int) and 0 <= value < len(names) else value

    def fingerprint(self) -> str:
        """Content of every row: file identity (path, size, mtime) and the fields used."""
        h = hashlib.sha256(repr((self.audio_col, sorted(self.cols.items()), len(self))).encode())
        if self.hub is not None:
            h.update(str(self.hub._fingerprint).encode())
            return h.hexdigest()
        for row in self.rows():
            src = row.source
            if isinstance(src, Path):
                try:
                    st = os.stat(src)
                except OSError:
                    st = None
                h.update(f"{os.path.abspath(src)}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}".encode())
            else:
                h.update(repr(src).encode())
            h.update(repr(sorted(row.fields.items())).encode())
        return h.hexdigest()


def row_set(spec: str, cfg: DataConfig, needs: tuple[str, ...], max_samples: int | None = None) -> RowSet:
    """The rows of a split with their audio source and the fields a task needs, by name."""
    if spec.startswith("hf:"):
        ds = load_hub(spec, streaming=False)
        columns = list(ds.column_names)
        audio_col = pick(columns, cfg.audio_column, AUDIO_COLUMNS, "audio", spec)
        import datasets

        ds = ds.cast_column(audio_col, datasets.Audio(decode=False))
        return _with_columns(
            RowSet(spec, audio_col, {}, hub=ds, stop=max_samples, names=class_names(ds.features)), columns, cfg, needs
        )
    records, base, src = local_records(spec, cfg)
    if not records:
        raise DataError(f"{src}: no rows")
    audio_col = pick(list(records[0][1]), cfg.audio_column, AUDIO_COLUMNS, "audio", src)
    rows = _with_columns(RowSet(src, audio_col, {}, base=base, records=records), list(records[0][1]), cfg, needs)
    _warn_duplicates(rows)
    return replace(rows, stop=max_samples)


def class_names(features) -> dict[str, list[str]]:
    """The names of every ClassLabel column of a Hub dataset's features (none for other columns)."""
    import datasets

    return {c: list(f.names) for c, f in (features or {}).items() if isinstance(f, datasets.ClassLabel)}


def _warn_duplicates(rows: RowSet) -> None:
    """Exact repeats (same audio, same fields) are counted and named, and kept: a repeat may be deliberate
    (oversampling a rare class), as in HF datasets and NeMo manifests, but is more often a merge gone wrong."""
    seen: dict[tuple, str] = {}
    repeats = []
    for where, record in rows.records:
        key = (str(record.get(rows.audio_col)), *(str(record.get(c)) for c in rows.cols.values()))
        if key in seen:
            repeats.append(f"{where} (same as line {seen[key].rsplit(':', 1)[-1]})")
        else:
            seen[key] = where
    if repeats:
        log.warning("%s: %d rows repeat an earlier row (kept), e.g. %s", rows.src, len(repeats), ", ".join(repeats[:3]))


def _with_columns(rows: RowSet, columns: list[str], cfg: DataConfig, needs: tuple[str, ...]) -> RowSet:
    wanted = {
        "text": lambda: pick(columns, cfg.text_column, TEXT_COLUMNS, "text", rows.src),
        "label": lambda: pick(columns, cfg.label_column, (cfg.label_column,), "label", rows.src),
        "speaker": lambda: pick(columns, cfg.speaker_column, (cfg.speaker_column,), "speaker", rows.src),
    }
    rows.cols = {need: wanted[need]() for need in needs}
    if cfg.speaker_column in columns:
        rows.cols.setdefault("speaker", cfg.speaker_column)
    return rows


def local_records(spec: str, cfg: DataConfig) -> tuple[list[tuple[str, dict]], Path | None, str]:
    """[(file:line, record)], the folder relative paths start from, and the source to name in messages."""
    path = Path(spec)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if cfg.format == "librispeech" or (cfg.format == "auto" and is_librispeech(path)):
        if not path.is_dir():
            raise DataError(f"{path}: a LibriSpeech split is a folder of SPEAKER/CHAPTER/ subfolders")
        return list(read_librispeech(path)), None, str(path)
    if path.is_dir():
        for name in ("metadata.csv", "metadata.jsonl", "metadata.tsv"):
            if (path / name).is_file():
                manifest = path / name
                return [(f"{manifest}:{i}", r) for i, r in read_manifest(manifest)], path, str(manifest)
        raise DataError(
            f"{path}: no metadata.csv or metadata.jsonl in this audiofolder, and no LibriSpeech "
            "SPEAKER/CHAPTER/*.trans.txt transcripts"
        )
    if path.suffix not in (".csv", ".tsv", ".jsonl"):
        raise DataError(f"{path}: expected a directory or a .csv/.tsv/.jsonl manifest")
    if not path.is_file():
        raise DataError(f"{path}: no such file or directory")
    return [(f"{path}:{i}", r) for i, r in read_manifest(path)], path.parent, str(path)


def load_hub(spec: str, streaming: bool):
    """`hf:NAME[:CONFIG]@SPLIT` as a datasets (Iterable)Dataset, or one line saying why not."""
    import datasets

    body, _, split = spec[3:].partition("@")
    name, _, config = body.partition(":")
    try:
        return datasets.load_dataset(name, config or None, split=split or "train", streaming=streaming)
    except Exception as err:  # noqa: BLE001 - offline, missing, gated: one line, not a traceback
        first = (str(err).strip().splitlines() or [""])[0]
        raise DataError(f"{spec}: cannot load Hub dataset ({type(err).__name__}: {first[:200]})") from None


def iter_rows(spec: str, cfg: DataConfig, needs: tuple[str, ...]) -> tuple[list[Row], str]:
    """All rows of a (small, local) split as a list: for fold manifests and the demo's examples."""
    rows = row_set(spec, cfg, needs)
    return list(rows.rows()), rows.src
