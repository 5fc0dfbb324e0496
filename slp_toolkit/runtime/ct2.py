"""CTranslate2's `model.bin`, read without ctranslate2: the variables of a converted model as float32 arrays.

The layout is the one `ctranslate2/specs/model_spec.py` writes and `src/models/model.cc` reads: a uint32
binary version (4-6 read here), the spec's name and revision, then each variable as name, rank, uint32 dims,
a dtype id, a byte count and the raw little-endian bytes, and last the aliases (a variable stored once under
one name and referred to by others; its quantisation scale is aliased with it). Strings are a uint16 length
(the trailing NUL counted) and the bytes. Quantised weights (int8 per row, int16 per tensor) come back
dequantised with their `<name>_scale`. A model split into `model.bin.part1`, `.part2`... is read as their
concatenation.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slp_toolkit.errors import UserError

VERSIONS = (4, 5, 6)  # the binary versions whose variable records this reader knows (dtype id + byte count)
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
MAX_VARIABLES = 1_000_000


class Ct2Error(UserError):
    """A model.bin that cannot be read; the message names the file and what is wrong, in one line."""


def model_files(folder: Path) -> list[Path]:
    """`model.bin`, or its numbered parts in order (`model.bin.part1`, `.part2`, ...)."""
    single = folder / "model.bin"
    if single.is_file():
        return [single]
    parts = [p for p in folder.glob("model.bin.part*") if re.fullmatch(r"model\.bin\.part\d+", p.name)]
    parts.sort(key=lambda p: int(p.name.rsplit("part", 1)[1]))
    if not parts:
        raise Ct2Error(f"{folder}: no model.bin (nor model.bin.part1, ...): not a CTranslate2 model directory")
    numbers = [int(p.name.rsplit("part", 1)[1]) for p in parts]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise Ct2Error(f"{folder}: model.bin parts {numbers} are not consecutive: a part is missing")
    return parts


class _Reader:
    """Sequential reads over one byte buffer, failing with the file's name and the offset."""

    def __init__(self, data: memoryview, name: str):
        self.data, self.pos, self.name = data, 0, name

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise Ct2Error(
                f"{self.name}: truncated or corrupt: {what} needs {n} bytes at byte {self.pos} of {len(self.data)}"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))[0]

    def string(self, what: str) -> str:
        raw = bytes(self.take(self.unpack("H", what), what))
        try:
            return raw.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError:
            raise Ct2Error(f"{self.name}: corrupt: {what} at byte {self.pos} is not text") from None


@dataclass(frozen=True)
class Ct2Model:
    spec: str  # e.g. WhisperSpec
    revision: int
    version: int  # of the binary format
    weight_dtypes: tuple[str, ...]  # how the `*/weight` variables were stored (float16, int8...)
    variables: dict  # name (aliases too) -> array: floats as float32, quantised weights dequantised


def read_model(folder: str | Path) -> Ct2Model:
    """Every variable and alias of a CTranslate2 model directory by name."""
    folder = Path(folder)
    files = model_files(folder)
    label = str(files[0]) if len(files) == 1 else f"{folder}/model.bin.part*"
    data = memoryview(files[0].read_bytes() if len(files) == 1 else b"".join(p.read_bytes() for p in files))
    r = _Reader(data, label)
    version = r.unpack("I", "the binary version")
    if version not in VERSIONS:
        hint = "a newer ctranslate2 wrote it" if 6 < version < 100 else "not a CTranslate2 model.bin"
        raise Ct2Error(f"{label}: binary version {version}: {hint} (versions {VERSIONS[0]}-{VERSIONS[-1]} are read)")
    spec, revision = r.string("the spec name"), r.unpack("I", "the spec revision")
    count = r.unpack("I", "the variable count")
    if count > MAX_VARIABLES:
        raise Ct2Error(f"{label}: corrupt: {count} variables")
    raw: dict[str, np.ndarray] = {}
    stored = set()
    for i in range(count):
        name = r.string(f"variable {i}'s name")
        shape = [r.unpack("I", f"{name}'s shape") for _ in range(r.unpack("B", f"{name}'s rank"))]
        dtype_id, size = r.unpack("B", f"{name}'s dtype"), r.unpack("I", f"{name}'s size")
        raw[name] = _array(r.take(size, name), dtype_id, shape, f"{label}: {name}")
        if name.endswith("weight"):
            stored.add(np.dtype(DTYPES[dtype_id]).name if dtype_id != 5 else "bfloat16")
    for i in range(r.unpack("I", "the alias count")):
        alias, target = r.string(f"alias {i}"), r.string(f"alias {i}'s target")
        if target not in raw:
            raise Ct2Error(f"{label}: corrupt: alias {alias} names {target}, which is not stored")
        raw[alias] = raw[target]
        if f"{target}_scale" in raw:
            raw[f"{alias}_scale"] = raw[f"{target}_scale"]
    return Ct2Model(spec, revision, version, tuple(sorted(stored)), _dequantised(raw))


def _array(buf: memoryview, dtype_id: int, shape: list[int], where: str) -> np.ndarray:
    if dtype_id not in DTYPES:
        raise Ct2Error(f"{where}: unknown dtype id {dtype_id}: corrupt, or from a newer ctranslate2")
    dtype = DTYPES[dtype_id]
    if dtype == "bfloat16":  # numpy has none: the high half of a float32
        half = np.frombuffer(buf, dtype="<u2")
        values = (half.astype(np.uint32) << 16).view(np.float32)
    else:
        values = np.frombuffer(buf, dtype=np.dtype(dtype).newbyteorder("<"))
    if values.size != int(np.prod(shape, dtype=np.int64)):
        raise Ct2Error(f"{where}: {values.size} values for shape {shape}: corrupt")
    return values.reshape(shape).copy()


def _dequantised(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """int8 weights (a float scale per output row) and int16 ones (one scale) back to float32; the other
    floats to float32."""
    out = {}
    for name, value in raw.items():
        if name.endswith("_scale"):
            continue
        scale = raw.get(f"{name}_scale")
        if scale is not None and value.dtype in (np.int8, np.int16):
            scale = np.asarray(scale, np.float32)
            per_row = scale.reshape((-1,) + (1,) * (value.ndim - 1)) if scale.ndim else scale
            value = value.astype(np.float32) / per_row
        elif value.dtype in (np.float16, np.float32):
            value = value.astype(np.float32)
        out[name] = value
    return out
