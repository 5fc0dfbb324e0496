"""English sentences from a small template grammar, for the synthetic speech corpus.

`generate_sentences(n, seed)` fills templates such as ``"{name} {vo.ed} {a} {adj?} {obj} {prep} the
{location}."`` from word lists by part of speech (resources/words.json) and returns n distinct,
capitalised, punctuated sentences of 4-14 words, with numbers, times and years written as words.

Template slots: a word list's slot name (name, place, person/people, relative, obj/objs, food/foods,
mass, animal/animals, location, event, abstract, adj, padj, weather, degree, adv, sadv, time, ftime, day,
month, period, prep, mprep); a verb list's slot with a form, {vo}, {vo.s}, {vo.ed}, {vo.en} or {vo.ing}
(vo object, vf food, va animal, vs speech, vm motion, vi intransitive); {num}, {num_small}, {clock},
{year}; {a} for "a"/"an" agreeing with the next word; a trailing "?" ({adj?}) makes a slot optional;
{w} for any word of the open vocabulary.

Open vocabulary: resources/words_en.txt, the 25,000 most frequent English words (wordfreq) that Webster's
2nd or a stem of them lists. About 30 % of sentences use the templates under "open_templates" (word
lists, "How do you spell {w}?", ...), so a corpus spells far more words than the grammar's ~2,000. About
a tenth of the rarer words are held out (`held_out=True` draws only those, and the default never does):
the corpus speaks them only in test_unseen, which thereby measures spelling words never heard.

Licence: the word lists, templates and this grammar are original to slp_toolkit and released under
Apache-2.0, like the rest of the project; words_en.txt derives from wordfreq's data, CC BY-SA 4.0 (see
resources/README.md).
"""

from __future__ import annotations

import json
import random
import re
import zlib
from collections.abc import Iterable
from functools import cache
from pathlib import Path

__all__ = ["generate_sentences", "number_words", "open_words", "vocabulary"]

WORDS_FILE = Path(__file__).parents[1] / "resources" / "words.json"
OPEN_WORDS_FILE = Path(__file__).parents[1] / "resources" / "words_en.txt"
MIN_WORDS, MAX_WORDS = 4, 14
OPEN_SHARE = 0.3  # of sentences from the open-vocabulary templates
COMMON = 2000  # the most frequent words are never held out: every text has them

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen".split()
_ONES += "sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_NUMBER_EXTRAS = ["hundred", "thousand", "oh", "o'clock", "half", "past", "quarter"]  # numbers, times
_SLOT = re.compile(r"\{([a-z_]+)(?:\.([a-z]+))?(\?)?\}")
_TOKEN = re.compile(r"[a-z]+(?:['-][a-z]+)*")
# Words spelled with a vowel but said with a consonant sound, and the reverse ("an hour").
_A_BEFORE_VOWEL = ("uni", "use", "usu", "eu", "one", "once", "uk")
_AN_BEFORE_H = ("hour", "honest", "honor", "heir")


