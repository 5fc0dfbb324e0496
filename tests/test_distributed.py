"""Several processes on CPU (gloo), as a multi-GPU machine runs them: layerdrop under DDP, evaluation
sharded over the processes, a sharded (FSDP2) model evaluated in lockstep and exported whole."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import SLP, write_recipe
from safetensors.torch import load_file

from slp_toolkit.cli import main

ACCELERATE = str(Path(sys.executable).with_name("accelerate"))
pytestmark = pytest.mark.skipif(not Path(ACCELERATE).exists(), reason="accelerate CLI missing")
SHARDS = re.compile(r"evaluation: process (\d) of 2 predicted (\d+) of (\d+) clips in (\d+) batches \((\d+) rounds")


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
            "ACCELERATE_USE_CPU": "1"}  # fmt: skip


def launch_two(*args: str) -> subprocess.CompletedProcess:
    """`accelerate launch` of 2 CPU processes in one gloo group running `args` (a module's or a script's)."""
    done = subprocess.run(
        [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
         "no", "--dynamo_backend", "no", *args],
        capture_output=True, text=True, env=_env(), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def shards(stderr: str) -> dict[int, tuple[int, ...]]:
    """rank -> (clips it predicted, clips in the split, its batches, its forward rounds), from each process's
    (last) evaluation log line."""
    return {int(r): tuple(map(int, rest)) for r, *rest in SHARDS.findall(stderr)}


def test_two_processes_train_a_layerdrop_recipe_to_the_end(tmp_path, corpus):
    """DDP with layerdrop: each process skips other layers, which stopped a run at its second step until DDP was
    told to look for unused parameters (now automatic when the model drops layers)."""
    settings = {"max_steps": 8, "eval_every": 4, "batch_seconds": 12, "max_batch_size": 4}
    recipe = write_recipe(tmp_path, corpus, **settings)
    recipe.write_text(recipe.read_text().replace("mask_time_prob: 0.0}", "mask_time_prob: 0.0, layerdrop: 0.5}"))
    done = launch_two("-m", "slp_toolkit", "train", str(recipe))
    out = tmp_path / "out"
    assert json.loads((out / "metrics.json").read_text())["step"] == 8
    assert (out / "checkpoints" / "step-0000008" / "random_states_1.pkl").is_file(), "not one DDP group"
    assert "looks for unused parameters" in done.stderr
    assert yaml.safe_load((out / "recipe.yaml").read_text())["model"]["layerdrop"] == 0.5
    # both processes evaluated, each its own share of the eval split
    found = shards(done.stderr)
    assert set(found) == {0, 1} and all(f[0] > 0 for f in found.values())
    assert sum(f[0] for f in found.values()) == found[0][1]  # together, the whole split (the last evaluation's)


def test_two_process_eval_equals_one_process_and_each_evaluates_its_shard(tmp_path, ctc_run, corpus):
    one, two = tmp_path / "one", tmp_path / "two"
    split = str(corpus / "validation")
    common = ["--data", split, "--batch-seconds", "4", "--device", "cpu"]
    assert main(["eval", str(ctc_run), *common, "--output-dir", str(one)]) == 0
    done = launch_two("-m", "slp_toolkit", "eval", str(ctc_run), *common, "--output-dir", str(two))
    assert json.loads((two / "metrics.json").read_text()) == json.loads((one / "metrics.json").read_text())
    assert (two / "predictions.jsonl").read_text() == (one / "predictions.jsonl").read_text()
    found = shards(done.stderr)
    assert set(found) == {0, 1} and all(f[0] > 0 for f in found.values())
    assert sum(f[0] for f in found.values()) == found[0][1] == len((one / "predictions.jsonl").read_text().splitlines())


def test_a_sharded_whisper_generates_in_lockstep(tmp_path, tiny_models, corpus):
    """Whisper's generate passes synced_gpus=False on: a process whose batch ends sooner stopped calling forward
    while the other waited in a sharded layer's all-gather (the first evaluation under FSDP hung)."""
    script = Path(__file__).with_name("sharded_eval.py")
    split = str(corpus / "validation")
    launch_two(str(script), str(tiny_models["whisper"]), split, str(tmp_path), "asr_seq2seq")
    reference = tmp_path / "reference"
    assert main(["eval", str(tiny_models["whisper"]), "--data", split, "--batch-seconds", "3",
                 "--output-dir", str(reference)]) == 0  # fmt: skip
    sharded, alone = (json.loads(p.read_text()) for p in (tmp_path / "metrics.json", reference / "metrics.json"))
    assert sharded["n"] == alone["n"] and sharded["wer"] == pytest.approx(alone["wer"], abs=1e-6)


def test_a_sharded_model_evaluates_in_lockstep_and_exports_whole(tmp_path, ctc_run, corpus):
    """FSDP2 on gloo: the shards' forward passes need every process (uneven shards would hang without
    lockstep), and the export gathers the full weights: equal to the model before sharding."""
    script = Path(__file__).with_name("sharded_eval.py")
    split = str(corpus / "validation")
    done = launch_two(str(script), str(ctc_run), split, str(tmp_path))
    found = shards(done.stderr)
    assert found[0][2] != found[1][2], "the test wants shards of unequal batch counts"
    assert found[0][3] == found[1][3] == max(found[0][2], found[1][2])  # the shorter shard ran a filler round
    reference = tmp_path / "reference"
    assert main(["eval", str(ctc_run), "--data", split, "--batch-seconds", "3", "--output-dir", str(reference)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == json.loads((reference / "metrics.json").read_text())
    exported, original = load_file(tmp_path / "export" / "model.safetensors"), load_file(ctc_run / "model.safetensors")
    assert exported.keys() == original.keys()
    assert all((exported[k] == original[k]).all() for k in original)
    # and the export is a model dir like any other
    assert subprocess.run([*SLP, "transcribe", str(tmp_path / "export"), split], capture_output=True).returncode == 0
