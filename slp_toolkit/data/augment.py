"""Waveform augmentation of training batches (the recipe's `augment:` section).

Multi-condition training as SpeechBrain, NeMo and lhotse do it, on the fly and per clip: speed
perturbation (ASR keeps the transcript), reverberation (a folder of impulse responses, or generated
rooms: exponentially decaying noise with RT60 0.2-0.9 s after a direct path, -3..+12 dB DRR), additive noise at an SNR
drawn from a range (white/pink/brown noise, babble from the batch's other clips, or recordings from a
folder), a telephone channel (300-3,400 Hz band, as through an 8 kHz codec), gain and hard clipping.
Every draw comes from the `rng` the loop derives from (seed, rank, batch position): the same position
gives the same batch after a resume. numpy only, so it runs wherever the batch is collated.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from slp_toolkit.config import AugmentConfig, UserError
from slp_toolkit.data.manifest import AUDIO_EXTENSIONS

log = logging.getLogger("slp")
_EPS = 1e-10


class AugmentError(UserError):
    """A noise or RIR folder that cannot be used."""


def _audio_files(folder: str, key: str) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise AugmentError(f"augment.{key}: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) under {folder}")
    return files


def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def colored_noise(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f^2) noise of n samples, shaped in the frequency domain."""
    if kind == "white":
        return rng.standard_normal(n).astype(np.float32)
    size = _fast_size(n)  # shaped at a power of two and cut: 20x faster than an FFT of an awkward length
    exponent = {"pink": 0.5, "brown": 1.0}[kind]
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0
    return np.fft.irfft(spectrum / freqs**exponent, size)[:n].astype(np.float32)


def _fast_size(n: int) -> int:
    return 1 << max(n - 1, 1).bit_length()


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """clean + noise scaled so that 10 log10(P_clean / P_noise) = snr_db (noise tiled or cut to length)."""
    if len(noise) < len(clean):
        noise = np.tile(noise, int(np.ceil(len(clean) / max(len(noise), 1))))
    noise = noise[: len(clean)]
    scale = np.sqrt(power(clean) / (max(power(noise), _EPS) * 10 ** (snr_db / 10)))
    return (clean + scale * noise).astype(np.float32)


def generated_rir(rate: int, rng: np.random.Generator) -> np.ndarray:
    """A room impulse response: direct path, then exponentially decaying noise reaching -60 dB at RT60,
    scaled to a direct-to-reverberant ratio of -3..+12 dB (a talker 0.5-3 m from the microphone; an
    unscaled tail would be ~20 dB louder than the direct sound, a far wetter room than any recording)."""
    rt60 = rng.uniform(0.2, 0.9)
    drr_db = rng.uniform(-3.0, 12.0)
    t = np.arange(int(rt60 * rate)) / rate
    tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
    tail *= np.sqrt(10 ** (-drr_db / 10) / max(power(tail) * len(tail), _EPS))
    gap = int(rng.uniform(0.002, 0.02) * rate)  # first reflections after the direct sound
    return np.concatenate([[1.0], np.zeros(gap), tail]).astype(np.float32)


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve and keep the clip's length and level (the tail past the end is cut, as the anchors do)."""
    size = _fast_size(len(audio) + len(rir) - 1)
    wet = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(rir, size), size)[: len(audio)]
    return (wet * np.sqrt(power(audio) / max(power(wet), _EPS))).astype(np.float32)


def telephone(audio: np.ndarray, rate: int) -> np.ndarray:
    """Only 300-3,400 Hz survive, as through a narrow-band (8 kHz) telephone channel."""
    size = _fast_size(len(audio))
    spectrum = np.fft.rfft(audio, size)
    freqs = np.fft.rfftfreq(size, 1 / rate)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    return np.fft.irfft(spectrum, size)[: len(audio)].astype(np.float32)


