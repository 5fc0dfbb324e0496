"""Helpers shared by several test modules (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

SLP = [sys.executable, "-m", "slp_toolkit"]


def write_recipe(tmp_path: Path, corpus: Path, **train) -> Path:
    """A tiny scratch CTC recipe on 8 clips (evaluated on 8): the runs of the loop, resume and fault tests."""
    settings = {"learning_rate": 3e-3, "max_steps": 40, "eval_every": 10, "batch_seconds": 12, "warmup": 0.1,
                "num_threads": 1, "log_every": 1, **train}  # fmt: skip
    text = (
        "# tiny test recipe\n#   slp train r.yaml\ntask: asr_ctc\n"
        "model: {init: scratch, preset: tiny, mask_time_prob: 0.0}\n"
        f"data: {{train: {corpus / 'train'}, eval: {corpus / 'validation'}, max_train_samples: 8, max_eval_samples: 8}}\n"
        f"train: {json.dumps(settings)}\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def plain_pipeline(tag: str, model_dir: Path, clip: Path, call: str) -> str:
    """The last printed line of `print(<call>)` on `pipe = pipeline(tag, model_dir)` in a fresh Python that
    never imports slp_toolkit: what a user with plain transformers gets from the saved model."""
    import os

    code = (
        f"import json, sys; from transformers import pipeline; pipe = pipeline({tag!r}, model=sys.argv[1]);"
        f"assert 'slp_toolkit' not in sys.modules; print({call})"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(model_dir), str(clip)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def losses(out: Path) -> list[float]:
    """The logged training losses of a run, in step order."""
    return [h["loss"] for h in json.loads((out / "history.json").read_text()) if "loss" in h]


def kill_and_resume(recipe: Path, out: Path, env: dict, at_step: int = 20) -> None:
    """Start `slp train recipe`, SIGKILL it once checkpoint `at_step` exists, then `--resume` to the end."""
    proc = subprocess.Popen([*SLP, "train", str(recipe)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while not (out / "checkpoints" / f"step-{at_step:07d}").is_dir():
        assert proc.poll() is None and time.time() < deadline, "run ended before the checkpoint to kill at"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()
    done = subprocess.run([*SLP, "train", str(recipe), "--resume"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]


def train_two_processes(recipe: Path, env: dict) -> None:
    """`slp train recipe` as one gloo DDP group of 2 CPU processes (`accelerate launch`); must succeed."""
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    done = subprocess.run(
        [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
         "no", "--dynamo_backend", "no", "-m", "slp_toolkit", "train", str(recipe)],
        capture_output=True, text=True, env={**env, "ACCELERATE_USE_CPU": "1"}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def train_two_nodes(recipe: Path, env: dict, port: int) -> None:
    """`slp train recipe` as 2 "machines" x 1 process on localhost with recipes/accelerate/multinode.yaml
    (machine_rank 0 and 1, gloo on CPU); both must succeed."""
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    config = Path(__file__).parent.parent / "recipes" / "accelerate" / "multinode.yaml"
    nodes = [
        subprocess.Popen(
            [
                accelerate,
                "launch",
                "--config_file",
                str(config),
                "--machine_rank",
                str(rank),
                "--main_process_ip",
                "127.0.0.1",
                "--main_process_port",
                str(port),
                "--mixed_precision",
                "no",
                "--dynamo_backend",
                "no",
                "-m",
                "slp_toolkit",
                "train",
                str(recipe),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "ACCELERATE_USE_CPU": "1"},
        )  # fmt: skip
        for rank in (0, 1)
    ]
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err[-3000:]


def bursts(spans, seconds, noise_db=None, seed=0):
    """`seconds` of 16-kHz audio with speech-level noise (with a 4 Hz syllable-like envelope) in each (start, stop)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    wave = np.zeros(int(seconds * 16000))
    for a, b in spans:
        t = np.arange(int((b - a) * 16000)) / 16000
        wave[int(a * 16000) : int(b * 16000)] = 0.1 * rng.standard_normal(len(t)) * (0.6 + 0.4 * np.sin(8 * np.pi * t))
    if noise_db is not None:  # steady background, noise_db below the speech level
        wave += 0.1 * 10 ** (-noise_db / 20) * rng.standard_normal(len(wave))
    return wave.astype(np.float32)
