"""Randomly initialised speech models with real processors, built from size presets.

Used by recipes with ``model.init: scratch`` (``build_ctc(vocab, "small")`` and friends) and by ``slp tiny
OUT`` (slp_toolkit/synth/tiny.py), whose directories tests load offline with plain ``from_pretrained(dir)``. Every builder takes seconds on a CPU and touches no network. Builders do not
seed: callers set ``torch.manual_seed`` for reproducible weights.

The Whisper tokenizer is the real multilingual one (ids match openai/whisper-tiny): see whisper_vocab.py.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import sentencepiece as spm
from transformers import (
    GenerationConfig,
    HubertConfig,
    HubertForSequenceClassification,
    PreTrainedModel,
    SpeechT5Config,
    SpeechT5FeatureExtractor,
    SpeechT5ForTextToSpeech,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
    SpeechT5Processor,
    SpeechT5Tokenizer,
    Wav2Vec2Config,
    Wav2Vec2CTCTokenizer,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForCTC,
    Wav2Vec2ForSequenceClassification,
    Wav2Vec2Processor,
    WavLMConfig,
    WavLMForSequenceClassification,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForAudioClassification,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)
from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

from slp_toolkit.runtime.loading import apply_settings
from slp_toolkit.runtime.presets import CTC_PRESETS, HIFIGAN_PRESETS, SPEECHT5_PRESETS, WHISPER_PRESETS
from slp_toolkit.runtime.whisper_vocab import (
    WHISPER_EOT_ID,
    WHISPER_LANGUAGES,
    WHISPER_VOCAB_SIZE,
    whisper_tokenizer_dir,
)


def _preset(presets: dict[str, dict], name: str, overrides: dict) -> dict:
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(presets)}")
    return {**presets[name], **overrides}


# ---------------------------------------------------------------------------------------------- CTC
def wav2vec2_extractor(sampling_rate: int = 16000, return_attention_mask: bool = True) -> Wav2Vec2FeatureExtractor:
    """Raw-waveform input, normalised per clip. Group-norm models (wav2vec2-base) are fed zero-padded
    audio without a mask, as their Hub extractor says (return_attention_mask=False)."""
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=sampling_rate,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=return_attention_mask,
    )


def ctc_processor(vocab: list[str], sampling_rate: int = 16000) -> Wav2Vec2Processor:
    """Character CTC processor. ``vocab`` holds single characters; a space may be given as " " or "|"
    (it is mapped to the word delimiter "|", which is always present). Ids: [PAD]=0 (the CTC blank),
    [UNK]=1, "|"=2, then the other characters in the order given."""
    chars = [c if c != " " else "|" for c in vocab]
    if any(len(c) != 1 for c in chars):
        raise ValueError(f"CTC vocab entries must be single characters, got {[c for c in chars if len(c) != 1]}")
    tokens = ["[PAD]", "[UNK]", "|", *[c for c in dict.fromkeys(chars) if c != "|"]]
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        vocab_file.write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False))
        # bos/eos None: transformers 5 otherwise appends <s> and </s> to the vocab.
        tokenizer = Wav2Vec2CTCTokenizer(
            str(vocab_file),
            unk_token="[UNK]",
            pad_token="[PAD]",
            word_delimiter_token="|",
            bos_token=None,
            eos_token=None,
        )
    extractor = wav2vec2_extractor(sampling_rate)
    return Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer)


def build_ctc(
    vocab: list[str], preset: str = "tiny", sampling_rate: int = 16000, settings: dict | None = None, **overrides
) -> tuple[Wav2Vec2ForCTC, Wav2Vec2Processor]:
    """A randomly initialised Wav2Vec2ForCTC and its processor; ``overrides`` are Wav2Vec2Config kwargs of its
    shape, ``settings`` recipe keys (dropout, layerdrop, masks) mapped by loading.apply_settings."""
    processor = ctc_processor(vocab, sampling_rate)
    tokenizer = processor.tokenizer
    config = Wav2Vec2Config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        ctc_loss_reduction="mean",
        ctc_zero_infinity=True,
        **_preset(CTC_PRESETS, preset, overrides),
    )
    apply_settings(config, settings or {}, set(), "wav2vec2")
    return Wav2Vec2ForCTC(config), processor


# ------------------------------------------------------------------------------------------ Whisper
def _language_code(language: str | None) -> str | None:
    if language is None:
        return None
    language = language.lower()
    code = TO_LANGUAGE_CODE.get(language, language)
    if code not in WHISPER_LANGUAGES:
        raise ValueError(f"unknown Whisper language {language!r}")
    return code


def whisper_processor(
    language: str | None = "english",
    task: str = "transcribe",
    chunk_length: int = 30,
    num_mel_bins: int = 80,
    languages: int = 99,
) -> WhisperProcessor:
    """Real multilingual Whisper tokenizer (labels start <|startoftranscript|><|lang|><|task|><|notimestamps|>;
    `languages` 100: large-v3's) and a log-mel feature extractor whose window is ``chunk_length`` seconds."""
    tokenizer = WhisperTokenizer.from_pretrained(
        whisper_tokenizer_dir(languages), language=_language_code(language), task=task
    )
    extractor = WhisperFeatureExtractor(feature_size=num_mel_bins, sampling_rate=16000, chunk_length=chunk_length)
    return WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer)


