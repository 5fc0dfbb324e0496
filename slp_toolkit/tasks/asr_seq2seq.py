"""Task asr_seq2seq: encoder-decoder speech recognition, Whisper and Moonshine.

The model comes from a Hub name (`openai/whisper-tiny` ... `-large-v3-turbo`, `UsefulSensors/moonshine-base`),
a local dir, or a Whisper scratch preset (`slp_toolkit.runtime.scratch.build_whisper`). The recipe's language
and task (Whisper's prefix tokens), beam count, token budget and repetition guard are written into the
model's generation config, so evaluation during training, `slp eval` and a plain `transformers.pipeline` on
the output dir all decode the same way. Whisper's log-mel is cached at preparation (whisper_mel.py);
Moonshine reads the waveform through its own extractor.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from slp_toolkit.config import ConfigError, ModelConfig, Recipe, rule
from slp_toolkit.data.splits import column
from slp_toolkit.data.whisper_mel import audio_key, cached_features, features, is_whisper, log_mel, packed_mel  # noqa: F401
from slp_toolkit.metrics import asr_metrics, english_spelling, text_normalizer  # noqa: F401
from slp_toolkit.runtime.device import is_sharded
from slp_toolkit.runtime.loading import apply_settings, explicit_keys, scratch_values
from slp_toolkit.runtime.presets import WHISPER_PRESETS, check_preset, whisper_window
from slp_toolkit.runtime.whisper_language import (
    heard_language,
    label_prefix,
    language_code,
    language_name,
    multilingual,
)
from slp_toolkit.runtime.whisper_window import crop_window, fit_extractor, match_window
from slp_toolkit.tasks import (
    Capabilities,
    LearningRates,
    ModelLoadError,
    Tab,
    Task,
    audio_batch,
    fp32_features,
    load_or_fail,
    no_grad,
    padded_labels,
    register,
)

log = logging.getLogger("slp")

SOT = "<|startoftranscript|>"
PREFIX_TOKENS = 4  # <|startoftranscript|><|lang|><|task|><|notimestamps|>
# the encoder-decoder families trained here; transformers maps more (Speech2Text, Granite Speech, Voxtral,
# Kyutai...), whose inputs, prompts or decoders this task does not build (README: model families)
FAMILIES = ("whisper", "moonshine")


# ---------------------------------------------------------------- building and loading


@dataclass(frozen=True)
class Seq2SeqModelConfig(ModelConfig):
    language: str | None = "english"
    task: Literal["transcribe", "translate"] = "transcribe"
    freeze_encoder: bool = False
    num_beams: int = field(default=1, metadata=rule(min=1))
    max_new_tokens: int = field(default=225, metadata=rule(min=1))  # the HF Whisper fine-tuning guide's
    # Off, as every Whisper release ships: a ban on repeated n-grams also bans what speakers do repeat ("no no
    # no no", a phrase said twice). Loops are bounded by a token budget from the audio's length instead.
    no_repeat_ngram_size: int = field(default=0, metadata=rule(min=0))
    # None (each): a pretrained checkpoint's own SpecAugment (Whisper's: off), none for a scratch model
    mask_time_prob: float | None = field(default=None, metadata=rule(min=0.0, max=1.0))
    mask_feature_prob: float | None = field(default=None, metadata=rule(min=0.0, max=1.0))
    # Whisper's window in seconds (None: the checkpoint's own, 30). Shorter: the encoder's position table is
    # cropped (whisper.cpp's audio_ctx), so a short clip costs the encoder window/30 of a full pass; zero-shot
    # that costs accuracy, a fine-tune on the window teaches it (runtime/whisper_window.py).
    window_seconds: int | None = field(default=None, metadata=rule(min=1, max=30))


def _settings(cfg: Seq2SeqModelConfig) -> dict:
    """The recipe's model settings by recipe key (loading.apply_settings maps them onto the family's config);
    None (a key the recipe left unset) keeps a pretrained checkpoint's own value, and is 0 / off for scratch."""
    masks = (cfg.mask_time_prob, cfg.mask_feature_prob)
    return {
        "dropout": cfg.dropout,
        "layerdrop": cfg.layerdrop,
        # SpecAugment on the log-mel input, applied by the model itself in train mode. Whisper adds
        # `mask_time_min_masks` masks even at probability 0, so it is switched off entirely then.
        "apply_spec_augment": None if masks == (None, None) else any((m or 0) > 0 for m in masks),
        "mask_time_prob": cfg.mask_time_prob,
        "mask_feature_prob": cfg.mask_feature_prob,
        "use_cache": not cfg.gradient_checkpointing,
    }


