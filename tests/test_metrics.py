"""WER/CER: equal to jiwer on hand-made strings, with hand-counted edits; raw vs normalised."""

from __future__ import annotations

import jiwer
import pytest

from slp_toolkit.metrics import asr_metrics, error_rates

REFS = ["the cat sat on the mat", "hello world", "a b c d"]
PREDS = ["the cat sat on mat", "hello there world", "a x c d"]


def test_error_rates_equal_jiwer_and_hand_counts():
    got = error_rates(PREDS, REFS)
    assert got["wer"] == pytest.approx(jiwer.wer(REFS, PREDS))
    assert got["cer"] == pytest.approx(jiwer.cer(REFS, PREDS))
    # by hand: 1 deletion + 1 insertion + 1 substitution over 6 + 2 + 4 reference words
    assert got["wer"] == pytest.approx(3 / 12)


def test_raw_and_normalised_side_by_side():
    m = asr_metrics(["Hello, World!"], ["hello world"])
    assert m["wer_raw"] == pytest.approx(1.0)  # both words differ in case or punctuation
    assert m["wer"] == 0.0 and m["cer"] == 0.0


def test_per_group_breakdown():
    m = asr_metrics(PREDS, REFS, groups=["x", "y", "y"])
    assert m["wer/x"] == pytest.approx(1 / 6)
    assert m["wer/y"] == pytest.approx(2 / 6)
    assert m["n"] == 3


def test_empty_prediction_counts_as_deletions_and_empty_reference_is_skipped():
    m = error_rates(["", "anything"], ["two words", ""])
    assert m["wer"] == 1.0
