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


def test_empty_prediction_counts_as_deletions_and_text_on_an_empty_reference_as_insertions():
    # 2 deletions + 3 words hallucinated on silence, over 2 reference words (jiwer, the Open ASR Leaderboard)
    m = error_rates(["", "made up words"], ["two words", ""])
    assert m["wer"] == 2.5
    assert m["cer"] == pytest.approx((9 + 13) / 9)
    assert error_rates(["", "two words"], ["", "two words"])["wer"] == 0.0  # silence heard as silence is no error
    assert error_rates(["oops"], [""])["wer"] == float("inf")


# ---------------------------------------------------------------- classification (speech emotion)
# rows = reference, columns = prediction, labels a, b, c:
#   a: 3 1 0   (support 4)
#   b: 1 1 0   (support 2)
#   c: 1 1 2   (support 4)
CONFUSION = [[3, 1, 0], [1, 1, 0], [1, 1, 2]]


def _pairs(matrix: list[list[int]], labels: list[str]) -> tuple[list[str], list[str]]:
    preds, refs = [], []
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            refs += [labels[i]] * count
            preds += [labels[j]] * count
    return preds, refs


def test_classification_metrics_equal_hand_computed_values():
    from slp_toolkit.metrics import classification_metrics, confusion_matrix

    preds, refs = _pairs(CONFUSION, ["a", "b", "c"])
    assert confusion_matrix(preds, refs, ["a", "b", "c"]) == CONFUSION
    m = classification_metrics(preds, refs)
    assert m["wa"] == pytest.approx(6 / 10)  # diagonal / all
    assert m["ua"] == pytest.approx((3 / 4 + 1 / 2 + 2 / 4) / 3)  # mean recall
    # precision a 3/5, b 1/3, c 2/2; F1 = 2PR/(P+R): a 2/3, b 0.4, c 2/3
    assert m["precision/a"] == pytest.approx(3 / 5) and m["precision/b"] == pytest.approx(1 / 3)
    assert m["recall/c"] == pytest.approx(1 / 2) and m["f1/b"] == pytest.approx(0.4)
    assert m["f1/a"] == pytest.approx(2 / 3) and m["f1/c"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.4 + 2 / 3) / 3)
    assert m["support/b"] == 2 and m["n"] == 10
    assert m["confusion/c/b"] == 1 and m["confusion/a/a"] == 3 and m["confusion/b/c"] == 0


def test_confusion_round_trips_through_the_flat_metrics():
    from slp_toolkit.metrics import classification_metrics, confusion_from_metrics

    preds, refs = _pairs(CONFUSION, ["a", "b", "c"])
    assert confusion_from_metrics(classification_metrics(preds, refs)) == (["a", "b", "c"], CONFUSION)
    assert confusion_from_metrics({"wer": 0.1}) is None


def test_a_class_only_predicted_counts_in_macro_f1_but_not_in_ua():
    from slp_toolkit.metrics import classification_metrics

    m = classification_metrics(["a", "x", "b", "b"], ["a", "a", "b", "b"])
    assert m["ua"] == pytest.approx((1 / 2 + 1) / 2)  # x has no reference: no recall to average
    # F1 a = 2 * 1 * 0.5 / 1.5 = 2/3, b = 1, x = 0 (predicted, never right)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["recall/x"] == 0.0 and m["precision/x"] == 0.0 and m["support/x"] == 0
    fixed = classification_metrics(["a", "b"], ["a", "b"], labels=["b", "a", "z"])
    assert list(k for k in fixed if k.startswith("support/")) == ["support/b", "support/a", "support/z"]
    assert fixed["macro_f1"] == 1.0  # z neither referenced nor predicted: left out of the average


def test_loops_count_transcripts_that_repeat_themselves_more_than_their_reference():
    from slp_toolkit.metrics import longest_repeat, loop_rate

    assert longest_repeat("thank you thank you thank you thank you for coming") == 4
    assert longest_repeat("the the the") == 3 and longest_repeat("") == 0 and longest_repeat("a b a b c") == 2
    looped = "see you on monday " + "on monday " * 6
    said = ["no no no no no", "see you on monday", looped, "a b c d e f"]
    refs = ["no no no no no", "see you on monday", "see you on monday", "a b c d e f"]
    assert loop_rate(said, refs) == 0.25  # the speaker's own "no no no no no" is not a loop
    m = asr_metrics(said, refs)
    assert m["loops"] == 0.25 and m["n"] == 4
