"""Offline synthetic speech corpus: espeak-ng reads generated sentences in many voices.

    from slp_toolkit.corpus import make_corpus
    make_corpus("data/synth_asr", n=3000)                   # ASR audiofolder, about 2 h of audio
    make_corpus("data/synth_emotion", n=2000, task="emotion")

Synthesis calls the libespeak-ng that the `espeakng-loader` wheel ships, through ctypes, so nothing but
pip is needed. The library keeps synthesis state in C statics (pitch flutter phase, filter memories)
that espeak_Terminate does not reset, so the same call gives slightly different samples depending on
what the process said before. To make every file a pure function of its parameters we load a private
copy of the library for each utterance and unload it afterwards (about 3 ms).

Licence: sentences and code are Apache-2.0 (slp_toolkit). eSpeak NG is GPL-3.0-or-later; the corpus
holds only audio it produced.
"""

from __future__ import annotations

import _ctypes
import csv
import ctypes
import math
import multiprocessing
import os
import random
import shutil
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from slp_toolkit.sentences import generate_sentences

__all__ = ["EMOTIONS", "SPLITS", "TRAIN_VOICES", "UNSEEN_VOICES", "available_voices", "check_voice", "make_corpus"]
__all__ += ["synthesize"]

# Accent (espeak language) + "+" + variant. Variants m*/f*/klatt*/croak differ in formants, pitch and
# glottal source; accents differ in phonemes and intonation, so each string is a distinct "speaker".
TRAIN_VOICES = (
    "en-us+m1", "en-us+f1", "en-us+m3", "en-us+f2", "en-us+klatt2", "en+m2", "en+f3", "en+m4",
    "en+croak", "en-gb-x-rp+m5", "en-gb-x-rp+f4", "en-gb-scotland+m6", "en-gb-scotland+f2",
    "en-gb-x-gbclan+m8", "en-029+m3", "en-us-nyc+klatt4",
)  # fmt: skip
# Variants that no train voice uses, over accents the train voices do use.
UNSEEN_VOICES = ("en-us+m7", "en-gb-x-rp+f5", "en+klatt3")
ENGLISH_ACCENTS = ("en", "en-us", "en-us-nyc", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
ENGLISH_ACCENTS += ("en-029",)  # Caribbean
SPLITS = ("train", "validation", "test", "test_unseen")
# Emotion -> (mean, sd) of rate (wpm), pitch (0-100), pitch range (0-100), volume (0-200), word gap (10 ms).
EMOTIONS = {
    "neutral": ((165, 10), (50, 5), (50, 7), (100, 8), (0, 0)),
    "happy": ((192, 10), (70, 5), (85, 7), (115, 8), (0, 0)),
    "sad": ((135, 10), (32, 5), (18, 6), (72, 8), (2, 1)),
    "angry": ((205, 10), (42, 5), (75, 7), (140, 8), (0, 0)),
}
_LIMITS = {"rate": (80, 450), "pitch": (0, 100), "pitch_range": (0, 100), "volume": (0, 200)}
_LIMITS["word_gap"] = (0, 100)
_SYNCHRONOUS, _DONT_EXIT, _UTF8 = 2, 0x8000, 1  # speak_lib.h: AUDIO_OUTPUT_SYNCHRONOUS, ...
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7  # espeak_PARAMETER
_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_lock = threading.Lock()  # one synthesis at a time per process: the library is all global state
_chunks: list[np.ndarray] = []


def _collect(wav, n: int, _events) -> int:
    if wav and n > 0:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
    return 0  # 0 = keep going


_callback = _CALLBACK_TYPE(_collect)


def _private_library() -> Path:
    """Our own copy of libespeak-ng: dlopen of it gives an instance nobody else in the process shares (a
    phonemizer may hold the original), so dlclose really unloads it and resets its state. It goes in the
    user's cache rather than /tmp, which is often mounted noexec."""
    import espeakng_loader

    source = Path(espeakng_loader.get_library_path())
    stat = source.stat()
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "slp_toolkit"
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / f"espeak-{stat.st_size}-{stat.st_mtime_ns}{source.suffix}"
    if not copy.exists():
        partial = folder / f"{copy.name}.{os.getpid()}.part"
        shutil.copyfile(source, partial)
        os.replace(partial, copy)  # atomic, so parallel workers never load a half-written file
    return copy


def available_voices() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(English accents, voice variants) that make a voice name "accent+variant" (or just "accent")."""
    import espeakng_loader

    variants = sorted(os.listdir(Path(espeakng_loader.get_data_path()) / "voices" / "!v"), key=str.lower)
    return ENGLISH_ACCENTS, tuple(variants)


def check_voice(voice: str) -> None:
    """Raise ValueError naming `voice` and what exists, unless espeak-ng has it (espeak itself silently
    falls back to its default voice for an unknown variant)."""
    accents, variants = available_voices()
    accent, _, variant = voice.partition("+")
    if accent not in accents:
        raise ValueError(f"unknown voice {voice!r}: accent {accent!r} is not one of {', '.join(accents)}")
    if variant and variant not in variants:
        raise ValueError(f"unknown voice {voice!r}: variant {variant!r} is not one of {', '.join(variants)}")


def synthesize(
    text: str,
    voice: str,
    rate: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
    volume: int = 100,
    word_gap: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Speak `text` with espeak-ng; return float32 mono samples in [-1, 1] and the library's rate (22050).

    rate is in words per minute (80-450); pitch and pitch_range 0-100 (50 = voice default); volume 0-200;
    word_gap adds pauses between words in 10 ms units; seed drives the breath noise of some variants.
    The same arguments always give the same samples."""
    check_voice(voice)
    values = {"rate": rate, "pitch": pitch, "pitch_range": pitch_range, "volume": volume, "word_gap": word_gap}
    for key, value in values.items():
        if not _LIMITS[key][0] <= value <= _LIMITS[key][1]:
            raise ValueError(f"synthesize: {key} must be in {_LIMITS[key][0]}..{_LIMITS[key][1]}, got {value}")
    params = [(_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range), (_VOLUME, volume), (_WORDGAP, word_gap)]
    with _lock:
        lib = ctypes.CDLL(str(_private_library()))
        try:
            samples, sample_rate = _speak(lib, text, voice, params, seed)
        finally:
            lib.espeak_Terminate()
            _ctypes.dlclose(lib._handle)
    return samples.astype(np.float32) / 32768.0, sample_rate


def _speak(lib: ctypes.CDLL, text: str, voice: str, params: list, seed: int) -> tuple[np.ndarray, int]:
    """One utterance through a freshly loaded library: int16 samples and the sample rate."""
    import espeakng_loader

    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    sample_rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), _DONT_EXIT)
    if sample_rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed ({sample_rate}); is espeakng-loader's data intact?")
    lib.espeak_SetSynthCallback(_callback)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise ValueError(f"espeak-ng could not load voice {voice!r}")
    for param, value in params:
        lib.espeak_SetParameter(param, int(value), 0)
    lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
    encoded = text.encode("utf-8")
    _chunks.clear()
    status = lib.espeak_Synth(encoded, ctypes.c_size_t(len(encoded) + 1), 0, 1, 0, _UTF8, None, None)
    lib.espeak_Synchronize()
    if status != 0:
        raise RuntimeError(f"espeak_Synth returned {status} for {text!r}")
    samples = np.concatenate(_chunks) if _chunks else np.zeros(0, np.int16)
    _chunks.clear()
    return samples, sample_rate


