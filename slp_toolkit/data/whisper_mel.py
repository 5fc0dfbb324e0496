"""Whisper's log-mel, computed once per clip at preparation and rebuilt into the extractor's features per batch.

Whisper's feature extractor pads every clip to its 30-s window and takes the log-mel of all of it, in every
batch of every epoch. The clip's own frames are cached instead (`log_mel`, at preparation); a batch pads them
with the silence the window would hold and applies the extractor's clamp and scaling (`cached_features`), to
1e-5 of the extractor. A clip changed on the fly (noise, speed, a crop: `audio_key` differs) goes through the
extractor; packed windows place each clip's cached frames at its start (`packed_mel`).
"""

from __future__ import annotations

import numpy as np


def is_whisper(extractor) -> bool:
    """A Whisper feature extractor (a log-mel of a fixed window), whose features this module caches."""
    return all(hasattr(extractor, a) for a in ("n_samples", "mel_filters", "nb_max_frames", "hop_length"))


def packed_mel(group: list[dict], starts: list[int], wave: np.ndarray, ext) -> dict:
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
    stft = torch.stft(
        padded, extractor.n_fft, extractor.hop_length, window=torch.hann_window(extractor.n_fft), return_complex=True
    )
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
