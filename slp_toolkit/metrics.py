"""Metrics computed locally (no `evaluate.load`, which needs the Hub): WER/CER with jiwer; UA/WA/F1 for classifiers."""

from __future__ import annotations

import importlib.metadata
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from functools import lru_cache

import jiwer

from slp_toolkit.data.text import normalize_text

log = logging.getLogger("slp")


def error_rates(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Corpus-level WER and CER: edits summed over all utterances / reference words (characters) summed.

    An empty reference counts the prediction's words (characters) as insertions, as jiwer and the Open ASR
    Leaderboard do: text hallucinated on silence is an error. An empty prediction counts as all deletions.
    No reference words at all: nan without insertions, inf with some."""
    return {"wer": _rate(predictions, references, str.split), "cer": _rate(predictions, references, list)}


def _rate(predictions: list[str], references: list[str], units: Callable) -> float:
    pairs = list(zip(predictions, references, strict=True))
    spoken = [(p, r) for p, r in pairs if r.strip()]
    inserted = sum(len(units(p.strip())) for p, r in pairs if not r.strip())
    edits = words = 0
    if spoken:
        process = jiwer.process_words if units is str.split else jiwer.process_characters
        out = process([r for _, r in spoken], [p for p, _ in spoken])
        edits = out.substitutions + out.deletions + out.insertions
        words = out.hits + out.substitutions + out.deletions
    if words == 0:
        return float("inf") if inserted else float("nan")
    return float((edits + inserted) / words)


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
    out["loops"] = loop_rate([normalizer(p) for p in predictions], [normalizer(r) for r in references])
    out["n"] = len(predictions)
    return out


LOOP_REPEATS = 4  # a word n-gram (n <= 4) said 4 times in a row: "the the the the", "thank you thank you ..."


def longest_repeat(text: str, longest_ngram: int = 4) -> int:
    """The most times any word n-gram (n <= longest_ngram) follows itself in a row in `text`."""
    words, best = text.split(), 1 if text.split() else 0
    for n in range(1, longest_ngram + 1):
        for i in range(len(words) - 2 * n + 1):
            run = 1
            while words[i + run * n : i + (run + 1) * n] == words[i : i + n]:
                run += 1
            best = max(best, run)
    return best


def loop_rate(predictions: list[str], references: list[str]) -> float:
    """The share of transcripts that loop (a decoder repeating itself, peft #380's LoRA complaint): a word n-gram
    repeated LOOP_REPEATS times or more in a row, more often than its reference repeats anything."""
    if not predictions:
        return 0.0
    loops = [
        longest_repeat(p) >= LOOP_REPEATS and longest_repeat(p) > longest_repeat(r)
        for p, r in zip(predictions, references, strict=True)
    ]
    return sum(loops) / len(loops)


# ---------------------------------------------------------------- classification (speech emotion)
def confusion_matrix(predictions: list[str], references: list[str], labels: list[str]) -> list[list[int]]:
    """Counts with rows = reference label and columns = predicted label, both in `labels` order;
    pairs with a label outside `labels` are not counted."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for p, r in zip(predictions, references, strict=True):
        if p in index and r in index:
            matrix[index[r]][index[p]] += 1
    return matrix


def classification_metrics(
    predictions: list[str], references: list[str], labels: list[str] | None = None
) -> dict[str, float]:
    """Utterance-classification scores, the way emotion papers report them:

    - `wa` weighted accuracy (plain accuracy: correct / all) and `ua` unweighted accuracy (mean
      per-class recall over the classes the references contain), `macro_f1` (mean F1 over the classes
      that occur in references or predictions), `n`;
    - `precision/<label>`, `recall/<label>`, `f1/<label>`, `support/<label>` (0 where undefined);
    - `confusion/<reference>/<prediction>` counts: the confusion matrix, flat so that every value is a
      number (see `confusion_from_metrics`).

    `labels` fixes the classes and their order (default: sorted labels of references + predictions)."""
    labels = list(labels) if labels is not None else sorted(set(references) | set(predictions))
    matrix = confusion_matrix(predictions, references, labels)
    out: dict[str, float] = {}
    per_class, recalls, f1s = {}, [], []
    for i, label in enumerate(labels):
        tp, support, predicted = matrix[i][i], sum(matrix[i]), sum(row[i] for row in matrix)
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = (precision, recall, f1, support)
        if support:
            recalls.append(recall)
        if support or predicted:
            f1s.append(f1)
    n = len(references)
    out["wa"] = sum(p == r for p, r in zip(predictions, references, strict=True)) / n if n else float("nan")
    out["ua"] = sum(recalls) / len(recalls) if recalls else float("nan")
    out["macro_f1"] = sum(f1s) / len(f1s) if f1s else float("nan")
    out["n"] = n
    for label, (precision, recall, f1, support) in per_class.items():
        out[f"precision/{label}"], out[f"recall/{label}"], out[f"f1/{label}"] = precision, recall, f1
        out[f"support/{label}"] = support
    for i, ref in enumerate(labels):
        for j, pred in enumerate(labels):
            out[f"confusion/{ref}/{pred}"] = matrix[i][j]
    return out


def confusion_from_metrics(metrics: dict) -> tuple[list[str], list[list[int]]] | None:
    """The (labels, matrix) held in a `classification_metrics` dict, or None when there is none."""
    labels = [k[len("support/") :] for k in metrics if k.startswith("support/")]
    if not labels or f"confusion/{labels[0]}/{labels[0]}" not in metrics:
        return None
    return labels, [[int(metrics[f"confusion/{r}/{p}"]) for p in labels] for r in labels]


# ---------------------------------------------------------------- speech synthesis
def mel_cepstrum(wave, sampling_rate: int, n_coeffs: int = 24):
    """Mel-cepstral coefficients 1..n_coeffs per 16 ms frame (c0, the energy, left out): the cepstrum of
    the natural-log amplitude of an 80-band mel spectrum (25 ms window, 80-7600 Hz; torchaudio), i.e.
    DCT-II scaled as a cepstrum (2/N), so MCD lands on the usual dB scale (a few dB for close speech)."""
    import numpy as np
    import torch
    import torchaudio

    wave = torch.tensor(np.asarray(wave, dtype=np.float32).reshape(-1))
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sampling_rate,
        n_fft=int(0.025 * sampling_rate),
        hop_length=int(0.016 * sampling_rate),
        n_mels=80,
        f_min=80.0,
        f_max=min(7600.0, sampling_rate / 2),
        power=1.0,
    )(wave)
    dct = torchaudio.functional.create_dct(n_coeffs + 1, 80, norm="ortho") * (2.0 / 80) ** 0.5  # (mels, coeffs)
    return (torch.log(mel.clamp(min=1e-5)).T @ dct)[:, 1:].numpy()


def dtw_path(cost):
    """The minimal-cost monotonic alignment of a (N, M) cost matrix: (i, j) pairs from (0, 0) to (N-1, M-1)."""
    import numpy as np

    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        row, prev, c = acc[i], acc[i - 1], cost[i - 1]
        for j in range(1, m + 1):
            row[j] = c[j - 1] + min(prev[j], prev[j - 1], row[j - 1])
    path, i, j = [], n, m
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        step = int(np.argmin((acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])))
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    return path[::-1]