def number_words(n: int) -> str:
    """Spell 0 <= n < 10000 in English words: 342 -> 'three hundred and forty-two'."""
    if not 0 <= n < 10000:
        raise ValueError(f"number_words handles 0..9999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" and {number_words(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    tail = "" if not rest else (f" and {number_words(rest)}" if rest < 100 else f" {number_words(rest)}")
    return f"{_ONES[thousands]} thousand{tail}"


def _year_words(year: int) -> str:
    """Years as people say them: 1984 -> 'nineteen eighty-four', 2009 -> 'two thousand and nine'."""
    if 2000 <= year < 2010:
        return number_words(year)
    century, rest = divmod(year, 100)
    tail = "hundred" if rest == 0 else number_words(rest) if rest >= 10 else f"oh {number_words(rest)}"
    return f"{number_words(century)} {tail}"


def _clock_words(rng: random.Random) -> str:
    hour = rng.randint(1, 12)
    name = number_words(hour)
    kind = rng.randrange(6)
    if kind == 0:
        return f"{name} o'clock"
    if kind == 1:
        return f"half past {name}"
    if kind == 2:
        return f"a quarter past {name}"
    if kind == 3:
        return f"a quarter to {name}"
    return f"{name} {rng.choice(['fifteen', 'thirty', 'forty-five', 'twenty', 'ten', 'fifty'])}"


def _plural(noun: str) -> str:
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _verb_forms(entry: str) -> dict[str, str]:
    """Regular verbs are stored as their base form; the rest list all five forms."""
    if "," in entry:
        base, s, ed, en, ing = entry.split(",")
        return {"": base, "s": s, "ed": ed, "en": en, "ing": ing}
    base = entry
    consonant_y = base.endswith("y") and base[-2:-1] not in "aeiou"
    s = base + "es" if base.endswith("o") else _plural(base)
    ed = base + "d" if base.endswith("e") else base[:-1] + "ied" if consonant_y else base + "ed"
    if base.endswith("ie"):
        ing = base[:-2] + "ying"
    elif base.endswith("e") and not base.endswith(("ee", "ye", "oe")):
        ing = base[:-1] + "ing"
    else:
        ing = base + "ing"
    return {"": base, "s": s, "ed": ed, "en": ed, "ing": ing}


@cache
def _lexicon() -> tuple[dict[str, list], list[str]]:
    """Slot name -> list of choices (strings, or verb form dicts), and the templates."""
    raw = json.loads(WORDS_FILE.read_text(encoding="utf-8"))

    def nouns(key: str) -> tuple[list[str], list[str]]:
        pairs = [w.split("|") if "|" in w else [w, _plural(w)] for w in dict.fromkeys(raw[key])]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    slots: dict[str, list] = {}
    for key, one, many in [
        ("people", "person", "people"),
        ("objects", "obj", "objs"),
        ("foods", "food", "foods"),
        ("animals", "animal", "animals"),
    ]:
        slots[one], slots[many] = nouns(key)
    plain = {
        "name": "names", "place": "places", "relative": "relatives", "mass": "mass",
        "location": "locations", "event": "events", "abstract": "abstract", "adj": "adjectives",
        "padj": "person_adjectives", "weather": "weather", "degree": "degree", "adv": "adverbs",
        "sadv": "sentence_adverbs", "time": "times", "ftime": "future_times", "day": "days",
        "month": "months", "period": "periods", "prep": "prepositions", "mprep": "motion_prepositions",
    }  # fmt: skip
    for slot, key in plain.items():
        slots[slot] = list(dict.fromkeys(raw[key]))
    verbs = {"vo": "verbs_object", "vf": "verbs_food", "va": "verbs_animal", "vs": "verbs_speech"}
    verbs |= {"vm": "verbs_motion", "vi": "verbs_intransitive"}
    for slot, key in verbs.items():
        slots[slot] = [_verb_forms(e) for e in dict.fromkeys(raw[key])]
    return slots, raw["templates"], raw["open_templates"]


@cache
def open_words(held_out: bool) -> tuple[str, ...]:
    """The open vocabulary's words that train may use (held_out=False), or only those it never hears.
    Held out: a fixed tenth of the words past the COMMON most frequent, chosen by a hash of the word so
    that the choice never depends on the list's order or length; grammar words are never held out."""
    words = OPEN_WORDS_FILE.read_text(encoding="utf-8").split()
    slots, templates, open_templates = _lexicon()
    entries = [" ".join(e.values()) if isinstance(e, dict) else e for choices in slots.values() for e in choices]
    entries += [_SLOT.sub(" ", t) for t in templates + open_templates] + _ONES + _TENS + _NUMBER_EXTRAS
    grammar = vocabulary(entries)

    def unheard(rank: int, word: str) -> bool:
        low = word.lower()
        return rank >= COMMON and low not in grammar and zlib.crc32(low.encode()) % 10 == 0

    return tuple(w for rank, w in enumerate(words) if unheard(rank, w) == held_out)


def _fill(template: str, rng: random.Random, held_out: bool) -> str:
    slots = _lexicon()[0] | {"w": open_words(held_out)}
    used: set[str] = set()

    def draw(match: re.Match) -> str:
        slot, form, optional = match.groups()
        if optional and rng.random() < 0.5:
            return ""
        if slot == "a":
            return "\0"  # resolved once the next word is known
        if slot == "num":
            return number_words(rng.choice([rng.randint(2, 20), rng.randint(2, 99), rng.randint(100, 999)]))
        if slot == "num_small":
            return number_words(rng.randint(2, 12))
        if slot == "clock":
            return _clock_words(rng)
        if slot == "year":
            return _year_words(rng.randint(1950, 2025))
        for _ in range(8):  # "Maria and Maria" reads badly; redraw a repeated word
            choice = rng.choice(slots[slot])
            word = choice[form or ""] if isinstance(choice, dict) else choice
            if word not in used:
                break
        used.add(word)
        return word

    text = " ".join(_SLOT.sub(draw, template).split())
    text = re.sub(r"\0 (\S+)", lambda m: f"{_article(m.group(1))} {m.group(1)}", text)
    return text[0].upper() + text[1:]


def _article(word: str) -> str:
    low = word.lower()
    if low.startswith(_AN_BEFORE_H):
        return "an"
    return "an" if low[0] in "aeiou" and not low.startswith(_A_BEFORE_VOWEL) else "a"


def generate_sentences(n: int, seed: int, held_out: bool = False) -> list[str]:
    """Return n distinct sentences (4-14 words each); the same (n, seed) always gives the same list,
    and a longer list for the same seed starts with the shorter one. held_out=True fills {w} slots
    with held-out words only (for test_unseen); the default never uses them."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    _, templates, open_templates = _lexicon()
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    attempts = 0
    while len(seen) < n:
        attempts += 1
        if attempts > 20 * n + 1000:
            raise ValueError(f"could only make {len(seen)} distinct sentences, asked for {n}")
        text = _fill(rng.choice(open_templates if rng.random() < OPEN_SHARE else templates), rng, held_out)
        if MIN_WORDS <= len(text.split()) <= MAX_WORDS:
            seen.setdefault(text)
    return list(seen)


def vocabulary(sentences: Iterable[str]) -> set[str]:
    """Distinct lower-cased words in `sentences`, keeping in-word apostrophes and hyphens ("don't")."""
    return {token for text in sentences for token in _TOKEN.findall(text.lower())}
