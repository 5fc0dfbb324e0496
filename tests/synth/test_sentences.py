"""The template grammar: deterministic, distinct, varied, and with a large vocabulary."""

import json
import re

import pytest

from slp_toolkit.synth.sentences import (
    WORDS_FILE,
    _verb_forms,
    generate_sentences,
    number_words,
    open_words,
    vocabulary,
)


@pytest.fixture(scope="module")
def five_thousand() -> list[str]:
    return generate_sentences(5000, seed=0)


def test_same_seed_same_sentences_and_longer_lists_extend_shorter_ones(five_thousand):
    assert generate_sentences(5000, seed=0) == five_thousand
    assert generate_sentences(300, seed=0) == five_thousand[:300]
    assert generate_sentences(300, seed=1) != five_thousand[:300]


def test_sentences_are_distinct_and_shaped_like_transcripts(five_thousand):
    assert len(set(five_thousand)) == 5000
    for text in five_thousand:
        assert 4 <= len(text.split()) <= 14, text
        assert text[0].isupper() and text[-1] in ".?", text
        assert not re.search(r"\d|  | [,.?]|\{|\}", text), text  # numbers as words, no template debris
    joined = " ".join(five_thousand)
    for mark in [",", "?", "'s ", "n't ", "'d ", " o'clock"]:
        assert mark in joined, mark
    assert sum(text.endswith("?") for text in five_thousand) > 500  # questions, not only statements
    assert len({text.split()[0] for text in five_thousand}) > 300  # varied openings


def test_vocabulary_of_five_thousand_sentences_exceeds_four_thousand_words(five_thousand):
    words = vocabulary(five_thousand)
    assert len(words) >= 4000, len(words)
    assert {"don't", "it's", "forty-two"} <= vocabulary(["Don't! It's forty-two, Maria."])


def test_articles_agree_with_the_next_word(five_thousand):
    for text in five_thousand:
        for article, word in re.findall(r"\b([Aa]n?) (\w+)", text):
            vowel = word[0].lower() in "aeiou" and not word.lower().startswith(("uni", "use", "usu", "eu", "one"))
            vowel = vowel or word.lower().startswith(("hour", "honest"))
            assert (article.lower() == "an") == vowel, text


@pytest.mark.parametrize(
    "n, words",
    [(0, "zero"), (13, "thirteen"), (40, "forty"), (42, "forty-two"), (100, "one hundred")]
    + [
        (342, "three hundred and forty-two"),
        (2009, "two thousand and nine"),
        (1984, "one thousand nine hundred and eighty-four"),
    ],
)
def test_number_words(n, words):
    assert number_words(n) == words


def test_word_list_entries_are_well_formed():
    raw = json.loads(WORDS_FILE.read_text(encoding="utf-8"))
    for key in [k for k in raw if k.startswith("verbs_")]:
        for entry in raw[key]:
            forms = _verb_forms(entry)
            assert entry.count(",") in (0, 4), entry
            assert forms["ing"].split()[0].endswith("ing"), entry
    assert _verb_forms("carry") == {"": "carry", "s": "carries", "ed": "carried", "en": "carried", "ing": "carrying"}
    assert _verb_forms("bake")["ing"] == "baking" and _verb_forms("wash")["s"] == "washes"
    assert len(raw["templates"]) >= 50


def test_bad_n_is_a_value_error():
    assert generate_sentences(0, seed=0) == []
    with pytest.raises(ValueError, match="n must be"):
        generate_sentences(-1, seed=0)


def test_open_vocabulary_spans_twenty_thousand_words_and_holds_a_tenth_out(five_thousand):
    usable, held = open_words(held_out=False), open_words(held_out=True)
    assert len(usable) + len(held) >= 20000 and 0.05 < len(held) / (len(usable) + len(held)) < 0.15
    held_lower = {w.lower() for w in held}
    assert not held_lower & vocabulary(five_thousand)  # the default never says a held-out word
    unseen = generate_sentences(300, seed=1, held_out=True)
    assert len(held_lower & vocabulary(unseen)) > 100
    assert any(w[0].isupper() for w in usable[:2000]) and "the" in usable[:10]  # names capitalised
