"""Task asr_seq2seq: Whisper speech recognition (WhisperForConditionalGeneration).

The model comes from a Hub name (`openai/whisper-tiny`, `-base`, `-small`, `-medium`, `-large-v3`...),
a local dir, or a scratch preset (`slp_toolkit.synth.scratch.build_whisper`). The recipe's language, task,
beam count and token budget are written into the model's generation config, so evaluation during
training, `slp eval` and a plain `transformers.pipeline` on the output dir all decode the same way.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from slp_toolkit.config import ConfigError, ModelConfig, Recipe, rule
from slp_toolkit.data import column
from slp_toolkit.metrics import asr_metrics
from slp_toolkit.synth.presets import WHISPER_PRESETS, check_preset, whisper_window
from slp_toolkit.tasks import LearningRates, ModelLoadError, Tab, Task, load_or_fail, no_grad, padded_labels, register

log = logging.getLogger("slp")

SOT = "<|startoftranscript|>"
PREFIX_TOKENS = 4  # <|startoftranscript|><|lang|><|task|><|notimestamps|>


# ---------------------------------------------------------------- building and loading


@dataclass(frozen=True)
class Seq2SeqModelConfig(ModelConfig):
    language: str | None = "english"
    task: Literal["transcribe", "translate"] = "transcribe"
    freeze_encoder: bool = False
    num_beams: int = field(default=1, metadata=rule(min=1))
    max_new_tokens: int = field(default=225, metadata=rule(min=1))  # the HF Whisper fine-tuning guide's
    # A fine-tuned (or weak) Whisper can loop on a phrase until max_new_tokens ("older older older ..."): no
    # run of this many tokens may repeat within one output. Saved in the generation config, so pipeline()
    # decodes the same way; 0 turns it off. Natural repeats ("I think I think") are shorter than 5 tokens.
    no_repeat_ngram_size: int = field(default=5, metadata=rule(min=0))
    mask_time_prob: float = field(default=0.0, metadata=rule(min=0.0, max=1.0))
    mask_feature_prob: float = field(default=0.0, metadata=rule(min=0.0, max=1.0))


def _config_overrides(cfg: Seq2SeqModelConfig) -> dict:
    return {
        "dropout": cfg.dropout,
        "attention_dropout": cfg.dropout,
        "activation_dropout": cfg.dropout,
        "encoder_layerdrop": cfg.layerdrop,
        "decoder_layerdrop": cfg.layerdrop,
        # SpecAugment on the log-mel input, applied by the model itself in train mode. Whisper adds
        # `mask_time_min_masks` masks even at probability 0, so it is switched off entirely then.
        "apply_spec_augment": cfg.mask_time_prob > 0 or cfg.mask_feature_prob > 0,
        "mask_time_prob": cfg.mask_time_prob,
        "mask_feature_prob": cfg.mask_feature_prob,
        "use_cache": not cfg.gradient_checkpointing,
    }


def build(recipe: Recipe, train_ds) -> tuple:
    from slp_toolkit.synth import scratch

    cfg: Seq2SeqModelConfig = recipe.model
    name = cfg.name_or_path or f"scratch:{cfg.preset}"
    if cfg.init == "scratch":
        try:
            model, processor = scratch.build_whisper(cfg.preset, cfg.language, cfg.task, **_config_overrides(cfg))
        except ValueError as err:
            raise ModelLoadError(f"{name}: {err}") from None
        check_window(recipe, processor, name)
    else:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        processor = load_or_fail(WhisperProcessor.from_pretrained, cfg.name_or_path, "Whisper processor")
        check_window(recipe, processor, name)  # before a download of the weights
        model = load_or_fail(
            WhisperForConditionalGeneration.from_pretrained,
            cfg.name_or_path,
            "Whisper model",
            **_config_overrides(cfg),
        )
    configure_decoding(model, processor, cfg)
    check_label_lengths(column(train_ds, "text"), processor, model.config.max_target_positions, name)
    if cfg.freeze_encoder:
        model.freeze_encoder()
    if cfg.gradient_checkpointing:
        # non-reentrant: gradients still reach the decoder (and adapters) when the encoder is frozen
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return model, processor


def configure_decoding(model, processor, cfg: Seq2SeqModelConfig) -> None:
    """Language, task, beams and length into the tokenizer (label prefix) and the generation config
    (what `generate` and the pipeline read), so every decoder of the saved model agrees."""
    gen = model.generation_config
    multilingual = bool(getattr(gen, "is_multilingual", True)) and hasattr(gen, "lang_to_id")
    language = _language_code(cfg.language) if multilingual else None
    task = cfg.task if multilingual else None
    if cfg.language is not None and language is None and multilingual:
        raise ModelLoadError(f"unknown Whisper language {cfg.language!r} (use e.g. english, en, french)")
    processor.tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)
    gen.language, gen.task = language, task
    gen.forced_decoder_ids = None  # superseded by language/task, and conflicts with them
    model.config.forced_decoder_ids = None
    gen.num_beams = cfg.num_beams
    gen.no_repeat_ngram_size = cfg.no_repeat_ngram_size or None
    gen.max_new_tokens = min(cfg.max_new_tokens, model.config.max_target_positions - PREFIX_TOKENS)
    gen.max_length = None  # max_new_tokens rules; both set makes every generate() warn


def _language_code(language: str | None) -> str | None:
    if language is None:
        return None
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    code = TO_LANGUAGE_CODE.get(language.lower(), language.lower())
    return code if code in LANGUAGES else None


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
    """A trained Whisper dir, a Hub name, or a LoRA adapter dir (its base found via adapter_config)."""
    from transformers import GenerationConfig, WhisperForConditionalGeneration

    from slp_toolkit import lora

    base = lora.adapter_base(model_dir)
    processor = _load_processor(model_dir, base)
    model = load_or_fail(WhisperForConditionalGeneration.from_pretrained, base or model_dir, "Whisper model")
    if base is not None:
        try:  # the adapter run's decoding settings, saved beside the adapter
            model.generation_config = GenerationConfig.from_pretrained(model_dir)
        except OSError:
            pass
        model = lora.load_adapter(model, model_dir)
    return model.eval(), processor


def _load_processor(model_dir: str, base: str | None):
    from transformers import WhisperProcessor

    try:
        return WhisperProcessor.from_pretrained(model_dir)
    except (OSError, ValueError, KeyError, TypeError):
        if base is None:
            raise ModelLoadError(f"cannot load Whisper processor from {model_dir!r}") from None
    return load_or_fail(WhisperProcessor.from_pretrained, base, "Whisper processor")


# ---------------------------------------------------------------- features and labels
def preprocess(example: dict, processor) -> dict:
    """Labels are <|startoftranscript|><|lang|><|task|><|notimestamps|> text <|endoftext|> minus the
    first token: the model prepends decoder_start (= <|startoftranscript|>) when it shifts labels right.
    The clip's log-mel is computed here once (see `log_mel`), not in every epoch's batches."""
    out = {"labels": label_ids(example["text"], processor.tokenizer)}
    mel = log_mel(np.asarray(example["audio"], np.float32), processor.feature_extractor) if "audio" in example else None
    if mel is not None:
        out |= {"log_mel": mel.T.ravel(), "log_mel_of": audio_key(example["audio"])}
    return out


def label_ids(text: str, tokenizer) -> list[int]:
    ids = tokenizer(text).input_ids
    return ids[1:] if ids and ids[0] == tokenizer.convert_tokens_to_ids(SOT) else ids


def pack(examples: list[dict], processor, rng, config) -> list[dict]:
    """Clips of a batch joined into as few windows as fit (audio and transcript), in a random order
    with random pauses (slp_toolkit.packing); each keeps its cached log-mel, placed at its frame."""
    from slp_toolkit.packing import first_fit, join, pauses

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
        wave, starts = join([np.asarray(e["audio"], np.float32) for e in group], [gaps[i] for i in members],
                            ext.hop_length)  # fmt: skip
        text = " ".join(texts[i] for i in members)
        packed = {"audio": wave, "text": text, "labels": label_ids(text, tokenizer)}
        out.append(packed | _packed_mel(group, starts, wave, ext))
    return out


def _packed_mel(group: list[dict], starts: list[int], wave: np.ndarray, ext) -> dict:
    """The window's log-mel from its clips' cached frames, each at its start frame: the joined audio's
    frames but for the three whose STFT window straddles a join (cached with silence or a reflection
    there): 30 ms at each pause, where being exact would mean running the extractor again."""
    if not all("log_mel" in e and e["log_mel_of"] == audio_key(e["audio"]) for e in group):
        return {}  # a clip changed by augmentation: the extractor reads the joined audio instead
    mels, length = ext.feature_size, len(wave)
    frames = (length + min(ext.n_samples - length, ext.n_fft)) // ext.hop_length
    mel = np.full((frames, mels), -10.0, dtype=np.float32)
    bounds = [s // ext.hop_length for s in starts[1:]] + [frames]
    for e, start, stop in zip(group, starts, bounds, strict=True):
        cached = np.asarray(e["log_mel"], dtype=np.float32).reshape(-1, mels)
        first = start // ext.hop_length
        mel[first : first + min(len(cached), stop - first)] = cached[: stop - first]
    return {"log_mel": mel.ravel(), "log_mel_of": audio_key(wave)}


def audio_key(audio) -> float:
    """What the cached log-mel was computed from: a changed clip (noise, speed, a crop) gets the extractor."""
    return float(np.sum(np.asarray(audio, dtype=np.float32), dtype=np.float64)) + 1e9 * len(audio)


def log_mel(wave: np.ndarray, extractor) -> np.ndarray | None:
    """(mels x frames) log10 mel power of the clip's own frames, before Whisper's clamp and scaling: the
    frames its feature extractor gives for the clip padded to the window, bit for bit (the rest of the
    window is silence, log10(1e-10) = -10). None where it cannot be cached (dither, a clip over the window)."""
    import torch

    room = extractor.n_samples - len(wave)
    if room < 0 or getattr(extractor, "dither", 0.0) or not len(wave):
        return None
    # zeros past the clip as in the padded window: every frame of this shorter STFT sees what it sees there
    padded = torch.from_numpy(np.pad(wave, (0, min(room, extractor.n_fft))))
    stft = torch.stft(padded, extractor.n_fft, extractor.hop_length, window=torch.hann_window(extractor.n_fft),
                      return_complex=True)  # fmt: skip
    power = (stft[..., :-1].abs() ** 2).contiguous()
    mel = torch.from_numpy(extractor.mel_filters).to(torch.float32).T @ power
    return torch.clamp(mel, min=1e-10).log10().numpy()


def features(examples: list[dict], extractor):
    """Whisper's input features of a batch: from the cached log-mel where it is the clip's, else the extractor."""
    cached = cached_features(examples, extractor)
    if cached is not None:
        return cached
    audio = [np.asarray(e["audio"], dtype=np.float32) for e in examples]
    return extractor(audio, sampling_rate=extractor.sampling_rate, return_tensors="pt")["input_features"]


def cached_features(examples: list[dict], extractor):
    """The extractor's features rebuilt from `log_mel` (pad with silence, clamp 8 below the clip's peak,
    scale), or None unless every example's cache is of its audio as it is now."""
    import torch

    if not all("log_mel" in e and e["log_mel_of"] == audio_key(e["audio"]) for e in examples):
        return None
    mels, frames = extractor.feature_size, extractor.nb_max_frames
    out = torch.full((len(examples), mels, frames), -10.0)
    for row, e in zip(out, examples):
        cached = torch.from_numpy(np.asarray(e["log_mel"], dtype=np.float32)).view(-1, mels)
        row[:, : len(cached)] = cached.T[:, :frames]
    top = out.amax(dim=(1, 2), keepdim=True)
    return (torch.maximum(out, top - 8.0) + 4.0) / 4.0


