"""Offline synthetic speech corpus: espeak-ng reads generated sentences in many voices.

    from slp_toolkit.synth.corpus import make_corpus
    make_corpus("data/synth_asr", n=3000)                   # ASR audiofolder, about 2 h of audio
    make_corpus("data/synth_emotion", n=2000, task="emotion")

Variety, so that a model trained on it has a chance on speech it never heard: 54 training voices (7
accents x espeak-ng variants), speaking rate 120-250 wpm, pitch, pitch range, volume and pauses between
words drawn per utterance, and ~25,000 words (sentences.py) of which a tenth of the rarer ones are
spoken only in test_unseen. test_unseen has 6 voices no other split has (two in an accent none has);
test_noisy is test_unseen again through a generated room and brown noise at 0-15 dB SNR, a noise type
the default training augmentation does not add. Synthesis itself is in espeak.py.

Licence: sentences and code are Apache-2.0 (slp_toolkit). eSpeak NG is GPL-3.0-or-later; the corpus
holds only audio it produced.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import random
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile

from slp_toolkit.data.augment import colored_noise, generated_rir, mix_at_snr, reverberate
from slp_toolkit.synth.espeak import LIMITS, available_voices, check_voice, private_library, synthesize
from slp_toolkit.synth.sentences import generate_sentences, vocabulary

__all__ = ["EMOTIONS", "SPLITS", "TRAIN_VOICES", "UNSEEN_VOICES", "available_voices", "check_voice", "make_corpus"]
__all__ += ["synthesize"]

# Accent (espeak language) + "+" + variant. Variants differ in formants, pitch and glottal source;
# accents in phonemes and intonation, so each string is a distinct "speaker".
_TRAIN_ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-029", "en-us-nyc")
_TRAIN_VARIANTS = (
    "m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "m6", "m8", "klatt", "klatt2", "klatt4", "klatt5",
    "klatt6", "croak", "adam", "Alex", "Alicia", "Andy", "anika", "aunty", "belinda", "benjamin", "boris",
    "caleb", "Denis", "edward", "Gene", "grandma", "grandpa", "gustave", "Hugo", "ian", "iven", "john",
    "kaukovalta", "Lee", "linda", "max", "Michael", "norbert", "paul", "quincy", "Reed", "rob", "robert",
    "sandro", "shelby", "steph", "travis", "victor", "zac",
)  # fmt: skip
TRAIN_VOICES = tuple(f"{_TRAIN_ACCENTS[i % len(_TRAIN_ACCENTS)]}+{v}" for i, v in enumerate(_TRAIN_VARIANTS))
# Variants that no train voice uses; the West Midlands accent (gbcwmd) is not in train either.
UNSEEN_VOICES = ("en-us+m7", "en-gb-x-rp+f5", "en+klatt3", "en-gb-x-gbcwmd+Annie", "en-gb-x-gbcwmd+david")
UNSEEN_VOICES += ("en-us-nyc+Mike",)
SPLITS = ("train", "validation", "test", "test_unseen", "test_noisy")
NOISY_SNR_DB = (0.0, 15.0)  # test_noisy: brown noise in this range, after a generated room
# Emotion -> (mean, sd) of rate (wpm), pitch (0-100), pitch range (0-100), volume (0-200), word gap (10 ms).
EMOTIONS = {
    "neutral": ((165, 10), (50, 5), (50, 7), (100, 8), (0, 0)),
    "happy": ((192, 10), (70, 5), (85, 7), (115, 8), (0, 0)),
    "sad": ((135, 10), (32, 5), (18, 6), (72, 8), (2, 1)),
    "angry": ((205, 10), (42, 5), (75, 7), (140, 8), (0, 0)),
}


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
    reverb: bool = False


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
    """White, pink, brown, or babble-like noise: speech-shaped noise from a few "talkers", each switched
    on and off at a syllable-like 3-6 Hz."""
    if kind != "babble":
        return colored_noise(length, kind, rng)
    size = 1 << max(0, length - 1).bit_length()  # FFTs of awkward lengths are many times slower
    freqs = np.fft.rfftfreq(size, 1 / sample_rate)
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
    """Synthesise, trim, resample, reverberate, add noise and write one FLAC; return its duration (s)."""
    import torch
    import torchaudio

    utt, out_dir, sampling_rate = job
    audio, native_rate = synthesize(
        utt.text, utt.voice, utt.rate, utt.pitch, utt.pitch_range, utt.volume, utt.word_gap, utt.seed
    )
    audio = _trim(audio, native_rate)
    if native_rate != sampling_rate:
        audio = torchaudio.functional.resample(torch.from_numpy(audio), native_rate, sampling_rate).numpy()
    if utt.reverb:
        audio = reverberate(audio, generated_rir(sampling_rate, np.random.default_rng([utt.seed, 1])))
    if utt.noise is not None and utt.snr_db is not None:
        audio = mix_at_snr(
            audio, _noise(utt.noise, len(audio), sampling_rate, np.random.default_rng(utt.seed)), utt.snr_db
        )
    peak = float(np.abs(audio).max(initial=0.0))
    if peak > 0.99:  # loud voices (angry: volume ~140) can reach full scale; int16 would clip
        audio = audio * (0.99 / peak)
    soundfile.write(Path(out_dir) / utt.split / utt.file_name, audio, sampling_rate, "PCM_16", format="FLAC")
    return len(audio) / sampling_rate


def _split_sizes(n: int) -> dict[str, int]:
    """Utterances per split; test_noisy repeats test_unseen's, so n counts it once."""
    unseen = round(n * 0.1)
    held_out = round((n - unseen) * 0.1)
    sizes = {"train": n - unseen - 2 * held_out, "validation": held_out, "test": held_out}
    return sizes | {"test_unseen": unseen, "test_noisy": unseen}