class Augmenter:
    """Applies an `augment:` section to a batch of examples (dicts with an "audio" array)."""

    def __init__(self, cfg: AugmentConfig, sampling_rate: int) -> None:
        from slp_toolkit.data.splits import change_speed, read_audio

        self.cfg, self.rate = cfg, sampling_rate
        self._speed, self._read = change_speed, read_audio
        self.noise_files = _audio_files(cfg.noise_dir, "noise_dir") if "dir" in cfg.noise_types else []
        self.rir_files = _audio_files(cfg.rir_dir, "rir_dir") if cfg.rir_dir else []

    def __call__(self, examples: list[dict], rng: np.random.Generator) -> list[dict]:
        clean = [np.asarray(e["audio"], dtype=np.float32) for e in examples]
        return [{**e, "audio": self.one(audio, clean, i, rng)} for i, (e, audio) in enumerate(zip(examples, clean))]

    def one(self, audio: np.ndarray, batch: list[np.ndarray], index: int, rng: np.random.Generator) -> np.ndarray:
        c = self.cfg
        if rng.random() < c.speed_prob:
            audio = self._speed(audio, float(rng.choice(c.speeds)))
        if rng.random() < c.reverb_prob:
            audio = reverberate(audio, self._rir(rng))
        if rng.random() < c.noise_prob:
            audio = mix_at_snr(audio, self._noise(len(audio), batch, index, rng), float(rng.uniform(*c.snr_db)))
        if rng.random() < c.telephone_prob:
            audio = telephone(audio, self.rate)
        if rng.random() < c.gain_prob:
            audio = audio * np.float32(10 ** (rng.uniform(*c.gain_db) / 20))
        if rng.random() < c.clip_prob:
            peak = float(np.max(np.abs(audio))) * rng.uniform(0.3, 0.8)
            audio = np.clip(audio, -peak, peak)
        return audio.astype(np.float32, copy=False)

    def _rir(self, rng: np.random.Generator) -> np.ndarray:
        if not self.rir_files:
            return generated_rir(self.rate, rng)
        rir = self._read(self.rir_files[rng.integers(len(self.rir_files))], self.rate)
        return rir[int(np.argmax(np.abs(rir))) :]  # from the direct path on: no pre-delay shift

    def _noise(self, n: int, batch: list[np.ndarray], index: int, rng: np.random.Generator) -> np.ndarray:
        kind = str(rng.choice(self.cfg.noise_types))
        others = [a for j, a in enumerate(batch) if j != index]
        if kind == "babble" and not others:
            kind = "white"  # a batch of one clip has no other talkers
        if kind == "babble":
            picks = rng.choice(len(others), size=min(3, len(others)), replace=False)
            noise = np.zeros(n, dtype=np.float32)
            for p in picks:
                talker = np.tile(others[p], int(np.ceil(n / max(len(others[p]), 1))))
                start = int(rng.integers(len(others[p])))
                noise += np.roll(talker, -start)[:n] / np.sqrt(max(power(talker), _EPS))
            return noise
        if kind == "dir":
            noise = self._read(self.noise_files[rng.integers(len(self.noise_files))], self.rate)
            start = int(rng.integers(max(len(noise) - n, 0) + 1))
            return noise[start : start + n] if len(noise) > n else noise
        return colored_noise(n, kind, rng)


def augmenter_for(cfg: AugmentConfig | None, sampling_rate: int, takes_audio: bool, changes_label=()):
    """The batch transform of a recipe; None when there is nothing to do (no section, or a TTS task).
    `changes_label` names the kinds that can change this task's labels: using one is warned about."""
    if cfg is None:
        return None
    if not takes_audio:
        log.warning("augment: ignored for this task (its audio is the target, not the input)")
        return None
    for kind in changes_label:
        if getattr(cfg, f"{kind}_prob") > 0:
            log.warning(
                f"augment.{kind}_prob={getattr(cfg, f'{kind}_prob')}: {kind} changes cues this task's labels"
                f" rest on (emotion: pitch and speaking rate); set augment.{kind}_prob=0 unless you mean it"
            )
    return Augmenter(cfg, sampling_rate)