def collate(examples: list[dict], processor) -> dict:

    out = {"input_features": features(examples, processor.feature_extractor)}
    if examples and "labels" in examples[0]:
        out["labels"] = padded_labels(examples)
    return out


# ---------------------------------------------------------------- decoding and scoring
def predict(model, processor, examples: list[dict]) -> list[str]:
    """Batched `generate` with the saved language/task/beams; a clip longer than the window is cut at its
    pauses into pieces that fit (slp_toolkit.segment), decoded in batches and joined."""
    return [d["text"] for d in timed(model, processor, examples)]


@no_grad
def timed(model, processor, examples: list[dict]) -> list[dict]:
    """Transcripts with chunk timestamps: {"text", "chunks": [{"text", "start", "end"}]} in seconds. A clip
    within the window is one chunk; a longer one has a chunk per piece of speech between pauses (the
    pauses themselves are not decoded: Whisper invents text for silence)."""
    from slp_toolkit.segment import segments

    gen = model.generation_config
    # a Hub checkpoint's own generation config has no language/task: Whisper then detects the language
    language, task = getattr(gen, "language", None), getattr(gen, "task", None)
    _DECODED["language"] = language
    _DECODED["spelling"] = getattr(processor.tokenizer, "english_spelling_normalizer", None)
    extractor = processor.feature_extractor
    kwargs = dict(language=language, task=task, num_beams=gen.num_beams, max_new_tokens=gen.max_new_tokens,
                  no_repeat_ngram_size=getattr(gen, "no_repeat_ngram_size", None))  # fmt: skip
    kwargs["use_cache"] = True  # off in the config while training with gradient checkpointing
    audio = [np.asarray(e["audio"], dtype=np.float32) for e in examples]
    rate, pieces = extractor.sampling_rate, []  # (example, start, stop) in samples
    for i, wave in enumerate(audio):
        if len(wave) <= extractor.n_samples:
            pieces.append((i, 0, len(wave)))
            continue
        cut = segments(wave, rate, extractor.chunk_length)
        log.info("a %.1f s clip is longer than the %s s window: %d pieces between its pauses",
                 len(wave) / rate, extractor.chunk_length, len(cut))  # fmt: skip
        pieces += [(i, a, b) for a, b in cut]
    texts, size = [], max(len(audio), PIECES_PER_BATCH)
    for first in range(0, len(pieces), size):
        group = pieces[first : first + size]
        texts += _generate(model, processor, [audio[i][a:b] for i, a, b in group], kwargs)
    out: list[dict] = [{"text": "", "chunks": []} for _ in audio]
    for (i, a, b), text in zip(pieces, texts, strict=True):
        out[i]["chunks"].append({"text": text, "start": round(a / rate, 3), "end": round(b / rate, 3)})
    for d in out:
        d["text"] = " ".join(c["text"] for c in d["chunks"] if c["text"])
    return out


