"""Metrics computed locally (no `evaluate.load`, which needs the Hub): WER/CER with jiwer."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import jiwer

from slp_toolkit.text import normalize_text


def error_rates(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Corpus-level WER and CER (errors summed over all utterances / reference length summed).

    Empty references are skipped (jiwer cannot divide by zero words); an empty prediction counts as
    all deletions.
    """
    pairs = [(p, r) for p, r in zip(predictions, references, strict=True) if r.strip()]
    if not pairs:
        return {"wer": float("nan"), "cer": float("nan")}
    preds, refs = [p for p, _ in pairs], [r for _, r in pairs]
    return {"wer": float(jiwer.wer(refs, preds)), "cer": float(jiwer.cer(refs, preds))}


def asr_metrics(
    predictions: list[str],
    references: list[str],
    groups: list[str] | None = None,
    normalizer: Callable[[str], str] = normalize_text,
) -> dict[str, float]:
    """Raw WER/CER (exact text, case and punctuation count) and normalised ones side by side; the
    normalised pair is what to compare models by. With `groups` (e.g. speakers), adds
    `cer/<group>` and `wer/<group>` on normalised text."""
    raw = error_rates(predictions, references)
    norm = error_rates([normalizer(p) for p in predictions], [normalizer(r) for r in references])
    out = {"wer": norm["wer"], "cer": norm["cer"], "wer_raw": raw["wer"], "cer_raw": raw["cer"]}
    if groups and len(set(groups)) > 1:
        by: dict[str, list[int]] = defaultdict(list)
        for i, g in enumerate(groups):
            by[g].append(i)
        for g, idx in sorted(by.items()):
            sub = error_rates([normalizer(predictions[i]) for i in idx], [normalizer(references[i]) for i in idx])
            out[f"wer/{g}"], out[f"cer/{g}"] = sub["wer"], sub["cer"]
    out["n"] = len(predictions)
    return out
