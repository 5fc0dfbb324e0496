"""How resources/words_en.txt was made (run once; not imported by slp_toolkit):

    pip install --target /tmp/wf wordfreq==3.1.1 english-words==2.0.2
    PYTHONPATH=/tmp/wf python words_en_build.py words_en.txt 25000

The 25,000 most frequent English words of wordfreq (data CC BY-SA 4.0), letters only, 2-14 long, kept when
Webster's 2nd (web2, public domain, from english-words) lists the word or its stem, minus a block list
of profanity and violence; a word web2 lists only capitalised (a name) is written capitalised.
"""

import re
import sys

import wordfreq
from english_words import get_english_words_set

cased = get_english_words_set(["web2"], lower=False, alpha=True)
web = {w.lower() for w in cased}
lower = {w for w in cased if w.islower()}
SUFFIXES = [
    ("ies", "y"),
    ("ied", "y"),
    ("ier", "y"),
    ("iest", "y"),
    ("ily", "y"),
    ("ing", ""),
    ("ing", "e"),
    ("ed", ""),
    ("ed", "e"),
    ("es", ""),
    ("s", ""),
    ("er", ""),
    ("er", "e"),
    ("est", ""),
    ("ly", ""),
    ("d", ""),
    ("ness", ""),
    ("ment", ""),
]
BLOCK_PREFIX = (
    "fuck",
    "shit",
    "cunt",
    "nigg",
    "fag",
    "slut",
    "whor",
    "bitch",
    "wank",
    "twat",
    "retard",
    "porn",
    "cock",
    "dick",
    "pussy",
    "tits",
    "boob",
    "rape",
    "nazi",
    "kike",
    "spic",
    "chink",
    "dyke",
    "tranny",
    "bastard",
    "bullshit",
    "jizz",
    "cum",
    "horny",
    "anal",
    "anus",
    "orgasm",
    "masturb",
    "penis",
    "vagin",
    "clit",
    "sex",
    "nude",
    "naked",
    "hooker",
    "pimp",
    "gay",
    "lesbian",
    "homo",
    "negro",
    "coon",
    "crap",
    "piss",
    "damn",
    "hell",
    "ass",
    "arse",
    "butt",
    "suck",
    "kill",
    "murder",
    "suicid",
    "terror",
)
ALLOW = {
    "assess",
    "assessment",
    "assessments",
    "assist",
    "assistance",
    "assistant",
    "assistants",
    "assisted",
    "associate",
    "associated",
    "association",
    "assume",
    "assumed",
    "assumption",
    "assure",
    "assured",
    "assets",
    "asset",
    "assembly",
    "assemble",
    "assembled",
    "assign",
    "assigned",
    "assignment",
    "assignments",
    "assault",
    "assert",
    "asserted",
    "assertion",
    "assorted",
    "assortment",
    "assay",
    "hello",
    "helmet",
    "helmets",
    "button",
    "buttons",
    "butter",
    "butterfly",
    "butterflies",
    "butler",
    "dickens",
    "cocktail",
    "cocktails",
    "cockpit",
    "cockroach",
    "sextant",
    "sextet",
    "cumulative",
    "cumbersome",
    "homologous",
    "homogeneous",
    "analog",
    "analogy",
    "analyst",
    "analysis",
    "analyze",
    "analytical",
    "spice",
    "spices",
    "spicy",
    "cockatoo",
    "damned",
    "crappie",
    "suckling",
    "hellenic",
    "killer",
    "assassin",
}


def stems(word):
    return [word[: len(word) - len(s)] + r for s, r in SUFFIXES if word.endswith(s) and len(word) - len(s) >= 3]


def cased_form(word):
    is_name = word in web and word not in lower and not any(stem in lower for stem in stems(word))
    return word.capitalize() if is_name else word


def known(word):
    if word in web:
        return True
    return any(stem in web for stem in stems(word))


def blocked(word):
    return word not in ALLOW and word.startswith(BLOCK_PREFIX)


words = []
for w in wordfreq.top_n_list("en", 200000):
    if re.fullmatch(r"[a-z]{2,14}", w) and re.search("[aeiouy]", w) and known(w) and not blocked(w):
        words.append(cased_form(w))
    if len(words) == int(sys.argv[2]):
        break
with open(sys.argv[1], "w", encoding="utf-8") as f:
    f.write("\n".join(words) + "\n")