def build(recipe: Recipe, train_ds) -> tuple:
    from slp_toolkit.runtime import scratch

    cfg: Seq2SeqModelConfig = recipe.model
    name = cfg.name_or_path or f"scratch:{cfg.preset}"
    if cfg.init == "scratch":
        try:
            settings = scratch_values(_settings(cfg), {"apply_spec_augment": False})
            model, processor = scratch.build_whisper(cfg.preset, cfg.language, cfg.task, settings=settings)
        except ValueError as err:
            raise ModelLoadError(f"{name}: {err}") from None
    else:
        model, processor = _pretrained(cfg, recipe)
    if is_whisper(processor.feature_extractor):
        check_window(recipe, processor, name)
    elif recipe.data.pack:
        raise ConfigError(f"data.pack joins clips into Whisper's window; {name} has none: drop data.pack")
    configure_decoding(model, processor, cfg)
    check_label_lengths(column(train_ds, "text"), processor, max_target_tokens(model.config), name)
    if cfg.init != "scratch" and "language" not in explicit_keys(cfg) and multilingual(model.generation_config):
        check_spoken_language(model, processor, train_ds, name)
    if cfg.freeze_encoder:
        model.get_encoder().requires_grad_(False)
    return model, processor


def _pretrained(cfg: Seq2SeqModelConfig, recipe: Recipe) -> tuple:
    """A Whisper or Moonshine checkpoint with its own processor; the recipe's settings on its config (a key
    the family lacks, e.g. Moonshine's SpecAugment, is one line when the recipe sets it)."""
    from transformers import AutoConfig, AutoModelForSpeechSeq2Seq, AutoProcessor

    name = cfg.name_or_path
    config = load_or_fail(AutoConfig.from_pretrained, name, "model config")
    if config.model_type not in FAMILIES:
        raise ModelLoadError(
            f"{name}: a {config.model_type} checkpoint; task asr_seq2seq trains {' and '.join(FAMILIES)} "
            "(README: model families)"
        )
    processor = load_or_fail(AutoProcessor.from_pretrained, name, f"{config.model_type} processor")
    if is_whisper(processor.feature_extractor):
        if cfg.window_seconds:
            fit_extractor(processor.feature_extractor, cfg.window_seconds)
        check_window(recipe, processor, name)  # before a download of the weights
    elif cfg.window_seconds:
        raise ModelLoadError(f"model.window_seconds: {config.model_type} models have no fixed window; drop it")
    elif {"language", "task"} & explicit_keys(cfg) and cfg.language not in ("english", "en"):
        raise ModelLoadError(f"model.language/model.task: {config.model_type} models have no language or task tokens")
    apply_settings(config, _settings(cfg), explicit_keys(cfg), config.model_type)
    if config.pad_token_id is None:  # labels are shifted right with it; Moonshine's config has none
        config.pad_token_id = config.eos_token_id
    model = load_or_fail(AutoModelForSpeechSeq2Seq.from_pretrained, name, f"{config.model_type} model", config=config)
    if cfg.window_seconds:
        crop_window(model, processor, cfg.window_seconds, name)
    return model, processor


def max_target_tokens(config) -> int:
    """How many tokens the decoder holds: Whisper's max_target_positions, else its position embeddings."""
    return int(getattr(config, "max_target_positions", None) or config.max_position_embeddings)


