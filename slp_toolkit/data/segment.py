"""Long audio cut at its pauses: the speech between pauses, each piece no longer than a model window.

A model fine-tuned on single utterances decodes a long recording best one utterance at a time: fixed
windows cut words and hand it silence and sentence joins it never heard. Pauses are found from frame energy
against the recording's own noise floor (no model, no download), so quiet rooms and noisy ones both work;
a stretch of speech with no pause longer than the window is cut at its quietest point."""

from __future__ import annotations

import numpy as np

FRAME_SECONDS = 0.02
MIN_PAUSE_SECONDS = 0.25  # shorter gaps are inside a sentence (stops, commas)
MARGIN_SECONDS = 0.1  # of the pause kept on each side of a piece: onsets and releases are quiet


def frame_levels(wave: np.ndarray, frame: int) -> np.ndarray:
    """Energy of each `frame` samples in dB (the last partial frame included)."""
    n = -(-len(wave) // frame)
    padded = np.zeros(n * frame, dtype=np.float64)
    padded[: len(wave)] = wave
    power = np.mean(padded.reshape(n, frame) ** 2, axis=1)
    return 10 * np.log10(power + 1e-12)


def speech_mask(levels: np.ndarray) -> np.ndarray:
    """Frames above a threshold a quarter of the way from the noise floor to the speech level, and at least
    3 dB over the floor (steady noise varies by ~0.4 dB between 20 ms frames): digital silence, room tone
    and steady noise all sit at the floor, and at 12 dB SNR the quiet ends of words stay speech."""
    floor, speech = np.percentile(levels, 10), np.percentile(levels, 90)
    return levels > floor + max(3.0, (speech - floor) / 4)


def segments(wave: np.ndarray, rate: int, max_seconds: float | None = None) -> list[tuple[int, int]]:
    """(start, stop) sample spans of speech, in order, on frame boundaries (FRAME_SECONDS), none longer
    than `max_seconds` when given; silence between them is left out. Empty for a clip with no speech."""
    frame = max(1, int(FRAME_SECONDS * rate))
    levels = frame_levels(np.asarray(wave, dtype=np.float64), frame)
    if len(levels) == 0:
        return []
    spans = _speech_runs(speech_mask(levels), int(MIN_PAUSE_SECONDS / FRAME_SECONDS))
    margin = int(MARGIN_SECONDS / FRAME_SECONDS)
    longest = max(1, int(max_seconds / FRAME_SECONDS)) if max_seconds else len(levels)
    out = []
    for i, (a, b) in enumerate(spans):
        a = max(a - margin, (spans[i - 1][1] + a) // 2 if i else 0)  # a margin never reaches the neighbour
        b = min(b + margin, (b + spans[i + 1][0]) // 2 if i + 1 < len(spans) else len(levels))
        out += _fit(levels, a, b, longest)
    return [(a * frame, min(b * frame, len(wave))) for a, b in out]


def _speech_runs(mask: np.ndarray, min_pause: int) -> list[tuple[int, int]]:
    """Frame spans of speech, joined across gaps shorter than `min_pause` frames."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    runs = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
    joined: list[tuple[int, int]] = []
    for a, b in runs:
        if joined and a - joined[-1][1] < min_pause:
            joined[-1] = (joined[-1][0], b)
        else:
            joined.append((a, b))
    return joined


def _fit(levels: np.ndarray, a: int, b: int, longest: int) -> list[tuple[int, int]]:
    """Split [a, b) into pieces of at most `longest` frames, each cut at the quietest 0.1 s between half a
    window and a window from the previous cut."""
    pieces = []
    while b - a > longest:
        lo, hi = a + longest // 2, a + longest
        smooth = np.convolve(levels[lo - 2 : hi + 2], np.ones(5) / 5, mode="valid")  # a dip, not one frame
        cut = lo + int(np.argmin(smooth[: hi - lo]))
        pieces.append((a, cut))
        a = cut
    return pieces + [(a, b)]
