"""`slp data inspect` and `slp data manifest`: what a split holds before an hour is spent training on it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from slp_toolkit.config import DataConfig
from slp_toolkit.data.manifest import DataError, row_set, write_manifest
from slp_toolkit.data.splits import column, load_split


def inspect_split(spec: str, cfg: DataConfig, sampling_rate: int, png: Path) -> dict:
    """Decode (or read from the cache) a split and summarise it; the duration histogram goes to `png`."""
    from slp_toolkit.plots import plot_durations

    ds, report = load_split(spec, cfg, sampling_rate, ("text",), with_report=True)
    durations = np.asarray(column(ds, "duration"), dtype=np.float64)
    texts = [str(t) for t in column(ds, "text")]
    speakers = Counter(str(s) for s in column(ds, "speaker") if str(s))
    chars = Counter("".join(texts))
    png.parent.mkdir(parents=True, exist_ok=True)
    plot_durations(durations, png, Path(spec).name or spec)
    return {
        "split": spec,
        "rows": report["rows"],
        "kept": report["kept"],
        "skipped": report["skipped"],
        "skipped_examples": report["examples"],
        "too_short": report["too_short"],
        "too_long": report["too_long"],
        "hours": round(float(durations.sum()) / 3600, 4),
        "seconds": {
            q: round(float(np.percentile(durations, p)), 2)
            for q, p in (("min", 0), ("median", 50), ("p95", 95), ("max", 100))
        },
        "speakers": len(speakers),
        "top_speakers": dict(speakers.most_common(5)),
        "characters": "".join(sorted(chars)),
        "rare_characters": {c: n for c, n in chars.items() if n < 5},
        "histogram": str(png),
    }


def format_inspect(info: dict) -> str:
    skipped = sum(info["skipped"].values())
    reasons = ", ".join(f"{n} {why}" for why, n in info["skipped"].items()) or "none"
    s = info["seconds"]
    lines = [
        f"split       {info['split']}",
        f"rows        {info['rows']} read, {info['kept']} kept",
        f"skipped     {skipped} ({reasons})" + (f"; first: {'; '.join(info['skipped_examples'])}" if skipped else ""),
        f"filtered    {info['too_short']} shorter than data.min_seconds, {info['too_long']} longer than data.max_seconds",
        f"hours       {info['hours']:.2f}",
        f"seconds     min {s['min']}  median {s['median']}  p95 {s['p95']}  max {s['max']}",
        f"speakers    {info['speakers']}" + (f" (most clips: {info['top_speakers']})" if info["speakers"] else ""),
        f"characters  {info['characters']!r}",
    ]
    if info["rare_characters"]:
        lines.append(f"rare chars  {info['rare_characters']} (fewer than 5 uses: typos or foreign text?)")
    lines.append(f"histogram   {info['histogram']}")
    return "\n".join(lines)


def to_manifest(spec: str, cfg: DataConfig, out: Path) -> int:
    """Any local split (e.g. a LibriSpeech folder) as a JSONL manifest with absolute audio paths."""
    if spec.startswith("hf:"):
        raise DataError(f"{spec}: `slp data manifest` writes local audio paths; a Hub split has none")
    rows = row_set(spec, cfg, ("text",))
    records = (
        {
            "audio": str(Path(r.source).resolve()),
            "text": r.fields["text"],
            **({"speaker": r.fields["speaker"]} if "speaker" in r.fields else {}),
        }
        for r in rows.rows()
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_manifest(records, out)
