"""The data layer: the same clips from every input form, resampling/downmixing, bad rows, cache."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
import soundfile as sf

from slp_toolkit.config import DataConfig
from slp_toolkit.data.batches import length_batches
from slp_toolkit.data.splits import DataError, load_split, read_audio
from slp_toolkit.data.text import ctc_vocab, normalize_text

TEXTS = [f"Clip number {i}, said clearly!" for i in range(10)]


@pytest.fixture
def clips(tmp_path):
    """10 short tones of different lengths as 16 kHz wav files, with their transcripts."""
    rng = np.random.default_rng(0)
    names = []
    for i in range(10):
        wave = (0.1 * rng.standard_normal(4000 + 800 * i)).astype(np.float32)
        sf.write(tmp_path / f"c{i}.wav", wave, 16000)
        names.append(f"c{i}.wav")
    return tmp_path, names


def _write_csv(path, rows, fields):
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def test_same_clips_from_audiofolder_csv_and_jsonl(clips, tmp_path):
    folder, names = clips
    rows = [{"file_name": n, "transcription": t} for n, t in zip(names, TEXTS)]
    _write_csv(folder / "metadata.csv", rows, ["file_name", "transcription"])
    manifest_dir = tmp_path / "manifests"
    manifest_dir.mkdir()
    _write_csv(
        manifest_dir / "list.csv",
        [{"path": f"../{r['file_name']}", "sentence": r["transcription"]} for r in rows],
        ["path", "sentence"],
    )
    (manifest_dir / "list.jsonl").write_text(
        "".join(json.dumps({"audio": str(folder / r["file_name"]), "text": r["transcription"]}) + "\n" for r in rows)
    )
    cfg = DataConfig(min_seconds=0.0)
    loaded = [load_split(str(s), cfg, 16000) for s in (folder, manifest_dir / "list.csv", manifest_dir / "list.jsonl")]
    for ds in loaded:
        assert len(ds) == 10
        assert list(ds["text"]) == [normalize_text(t) for t in TEXTS]
        assert list(ds["raw_text"]) == TEXTS
    for a, b in zip(loaded[0]["audio"], loaded[1]["audio"]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(loaded[0]["audio"], loaded[2]["audio"]):
        np.testing.assert_array_equal(a, b)
    assert loaded[0]["audio"][3].dtype == np.float32 and len(loaded[0]["audio"][3]) == 4000 + 800 * 3


def test_44k_stereo_comes_out_16k_mono(tmp_path):
    t = np.arange(44100) / 44100
    left, right = np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "stereo.flac", np.stack([left, right], axis=1).astype(np.float32), 44100)
    wave = read_audio(tmp_path / "stereo.flac", 16000)
    assert wave.ndim == 1 and wave.dtype == np.float32 and abs(len(wave) - 16000) <= 1
    # mono is the channel mean: amplitude 0.75 of the left channel's sine, still at 440 Hz
    assert 0.70 < np.abs(wave[1000:-1000]).max() < 0.80
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16000 / len(wave) - 440) < 5


def test_bad_rows_are_skipped_and_counted(clips, caplog):
    folder, names = clips
    (folder / "empty.wav").write_bytes(b"")
    (folder / "junk.wav").write_bytes(b"this is not audio at all" * 10)
    sf.write(folder / "silent0.wav", np.zeros(0, np.float32), 16000)
    sf.write(folder / "nan.wav", np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    rows = [{"file_name": n, "transcription": t} for n, t in zip(names, TEXTS)]
    rows += [
        {"file_name": "missing.wav", "transcription": "gone"},
        {"file_name": "empty.wav", "transcription": "nothing"},
        {"file_name": "junk.wav", "transcription": "junk"},
        {"file_name": names[0], "transcription": "  ?!  "},
        {"file_name": "nan.wav", "transcription": "not a number"},
    ]
    _write_csv(folder / "metadata.csv", rows, ["file_name", "transcription"])
    with caplog.at_level(logging.WARNING, logger="slp"):
        ds = load_split(str(folder), DataConfig(min_seconds=0.0), 16000)
    assert len(ds) == 10
    line = next(r.getMessage() for r in caplog.records if "skipped" in r.getMessage())
    assert "skipped 5 of 15 rows" in line and "1 missing file" in line and "1 empty text" in line
    assert "1 audio has NaN or infinite samples" in line
    assert "metadata.csv:12 (missing file)" in line  # header is line 1, so row 11 is on line 12


def test_all_rows_bad_is_a_clear_error(tmp_path):
    _write_csv(tmp_path / "metadata.csv", [{"file_name": "nope.wav", "text": "x"}], ["file_name", "text"])
    with pytest.raises(DataError, match=r"metadata.csv: no usable rows out of 1"):
        load_split(str(tmp_path), DataConfig(), 16000)


def test_missing_column_names_the_file_and_columns(clips):
    folder, names = clips
    _write_csv(folder / "metadata.csv", [{"file_name": names[0], "words": "x"}], ["file_name", "words"])
    with pytest.raises(DataError, match=r"metadata.csv: cannot find the text column .*columns: file_name, words"):
        load_split(str(folder), DataConfig(), 16000)


def test_duration_filter(clips):
    folder, names = clips
    _write_csv(
        folder / "metadata.csv", [{"file_name": n, "text": t} for n, t in zip(names, TEXTS)], ["file_name", "text"]
    )
    ds = load_split(str(folder), DataConfig(min_seconds=0.3, max_seconds=0.6), 16000)
    assert all(0.3 <= d <= 0.6 for d in ds["duration"]) and 0 < len(ds) < 10


def test_second_load_reads_the_cache(clips, monkeypatch):
    folder, names = clips
    _write_csv(
        folder / "metadata.csv", [{"file_name": n, "text": t} for n, t in zip(names, TEXTS)], ["file_name", "text"]
    )
    first = load_split(str(folder), DataConfig(min_seconds=0.0), 16000)
    import slp_toolkit.data.splits as data

    def fail(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(data, "_decode_split", fail)
    second = load_split(str(folder), DataConfig(min_seconds=0.0), 16000)
    np.testing.assert_array_equal(first["audio"][5], second["audio"][5])
    # touching a file changes the key: it is decoded again
    sf.write(folder / names[5], np.zeros(8000, np.float32), 16000)
    with pytest.raises(AssertionError, match="decoded again"):
        load_split(str(folder), DataConfig(min_seconds=0.0), 16000)


def test_normalize_text_and_vocab():
    assert normalize_text("  Don’t STOP—the ‘music’, now!  ") == "don't stop the music now"
    assert normalize_text("Café au lait-time") == "café au lait time"
    vocab, counts = ctc_vocab(["ab a", "b"])
    assert vocab == ["a", "b", "|"] and counts["|"] == 1 and counts["a"] == 2


def test_length_batches_budget_and_determinism():
    rng = np.random.default_rng(0)
    durations = rng.uniform(1, 10, size=500)
    batches = length_batches(durations, batch_seconds=40, max_batch_size=16, seed=3, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert all(len(b) == 1 or max(durations[b]) * len(b) <= 40 for b in batches)
    assert batches == length_batches(durations, 40, 16, seed=3, epoch=0)
    assert batches != length_batches(durations, 40, 16, seed=3, epoch=1)
    padded = sum(max(durations[b]) * len(b) for b in batches)
    assert padded / durations.sum() < 1.15  # little padding thanks to length grouping
    for world in (2, 3):
        shared = length_batches(durations, 40, 16, seed=3, epoch=0, multiple_of=world)
        assert all(len(b) % world == 0 and max(durations[b]) * len(b) <= 40 for b in shared)
        # DDP once cut every batch down to a multiple of the process count (here ~1 clip in 10 never trained);
        # the clips over a multiple now open the next batch: only a window's last few are left out
        left = 500 - sum(len(b) for b in shared)
        assert left < world * 2, left  # 500 clips of ~5.5 s in 40-s batches are ~1.1 windows of 50 batches


def test_synth_corpus_loads_through_the_data_layer(corpus):
    cfg = DataConfig()
    train = load_split(str(corpus / "train"), cfg, 16000)
    unseen = load_split(str(corpus / "test_unseen"), cfg, 16000)
    assert len(train) > 20 and len(unseen) > 0
    assert set(train["speaker"]).isdisjoint(set(unseen["speaker"]))
    assert all(t == normalize_text(r) for t, r in zip(train["text"], train["raw_text"]))
    assert min(train["duration"]) > 0.2


def _metadata(folder, names):
    _write_csv(
        folder / "metadata.csv", [{"file_name": n, "text": t} for n, t in zip(names, TEXTS)], ["file_name", "text"]
    )


def _decodes(folder, cfg, rate=16000) -> bool:
    """Whether loading `folder` decodes (True) or reads a finished cache (False)."""
    import slp_toolkit.data.splits as data

    calls = []
    real = data._decode_split
    data._decode_split = lambda *a, **k: (calls.append(1), real(*a, **k))
    try:
        load_split(str(folder), cfg, rate)
    finally:
        data._decode_split = real
    return bool(calls)


def test_every_input_of_the_cache_key_invalidates_it(clips, monkeypatch):
    import importlib.metadata

    import slp_toolkit.data.splits as data

    folder, names = clips
    _metadata(folder, names)
    cfg = DataConfig(min_seconds=0.0)
    assert _decodes(folder, cfg) and not _decodes(folder, cfg)
    # recipe keys that change the rows
    assert _decodes(folder, DataConfig(min_seconds=0.0, max_seconds=0.5))
    assert _decodes(folder, DataConfig(min_seconds=0.0, normalize_text=False))
    assert _decodes(folder, cfg, rate=8000)
    assert not _decodes(folder, DataConfig(min_seconds=0.0, num_workers=3))  # how, not what: same cache
    # the manifest's contents
    _write_csv(folder / "metadata.csv", [{"file_name": names[0], "text": "other words"}], ["file_name", "text"])
    assert _decodes(folder, cfg)
    _metadata(folder, names)
    assert not _decodes(folder, cfg)
    # a library version
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda n: "0.0.1" if n == "soundfile" else real(n))
    data.environment_fingerprint.cache_clear()
    try:
        assert _decodes(folder, cfg)
    finally:
        monkeypatch.undo()
        data.environment_fingerprint.cache_clear()


def test_preparation_cache_follows_the_task_code(clips, tmp_path):
    import dataclasses
    import importlib
    import sys

    from slp_toolkit.data.prepare import prepare
    from slp_toolkit.tasks import get_task

    folder, names = clips
    _metadata(folder, names)
    ds = load_split(str(folder), DataConfig(min_seconds=0.0), 16000)
    module = tmp_path / "prep_code.py"
    sys.path.insert(0, str(tmp_path))
    try:
        values = []
        for n in (1, 2):
            module.write_text(f"def preprocess(example, processor):\n    return {{'feature': {n}}}\n")
            importlib.invalidate_caches()
            mod = (
                importlib.reload(sys.modules["prep_code"])
                if "prep_code" in sys.modules
                else importlib.import_module("prep_code")
            )
            task = dataclasses.replace(get_task("asr_ctc"), preprocess=mod.preprocess)
            values.append(int(prepare(ds, task, processor=None)["feature"][0]))
        assert values == [1, 2]
    finally:
        sys.path.remove(str(tmp_path))


def test_parallel_decode_equals_serial_and_counts_bad_rows(clips, caplog, monkeypatch):
    import slp_toolkit.data.splits as data

    folder, names = clips
    rows = [{"file_name": n, "text": t} for n, t in zip(names, TEXTS)] * 3 + [{"file_name": "gone.wav", "text": "x"}]
    _write_csv(folder / "metadata.csv", rows, ["file_name", "text"])
    monkeypatch.setattr(data, "MIN_ROWS_PER_WORKER", 5)  # this small split would otherwise use one process
    serial = load_split(str(folder), DataConfig(min_seconds=0.0, num_workers=1), 16000)
    import shutil

    shutil.rmtree(data.cache_root() / "audio")
    with caplog.at_level(logging.WARNING, logger="slp"):
        parallel = load_split(str(folder), DataConfig(min_seconds=0.0, num_workers=2), 16000)
    assert len(list((data.cache_root() / "audio").glob("*/shard-*.arrow"))) == 8  # 2 workers x 4 shards
    assert len(parallel) == len(serial) == 30
    assert list(parallel["path"]) == list(serial["path"])
    for a, b in zip(parallel["audio"], serial["audio"]):
        np.testing.assert_array_equal(a, b)
    assert (
        "skipped 1 of 31 rows (1 missing file); first: " in caplog.text
        and "metadata.csv:32 (missing file)" in caplog.text
    )


def test_half_written_cache_is_never_read(clips):
    import slp_toolkit.data.splits as data

    folder, names = clips
    _metadata(folder, names)
    cfg = DataConfig(min_seconds=0.0)
    expected = np.array(load_split(str(folder), cfg, 16000)["audio"][4])  # a copy: the cache files go away
    target = next((data.cache_root() / "audio").glob("*/report.json")).parent
    (target / "report.json").unlink()  # as if killed before the report: not a finished cache
    (target / "shard-00000.arrow").write_bytes(b"torn")
    again = load_split(str(folder), cfg, 16000)
    np.testing.assert_array_equal(again["audio"][4], expected)
    assert not list(target.parent.glob(".tmp-*"))


def test_cache_on_a_full_disk_is_one_line(clips, tmp_path, monkeypatch):
    import subprocess

    folder, names = clips
    _metadata(folder, names)
    small = tmp_path / "small_disk"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        monkeypatch.setenv("SLP_CACHE", str(small))
        with pytest.raises(
            DataError, match=r"small_disk/audio: cannot write the decode cache \(No space left on device\)"
        ):
            load_split(str(folder), DataConfig(min_seconds=0.0), 16000)
        assert not any((small / "audio").iterdir())  # nothing half-written left behind
    finally:
        subprocess.run(["umount", str(small)], check=False)