def configure_decoding(model, processor, cfg: Seq2SeqModelConfig) -> None:
    """Language, task, beams and length into the tokenizer (label prefix) and the generation config
    (what `generate` and the pipeline read), so every decoder of the saved model agrees."""
    gen = model.generation_config
    prefix = 0
    if hasattr(processor.tokenizer, "set_prefix_tokens"):  # Whisper: <|lang|><|task|> after <|startoftranscript|>
        many = multilingual(gen)
        language, task = label_prefix(cfg, many)
        # set_prefix_tokens(language=None) keeps a previous language: the attributes are set first
        processor.tokenizer.language, processor.tokenizer.task = language, task
        processor.tokenizer.set_prefix_tokens(predict_timestamps=False)
        gen.language, gen.task = language, task
        gen.forced_decoder_ids = None  # superseded by language/task, and conflicts with them
        model.config.forced_decoder_ids = None
        prefix = PREFIX_TOKENS
    gen.num_beams = cfg.num_beams
    gen.no_repeat_ngram_size = cfg.no_repeat_ngram_size or None
    gen.max_new_tokens = min(cfg.max_new_tokens, max_target_tokens(model.config) - prefix)
    gen.max_length = None  # max_new_tokens rules; both set makes every generate() warn


LANGUAGE_PROBE = 8  # training clips a multilingual Whisper listens to when the recipe leaves model.language


def check_spoken_language(model, processor, train_ds, name: str) -> None:
    """The recipe's default <|en|> on speech in another language trains the wrong prefix without a word: ask the
    model what it hears in a few training clips and refuse, in one line, when most are one other language and
    it is sure of it (a model that is not, e.g. random weights, only gets a log line)."""
    if not hasattr(train_ds, "select") or len(train_ds) == 0:
        return  # a streamed split: no random access
    rows = sorted({round(i * (len(train_ds) - 1) / max(LANGUAGE_PROBE - 1, 1)) for i in range(LANGUAGE_PROBE)})
    audio = [np.asarray(a, dtype=np.float32) for a in column(train_ds.select(rows), "audio")]
    code, count, sure = heard_language(model, processor, audio)
    language = language_name(code)
    if code != "en" and count >= max(2, 0.75 * len(audio)) and sure:
        raise ConfigError(
            f"data.train sounds like {language} to {name} ({count} of {len(audio)} clips) but model.language "
            f"defaults to english: set model.language: {language} (english to keep it)"
        )
    log.info("data.train sounds like %s to %s (%d of %d clips%s)", language, name, count, len(audio),
             "" if sure else ", unsure")  # fmt: skip


def set_language(model, processor, language: str) -> None:
    """`--language` of slp eval/transcribe: decode a multilingual Whisper in `language` (a name or code) instead of
    the one it was trained or imported with; English-only checkpoints and Moonshine refuse anything but English."""
    gen, code = model.generation_config, language_code(language)
    if code is None:
        raise ModelLoadError(f"--language {language}: not a Whisper language (use e.g. english, en, spanish, es)")
    if not (is_whisper(processor.feature_extractor) and multilingual(gen)):
        if code == "en":
            return
        raise ModelLoadError(
            f"--language {language}: this model is English-only (a multilingual Whisper decodes others)"
        )
    gen.language = code
    processor.tokenizer.language = code
    processor.tokenizer.set_prefix_tokens(predict_timestamps=False)
    log.info("decoding in <|%s|> (--language)", code)


def check_window(recipe: Recipe, processor, name: str) -> None:
    """Whisper's feature extractor silently cuts audio to its window: refuse data that would be cut."""
    window = processor.feature_extractor.chunk_length
    if recipe.data.max_seconds > window:
        raise ConfigError(window_message(recipe.data.max_seconds, window, name))


def window_message(max_seconds: float, window: int, name: str) -> str:
    return (
        f"data.max_seconds is {max_seconds:g} but {name} hears {window} s windows and would silently cut "
        f"longer clips in training; set data.max_seconds: {window} (longer clips are then dropped)"
    )


def check_label_lengths(texts: list[str], processor, max_positions: int, name: str) -> None:
    lengths = [len(ids) for ids in processor.tokenizer(texts).input_ids]
    too_long = sum(n > max_positions for n in lengths)
    if too_long:
        raise ConfigError(
            f"{too_long} training transcripts are longer than the {max_positions} tokens {name}'s decoder "
            f"can hold (longest {max(lengths)}); shorten or drop them (e.g. lower data.max_seconds)"
        )


