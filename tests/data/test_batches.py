"""Batch sources: streaming gives map-style's batches on a split that fits one window; resume is exact."""

from __future__ import annotations

import json
import os
from itertools import islice

import pytest
from helpers import SLP, kill_and_resume, losses, train_two_processes

from slp_toolkit.config import load_recipe
from slp_toolkit.data.batches import MapBatches, StreamBatches
from slp_toolkit.data.prepare import prepare
from slp_toolkit.data.splits import load_split
from slp_toolkit.tasks import get_task


def _recipe(tmp_path, corpus, streaming: bool, n: int = 24, **train):
    settings = {"learning_rate": 3e-3, "max_steps": 30, "eval_every": 10, "batch_seconds": 12, "warmup": 0.1,
                "num_threads": 1, "log_every": 1, **train}  # fmt: skip
    data = {"train": str(corpus / "train"), "eval": str(corpus / "validation"), "max_train_samples": n,
            "max_eval_samples": 4, "streaming": streaming, "stream_window": 100}  # fmt: skip
    path = tmp_path / "r.yaml"
    path.write_text(
        "# tiny streaming test recipe\n#   slp train r.yaml\ntask: asr_ctc\n"
        "model: {init: scratch, preset: tiny, mask_time_prob: 0.0}\n"
        f"data: {json.dumps(data)}\ntrain: {json.dumps(settings)}\noutput_dir: {tmp_path / 'out'}\n"
    )
    return path


def _paths(batches, k):
    return [sorted(str(e["path"]) for e in b.examples) for b in islice(batches, k)]


def test_streaming_gives_the_map_style_batches(tmp_path, corpus):
    recipe = load_recipe(_recipe(tmp_path, corpus, streaming=False, n=1000))
    task = get_task("asr_ctc")
    ds = load_split(recipe.data.train, recipe.data, 16000, task.needs)
    _, processor = task.build(recipe, ds)
    mapped = MapBatches(prepare(ds, task, processor), recipe, rank=0, world=1)
    streamed = StreamBatches(recipe, 16000, task, processor, rank=0, world=1)
    n = len(mapped.epoch(0))
    assert n > 3
    # two epochs: the same batches, in the same order, each epoch shuffled differently
    first, second = _paths(mapped.run({}), 2 * n), _paths(streamed.run({}), 2 * n)
    assert first == second
    assert first[:n] != first[n:]
    # the labels the stream computes on the fly equal the cached preprocessing
    a, b = next(mapped.run({})).examples, next(streamed.run({})).examples
    assert [list(e["labels"]) for e in a] == [list(e["labels"]) for e in b]
    # a position taken mid-stream resumes at the next batch
    it = streamed.run({})
    taken = [next(it) for _ in range(n + 1)]
    assert _paths(streamed.run(taken[-2].position), 1) == _paths([taken[-1]], 1)


