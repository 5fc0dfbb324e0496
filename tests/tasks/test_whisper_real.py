"""Behaviours of a real Whisper (OpenAI's tiny.en, imported from the package index) that a random one cannot
show: what it hears when a phrase is said twice, and how its English output is scored."""

from __future__ import annotations

import numpy as np

from slp_toolkit.config import recipe_from_dict
from slp_toolkit.synth.espeak import synthesize
from slp_toolkit.tasks import asr_seq2seq


def _speak(text: str) -> np.ndarray:
    import torch
    import torchaudio

    wave, rate = synthesize(text, "en-us", rate=150)
    return torchaudio.functional.resample(torch.from_numpy(wave), rate, 16000).numpy()


def _decoded(model_dir, texts: list[str], **model_keys) -> list[str]:
    model, processor = asr_seq2seq.load(str(model_dir))
    recipe = {"task": "asr_seq2seq", "model": {"name_or_path": str(model_dir), **model_keys},
              "data": {"train": "x", "max_seconds": 30}, "train": {"max_steps": 1}}  # fmt: skip
    asr_seq2seq.configure_decoding(model, processor, recipe_from_dict(recipe).model)
    return asr_seq2seq.predict(model, processor, [{"audio": _speak(t)} for t in texts])


def test_a_phrase_said_twice_is_transcribed_twice_by_default(real_tiny_en):
    said = "see you on monday morning. see you on monday morning."
    default, banned = _decoded(real_tiny_en, [said])[0], _decoded(real_tiny_en, [said], no_repeat_ngram_size=5)[0]
    assert default.lower().count("monday morning") == 2, default
    # the n-gram ban (the old default) cannot write the repeat: this is what the default protects
    assert banned.lower().count("monday morning") < 2, banned


def test_an_english_only_model_is_scored_with_whispers_english_normaliser(real_tiny_en):
    texts = _decoded(real_tiny_en, ["hello there."])
    assert texts and asr_seq2seq._DECODED["language"] == "en"
    # the English normaliser joins contractions and spelled-out numbers; the basic one would count 4 errors
    m = asr_seq2seq.metrics(["It is twenty five dollars."], [{"text": "It's $25."}])
    assert m["wer"] == 0.0, m
