"""Whisper's languages: names to codes, which checkpoints know them, the label prefix a recipe asks for, and
what language a model hears in a few clips.

A multilingual Whisper's labels and decoding start <|startoftranscript|><|lang|><|task|>; the recipe's
`model.language` (default english) and `model.task` pick them, and the settings that cannot agree (French on an
*.en checkpoint, `null` on a multilingual one whose `generate` would then insert a detected language the labels
lack) are refused here in one line.
"""

from __future__ import annotations

import logging
from collections import Counter

from slp_toolkit.runtime.loading import ModelLoadError, explicit_keys

log = logging.getLogger("slp")

SURE = 0.5  # mean probability of the agreed language above which `heard_language` calls the model sure


def language_code(language: str | None) -> str | None:
    """Whisper's code for a language name or code (spanish, es -> es); None when Whisper has no such language."""
    if language is None:
        return None
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    code = TO_LANGUAGE_CODE.get(language.lower(), language.lower())
    return code if code in LANGUAGES else None


def language_name(code: str) -> str:
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return LANGUAGES.get(code, code)


def multilingual(gen) -> bool:
    """Whether a Whisper's generation config knows languages (an *.en checkpoint's has no lang_to_id)."""
    return bool(getattr(gen, "is_multilingual", True)) and bool(getattr(gen, "lang_to_id", None))


def label_prefix(cfg, many: bool) -> tuple[str | None, str | None]:
    """(language code, task) of the label prefix and of decoding for a model section `cfg` (its `language` and
    `task`) on a multilingual (`many`) or English-only checkpoint; the settings that cannot agree refused."""
    set_here = explicit_keys(cfg)
    if not many:
        if "language" in set_here and cfg.language is not None and language_code(cfg.language) != "en":
            raise ModelLoadError(
                f"model.language: {cfg.language} on an English-only Whisper (*.en); use a multilingual one"
            )
        if "task" in set_here and cfg.task != "transcribe":
            raise ModelLoadError("model.task: translate needs a multilingual Whisper; *.en models only transcribe")
        return None, None
    if cfg.language is None:
        raise ModelLoadError(
            "model.language: null would train labels without a language token while generate() detects one and "
            "inserts it; set the data's language (e.g. model.language: spanish)"
        )
    language = language_code(cfg.language)
    if language is None:
        raise ModelLoadError(f"unknown Whisper language {cfg.language!r} (use e.g. english, en, french)")
    if "language" not in set_here:
        log.info("model.language not set: labels and decoding use <|en|> (set model.language for other languages)")
    return language, cfg.task


def heard_language(model, processor, audio: list) -> tuple[str, int, bool]:
    """(code, clips, sure): the language a multilingual Whisper hears in most of `audio` (waveforms at the
    extractor's rate), in how many clips, and whether its mean probability there reaches SURE (random weights
    do not)."""
    import torch

    gen, extractor = model.generation_config, processor.feature_extractor
    with torch.autocast("cpu", enabled=False):  # the log-mel in fp32 under a bf16 run's CPU autocast
        features = extractor(audio, sampling_rate=extractor.sampling_rate, return_tensors="pt").input_features
    tokens, ids = zip(*gen.lang_to_id.items())
    start = torch.full((len(audio), 1), gen.decoder_start_token_id, device=model.device)
    with torch.inference_mode():
        logits = model(input_features=features.to(model.device, model.dtype), decoder_input_ids=start).logits
    probability, best = logits[:, -1, list(ids)].float().softmax(-1).max(-1)
    codes = [tokens[i].strip("<|>") for i in best.tolist()]
    top, count = Counter(codes).most_common(1)[0]
    return top, count, float(probability[[c == top for c in codes]].mean()) >= SURE