PIECES_PER_BATCH = 16


def _generate(model, processor, waves: list[np.ndarray], kwargs: dict) -> list[str]:
    extractor, param = processor.feature_extractor, next(model.parameters())
    feats = extractor(waves, sampling_rate=extractor.sampling_rate, return_tensors="pt")
    ids = model.generate(input_features=feats["input_features"].to(param.device, param.dtype), **kwargs)
    return [text.strip() for text in processor.batch_decode(ids, skip_special_tokens=True)]


# `metrics` sees no model: `predict` records the language it decoded in, to pick the normaliser.
_DECODED: dict = {"language": "en", "spelling": None}


def text_normalizer(language: str | None, spelling: dict | None = None) -> Callable[[str], str]:
    """Whisper's English normaliser (contractions, numbers, British->American spelling) for English,
    its basic one (lower-case, no punctuation or diacritics marks) for any other or unknown language."""
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

    if _language_code(language) == "en":
        return EnglishTextNormalizer(spelling if spelling is not None else english_spelling())
    return BasicTextNormalizer()


@lru_cache(maxsize=1)
def english_spelling() -> dict:
    """The British->American spelling map: the tokenizer's normalizer.json for Hub checkpoints, else
    the same table from the openai-whisper package (no network either way)."""
    try:
        dist = importlib.metadata.distribution("openai-whisper")
        path = dist.locate_file("whisper/normalizers/english.json")
        return json.loads(path.read_text(encoding="utf-8"))
    except (importlib.metadata.PackageNotFoundError, OSError):
        log.warning("Whisper's English spelling map not found (pip install openai-whisper): spellings not unified")
        return {}


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
        window, name = whisper_window(m.preset), f"scratch:{m.preset}"
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
        preprocess_reads=("text", "audio"),
        pack=pack,
        collate=collate,
        predict=predict,
        timed=timed,
        metrics=metrics,
        main_metric="wer",
        greater_is_better=False,
        model_config=Seq2SeqModelConfig,
        validate=validate,
        architectures=("WhisperForConditionalGeneration", "ForSpeechSeq2Seq"),
        tab=Tab("asr", "Transcribe", "transcribe"),
        usage='pipe("clip.wav")["text"]',
        space=True,
        pipeline_tag="automatic-speech-recognition",
        lora_targets=("q_proj", "v_proj"),
        lora_heads=(),
        # HF's Whisper fine-tuning guide: 1e-5 in full; its PEFT (LoRA) guide: 1e-3
        learning_rates=LearningRates(scratch=3e-4, pretrained=1e-5, lora=1e-3),
        normalize_text=False,  # Whisper writes cased, punctuated text; WER is scored after its own normaliser
    )
)
