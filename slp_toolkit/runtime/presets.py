"""The sizes of the scratch models (`model.init: scratch`, `slp tiny`): plain data, no imports, so a
recipe's `model.preset` (and what it implies, e.g. Whisper's window) is checked when the recipe loads."""

from __future__ import annotations

# Shapes only; token ids, vocab sizes and loss settings come from the processor in each builder.
# Both wav2vec2 presets downsample 320x (20 ms frames at 16 kHz) like the pretrained models.
CTC_PRESETS: dict[str, dict] = {
    "tiny": dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16, 16, 16),
        conv_kernel=(10, 8, 8),
        conv_stride=(5, 8, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
        layerdrop=0.0,
    ),
    # ~2.1 M params. On CPU the raw-waveform conv stack, not the transformer, dominates step time
    # (PLATFORM_NOTES); five wider-stride layers instead of seven reach the same 320x (20 ms frames)
    # with less work at high time resolution: 0.47 s vs 0.64 s per 40 s batch (fwd+bwd, 2 threads).
    "small": dict(
        hidden_size=192,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=768,
        conv_dim=(32, 64, 128, 128, 128),
        conv_kernel=(10, 8, 4, 4, 4),
        conv_stride=(5, 4, 4, 2, 2),
        num_conv_pos_embeddings=64,
        num_conv_pos_embedding_groups=16,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
        layerdrop=0.0,
    ),
}

# The encoder takes exactly 2 * max_source_positions mel frames (100 per second), so the feature
# extractor's window is max_source_positions / 50 seconds: 8 s for tiny, 15 s for small.
WHISPER_PRESETS: dict[str, dict] = {
    "tiny": dict(
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=80,
        max_source_positions=400,
        max_target_positions=64,
    ),
    "small": dict(
        d_model=192,
        encoder_layers=4,
        decoder_layers=4,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=768,
        decoder_ffn_dim=768,
        num_mel_bins=80,
        max_source_positions=750,
        max_target_positions=128,
    ),
}

# speaker_embedding_dim stays 512 in both presets so 512-d x-vectors plug into any of them.
SPEECHT5_PRESETS: dict[str, dict] = {
    "tiny": dict(
        hidden_size=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        speech_decoder_prenet_units=32,
        speech_decoder_postnet_units=32,
        speech_decoder_postnet_layers=2,
        speaker_embedding_dim=512,
        reduction_factor=2,
        num_mel_bins=80,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
    ),
    # ~4.5 M params, the shape measured in PLATFORM_NOTES (hidden 192, 3+3 layers).
    "small": dict(
        hidden_size=192,
        encoder_layers=3,
        decoder_layers=3,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=768,
        decoder_ffn_dim=768,
        speaker_embedding_dim=512,
        reduction_factor=2,
        num_mel_bins=80,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
    ),
}

# upsample_rates multiply to 256 = SpeechT5FeatureExtractor's hop (16 ms at 16 kHz).
HIFIGAN_PRESETS: dict[str, dict] = {
    "tiny": dict(upsample_initial_channel=32, resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 3, 5),)),
    "small": dict(upsample_initial_channel=128),
}


def whisper_window(preset: str) -> int:
    """Seconds of audio a scratch Whisper hears (its feature extractor pads or cuts to this)."""
    return WHISPER_PRESETS[preset]["max_source_positions"] // 50


def check_preset(model, presets: dict[str, dict], what: str, fail) -> None:
    """A recipe check: a scratch model's `model.preset` must name one of `presets` (fail(key, message))."""
    if model.init == "scratch" and model.preset not in presets:
        names = ", ".join(presets)
        fail(
            "model.preset",
            f"'model.preset' is {model.preset!r}: no scratch {what} preset of that name (one of {names})",
        )
