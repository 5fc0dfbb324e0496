"""espeak-ng through ctypes: `synthesize(text, voice, ...)` -> float32 samples, repeatably.

Synthesis calls the libespeak-ng that the `espeakng-loader` wheel ships, so nothing but pip is needed.
The library keeps synthesis state in C statics (pitch flutter phase, filter memories) that
espeak_Terminate does not reset, so the same call gives slightly different samples depending on what the
process said before. To make every file a pure function of its parameters we load a private copy of the
library for each utterance and unload it afterwards (about 3 ms).

Licence: eSpeak NG is GPL-3.0-or-later; it is loaded as a separate library, never linked in.
"""

from __future__ import annotations

import _ctypes
import ctypes
import hashlib
import os
import shutil
import threading
from pathlib import Path

import numpy as np

__all__ = ["ENGLISH_ACCENTS", "LIMITS", "available_voices", "check_voice", "private_library", "synthesize"]

ENGLISH_ACCENTS = ("en", "en-us", "en-us-nyc", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
ENGLISH_ACCENTS += ("en-029",)  # Caribbean
LIMITS = {"rate": (80, 450), "pitch": (0, 100), "pitch_range": (0, 100), "volume": (0, 200)}
LIMITS["word_gap"] = (0, 100)
_SYNCHRONOUS, _DONT_EXIT, _UTF8 = 2, 0x8000, 1  # speak_lib.h: AUDIO_OUTPUT_SYNCHRONOUS, ...
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7  # espeak_PARAMETER
_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_lock = threading.Lock()  # one synthesis at a time per process: the library is all global state
_chunks: list[np.ndarray] = []


def _collect(wav, n: int, _events) -> int:
    if wav and n > 0:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
    return 0  # 0 = keep going


_callback = _CALLBACK_TYPE(_collect)


def private_library() -> Path:
    """Our own copy of libespeak-ng: dlopen of it gives an instance nobody else in the process shares (a
    phonemizer may hold the original), so dlclose really unloads it and resets its state. It goes in the
    user's cache rather than /tmp, which is often mounted noexec."""
    import espeakng_loader

    source = Path(espeakng_loader.get_library_path())
    data = source.read_bytes()
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "slp_toolkit"
    folder.mkdir(parents=True, exist_ok=True)
    # named by content: every venv installs the same wheel with a new mtime, and one copy serves them all
    copy = folder / f"espeak-{hashlib.sha256(data).hexdigest()[:16]}{source.suffix}"
    if not copy.exists():
        partial = folder / f"{copy.name}.{os.getpid()}.part"
        shutil.copyfile(source, partial)
        os.replace(partial, copy)  # atomic, so parallel workers never load a half-written file
    return copy


def available_voices() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(English accents, voice variants) that make a voice name "accent+variant" (or just "accent")."""
    import espeakng_loader

    variants = sorted(os.listdir(Path(espeakng_loader.get_data_path()) / "voices" / "!v"), key=str.lower)
    return ENGLISH_ACCENTS, tuple(variants)


def other_languages() -> set[str]:
    """The languages besides English that espeak-ng speaks (a `<code>_dict` in its data): the corpus writes English
    sentences, but a test or a user may want another language's speech."""
    import espeakng_loader

    return {n.removesuffix("_dict") for n in os.listdir(espeakng_loader.get_data_path()) if n.endswith("_dict")}


def check_voice(voice: str) -> None:
    """Raise ValueError naming `voice` and what exists, unless espeak-ng has it (espeak itself silently
    falls back to its default voice for an unknown variant)."""
    accents, variants = available_voices()
    accent, _, variant = voice.partition("+")
    if accent not in accents and accent not in other_languages():
        raise ValueError(
            f"unknown voice {voice!r}: accent {accent!r} is not one of {', '.join(accents)} "
            "(nor another language espeak-ng ships a dictionary for, e.g. es, fr, it, ru)"
        )
    if variant and variant not in variants:
        raise ValueError(f"unknown voice {voice!r}: variant {variant!r} is not one of {', '.join(variants)}")


def synthesize(
    text: str,
    voice: str,
    rate: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
    volume: int = 100,
    word_gap: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Speak `text` with espeak-ng; return float32 mono samples in [-1, 1] and the library's rate (22050).

    rate is in words per minute (80-450); pitch and pitch_range 0-100 (50 = voice default); volume 0-200;
    word_gap adds pauses between words in 10 ms units; seed drives the breath noise of some variants.
    The same arguments always give the same samples."""
    check_voice(voice)
    values = {"rate": rate, "pitch": pitch, "pitch_range": pitch_range, "volume": volume, "word_gap": word_gap}
    for key, value in values.items():
        if not LIMITS[key][0] <= value <= LIMITS[key][1]:
            raise ValueError(f"synthesize: {key} must be in {LIMITS[key][0]}..{LIMITS[key][1]}, got {value}")
    params = [(_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range), (_VOLUME, volume), (_WORDGAP, word_gap)]
    with _lock:
        lib = ctypes.CDLL(str(private_library()))
        try:
            samples, sample_rate = _speak(lib, text, voice, params, seed)
        finally:
            lib.espeak_Terminate()
            _ctypes.dlclose(lib._handle)
    return samples.astype(np.float32) / 32768.0, sample_rate


def _speak(lib: ctypes.CDLL, text: str, voice: str, params: list, seed: int) -> tuple[np.ndarray, int]:
    """One utterance through a freshly loaded library: int16 samples and the sample rate."""
    import espeakng_loader

    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    sample_rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), _DONT_EXIT)
    if sample_rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed ({sample_rate}); is espeakng-loader's data intact?")
    lib.espeak_SetSynthCallback(_callback)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise ValueError(f"espeak-ng could not load voice {voice!r}")
    for param, value in params:
        lib.espeak_SetParameter(param, int(value), 0)
    lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
    encoded = text.encode("utf-8")
    _chunks.clear()
    status = lib.espeak_Synth(encoded, ctypes.c_size_t(len(encoded) + 1), 0, 1, 0, _UTF8, None, None)
    lib.espeak_Synchronize()
    if status != 0:
        raise RuntimeError(f"espeak_Synth returned {status} for {text!r}")
    samples = np.concatenate(_chunks) if _chunks else np.zeros(0, np.int16)
    _chunks.clear()
    return samples, sample_rate