@dataclass(frozen=True)
class _Utterance:
    split: str
    file_name: str
    text: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int
    volume: int
    word_gap: int
    seed: int
    label: str | None = None
    noise: str | None = None
    snr_db: float | None = None


def _trim(audio: np.ndarray, sample_rate: int, keep_s: float = 0.1, floor_db: float = -40.0) -> np.ndarray:
    """Cut leading/trailing silence (10 ms frames below floor_db of the loudest), keeping keep_s of it."""
    hop = sample_rate // 100
    frames = len(audio) // hop
    if frames == 0 or not audio.any():
        return audio
    rms = np.sqrt(np.mean(audio[: frames * hop].reshape(frames, hop) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (floor_db / 20))
    keep = int(keep_s * sample_rate)
    start = max(0, loud[0] * hop - keep)
    end = min(len(audio), (loud[-1] + 1) * hop + keep)
    return audio[start:end]


def _noise(kind: str, length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f) or babble-like noise: speech-shaped noise from a few "talkers", each switched
    on and off at a syllable-like 3-6 Hz."""
    if kind == "white":
        return rng.standard_normal(length)
    size = 1 << max(0, length - 1).bit_length()  # FFTs of awkward lengths are many times slower
    freqs = np.fft.rfftfreq(size, 1 / sample_rate)
    if kind == "pink":
        shape = 1 / np.sqrt(np.maximum(freqs, 20.0))
        return np.fft.irfft(np.fft.rfft(rng.standard_normal(size)) * shape, size)[:length]
    # Long-term speech spectrum: flat to ~500 Hz, then about -6 dB/octave, little below 100 Hz.
    shape = (freqs > 100) / (1 + freqs / 500)
    t = np.arange(length) / sample_rate
    babble = np.zeros(length)
    for _ in range(5):
        talker = np.fft.irfft(np.fft.rfft(rng.standard_normal(size)) * shape, size)[:length]
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 2 * np.pi))
        babble += talker * envelope
    return babble


def _render(job: tuple[_Utterance, str, int]) -> float:
    """Synthesise, trim, resample, add noise and write one FLAC; return its duration in seconds."""
    import torch
    import torchaudio

    utt, out_dir, sampling_rate = job
    audio, native_rate = synthesize(
        utt.text, utt.voice, utt.rate, utt.pitch, utt.pitch_range, utt.volume, utt.word_gap, utt.seed
    )
    audio = _trim(audio, native_rate)
    if native_rate != sampling_rate:
        audio = torchaudio.functional.resample(torch.from_numpy(audio), native_rate, sampling_rate).numpy()
    if utt.noise is not None and utt.snr_db is not None:
        noise = _noise(utt.noise, len(audio), sampling_rate, np.random.default_rng(utt.seed))
        gain = np.sqrt(np.mean(audio.astype(np.float64) ** 2) / np.mean(noise**2) / 10 ** (utt.snr_db / 10))
        audio = (audio + gain * noise).astype(np.float32)
    peak = float(np.abs(audio).max(initial=0.0))
    if peak > 0.99:  # loud voices (angry: volume ~140) can reach full scale; int16 would clip
        audio = audio * (0.99 / peak)
    soundfile.write(Path(out_dir) / utt.split / utt.file_name, audio, sampling_rate, "PCM_16", format="FLAC")
    return len(audio) / sampling_rate


def _split_sizes(n: int) -> dict[str, int]:
    unseen = round(n * 0.1)
    held_out = round((n - unseen) * 0.1)
    return {"train": n - unseen - 2 * held_out, "validation": held_out, "test": held_out, "test_unseen": unseen}


def _balanced(items: list[str], count: int, rng: random.Random) -> list[str]:
    """`count` items, each used equally often (+-1), in random order."""
    items = list(items)
    rng.shuffle(items)
    out = (items * (count // len(items) + 1))[:count]
    rng.shuffle(out)
    return out


def _prosody(task: str, label: str | None, rng: random.Random) -> dict[str, int]:
    if task == "asr":
        rate, pitch, pitch_range, volume = [rng.randint(*r) for r in ((140, 210), (35, 65), (30, 80), (75, 125))]
        return {"rate": rate, "pitch": pitch, "pitch_range": pitch_range, "volume": volume, "word_gap": 0}
    keys = ("rate", "pitch", "pitch_range", "volume", "word_gap")
    values = {}
    for key, (mean, sd) in zip(keys, EMOTIONS[label]):
        low, high = _LIMITS[key]
        values[key] = int(min(high, max(low, round(rng.gauss(mean, sd)))))
    return values


def _plan(n, voices, unseen_voices, seed, noise_snr_db, task) -> list[_Utterance]:
    """Every utterance's text, voice and prosody; each sentence is used once, so no split shares one."""
    rng = random.Random(seed)
    sentences = iter(generate_sentences(n, seed))
    plan = []
    for split, size in _split_sizes(n).items():
        split_voices = _balanced(unseen_voices if split == "test_unseen" else voices, size, rng)
        labels = _balanced(list(EMOTIONS), size, rng) if task == "emotion" else [None] * size
        for i, (voice, label) in enumerate(zip(split_voices, labels)):
            noise = rng.choice(["white", "pink", "babble"])  # drawn either way: noise leaves the speech as is
            plan.append(
                _Utterance(
                    split, f"{i:05d}.flac", next(sentences), voice, **_prosody(task, label, rng),
                    seed=rng.randrange(2**31), label=label, noise=noise if noise_snr_db is not None else None,
                    snr_db=noise_snr_db,
                )
            )  # fmt: skip
    return plan


def _check_args(n, voices, unseen_voices, noise_snr_db, sampling_rate, task, workers) -> None:
    if task not in ("asr", "emotion"):
        raise ValueError(f"task must be 'asr' or 'emotion', got {task!r}")
    per_split = len(EMOTIONS) if task == "emotion" else 1
    smallest = next(k for k in range(1, 10_000) if min(_split_sizes(k).values()) >= per_split)
    if not isinstance(n, int) or n < smallest:
        why = "one utterance per class" if task == "emotion" else "one utterance"
        raise ValueError(f"n={n!r} is too small for task {task!r}: every split needs {why}; use n >= {smallest}")
    if not voices or not unseen_voices:
        raise ValueError("voices and unseen_voices must each name at least one voice")
    for voice in [*voices, *unseen_voices]:
        check_voice(voice)
    shared = sorted(set(voices) & set(unseen_voices))
    if shared:
        raise ValueError(f"unseen_voices must not appear in voices; both have {', '.join(shared)}")
    if not 8000 <= sampling_rate <= 48000:
        raise ValueError(f"sampling_rate must be in 8000..48000 Hz, got {sampling_rate}")
    if noise_snr_db is not None and not math.isfinite(noise_snr_db):
        raise ValueError(f"noise_snr_db must be a finite number of dB or None, got {noise_snr_db}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")


def _prepare_dir(out_dir: Path, overwrite: bool) -> None:
    existing = [p.name for p in [*(out_dir / s for s in SPLITS), out_dir / "README.md"] if p.exists()]
    if existing and not overwrite:
        raise ValueError(f"{out_dir} already holds a corpus ({', '.join(existing)}); pass overwrite=True")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in existing:
            target = out_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        for split in SPLITS:
            (out_dir / split).mkdir()
        tempfile.TemporaryFile(dir=out_dir).close()
    except OSError as err:
        raise ValueError(f"cannot write the corpus to {out_dir}: {err.strerror or err}") from None


def make_corpus(
    out_dir: str | os.PathLike,
    n: int = 3000,
    voices: list[str] | tuple[str, ...] | None = None,
    unseen_voices: list[str] | tuple[str, ...] | None = None,
    seed: int = 0,
    noise_snr_db: float | None = None,
    sampling_rate: int = 16000,
    task: str = "asr",
    workers: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Write an audiofolder corpus of n utterances: out_dir/{train,validation,test,test_unseen}/ with
    metadata.csv (file_name, transcription, speaker[, label]) and mono FLAC, plus out_dir/README.md.

    test_unseen (~10% of n) is spoken only by `unseen_voices`; the rest is split 80/10/10 over `voices`.
    task="emotion" adds a balanced `label` column (neutral/happy/sad/angry, realised by prosody).
    noise_snr_db mixes white, pink or babble-like noise at that SNR. Same arguments, same bytes.
    Returns a summary: utterances, voices and seconds per split, total seconds."""
    voices = list(TRAIN_VOICES if voices is None else voices)
    unseen_voices = list(UNSEEN_VOICES if unseen_voices is None else unseen_voices)
    _check_args(n, voices, unseen_voices, noise_snr_db, sampling_rate, task, workers)
    out = Path(out_dir)
    _prepare_dir(out, overwrite)
    plan = _plan(n, voices, unseen_voices, seed, noise_snr_db, task)
    jobs = [(utt, str(out), sampling_rate) for utt in plan]
    seconds = _render_all(jobs, min(workers or os.cpu_count() or 1, max(1, n // 20)))
    summary = _summary(plan, seconds, task, seed, sampling_rate, noise_snr_db, out)
    for split in SPLITS:
        _write_metadata(out / split / "metadata.csv", [u for u in plan if u.split == split], task)
    (out / "README.md").write_text(_readme(summary), encoding="utf-8")
    return summary


def _render_all(jobs: list, workers: int) -> list[float]:
    import torch  # before forking, so that workers inherit it instead of each importing it

    _private_library()  # copy the library once, before workers race to do it
    if workers > 1:
        with multiprocessing.get_context().Pool(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            return pool.map(_render, jobs, chunksize=8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # resampling one short clip gains nothing from threads, and they contend
    try:
        return [_render(job) for job in jobs]
    finally:
        torch.set_num_threads(threads)


def _write_metadata(path: Path, utterances: list[_Utterance], task: str) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["file_name", "transcription", "speaker"] + (["label"] if task == "emotion" else []))
        for u in utterances:
            writer.writerow([u.file_name, u.text, u.voice] + ([u.label] if task == "emotion" else []))


def _summary(plan, seconds, task, seed, sampling_rate, noise_snr_db, out) -> dict:
    summary: dict = {"out_dir": str(out), "task": task, "seed": seed, "sampling_rate": sampling_rate}
    summary |= {"noise_snr_db": noise_snr_db, "utterances": {}, "voices": {}, "seconds": {}}
    if task == "emotion":
        summary["labels"] = {}
    for split in SPLITS:
        rows = [(u, s) for u, s in zip(plan, seconds) if u.split == split]
        summary["utterances"][split] = len(rows)
        summary["voices"][split] = sorted({u.voice for u, _ in rows})
        summary["seconds"][split] = round(sum(s for _, s in rows), 2)
        if task == "emotion":
            summary["labels"][split] = dict(sorted(Counter(u.label for u, _ in rows).items()))
    summary["total_seconds"] = round(sum(seconds), 2)
    return summary


def _readme(summary: dict) -> str:
    """The corpus README: resources/corpus_readme.md filled in from the summary."""
    if summary["task"] == "emotion":
        about = _EMOTION_ABOUT + "\n".join(
            f"- **{name}**: rate {r[0]}+-{r[1]} wpm, pitch {p[0]}+-{p[1]}, range {g[0]}+-{g[1]}, "
            f"volume {v[0]}+-{v[1]}" + (f", {w[0] * 10} ms extra pause between words" if w[0] else "")
            for name, (r, p, g, v, w) in EMOTIONS.items()
        )
    else:
        about = _ASR_ABOUT
    rows = [f"| {s} | {summary['utterances'][s]} | {summary['seconds'][s] / 60:.1f} | " for s in SPLITS]
    rows = [row + ", ".join(summary["voices"][s]) + " |" for row, s in zip(rows, SPLITS)]
    noise = summary["noise_snr_db"]
    template = (Path(__file__).parent / "resources" / "corpus_readme.md").read_text(encoding="utf-8")
    return template.format(
        **summary,
        kind="emotion" if summary["task"] == "emotion" else "speech",
        about=about,
        noise="none" if noise is None else f"white, pink or babble-like (one kind per file) at {noise} dB SNR",
        rows="\n".join(rows),
        hours=f"{summary['total_seconds'] / 3600:.2f}",
    )


_ASR_ABOUT = """Synthetic English read speech for trying ASR fine-tuning end to end without downloads. Each
utterance draws a speaking rate (140-210 words per minute), pitch, pitch range and volume at random."""
_EMOTION_ABOUT = """Synthetic speech-emotion corpus: a stand-in for acted emotion corpora such as IEMOCAP,
RAVDESS and CREMA-D. Four balanced classes (column `label`) are realised by prosody alone, with
per-utterance jitter so that they overlap somewhat (mean +- sd; pitch and range 0-100, volume 0-200).
It is learnable, and far easier than real emotional speech: use it to test a pipeline, not a model.

"""


def librispeech_layout(split_dir: str | os.PathLike, out_dir: str | os.PathLike, speakers_per_chapter: int = 1) -> int:
    """Copy an audiofolder split into LibriSpeech's on-disk layout (a fixture for the reader real users
    need): out/SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac + SPEAKER-CHAPTER.trans.txt with upper-case
    transcripts, numeric speaker ids as in LibriSpeech. Returns the number of utterances."""
    src, out = Path(split_dir), Path(out_dir)
    with (src / "metadata.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    speakers = {s: str(100 + i) for i, s in enumerate(sorted({r["speaker"] for r in rows}))}
    lines: dict[Path, list[str]] = {}
    counts: Counter = Counter()
    for r in rows:
        spk = speakers[r["speaker"]]
        chapter = out / spk / f"{spk}0"
        chapter.mkdir(parents=True, exist_ok=True)
        utt = f"{spk}-{spk}0-{counts[spk]:04d}"
        counts[spk] += 1
        shutil.copyfile(src / r["file_name"], chapter / f"{utt}.flac")
        lines.setdefault(chapter / f"{spk}-{spk}0.trans.txt", []).append(f"{utt} {r['transcription'].upper()}")
    for path, text in lines.items():
        path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return len(rows)
