"""Speech-side helpers for text-to-speech: vocoders (Griffin-Lim, HiFi-GAN), speaker embeddings and
the text check that stands between a user's sentence and the tokenizer.

Kept apart from `tasks/tts.py` so the task file reads as the Task shape only.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slp_toolkit.errors import UserError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("slp")

GRIFFIN_LIM = "griffin-lim"
SPEAKER_DIR = "speaker_embeddings"


class TextError(UserError):
    """Text a TTS model cannot speak (empty, only symbols, too long)."""


class SpeakerError(UserError):
    """A speaker the model has no embedding for, or embeddings that cannot be made."""


# ---------------------------------------------------------------- text
def speakable(text: str, vocab: set[str], max_chars: int) -> tuple[str, list[str]]:
    """The text as the tokenizer should see it, and the characters dropped on the way.

    Accents are folded (café -> cafe), the case follows the vocabulary, whitespace is collapsed;
    characters still outside the vocabulary are dropped (and returned, so callers can say so). Empty
    text, text with no letter or digit left, or text longer than the model's positions is an error."""
    text = re.sub(r"\s+", " ", (text or "").strip())
    if not text:
        raise TextError("the text is empty: give a sentence to speak")
    folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    letters = {c for c in vocab if len(c) == 1 and c.isalpha()}
    if letters and not any(c.isupper() for c in letters):
        folded = folded.lower()
    elif letters and not any(c.islower() for c in letters):
        folded = folded.upper()
    kept, dropped = [], []
    for c in folded:
        (kept if c == " " or c in vocab else dropped).append(c)
    clean = re.sub(r"\s+", " ", "".join(kept)).strip()
    if not any(c.isalnum() for c in clean):
        raise TextError(f"the text {text[:60]!r} has no letters or digits this model can speak")
    if len(clean) > max_chars:
        raise TextError(f"the text has {len(clean)} characters; this model reads at most {max_chars} at once")
    return clean, dropped


# ---------------------------------------------------------------- vocoders
def griffin_lim(log_mel: torch.Tensor, extractor, n_iter: int = 60) -> np.ndarray:
    """Invert SpeechT5 log10-mel frames (T, mels) to audio: least-squares mel -> linear magnitude,
    then Griffin-Lim phase recovery (torchaudio) with the extractor's own window and hop."""
    import torch
    import torchaudio

    device = log_mel.device  # the TTS model's: on a GPU the inversion runs there too
    filters = torch.as_tensor(np.asarray(extractor.mel_filters), dtype=torch.float32, device=device)  # (freqs, mels)
    mel = torch.pow(10.0, log_mel.detach().float()).T  # (mels, T)
    magnitude = torch.linalg.pinv(filters.T) @ mel
    magnitude = magnitude.clamp(min=0.0)
    # the inverse STFT pads by half a window on each side: fewer frames than a window (a model that stops at
    # once) would fail inside torch, so such output is padded with silent frames
    short = int(extractor.n_fft) // int(extractor.sample_stride) + 1 - magnitude.shape[1]
    if short > 0:
        magnitude = torch.nn.functional.pad(magnitude, (0, short))
    transform = torchaudio.transforms.GriffinLim(
        n_fft=int(extractor.n_fft),
        win_length=int(extractor.sample_size),
        hop_length=int(extractor.sample_stride),
        power=1.0,
        n_iter=n_iter,
        rand_init=False,  # the same mel gives the same audio
    ).to(device)
    wave = transform(magnitude).cpu().numpy()
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    return (wave / peak * 0.9 if peak > 1.0 else wave).astype(np.float32)


@lru_cache(maxsize=4)
def hifigan(name: str):
    """A SpeechT5HifiGan from a Hub name or local dir, loaded once per process."""
    from transformers import SpeechT5HifiGan

    from slp_toolkit.runtime.loading import load_or_fail

    return load_or_fail(SpeechT5HifiGan.from_pretrained, name, "HiFi-GAN vocoder").eval()


def vocode(log_mel: torch.Tensor, vocoder: str, extractor) -> np.ndarray:
    if vocoder == GRIFFIN_LIM:
        return griffin_lim(log_mel, extractor)
    import torch

    model = hifigan(vocoder).to(log_mel.device)  # the TTS model's device
    with torch.no_grad():
        return model(log_mel.detach().float()).cpu().numpy().astype(np.float32)


