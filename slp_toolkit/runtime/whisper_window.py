"""Whisper on a shorter window than the 30 s it was trained on (whisper.cpp's `audio_ctx`).

Whisper's encoder always hears one whole window: a 2-s clip is padded to 30 s and costs the encoder as much as
30 s of speech. Cropping the encoder's position table to the first W * 50 rows (50 encoder positions per second)
and padding the features to W seconds makes each clip cost W/30 of that. Zero-shot this hurts (the model never
heard a window end early); a fine-tune on the same window teaches it. The crop lives in the model's own config
(`max_source_positions`) and weights, and the window in its feature extractor (`chunk_length`), so a saved model
loads and decodes in plain `pipeline()` with no extra setting.
"""

from __future__ import annotations

from slp_toolkit.runtime.loading import ModelLoadError

POSITIONS_PER_SECOND = 50  # the encoder's output frames per second of audio (two 10-ms mel frames each)


def encoder_seconds(model) -> float:
    return model.config.max_source_positions / POSITIONS_PER_SECOND


def crop_window(model, processor, seconds: int, name: str) -> None:
    """Crop a Whisper model's encoder and its feature extractor to `seconds`-long windows, in place."""
    import torch

    encoder = model.get_encoder()
    table = encoder.embed_positions
    positions = seconds * POSITIONS_PER_SECOND
    if positions > table.num_embeddings:
        raise ModelLoadError(
            f"model.window_seconds: {name} hears at most {table.num_embeddings // POSITIONS_PER_SECOND} s; "
            f"{seconds} s would need positions it never learnt"
        )
    if positions < table.num_embeddings:
        cropped = torch.nn.Embedding(
            positions, table.embedding_dim, device=table.weight.device, dtype=table.weight.dtype
        )
        cropped.weight.data.copy_(table.weight.data[:positions])
        cropped.requires_grad_(table.weight.requires_grad)
        encoder.embed_positions = cropped
        encoder.max_source_positions = positions
        model.config.max_source_positions = positions  # what the encoder checks the input length against
    fit_extractor(processor.feature_extractor, seconds)


def fit_extractor(extractor, seconds: int) -> None:
    """A Whisper feature extractor that pads and cuts to `seconds` (what its constructor derives from
    chunk_length, set after the fact)."""
    extractor.chunk_length = seconds
    extractor.n_samples = seconds * extractor.sampling_rate
    extractor.nb_max_frames = extractor.n_samples // extractor.hop_length


def match_window(model, processor, name: str) -> None:
    """A LoRA adapter trained on a cropped window is saved with its feature extractor's window but refers to the
    full-window base: crop the loaded base to the processor's window."""
    seconds = getattr(processor.feature_extractor, "chunk_length", None)
    if seconds and getattr(model.config, "max_source_positions", None) and seconds < encoder_seconds(model):
        crop_window(model, processor, int(seconds), name)
