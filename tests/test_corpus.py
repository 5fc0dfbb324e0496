"""The espeak-ng corpus: audiofolder layout, valid FLAC, disjoint voices, balanced labels, determinism."""

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile

from slp_toolkit.corpus import (
    EMOTIONS,
    SPLITS,
    TRAIN_VOICES,
    UNSEEN_VOICES,
    _noise,
    _trim,
    make_corpus,
    synthesize,
)


def read_split(root: Path, split: str) -> list[dict]:
    with (root / split / "metadata.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def asr_corpus(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("asr")
    return root, make_corpus(root, n=40, seed=0, workers=2)


def test_default_voice_lists_are_disjoint():
    assert len(TRAIN_VOICES) >= 12 and 2 <= len(UNSEEN_VOICES) <= 4
    train_variants = {v.partition("+")[2] for v in TRAIN_VOICES}
    assert not train_variants & {v.partition("+")[2] for v in UNSEEN_VOICES}


def test_synthesize_is_repeatable_whatever_came_before():
    first, rate = synthesize("Is it raining in Lisbon today?", "en+f3", rate=180, seed=3)
    synthesize("Something else entirely, to move the engine's state along.", "en-us+klatt2", pitch=80)
    again, _ = synthesize("Is it raining in Lisbon today?", "en+f3", rate=180, seed=3)
    assert rate == 22050 and first.dtype == np.float32 and first.ndim == 1
    assert 0.5 < len(first) / rate < 5 and 0.05 < np.abs(first).max() <= 1.0
    np.testing.assert_array_equal(first, again)


def test_corpus_writes_four_splits_of_16k_mono_flac(asr_corpus):
    root, summary = asr_corpus
    assert summary["utterances"] == {"train": 28, "validation": 4, "test": 4, "test_unseen": 4}
    for split in SPLITS:
        rows = read_split(root, split)
        assert list(rows[0]) == ["file_name", "transcription", "speaker"]
        assert {p.name for p in (root / split).iterdir()} == {"metadata.csv"} | {r["file_name"] for r in rows}
        for row in rows:
            info = soundfile.info(root / split / row["file_name"])
            assert (info.format, info.samplerate, info.channels, info.subtype) == ("FLAC", 16000, 1, "PCM_16")
            assert 0.5 < info.duration < 10 and row["transcription"][0].isupper()
    assert summary["total_seconds"] == pytest.approx(sum(summary["seconds"].values()), abs=0.05)
    readme = (root / "README.md").read_text()
    assert "test_unseen" in readme and "Apache-2.0" in readme and "en-us+m7" in readme


def test_unseen_speakers_and_sentences_stay_out_of_training(asr_corpus):
    root, summary = asr_corpus
    speakers = {split: {r["speaker"] for r in read_split(root, split)} for split in SPLITS}
    assert speakers["test_unseen"] <= set(UNSEEN_VOICES) and speakers["train"] <= set(TRAIN_VOICES)
    assert not speakers["test_unseen"] & (speakers["train"] | speakers["validation"] | speakers["test"])
    assert summary["voices"]["train"] == sorted(speakers["train"])
    texts = [r["transcription"] for split in SPLITS for r in read_split(root, split)]
    assert len(texts) == len(set(texts)) == 40


def test_same_seed_gives_identical_files_whatever_the_worker_count(asr_corpus, tmp_path):
    root, _ = asr_corpus
    make_corpus(tmp_path, n=40, seed=0, workers=1)
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for rel in files:
        assert (root / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_emotion_corpus_has_balanced_labels_and_noise(tmp_path):
    summary = make_corpus(tmp_path, n=48, task="emotion", noise_snr_db=15, seed=1, workers=2)
    for split in SPLITS:
        rows = read_split(tmp_path, split)
        assert list(rows[0]) == ["file_name", "transcription", "speaker", "label"]
        counts = Counter(r["label"] for r in rows)
        assert set(counts) == set(EMOTIONS) and max(counts.values()) - min(counts.values()) <= 1
        assert summary["labels"][split] == dict(sorted(counts.items()))
    assert "IEMOCAP" in (tmp_path / "README.md").read_text()


def test_unknown_voice_is_a_value_error_naming_it_and_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"'en-us\+nosuch'.*variant 'nosuch'.*klatt2"):
        make_corpus(tmp_path / "a", n=20, voices=["en-us+m1", "en-us+nosuch"])
    with pytest.raises(ValueError, match=r"'xx\+m1'.*accent 'xx'.*en-gb-scotland"):
        synthesize("Hello.", "xx+m1")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 5}, "too small"),
        ({"n": 30, "task": "emotion"}, "one utterance per class"),
        ({"n": 20, "task": "tts"}, "task must be"),
        ({"n": 20, "unseen_voices": ["en-us+m1"]}, "both have en-us\\+m1"),
    ],
)
def test_bad_arguments_are_value_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_corpus(tmp_path, **kwargs)


def test_unwritable_or_occupied_out_dir_is_a_value_error(tmp_path):
    (tmp_path / "a_file").write_text("not a directory")
    with pytest.raises(ValueError, match="cannot write"):
        make_corpus(tmp_path / "a_file" / "corpus", n=20)
    make_corpus(tmp_path / "c", n=10, workers=1)
    with pytest.raises(ValueError, match="overwrite=True"):
        make_corpus(tmp_path / "c", n=10, workers=1)
    assert make_corpus(tmp_path / "c", n=10, workers=1, overwrite=True)["utterances"]["train"] == 7


def test_trim_keeps_a_tenth_of_a_second_of_silence():
    rate = 16000
    tone = 0.5 * np.sin(np.arange(rate // 2) * 0.1).astype(np.float32)
    audio = np.concatenate([np.zeros(rate), tone, np.zeros(rate)]).astype(np.float32)
    assert len(_trim(audio, rate)) / rate == pytest.approx(0.7, abs=0.02)


@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
def test_noise_is_deterministic_and_of_the_asked_length(kind):
    first = _noise(kind, 12345, 16000, np.random.default_rng(0))
    assert first.shape == (12345,) and np.isfinite(first).all() and first.std() > 0
    np.testing.assert_array_equal(first, _noise(kind, 12345, 16000, np.random.default_rng(0)))
