"""Text normalisation for training targets and for 'normalised' metrics, and the CTC vocabulary."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

# Apostrophes and quote-like marks that people type for the same thing.
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "ʼ": "'"})
_NOT_WORD = re.compile(r"[^\w' ]+|_")
_EDGE_APOSTROPHES = re.compile(r"(?<!\w)'+|'+(?!\w)")
_SPACES = re.compile(r"\s+")

WORD_DELIMITER = "|"


def normalize_text(text: str) -> str:
    """Lower-case, unify apostrophes, drop punctuation (keeping in-word apostrophes), squeeze spaces.

    Letters of any script are kept, so this works beyond English; hyphens become spaces because
    speakers do not pronounce them and references disagree on them.
    """
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
    text = text.replace("-", " ")
    text = _NOT_WORD.sub(" ", text)
    text = _EDGE_APOSTROPHES.sub("", text)
    return _SPACES.sub(" ", text).strip()


def ctc_vocab(texts: Iterable[str]) -> tuple[list[str], Counter]:
    """Characters of the (already normalised) training text, space spelled as the word delimiter.

    Returns the sorted vocabulary and the character counts, so callers can report rare characters.
    """
    counts: Counter = Counter()
    for text in texts:
        counts.update(text)
    counts[WORD_DELIMITER] += counts.pop(" ", 0)
    return sorted(counts), counts