def _whisper_config(preset: str, overrides: dict, **extra) -> tuple[WhisperConfig, int]:
    kwargs = _preset(WHISPER_PRESETS, preset, overrides)
    if kwargs["max_source_positions"] % 50:
        raise ValueError("max_source_positions must be a multiple of 50 (the encoder's frames per second)")
    config = WhisperConfig(**WHISPER_TOKEN_SETTINGS, **kwargs, **extra)
    return config, kwargs["max_source_positions"] // 50


# The ids every multilingual Whisper checkpoint (tiny..large-v2) uses; 220 = " ": no leading blank.
WHISPER_TOKEN_SETTINGS = dict(
    vocab_size=WHISPER_VOCAB_SIZE,
    pad_token_id=WHISPER_EOT_ID,
    bos_token_id=WHISPER_EOT_ID,
    eos_token_id=WHISPER_EOT_ID,
    decoder_start_token_id=WHISPER_EOT_ID + 1,
    begin_suppress_tokens=[220, WHISPER_EOT_ID],
)


def whisper_generation_config(processor: WhisperProcessor, max_length: int, **extra) -> GenerationConfig:
    """What `generate()` and the pipeline read for a multilingual Whisper: language and task ids,
    timestamp and previous-text tokens. A fresh config: one derived from the model config is saved with
    _from_model_config=true, and from_pretrained then drops every Whisper field (lang_to_id, ...) on load."""
    ids, vocab = processor.tokenizer.convert_tokens_to_ids, processor.tokenizer.get_vocab()
    eot = ids("<|endoftext|>")
    return GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"),
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=max_length,
        begin_suppress_tokens=[220, eot],
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES if f"<|{code}|>" in vocab},
        task_to_id={name: ids(f"<|{name}|>") for name in ("transcribe", "translate")},
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50,
        **extra,
    )


def build_whisper(
    preset: str = "tiny",
    language: str | None = "english",
    task: str = "transcribe",
    settings: dict | None = None,
    **overrides,
) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """A randomly initialised multilingual Whisper. Its generation config carries ``language``/``task``,
    so ``generate()`` and the ASR pipeline skip language detection (``language=None`` re-enables it)."""
    config, chunk_length = _whisper_config(preset, overrides)
    apply_settings(config, settings or {}, set(), "whisper")
    processor = whisper_processor(language, task, chunk_length, config.num_mel_bins)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = whisper_generation_config(
        processor, config.max_target_positions, language=_language_code(language), task=task
    )
    return model, processor


