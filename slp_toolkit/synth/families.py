"""Tiny random checkpoints of every speech family transformers maps to CTC and audio classification (and the
seq2seq ASR families the toolkit trains), saved as the Hub bases ship: the family's own feature extractor and
no tokenizer (self-supervised bases such as wav2vec2-base, w2v-bert-2.0, HuBERT have none). Tests train,
evaluate and serve each one; `slp tiny OUT --family all` (or a model type) writes them for a look by hand.

Shapes are the smallest each family builds with (hidden 32, 2 layers, 2 heads); the model types and their
classes come from transformers' own auto mappings, so a family added there shows up in
`unsupported` until it is given a shape here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from slp_toolkit.runtime.presets import CTC_PRESETS, WHISPER_PRESETS
from slp_toolkit.runtime.storage import save_pretrained

_BLOCK = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
# the wav2vec2 family's tiny preset (320x downsampling, like the real bases), minus what only wav2vec2 reads
_W2V = {k: v for k, v in CTC_PRESETS["tiny"].items() if k not in ("do_stable_layer_norm", "layerdrop")}
_MEL = dict(num_mel_bins=80)

# model type -> tiny config kwargs (for the family's config class)
SHAPES: dict[str, dict] = {
    "wav2vec2": _W2V,
    "hubert": _W2V,
    "wavlm": {**_W2V, "num_buckets": 16, "max_bucket_distance": 64},
    "data2vec-audio": {**_W2V, "num_conv_pos_embeddings": 5, "conv_pos_kernel_size": 5},
    "unispeech": _W2V,
    "unispeech-sat": _W2V,
    "sew": {**_W2V, "squeeze_factor": 2},
    "sew-d": {**_W2V, "squeeze_factor": 2, "position_buckets": 16, "max_position_embeddings": 64},
    "wav2vec2-conformer": {**_W2V, "conv_depthwise_kernel_size": 3},
    "wav2vec2-bert": {
        **_BLOCK,
        "output_hidden_size": 32,
        "conv_depthwise_kernel_size": 3,
        "feature_projection_input_dim": 160,
    },  # fmt: skip
    "parakeet_ctc": {"encoder_config": {**_BLOCK, **_MEL, "subsampling_conv_channels": 8, "conv_kernel_size": 3}},
    "lasr_ctc": {
        "encoder_config": {**_BLOCK, "num_mel_bins": 128, "subsampling_conv_channels": 8, "conv_kernel_size": 3}
    },  # fmt: skip
    "omniasr_ctc": {
        "audio_config": {
            **_BLOCK,
            "conv_dim": (16, 16, 16),
            "conv_kernel": (10, 8, 8),
            "conv_stride": (5, 8, 8),
            "num_conv_pos_embeddings": 16,
            "num_conv_pos_embedding_groups": 2,
        }
    },  # fmt: skip
    "granite_speech5_ctc": {
        "encoder_config": {**_BLOCK, **_MEL, "num_key_value_heads": 2, "head_dim": 16, "context_size": 50}
    },  # fmt: skip
    "audio-spectrogram-transformer": {**_BLOCK, "num_mel_bins": 128, "max_length": 200},
    "whisper": WHISPER_PRESETS["tiny"],
    "moonshine": dict(
        hidden_size=32,
        intermediate_size=64,
        encoder_num_hidden_layers=2,
        decoder_num_hidden_layers=2,
        encoder_num_attention_heads=2,
        decoder_num_attention_heads=2,
        max_position_embeddings=256,
    ),  # fmt: skip
}


def _extractors() -> dict[str, Callable]:
    """model type -> the feature extractor its Hub checkpoints ship (built with their settings)."""
    import transformers as t

    wav2vec2 = lambda: t.Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True)  # noqa: E731
    found = {
        name: wav2vec2
        for name in (
            "wav2vec2",
            "hubert",
            "wavlm",
            "data2vec-audio",
            "unispeech",
            "unispeech-sat",
            "sew",
            "sew-d",
            "wav2vec2-conformer",
        )
    }
    found.update({
        "wav2vec2-bert": lambda: t.SeamlessM4TFeatureExtractor(feature_size=80, stride=2),
        "parakeet_ctc": lambda: t.ParakeetFeatureExtractor(feature_size=80),
        "lasr_ctc": lambda: t.LasrFeatureExtractor(feature_size=128),
        "omniasr_ctc": lambda: t.OmniASRFeatureExtractor(),
        "granite_speech5_ctc": lambda: t.GraniteSpeech5FeatureExtractor(),
        "audio-spectrogram-transformer": lambda: t.ASTFeatureExtractor(num_mel_bins=128, max_length=200),
        "whisper": lambda: t.WhisperFeatureExtractor(feature_size=80, chunk_length=8),
        "moonshine": lambda: t.Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=False),
    })  # fmt: skip
    return found


def mapped(head: str) -> dict[str, str]:
    """transformers' model type -> class name for a head: ctc, classification or seq2seq."""
    from transformers.models.auto import modeling_auto as m

    return dict(
        {
            "ctc": m.MODEL_FOR_CTC_MAPPING_NAMES,
            "classification": m.MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES,
            "seq2seq": m.MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES,
        }[head]
    )