def load(model_dir: str) -> tuple:
    """A trained Whisper/Moonshine dir, a Hub name, or a LoRA adapter dir (its base found via adapter_config)."""
    from transformers import AutoModelForSpeechSeq2Seq, GenerationConfig

    from slp_toolkit.runtime import adapters

    base = adapters.adapter_base(model_dir)
    processor = _load_processor(model_dir, base)
    model = load_or_fail(AutoModelForSpeechSeq2Seq.from_pretrained, base or model_dir, "speech seq2seq model")
    if base is not None:
        if is_whisper(processor.feature_extractor):
            match_window(model, processor, model_dir)  # an adapter trained on a cropped window
        try:  # the adapter run's decoding settings, saved beside the adapter
            model.generation_config = GenerationConfig.from_pretrained(model_dir)
        except OSError:
            pass
        model = adapters.load_adapter(model, model_dir)
    return model.eval(), processor


def _load_processor(model_dir: str, base: str | None):
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(model_dir)
    except (OSError, ValueError, KeyError, TypeError):
        if base is None:
            raise ModelLoadError(f"cannot load the processor from {model_dir!r}") from None
    return load_or_fail(AutoProcessor.from_pretrained, base, "processor")


# ---------------------------------------------------------------- features and labels
def preprocess(example: dict, processor) -> dict:
    """Labels are <|startoftranscript|><|lang|><|task|><|notimestamps|> text <|endoftext|> minus the
    first token: the model prepends decoder_start (= <|startoftranscript|>) when it shifts labels right.
    The clip's log-mel is computed here once (see `log_mel`), not in every epoch's batches."""
    out = {"labels": label_ids(example["text"], processor.tokenizer)}
    ext = processor.feature_extractor
    if "audio" in example and is_whisper(ext):
        mel = log_mel(np.asarray(example["audio"], np.float32), ext)
        # every row has both columns (the Arrow writer takes one schema): a clip over the window caches nothing,
        # and a key no audio has sends it through the extractor (long-form decoding cuts it in pieces anyway)
        if mel is None:
            out |= {"log_mel": np.zeros(0, np.float32), "log_mel_of": -1.0}
        else:
            out |= {"log_mel": mel.T.ravel(), "log_mel_of": audio_key(example["audio"])}
    return out


def label_ids(text: str, tokenizer) -> list[int]:
    """The decoder's targets: the tokenized text without its start token (<|startoftranscript|>, or a <s>: the
    model puts its decoder_start in front when it shifts the labels right), ending in the end token."""
    ids = tokenizer(text).input_ids
    if ids and ids[0] in (tokenizer.convert_tokens_to_ids(SOT), tokenizer.bos_token_id):
        ids = ids[1:]
    eos = tokenizer.eos_token_id
    return ids if eos is None or (ids and ids[-1] == eos) else [*ids, eos]


def pack(examples: list[dict], processor, rng, config) -> list[dict]:
    """Clips of a batch joined into as few windows as fit (audio and transcript), in a random order
    with random pauses (slp_toolkit.data.packing); each keeps its cached log-mel, placed at its frame."""
    from slp_toolkit.data.packing import first_fit, join, pauses

    ext, tokenizer = processor.feature_extractor, processor.tokenizer
    order = [examples[i] for i in rng.permutation(len(examples))]
    gaps = pauses(len(order), ext.sampling_rate, ext.hop_length, rng)
    texts = [e["text"] for e in order]

    def fits(members: list[int]) -> bool:
        return len(label_ids(" ".join(texts[i] for i in members), tokenizer)) <= config.max_target_positions

    sizes = [len(e["audio"]) + int(g) + ext.hop_length for e, g in zip(order, gaps, strict=True)]
    out = []
    for members in first_fit(sizes, ext.n_samples, fits):
        group = [order[i] for i in members]
        wave, starts = join(
            [np.asarray(e["audio"], np.float32) for e in group], [gaps[i] for i in members], ext.hop_length
        )
        text = " ".join(texts[i] for i in members)
        packed = {"audio": wave, "text": text, "labels": label_ids(text, tokenizer)}
        out.append(packed | packed_mel(group, starts, wave, ext))
    return out


def collate(examples: list[dict], processor) -> dict:

    ext = processor.feature_extractor
    if is_whisper(ext):
        out = {"input_features": features(examples, ext)}
    else:  # Moonshine: the waveform, padded, with its attention mask
        out = audio_batch([e["audio"] for e in examples], ext)
    if examples and "labels" in examples[0]:
        out["labels"] = padded_labels(examples)
    return out


def label_tokens(batch: dict) -> int:
    """The tokens the cross-entropy averages over (padding is -100)."""
    return int((batch["labels"] != -100).sum())