# ------------------------------------------------------------------------------------------ SpeechT5
def speecht5_processor(texts: list[str]) -> SpeechT5Processor:
    """Character sentencepiece model trained on ``texts`` (plus ASCII letters, digits and common
    punctuation) with SpeechT5's ids <s>=0, <pad>=1, </s>=2, <unk>=3; 80-bin log-mel at 16 kHz."""
    required = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,?!'-"
    chars = set("".join(texts)) | set(required)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([*texts, required]),
        model_writer=model,
        model_type="char",
        vocab_size=len(chars) + 5,
        hard_vocab_limit=False,
        character_coverage=1.0,
        required_chars=required,
        bos_id=0,
        pad_id=1,
        eos_id=2,
        unk_id=3,
        minloglevel=2,
    )
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "spm_char.model"
        vocab_file.write_bytes(model.getvalue())
        tokenizer = SpeechT5Tokenizer(str(vocab_file))
    extractor = SpeechT5FeatureExtractor(sampling_rate=16000, num_mel_bins=80, return_attention_mask=True)
    return SpeechT5Processor(feature_extractor=extractor, tokenizer=tokenizer)


def build_speecht5(
    texts: list[str], preset: str = "tiny", settings: dict | None = None, **overrides
) -> tuple[SpeechT5ForTextToSpeech, SpeechT5Processor]:
    """A randomly initialised SpeechT5 text-to-speech model and its processor (see SPEECHT5_PRESETS)."""
    processor = speecht5_processor(texts)
    tokenizer = processor.tokenizer
    config = SpeechT5Config(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        **_preset(SPEECHT5_PRESETS, preset, overrides),
    )
    apply_settings(config, settings or {}, set(), "speecht5")  # before the model: its loss reads them at init
    return SpeechT5ForTextToSpeech(config), processor


def build_hifigan(preset: str = "tiny", **overrides) -> SpeechT5HifiGan:
    """A randomly initialised HiFi-GAN vocoder: 80-bin log-mel frames (hop 256) -> 16 kHz audio."""
    return SpeechT5HifiGan(SpeechT5HifiGanConfig(**_preset(HIFIGAN_PRESETS, preset, overrides)))


# -------------------------------------------------------------------------------- Audio classifiers
_ENCODERS = {
    "wav2vec2": (Wav2Vec2Config, Wav2Vec2ForSequenceClassification),
    "hubert": (HubertConfig, HubertForSequenceClassification),
    "wavlm": (WavLMConfig, WavLMForSequenceClassification),
}


def build_audio_classifier(
    labels: list[str],
    family: str = "wav2vec2",
    preset: str = "tiny",
    sampling_rate: int = 16000,
    settings: dict | None = None,
    **overrides,
) -> tuple[PreTrainedModel, Wav2Vec2FeatureExtractor | WhisperFeatureExtractor]:
    """A randomly initialised utterance classifier and its feature extractor. ``family`` is wav2vec2,
    hubert or wavlm (CTC_PRESETS shapes) or whisper (WHISPER_PRESETS encoder, 16 kHz only)."""
    label_kwargs = dict(
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    if family == "whisper":
        if sampling_rate != 16000:
            raise ValueError("Whisper classifiers take 16 kHz audio")
        config, chunk_length = _whisper_config(preset, overrides, **label_kwargs)
        apply_settings(config, settings or {}, set(), family)
        extractor = WhisperFeatureExtractor(
            feature_size=config.num_mel_bins, sampling_rate=16000, chunk_length=chunk_length
        )
        return WhisperForAudioClassification(config), extractor
    if family not in _ENCODERS:
        raise ValueError(f"unknown family {family!r}; expected one of {[*_ENCODERS, 'whisper']}")
    config_class, model_class = _ENCODERS[family]
    config = config_class(**label_kwargs, **_preset(CTC_PRESETS, preset, overrides))
    apply_settings(config, settings or {}, set(), family)
    extractor = wav2vec2_extractor(sampling_rate)
    return model_class(config), extractor