# ---------------------------------------------------------------- speaker embeddings
def speaker_file(name: str) -> str:
    """A file name for a speaker value (any string, '' included) that is safe on every filesystem."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", name) or "default"
    return f"{safe}.npy"


def save_speakers(speakers: dict[str, np.ndarray], path: Path) -> None:
    """One .npy per speaker plus an index (speaker value -> file), readable without this package."""
    target = path / SPEAKER_DIR
    target.mkdir(parents=True, exist_ok=True)
    index = {}
    for name, vector in speakers.items():
        index[name] = speaker_file(name)
        np.save(target / index[name], np.asarray(vector, dtype=np.float32))
    (target / "index.json").write_text(json.dumps(index, indent=1))


def load_speakers(path: Path) -> dict[str, np.ndarray]:
    index_file = Path(path) / SPEAKER_DIR / "index.json"
    if not index_file.is_file():
        return {}
    index = json.loads(index_file.read_text())
    return {name: np.load(index_file.parent / file) for name, file in index.items()}


def keep_speakers(speakers: list[str], min_clips: int) -> list[str]:
    """Speakers with at least `min_clips` clips, in first-seen order; the rest counted in the log."""
    counts = Counter(speakers)
    kept = [s for s in dict.fromkeys(speakers) if counts[s] >= min_clips]
    dropped = [s for s in counts if counts[s] < min_clips]
    if dropped:
        log.info(
            "dropped %d speakers with fewer than %d clips (%d clips in all)",
            len(dropped),
            min_clips,
            sum(counts[s] for s in dropped),
        )
    if not kept:
        raise SpeakerError(f"no speaker has {min_clips} clips or more: lower model.min_clips_per_speaker")
    return kept


def table_vectors(speakers: list[str], dim: int) -> dict[str, np.ndarray]:
    """A learned table without new modules: speaker i gets the one-hot vector e_i, so the decoder's
    speaker projection (a Linear over [prenet; embedding]) learns one column per speaker. It needs at
    most `dim` speakers."""
    if len(speakers) > dim:
        raise SpeakerError(
            f"model.speaker_embedding: table holds at most {dim} speakers (speaker_embedding_dim), "
            f"the data has {len(speakers)}: use xvector or file"
        )
    return {s: np.eye(dim, dtype=np.float32)[i] for i, s in enumerate(speakers)}


def file_vectors(speakers: list[str], folder: str | None, dim: int) -> dict[str, np.ndarray]:
    """Precomputed `<folder>/<speaker>.npy` vectors; speakers without one are dropped and counted."""
    if not folder or not Path(folder).is_dir():
        raise SpeakerError(f"model.speaker_embedding_dir: not a directory: {folder!r} (needed by 'file')")
    found, missing = {}, []
    for s in speakers:
        path = Path(folder) / speaker_file(s)
        if not path.is_file():
            missing.append(s)
            continue
        vector = np.load(path).astype(np.float32).reshape(-1)
        if vector.shape[0] != dim:
            raise SpeakerError(f"{path}: a {vector.shape[0]}-d embedding; the model expects {dim}-d")
        found[s] = vector
    if missing:
        log.warning("%d speakers have no embedding in %s and are dropped (e.g. %s)", len(missing), folder, missing[:3])
    if not found:
        raise SpeakerError(f"model.speaker_embedding_dir: no <speaker>.npy in {folder} matches the data's speakers")
    return found


def xvector_vectors(ds, speakers: list[str], cache: Path) -> dict[str, np.ndarray]:
    """Mean SpeechBrain x-vector (512-d, speechbrain/spkrec-xvect-voxceleb) per speaker over its clips;
    each clip's vector is computed once and cached by path, size and mtime."""
    try:
        from speechbrain.inference.speaker import EncoderClassifier
    except ImportError:
        raise SpeakerError(
            "model.speaker_embedding: xvector needs SpeechBrain (pip install speechbrain); or use table/file"
        ) from None
    import hashlib

    import torch

    encoder = EncoderClassifier.from_hparams(
        source="speechbrain/spkrec-xvect-voxceleb", savedir=str(cache / "spkrec-xvect-voxceleb")
    )
    sums: dict[str, list[np.ndarray]] = {s: [] for s in speakers}
    (cache / "xvectors").mkdir(parents=True, exist_ok=True)
    for row in ds.select_columns(["audio", "path", "speaker"]):
        if row["speaker"] not in sums:
            continue
        p = Path(row["path"])
        stamp = f"{p}|{p.stat().st_size}|{p.stat().st_mtime_ns}" if p.exists() else str(p)
        file = cache / "xvectors" / f"{hashlib.sha256(stamp.encode()).hexdigest()[:20]}.npy"
        if not file.exists():
            with torch.no_grad():
                emb = encoder.encode_batch(torch.as_tensor(np.asarray(row["audio"]), dtype=torch.float32)[None])
            np.save(file, torch.nn.functional.normalize(emb.reshape(1, -1), dim=-1)[0].numpy())
        sums[row["speaker"]].append(np.load(file))
    return {s: np.mean(v, axis=0).astype(np.float32) for s, v in sums.items() if v}
