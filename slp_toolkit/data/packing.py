"""Clips of a training batch joined into a fixed input window (`data.pack`).

A model that pads every input to one window (Whisper: 30 s, whatever the clip) spends most of its
encoder on silence when clips are short. Packing puts several clips, a short pause apart, into one
window: the same audio and transcripts, a third of the encoder work for 4-s clips. The grouping is
first-fit in a random order drawn from the batch's own generator, so a resumed run packs alike.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# pauses drawn per join: long enough to read as a sentence break, short enough to leave room for speech
GAP_SECONDS = (0.15, 0.5)


def first_fit(sizes: list[int], capacity: int, fits: Callable[[list[int]], bool]) -> list[list[int]]:
    """Indices grouped in order: each goes into the first group with room for its size (sizes include
    its pause) that `fits` also accepts, else starts a new one. A size over `capacity` stands alone."""
    groups: list[list[int]] = []
    used: list[int] = []
    for i, size in enumerate(sizes):
        for g, members in enumerate(groups):
            if used[g] + size <= capacity and fits(members + [i]):
                members.append(i)
                used[g] += size
                break
        else:
            groups.append([i])
            used.append(size)
    return groups


def pauses(count: int, rate: int, align: int, rng) -> np.ndarray:
    """Pause lengths in samples, each a multiple of `align` (a feature hop: packed clips start on a frame)."""
    low, high = (round(s * rate / align) for s in GAP_SECONDS)
    return align * rng.integers(low, high + 1, size=count)


def join(waves: list[np.ndarray], gaps: list[int], align: int) -> tuple[np.ndarray, list[int]]:
    """The clips one after another, `gaps[k]` zeros after clip k (rounded up so that the next clip starts
    on a multiple of `align`); and where each clip starts."""
    starts, position = [], 0
    for wave, gap in zip(waves[:-1], gaps, strict=False):
        starts.append(position)
        position += len(wave) + gap
        position += -position % align
    starts.append(position)
    out = np.zeros(position + len(waves[-1]), dtype=np.float32)
    for wave, start in zip(waves, starts, strict=True):
        out[start : start + len(wave)] = wave
    return out, starts