def mel_cepstral_distortion(reference, synthesized, sampling_rate: int) -> float:
    """MCD in dB, (10 / ln 10) * sqrt(2 * sum_d (c_d - c'_d)^2), averaged over the DTW-aligned frame
    pairs of the two signals' mel cepstra: 0 for identical audio, growing as they differ. Silence
    (all frames) is kept; an empty synthesis scores NaN."""
    import numpy as np

    ref, syn = mel_cepstrum(reference, sampling_rate), mel_cepstrum(synthesized, sampling_rate)
    if len(ref) == 0 or len(syn) == 0:
        return float("nan")
    diff = ref[:, None, :] - syn[None, :, :]
    cost = np.sqrt(2.0 * (diff**2).sum(-1))
    path = dtw_path(cost)
    return float(10.0 / np.log(10.0) * np.mean([cost[i, j] for i, j in path]))


def text_normalizer(language: str | None, spelling: dict | None = None) -> Callable[[str], str]:
    """For encoder-decoder ASR (`language`: a code or a name): Whisper's English normaliser (contractions, numbers, British->American spelling) for English,
    its basic one (lower-case, no punctuation or diacritics marks) for any other or unknown language."""
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

    if (language or "").lower() in ("en", "english"):
        return EnglishTextNormalizer(spelling if spelling is not None else english_spelling())
    return BasicTextNormalizer()


@lru_cache(maxsize=1)
def english_spelling() -> dict:
    """The British->American spelling map: the tokenizer's normalizer.json for Hub checkpoints, else
    the same table from the openai-whisper package (no network either way)."""
    try:
        dist = importlib.metadata.distribution("openai-whisper")
        path = dist.locate_file("whisper/normalizers/english.json")
        return json.loads(path.read_text(encoding="utf-8"))
    except (importlib.metadata.PackageNotFoundError, OSError):
        log.warning("Whisper's English spelling map not found (pip install openai-whisper): spellings not unified")
        return {}
