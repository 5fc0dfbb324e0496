"""Packing clips into a fixed window: first fit under the capacity and the caller's own rule, pauses on
the frame grid, the joined audio holding every clip once at its start with silence between."""

from __future__ import annotations

import numpy as np

from slp_toolkit.data.packing import GAP_SECONDS, first_fit, join, pauses


def test_first_fit_keeps_each_group_under_capacity_and_the_callers_rule():
    sizes = [6, 5, 4, 3, 2, 9, 12]
    groups = first_fit(sizes, 10, lambda members: len(members) <= 2)
    assert groups == [[0, 2], [1, 3], [4], [5], [6]]  # [1, 3, 4] has room but breaks the rule; 12 alone
    assert sorted(i for g in groups for i in g) == list(range(len(sizes)))
    assert first_fit(sizes, 10, lambda members: True) == [[0, 2], [1, 3, 4], [5], [6]]


def test_pauses_are_whole_hops_in_the_drawn_range_and_repeat_with_the_seed():
    gaps = pauses(200, 16000, 160, np.random.default_rng(3))
    assert (gaps % 160 == 0).all()
    assert GAP_SECONDS[0] * 16000 - 80 <= gaps.min() and gaps.max() <= GAP_SECONDS[1] * 16000 + 80
    assert len(set(gaps.tolist())) > 10  # drawn, not one fixed pause
    assert (gaps == pauses(200, 16000, 160, np.random.default_rng(3))).all()


def test_join_puts_each_clip_at_a_hop_with_zeros_between():
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) + 2.0 for n in (1000, 333, 4567)]  # no zero inside
    wave, starts = join(waves, [480, 1600], 160)
    assert starts[0] == 0 and all(s % 160 == 0 for s in starts)
    assert starts[1] >= 1000 + 480 and starts[2] >= starts[1] + 333 + 1600
    assert len(wave) == starts[2] + 4567
    for w, s in zip(waves, starts, strict=True):
        assert np.array_equal(wave[s : s + len(w)], w)
    spoken = np.zeros(len(wave), dtype=bool)
    for w, s in zip(waves, starts, strict=True):
        spoken[s : s + len(w)] = True
    assert not wave[~spoken].any() and wave[spoken].all()
