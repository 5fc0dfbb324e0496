"""`make bench` at toy size: each benchmark runs end to end and writes a complete report. Nothing here is
timed (the numbers of a 5-second run on a shared machine mean nothing); a script that no longer runs does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[1] / "benchmarks"


def bench(script: str, *args: str, cache: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SLP_CACHE": str(cache)}
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def test_inference_benchmark_runs_every_side_on_the_same_files(tmp_path, corpus, ctc_run):
    out = tmp_path / "inference.json"
    bench("inference.py", "--model", str(ctc_run), "--corpus", str(corpus), "--files", "6", "--threads", "1",
          "--out", str(out), cache=tmp_path / "cache")  # fmt: skip
    report = json.loads(out.read_text())
    assert report["files"] == 6 and report["audio_s"] > 0
    assert set(report["sides"]) == {"ours", "ours_bf16", "per_file", "batched"}
    assert all(side["wall_s"] > 0 for side in report["sides"].values())
    assert report["same_text_as_ours"]["per_file"] == 1.0  # same model, fp32 both, no padding: the same text


def test_training_benchmark_packs_our_whisper_side_and_starts_both_alike(tmp_path, corpus):
    out = tmp_path / "train_throughput.json"
    bench("train_throughput.py", "--tasks", "asr_seq2seq", "--seconds", "5", "--corpus", str(corpus),
          "--threads", "1", "--out", str(out), cache=tmp_path / "cache")  # fmt: skip
    result = json.loads(out.read_text())["tasks"]["asr_seq2seq"]
    assert result["same_init"] and result["config"]["pack"]
    assert all(side["steps"] >= 1 and side["audio_s_per_s"] > 0 for side in result["sides"].values())
    assert result["ratio"] > 0


def test_gpu_check_runs_every_inference_command_and_reports_where_each_model_ran(tmp_path, corpus):
    """The GPU script's inference half, on CPU: each command logs its model's device, which the script checks."""
    out = tmp_path / "gpu_check.json"
    bench("gpu_check.py", "--device", "cpu", "--jobs", "inference", "--corpus", str(corpus), "--work",
          str(tmp_path / "work"), "--out", str(out), cache=tmp_path / "cache")  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    assert {r["job"] for r in rows} >= {"eval ctc", "transcribe ctc", "eval whisper", "classify emotion",
                                        "synthesize tts"}  # fmt: skip
    assert all("error" not in r and r["device"] == "cpu" for r in rows), rows
