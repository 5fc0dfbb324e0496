"""Text normalisation for training targets and for 'normalised' metrics, the CTC vocabulary, and what a CTC
tokenizer can read and spell."""

from __future__ import annotations

import logging
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


# ---------------------------------------------------------------- tokenizers of CTC models
def decodes_ctc(tokenizer) -> bool:
    """Whether a tokenizer reads a CTC path: its decode merges repeats and drops the blank (its pad token)."""
    if tokenizer is None or tokenizer.pad_token_id is None:
        return False
    special = set(tokenizer.all_special_ids)
    plain = [i for i in sorted(tokenizer.get_vocab().values()) if i not in special][:2]
    if len(plain) < 2:
        return False
    a, b, blank = *plain, tokenizer.pad_token_id
    return tokenizer.decode([a, a, blank, b, b]) == tokenizer.decode([a, b])


def report_unknown_chars(tokenizer, texts: list[str], name: str) -> Counter:
    """Characters of the data the tokenizer cannot spell: they become [UNK] in the targets."""
    _, counts = ctc_vocab(fit_case(t, tokenizer) for t in texts)
    known = set(tokenizer.get_vocab())
    missing = Counter({c: n for c, n in counts.items() if c not in known})
    if missing:
        shown = ", ".join(f"{c!r}x{n}" for c, n in missing.most_common(12))
        logging.getLogger("slp").warning(
            "%s: the vocabulary lacks %d characters of the data (-> [UNK]): %s", name, len(missing), shown
        )
    return missing


def fit_case(text: str, tokenizer) -> str:
    """Upper-case targets for checkpoints whose vocabulary is upper-case (e.g. wav2vec2-base-960h):
    our normalised text is lower-case and would otherwise become all [UNK]."""
    letters = [t for t in tokenizer.get_vocab() if len(t) == 1 and t.isalpha()]
    if letters and sum(t.isupper() for t in letters) > len(letters) / 2:
        return text.upper()
    return text