# ---------------------------------------------------------------- decoding and scoring
def predict(model, processor, examples: list[dict]) -> list[str]:
    """Batched `generate` with the saved language/task/beams; a clip longer than the window is cut at its
    pauses into pieces that fit (slp_toolkit.data.segment), decoded in batches and joined."""
    return [d["text"] for d in timed(model, processor, examples)]


@no_grad
def timed(model, processor, examples: list[dict]) -> list[dict]:
    """Transcripts with chunk timestamps: {"text", "chunks": [{"text", "start", "end"}]} in seconds. A clip
    within the window is one chunk; a longer one has a chunk per piece of speech between pauses (the
    pauses themselves are not decoded: Whisper invents text for silence)."""
    from slp_toolkit.data.segment import segments

    gen, extractor = model.generation_config, processor.feature_extractor
    limit = gen.max_new_tokens or max_target_tokens(model.config) - PREFIX_TOKENS  # a Hub config may set none
    kwargs = dict(
        num_beams=gen.num_beams, max_new_tokens=limit, no_repeat_ngram_size=getattr(gen, "no_repeat_ngram_size", None)
    )
    kwargs["use_cache"] = True  # off in the config while training with gradient checkpointing
    # FSDP: a process whose clips end sooner must keep running forwards for the others (Whisper's generate passes
    # synced_gpus=False on, so transformers' own FSDP check never runs): without it the first evaluation hangs
    kwargs["synced_gpus"] = is_sharded(model)
    _DECODED["language"] = "en"  # Moonshine and Whisper's *.en checkpoints are English-only
    if is_whisper(extractor):
        # a Hub checkpoint's own generation config has no language/task: Whisper then detects the language
        kwargs |= dict(language=getattr(gen, "language", None), task=getattr(gen, "task", None))
        if multilingual(gen):  # a detected language is not known here: the basic normaliser then
            _DECODED["language"] = kwargs["language"]
    _DECODED["spelling"] = getattr(processor.tokenizer, "english_spelling_normalizer", None)
    window = float(getattr(extractor, "chunk_length", LONG_SECONDS))  # Whisper's window, else 30 s pieces
    audio = [np.asarray(e["audio"], dtype=np.float32) for e in examples]
    rate, pieces = extractor.sampling_rate, []  # (example, start, stop) in samples
    for i, wave in enumerate(audio):
        if len(wave) <= window * rate:
            pieces.append((i, 0, len(wave)))
            continue
        cut = segments(wave, rate, window)
        log.info(
            "a %.1f s clip is longer than the %g s window: %d pieces between its pauses",
            len(wave) / rate,
            window,
            len(cut),
        )
        pieces += [(i, a, b) for a, b in cut]
    texts, size = [], max(len(audio), PIECES_PER_BATCH)
    for first in range(0, len(pieces), size):
        group = pieces[first : first + size]
        longest = max(b - a for _, a, b in group) / rate
        budget = kwargs | {"max_new_tokens": token_budget(longest, kwargs["max_new_tokens"])}
        texts += _generate(model, processor, [audio[i][a:b] for i, a, b in group], budget)
    out: list[dict] = [{"text": "", "chunks": []} for _ in audio]
    for (i, a, b), text in zip(pieces, texts, strict=True):
        out[i]["chunks"].append({"text": text, "start": round(a / rate, 3), "end": round(b / rate, 3)})
    for d in out:
        d["text"] = " ".join(c["text"] for c in d["chunks"] if c["text"])
    return out


PIECES_PER_BATCH = 16
# A looping decoder ("the the the ...") runs to max_new_tokens: cap the tokens by the audio's length instead.
# English speech in Whisper's BPE is ~4.3 tokens/s (the synthetic corpus: p99 6.9, max 8.9); 10/s + 20 leaves
# room for fast speakers and denser scripts, and cut the zero-shot loops of whisper-tiny.en on unseen voices.
TOKENS_PER_SECOND, TOKEN_MARGIN = 10, 20


def token_budget(seconds: float, limit: int) -> int:
    """The most tokens a clip of `seconds` may decode to: proportional to its length, at most `limit`."""
    return min(limit, math.ceil(seconds * TOKENS_PER_SECOND) + TOKEN_MARGIN)


