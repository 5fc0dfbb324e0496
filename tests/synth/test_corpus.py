"""The espeak-ng corpus: audiofolder layout, valid FLAC, disjoint voices, balanced labels, determinism."""

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile

from slp_toolkit.synth.corpus import (
    EMOTIONS,
    SPLITS,
    TRAIN_VOICES,
    UNSEEN_VOICES,
    _noise,
    _trim,
    make_corpus,
    synthesize,
)
from slp_toolkit.synth.sentences import open_words, vocabulary


def read_split(root: Path, split: str) -> list[dict]:
    with (root / split / "metadata.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def asr_corpus(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("asr")
    return root, make_corpus(root, n=40, seed=0, workers=2)


def test_default_voice_lists_are_disjoint():
    assert len(set(TRAIN_VOICES)) >= 50 and 4 <= len(set(UNSEEN_VOICES)) <= 8
    train_variants = {v.partition("+")[2].lower() for v in TRAIN_VOICES}
    assert not train_variants & {v.partition("+")[2].lower() for v in UNSEEN_VOICES}
    accents = {v.partition("+")[0] for v in TRAIN_VOICES}
    assert len(accents) >= 7 and {v.partition("+")[0] for v in UNSEEN_VOICES} - accents  # one accent train lacks


def test_synthesize_is_repeatable_whatever_came_before():
    first, rate = synthesize("Is it raining in Lisbon today?", "en+f3", rate=180, seed=3)
    synthesize("Something else entirely, to move the engine's state along.", "en-us+klatt2", pitch=80)
    again, _ = synthesize("Is it raining in Lisbon today?", "en+f3", rate=180, seed=3)
    assert rate == 22050 and first.dtype == np.float32 and first.ndim == 1
    assert 0.5 < len(first) / rate < 5 and 0.05 < np.abs(first).max() <= 1.0
    np.testing.assert_array_equal(first, again)


def test_corpus_writes_five_splits_of_16k_mono_flac(asr_corpus):
    root, summary = asr_corpus
    assert summary["utterances"] == {"train": 28, "validation": 4, "test": 4, "test_unseen": 4, "test_noisy": 4}
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
    assert "test_noisy" in readme and "CC BY-SA 4.0" in readme and "en-us+m7" in readme
    assert json.loads((root / "summary.json").read_text()) | {"out_dir": str(root)} == summary


def test_test_noisy_is_test_unseen_through_a_room_and_noise(asr_corpus):
    root, _ = asr_corpus
    assert read_split(root, "test_noisy") == read_split(root, "test_unseen")
    for row in read_split(root, "test_unseen"):
        clean, _ = soundfile.read(root / "test_unseen" / row["file_name"])
        noisy, _ = soundfile.read(root / "test_noisy" / row["file_name"])
        assert len(clean) == len(noisy)
        assert 0.05 < np.corrcoef(clean, noisy)[0, 1] < 0.97, row  # the same speech, audibly degraded


def test_unseen_speakers_and_sentences_stay_out_of_training(asr_corpus):
    root, summary = asr_corpus
    speakers = {split: {r["speaker"] for r in read_split(root, split)} for split in SPLITS}
    assert speakers["test_unseen"] <= set(UNSEEN_VOICES) and speakers["train"] <= set(TRAIN_VOICES)
    assert not speakers["test_unseen"] & (speakers["train"] | speakers["validation"] | speakers["test"])
    assert summary["voices"]["train"] == sorted(speakers["train"])
    texts = [r["transcription"] for split in SPLITS[:4] for r in read_split(root, split)]
    assert len(texts) == len(set(texts)) == 40


def test_test_unseen_says_words_train_never_says(tmp_path):
    summary = make_corpus(tmp_path, n=300, seed=2, workers=2)
    words = summary["words"]
    assert words["train"] > 500 and 0.02 < words["test_unseen_not_in_train"] < 0.6
    train = vocabulary(r["transcription"] for r in read_split(tmp_path, "train"))
    unseen = vocabulary(r["transcription"] for r in read_split(tmp_path, "test_unseen"))
    assert unseen - train & set(w.lower() for w in open_words(held_out=True))  # held-out words, never in train
    assert not train & set(w.lower() for w in open_words(held_out=True))


def test_same_seed_gives_identical_files_whatever_the_worker_count(asr_corpus, tmp_path):
    root, _ = asr_corpus
    make_corpus(tmp_path, n=40, seed=0, workers=1)
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for rel in files:
        assert (root / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_emotion_corpus_has_balanced_labels_and_noise(tmp_path):
    summary = make_corpus(tmp_path, n=48, task="emotion", noise_snr_db=15, reverb=0.5, seed=1, workers=2)
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
        ({"n": 20, "reverb": 1.5}, "reverb is the share"),
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


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "babble"])
def test_noise_is_deterministic_and_of_the_asked_length(kind):
    first = _noise(kind, 12345, 16000, np.random.default_rng(0))
    assert first.shape == (12345,) and np.isfinite(first).all() and first.std() > 0
    np.testing.assert_array_equal(first, _noise(kind, 12345, 16000, np.random.default_rng(0)))


def test_slp_data_synth_prints_a_short_summary(tmp_path, capsys):
    """It once printed ~100 lines of JSON; now one line per split and two more, the JSON beside the data."""
    from slp_toolkit.cli import main

    assert main(["data", "synth", str(tmp_path / "c"), "--n", "20", "--workers", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(SPLITS) + 2 and out[0].startswith("train") and "{" not in "".join(out)
    assert out[-1].startswith(f"wrote {tmp_path / 'c'}") and (tmp_path / "c" / "summary.json").is_file()


def test_the_private_espeak_copy_is_named_by_content(tmp_path, monkeypatch):
    import os

    import espeakng_loader

    from slp_toolkit.synth.espeak import private_library

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = private_library()
    source = Path(espeakng_loader.get_library_path())
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a reinstall: the same bytes, a new mtime
    try:
        second = private_library()
    finally:
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert first == second and first.read_bytes() == source.read_bytes()
    assert [p.name for p in (tmp_path / "slp_toolkit").iterdir()] == [first.name]  # one copy, no .part left