def _balanced(items: list[str], count: int, rng: random.Random) -> list[str]:
    """`count` items, each used equally often (+-1), in random order."""
    items = list(items)
    rng.shuffle(items)
    out = (items * (count // len(items) + 1))[:count]
    rng.shuffle(out)
    return out


def _prosody(task: str, label: str | None, rng: random.Random) -> dict[str, int]:
    if task == "asr":
        rate, pitch, pitch_range, volume = [rng.randint(*r) for r in ((120, 250), (20, 80), (10, 95), (60, 140))]
        word_gap = rng.choice([0, 0, 0, 1, 2, 4])  # mostly fluent, sometimes deliberate
        return {"rate": rate, "pitch": pitch, "pitch_range": pitch_range, "volume": volume, "word_gap": word_gap}
    keys = ("rate", "pitch", "pitch_range", "volume", "word_gap")
    values = {}
    for key, (mean, sd) in zip(keys, EMOTIONS[label]):
        low, high = LIMITS[key]
        values[key] = int(min(high, max(low, round(rng.gauss(mean, sd)))))
    return values


def _texts(n: int, seed: int) -> dict[str, list[str]]:
    """Sentences per split, each used once; test_unseen's {w} slots take only held-out words."""
    sizes = _split_sizes(n)
    seen = generate_sentences(n - sizes["test_unseen"], seed)
    taken = set(seen)
    fresh = [s for s in generate_sentences(2 * sizes["test_unseen"] + 50, seed + 1, held_out=True) if s not in taken]
    out, start = {}, 0
    for split in ("train", "validation", "test"):
        out[split], start = seen[start : start + sizes[split]], start + sizes[split]
    out["test_unseen"] = fresh[: sizes["test_unseen"]]
    return out


def _plan(n, voices, unseen_voices, seed, noise_snr_db, reverb, task) -> list[_Utterance]:
    """Every utterance's text, voice and prosody; no sentence is in two splits (test_noisy aside)."""
    rng = random.Random(seed)
    plan = []
    for split, texts in _texts(n, seed).items():
        split_voices = _balanced(unseen_voices if split == "test_unseen" else voices, len(texts), rng)
        labels = _balanced(list(EMOTIONS), len(texts), rng) if task == "emotion" else [None] * len(texts)
        for i, (text, voice, label) in enumerate(zip(texts, split_voices, labels)):
            noise = rng.choice(["white", "pink", "babble"])  # drawn either way: noise leaves the speech as is
            plan.append(
                _Utterance(
                    split,
                    f"{i:05d}.flac",
                    text,
                    voice,
                    **_prosody(task, label, rng),
                    seed=rng.randrange(2**31),
                    label=label,
                    noise=noise if noise_snr_db is not None else None,
                    snr_db=noise_snr_db,
                    reverb=rng.random() < reverb,
                )
            )
    noisy = [u for u in plan if u.split == "test_unseen"]
    snrs = [round(rng.uniform(*NOISY_SNR_DB), 1) for _ in noisy]
    return plan + [replace(u, split="test_noisy", noise="brown", snr_db=d, reverb=True) for u, d in zip(noisy, snrs)]


def _check_args(n, voices, unseen_voices, noise_snr_db, reverb, sampling_rate, task, workers) -> None:
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
    if not 0 <= reverb <= 1:
        raise ValueError(f"reverb is the share of clips put through a generated room, in 0..1; got {reverb}")
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
    reverb: float = 0.0,
    sampling_rate: int = 16000,
    task: str = "asr",
    workers: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Write an audiofolder corpus of n utterances: out_dir/{train,validation,test,test_unseen,test_noisy}/
    with metadata.csv (file_name, transcription, speaker[, label]) and mono FLAC, plus README.md and
    summary.json.

    test_unseen (~10% of n) is spoken only by `unseen_voices`; the rest is split 80/10/10 over `voices`.
    test_noisy holds test_unseen's utterances through a generated room and brown noise at 0-15 dB SNR.
    task="emotion" adds a balanced `label` column (neutral/happy/sad/angry, realised by prosody).
    noise_snr_db mixes white, pink or babble-like noise at that SNR into every split, and `reverb` puts
    that share of clips through a generated room. Same arguments, same bytes.
    Returns a summary: utterances, voices, seconds and words per split, total seconds."""
    voices = list(TRAIN_VOICES if voices is None else voices)
    unseen_voices = list(UNSEEN_VOICES if unseen_voices is None else unseen_voices)
    _check_args(n, voices, unseen_voices, noise_snr_db, reverb, sampling_rate, task, workers)
    out = Path(out_dir)
    _prepare_dir(out, overwrite)
    plan = _plan(n, voices, unseen_voices, seed, noise_snr_db, reverb, task)
    jobs = [(utt, str(out), sampling_rate) for utt in plan]
    seconds = _render_all(jobs, min(workers or os.cpu_count() or 1, max(1, n // 20)))
    summary = _summary(plan, seconds, task, seed, sampling_rate, noise_snr_db, reverb, out)
    for split in SPLITS:
        _write_metadata(out / split / "metadata.csv", [u for u in plan if u.split == split], task)
    (out / "README.md").write_text(_readme(summary), encoding="utf-8")
    portable = {k: v for k, v in summary.items() if k != "out_dir"}  # the same bytes wherever it is written
    (out / "summary.json").write_text(json.dumps(portable, indent=2) + "\n", encoding="utf-8")
    return summary


def _render_all(jobs: list, workers: int) -> list[float]:
    import torch  # before forking, so that workers inherit it instead of each importing it

    private_library()  # copy the library once, before workers race to do it
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


def _summary(plan, seconds, task, seed, sampling_rate, noise_snr_db, reverb, out) -> dict:
    summary: dict = {"out_dir": str(out), "task": task, "seed": seed, "sampling_rate": sampling_rate}
    summary |= {"noise_snr_db": noise_snr_db, "reverb": reverb, "utterances": {}, "voices": {}, "seconds": {}}
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
    summary["words"] = _word_counts(plan)
    return summary


def _word_counts(plan: list[_Utterance]) -> dict:
    """Distinct words of train and test_unseen, and the share of test_unseen's words train never says."""
    train = vocabulary(u.text for u in plan if u.split == "train")
    tokens = [w for u in plan if u.split == "test_unseen" for w in vocabulary([u.text])]
    unheard = sum(w not in train for w in tokens) / max(len(tokens), 1)
    unseen = vocabulary(u.text for u in plan if u.split == "test_unseen")
    return {"train": len(train), "test_unseen": len(unseen), "test_unseen_not_in_train": round(unheard, 3)}


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
    template = (Path(__file__).parents[1] / "resources" / "corpus_readme.md").read_text(encoding="utf-8")
    return template.format(
        **summary,
        kind="emotion" if summary["task"] == "emotion" else "speech",
        about=about,
        noise="none" if noise is None else f"white, pink or babble-like (one kind per file) at {noise} dB SNR",
        reverb_share=f"{summary['reverb']:.0%}",
        rows="\n".join(rows),
        hours=f"{summary['total_seconds'] / 3600:.2f}",
    )


_ASR_ABOUT = """Synthetic English read speech for trying ASR fine-tuning end to end without downloads. Each
utterance draws a speaking rate (120-250 words per minute), pitch, pitch range, volume and pauses
between words at random."""
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


def summary_lines(summary: dict) -> list[str]:
    """What `slp data synth` prints of a corpus' summary: clips, hours and voices per split, unseen words."""
    lines = [
        f"{split:12s} {count:6d} clips {summary['seconds'][split] / 3600:6.2f} h  {len(summary['voices'][split])} "
        "voices"
        for split, count in summary["utterances"].items()
    ]
    words = summary["words"]
    lines.append(
        f"words: {words['train']} in train, {words['test_unseen']} in test_unseen "
        f"({words['test_unseen_not_in_train']:.0%} of its words never said in train)"
    )
    lines.append(
        f"wrote {summary['out_dir']} ({summary['total_seconds'] / 3600:.2f} h; details in summary.json, README.md)"
    )
    return lines