LONG_SECONDS = 30.0  # a model without a window (Moonshine) decodes longer clips in pieces cut at pauses


def _generate(model, processor, waves: list[np.ndarray], kwargs: dict) -> list[str]:
    extractor, param = processor.feature_extractor, next(model.parameters())
    if is_whisper(extractor):
        with fp32_features():
            inputs = {
                "input_features": extractor(waves, sampling_rate=extractor.sampling_rate, return_tensors="pt")[
                    "input_features"
                ]
            }
    else:
        inputs = audio_batch(waves, extractor)
    inputs = {
        k: v.to(param.device, param.dtype) if v.is_floating_point() else v.to(param.device) for k, v in inputs.items()
    }
    if kwargs.get("synced_gpus") and "input_features" in inputs:
        inputs = {"encoder_outputs": _sharded_encoding(model, inputs["input_features"])}
    ids = model.generate(**inputs, **kwargs)
    return [text.strip() for text in processor.batch_decode(ids, skip_special_tokens=True)]


def _sharded_encoding(model, features):
    """The encoder's output through the model's own forward. Under FSDP2 generate would call the encoder directly,
    past the root's pre-forward hook that gathers the root's own weights (conv front end, positions)."""
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    start = torch.full((len(features), 1), model.config.decoder_start_token_id, device=features.device)
    out = model(input_features=features, decoder_input_ids=start)
    return BaseModelOutput(last_hidden_state=out.encoder_last_hidden_state)


# `metrics` sees no model: `predict` records the language it decoded in, to pick the normaliser.
_DECODED: dict = {"language": "en", "spelling": None}


def metrics(predictions: list[str], examples: list[dict]) -> dict:
    refs = [e.get("raw_text", e.get("text", "")) for e in examples]
    groups = [e.get("speaker", "") for e in examples]
    normalizer = text_normalizer(_DECODED["language"], _DECODED["spelling"])
    return asr_metrics(predictions, refs, groups, normalizer=normalizer)


def validate(recipe: Recipe, fail) -> None:
    """Whisper's window against data.max_seconds, before any data or weights: from the preset, or from a
    local model's preprocessor_config.json (a Hub name is checked by `build`, before its weights download)."""
    m = recipe.model
    check_preset(m, WHISPER_PRESETS, "Whisper", fail)
    if m.init == "scratch":
        if m.window_seconds:
            fail("model.window_seconds", "model.window_seconds: a scratch model's window is its preset's; drop it")
        window, name = whisper_window(m.preset), f"scratch:{m.preset}"
    elif m.window_seconds:
        window, name = m.window_seconds, f"{m.name_or_path} at model.window_seconds"
    else:
        settings = Path(m.name_or_path or "") / "preprocessor_config.json"
        try:
            window, name = json.loads(settings.read_text()).get("chunk_length"), m.name_or_path
        except (OSError, ValueError, AttributeError):
            return
    if isinstance(window, int) and recipe.data.max_seconds > window:
        fail("data.max_seconds", window_message(recipe.data.max_seconds, window, name))


TASK = register(
    Task(
        name="asr_seq2seq",
        needs=("text",),
        build=build,
        load=load,
        preprocess=preprocess,
        collate=collate,
        predict=predict,
        metrics=metrics,
        main_metric="wer",
        greater_is_better=False,
        model_config=Seq2SeqModelConfig,
        pipeline_tag="automatic-speech-recognition",
        caps=Capabilities(
            preprocess_reads=("text", "audio"),
            pack=pack,
            loss_items=label_tokens,
            timed=timed,
            set_language=set_language,
            validate=validate,
            architectures=("WhisperForConditionalGeneration", "MoonshineForConditionalGeneration", "ForSpeechSeq2Seq"),
            tab=Tab("asr", "Transcribe", "transcribe"),
            usage='pipe("clip.wav")["text"]',
            space=True,
            lora_targets=("q_proj", "v_proj"),
            lora_heads=(),
            # HF's Whisper fine-tuning guide: 1e-5 in full; its PEFT (LoRA) guide: 1e-3
            learning_rates=LearningRates(scratch=3e-4, pretrained=1e-5, lora=1e-3),
            normalize_text=False,  # Whisper writes cased, punctuated text; WER is scored after its own normaliser
        ),
    )
)