def test_bad_rows_in_a_stream_are_skipped_with_their_line(tmp_path, corpus, caplog):
    import csv
    import shutil

    split = tmp_path / "split"
    shutil.copytree(corpus / "train", split)
    rows = list(csv.DictReader((split / "metadata.csv").open()))[:12]
    rows[3]["file_name"] = "missing.flac"
    (split / "junk.flac").write_bytes(b"not audio")
    rows[5]["file_name"] = "junk.flac"
    with (split / "metadata.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    recipe = load_recipe(_recipe(tmp_path, corpus, streaming=True), [f"data.train={split}"])
    task = get_task("asr_ctc")
    from slp_toolkit.data.batches import stream_metadata

    _, processor = task.build(recipe, stream_metadata(recipe, task.needs))
    source = StreamBatches(recipe, 16000, task, processor, 0, 1)
    with caplog.at_level("WARNING", logger="slp"):
        seen = {str(e["path"]) for b in islice(source.run({}), 20) for e in b.examples}
    assert len(seen) == 10
    text = caplog.text
    assert "metadata.csv:5 (missing file)" in text and "metadata.csv:7 (unreadable audio" in text
    assert source.tally.skipped["missing file"] >= 1 and source.tally.kept >= 10


def test_streaming_needs_steps_or_minutes(tmp_path, corpus):
    from slp_toolkit.config import ConfigError

    path = _recipe(tmp_path, corpus, streaming=True)
    with pytest.raises(ConfigError, match=r"data.streaming: true' has no epoch length"):
        load_recipe(path, ["train.max_steps=null", "train.epochs=1"])


def test_streaming_run_resumes_where_it_stopped(tmp_path, corpus):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full_dir.mkdir(), cut_dir.mkdir()
    import subprocess

    subprocess.run([*SLP, "train", str(_recipe(full_dir, corpus, True))], check=True, capture_output=True, env=env)
    kill_and_resume(_recipe(cut_dir, corpus, True), cut_dir / "out", env, at_step=10)
    a = json.loads((full_dir / "out" / "metrics.json").read_text())
    b = json.loads((cut_dir / "out" / "metrics.json").read_text())
    assert a["step"] == b["step"] == 30
    assert b["cer"] == pytest.approx(a["cer"], abs=1e-6)
    assert losses(cut_dir / "out")[-5:] == pytest.approx(losses(full_dir / "out")[-5:], rel=1e-4)
    position = json.loads((cut_dir / "out" / "checkpoints" / "step-0000030" / "data-rank0.json").read_text())
    assert set(position) == {"epoch", "consumed", "batch"}


def test_two_process_streaming_run_saves_each_position(tmp_path, corpus):

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env["ACCELERATE_USE_CPU"] = "1"
    recipe = _recipe(tmp_path, corpus, True, n=20, max_steps=6, eval_every=6)
    train_two_processes(recipe, env)
    step = tmp_path / "out" / "checkpoints" / "step-0000006"
    positions = [json.loads((step / f"data-rank{r}.json").read_text()) for r in (0, 1)]
    assert all(p["epoch"] >= 0 and p["batch"] >= 1 for p in positions)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["step"] == 6


def test_processes_stream_disjoint_rows_that_cover_the_split(tmp_path, corpus):
    recipe = load_recipe(_recipe(tmp_path, corpus, streaming=True, n=20))
    task = get_task("asr_ctc")
    from slp_toolkit.data.batches import stream_metadata

    _, processor = task.build(recipe, stream_metadata(recipe, task.needs))
    seen = []
    for rank in (0, 1):
        source = StreamBatches(recipe, 16000, task, processor, rank, 2)
        seen.append({str(r.source) for r in source._rows(epoch=0)})
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 20 and abs(len(seen[0]) - len(seen[1])) <= 1


def test_a_fixed_window_model_counts_a_window_per_clip(tmp_path, corpus):
    """Whisper pads every clip to its window: a batch of 120 s holds 4 clips of a 30-s window, whatever their
    length (counting raw seconds put 40 clips of 3 s, 1,200 s of encoder input, into such a batch)."""
    import numpy as np
    from transformers import WhisperFeatureExtractor

    from slp_toolkit.data.batches import clip_costs
    from slp_toolkit.tasks import window_seconds

    whisper, other = WhisperFeatureExtractor(chunk_length=8), get_task("asr_ctc")
    assert window_seconds(whisper) == 8.0 and window_seconds(object()) is None
    assert list(clip_costs([2.0, 9.0], 8.0)) == [8.0, 9.0] and list(clip_costs([2.0], None)) == [2.0]
    recipe = load_recipe(_recipe(tmp_path, corpus, False, batch_seconds=24, max_batch_size=64))
    ds = load_split(str(corpus / "train"), recipe.data, 16000, other.needs, 24)  # batching reads durations only
    windowed = MapBatches(ds, recipe, 0, 1, window=8.0).epoch(0)
    plain = MapBatches(ds, recipe, 0, 1).epoch(0)
    assert max(len(b) for b in windowed) == 3 < max(len(b) for b in plain)
    assert sorted(np.concatenate(windowed)) == list(range(len(ds)))  # every clip still in one batch


def test_several_prefetch_workers_keep_the_order():
    import time

    from slp_toolkit.data.batches import prefetched

    def slow(i):  # later items finish first
        time.sleep(0.02 * (i % 3))
        return i * 10

    assert list(prefetched(iter(range(12)), slow, workers=3)) == [i * 10 for i in range(12)]
    assert list(prefetched(iter(range(5)), slow, workers=1)) == [i * 10 for i in range(5)]
