"""Pauses found from energy against the recording's own floor: pieces of speech with a margin of their pause,
short gaps kept inside a piece, the window respected, silence and steady noise giving nothing."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import bursts

from slp_toolkit.data.segment import MARGIN_SECONDS, segments

RATE = 16000


def seconds(pieces):
    """Start and stop of each piece in seconds, one flat list."""
    return [round(x / RATE, 2) for piece in pieces for x in piece]


@pytest.mark.parametrize("noise_db", [None, 25, 12])
def test_pieces_are_the_speech_and_a_margin_of_each_pause(noise_db):
    speech = [(1.0, 3.0), (4.0, 6.5), (7.5, 9.0)]
    m = MARGIN_SECONDS
    expected = [x for a, b in speech for x in (a - m, b + m)]
    assert seconds(segments(bursts(speech, 10.0, noise_db), RATE)) == pytest.approx(expected, abs=0.021)


def test_a_gap_shorter_than_a_pause_stays_inside_the_piece():
    pieces = seconds(segments(bursts([(1.0, 2.0), (2.15, 3.0), (4.0, 5.0)], 6.0), RATE))
    assert pieces == pytest.approx([0.9, 3.1, 3.9, 5.1], abs=0.021)


def test_a_piece_never_reaches_into_its_neighbour():
    pieces = segments(bursts([(1.0, 2.0), (2.3, 3.0)], 4.0), RATE)
    assert len(pieces) == 2 and pieces[0][1] <= pieces[1][0]
    assert seconds(pieces)[1] == pytest.approx(2.1, abs=0.021)  # the 0.3 s pause shared, not crossed


def test_speech_longer_than_the_window_is_cut_at_its_quietest_point():
    wave = bursts([(0.5, 70.0)], 71.0)
    wave[int(25.0 * RATE) : int(25.1 * RATE)] *= 0.01  # a 0.1 s dip: too short for a pause, the best cut
    pieces = segments(wave, RATE, max_seconds=30.0)
    assert all(b - a <= 30 * RATE for a, b in pieces) and len(pieces) == 3
    assert all(pieces[i][1] == pieces[i + 1][0] for i in range(2))  # contiguous: nothing of the speech lost
    assert abs(pieces[0][1] / RATE - 25.05) < 0.1
    assert len(segments(wave, RATE)) == 1  # without a window: one piece


@pytest.mark.parametrize(
    "wave", [np.zeros(RATE * 5), np.zeros(0), 0.05 * np.random.default_rng(0).standard_normal(RATE * 5)]
)
def test_silence_and_steady_noise_have_no_speech(wave):
    assert segments(wave.astype(np.float32), RATE) == []