SEQ2SEQ = ("whisper", "moonshine")  # the encoder-decoder families task asr_seq2seq trains


def heads_of(model_type: str) -> list[str]:
    """The heads (ctc, classification, seq2seq) transformers has for a model type and the toolkit trains."""
    return [
        h
        for h in ("ctc", "classification", "seq2seq")
        if model_type in mapped(h) and (h != "seq2seq" or model_type in SEQ2SEQ)
    ]


def write_family(model_type: str, head: str, out: str | Path) -> Path:
    """A tiny random `model_type` model with a `head` (ctc: an 8-symbol head a data vocabulary replaces;
    classification: 3 labels a recipe's labels replace) and its feature extractor, saved to OUT/<type>-<head>."""
    import transformers
    from transformers import CONFIG_MAPPING

    if model_type not in SHAPES:
        raise ValueError(f"no tiny shape for {model_type!r} (have: {', '.join(SHAPES)})")
    path = Path(out) / f"{model_type}-{head}"
    if head == "seq2seq" and model_type == "whisper":  # the real multilingual tokenizer comes with the preset
        from slp_toolkit.runtime.scratch import build_whisper

        torch.manual_seed(0)
        return save_pretrained(path, *build_whisper("tiny"))
    config = CONFIG_MAPPING[model_type](**SHAPES[model_type])
    if head == "ctc":
        for part in (config, *(getattr(config, k) for k in ("encoder_config", "audio_config") if hasattr(config, k))):
            if hasattr(part, "vocab_size"):  # granite's encoder carries the vocabulary size too
                part.vocab_size = 8
        config.pad_token_id = 0
    elif head == "classification":
        config.num_labels = 3
    extractor, tokenizer = _extractors()[model_type](), None
    if head == "seq2seq":  # a decoder needs its tokenizer (the Hub checkpoints ship one)
        tokenizer = byte_bpe()
        config.vocab_size = len(tokenizer)
        config.bos_token_id = config.decoder_start_token_id = tokenizer.bos_token_id
        config.eos_token_id = tokenizer.eos_token_id
    cls = getattr(transformers, mapped(head)[model_type])
    torch.manual_seed(0)
    model = cls(config)
    if tokenizer is not None:
        model.generation_config.decoder_start_token_id = tokenizer.bos_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        # the processor Moonshine's Hub checkpoints name (processor_config.json), so AutoProcessor rebuilds it
        return save_pretrained(path, model, transformers.Wav2Vec2Processor(extractor, tokenizer))
    return save_pretrained(path, model, extractor)


def byte_bpe(size: int = 400):
    """A small byte-level BPE tokenizer (<unk> 0, <s> 1, </s> 2, as Moonshine's): any text encodes."""
    from slp_toolkit.synth.twins import _learnt_tokenizer

    return _learnt_tokenizer(size, "byte")
