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


def test_whisper_serving_benchmark_scores_our_sides_on_the_same_clips(tmp_path, corpus, tiny_models):
    """Our sides only: the peer (faster-whisper) is the benchmark's own dependency, not the tests'."""
    out = tmp_path / "whisper_serve.json"
    bench("whisper_serve.py", "--model", str(tiny_models["whisper"]), "--split", str(corpus / "validation"),
          "--files", "3", "--sides", "ours,ours_int8", "--wait-idle", "0", "--out", str(out),
          "--work", str(tmp_path / "work"), cache=tmp_path / "cache")  # fmt: skip
    report = json.loads(out.read_text())
    assert report["files"] == 3 and set(report["sides"]) == {"ours", "ours_int8"}
    assert all(side["wall_s"] > 0 and 0 <= side["wer"] for side in report["sides"].values())


def test_gpu_check_runs_every_inference_command_and_reports_where_each_model_ran(tmp_path, corpus):
    """The GPU script's inference half, on CPU: each command logs its model's device, which the script checks."""
    out = tmp_path / "gpu_check.json"
    bench("gpu_check.py", "--device", "cpu", "--jobs", "inference", "--corpus", str(corpus), "--work",
          str(tmp_path / "work"), "--out", str(out), cache=tmp_path / "cache")  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    assert {r["job"] for r in rows} >= {"eval ctc", "transcribe ctc", "eval whisper", "classify emotion",
                                        "synthesize tts"}  # fmt: skip
    assert all("error" not in r and r["device"] == "cpu" for r in rows), rows


def test_real_speech_builder_splits_prompts_and_leaves_out_what_is_not_speech(tmp_path, monkeypatch):
    """The Asterisk builder on a package tree of its own making: a g722 prompt per name, the transcript file."""
    import csv
    import gzip
    import importlib.util
    import shutil

    import pytest

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg missing")
    spec = importlib.util.spec_from_file_location("real_speech", BENCH / "real_speech.py")
    real_speech = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real_speech)
    lines = {"agent-pass": "Por favor ingrese su contrasena", "beep": "[tono simple]", "digits/1": "uno",
             "vm-no": "12 34", "dictate/forhelp": "Marque 0 para obtener ayuda.", "conf-kicked": "conf-kicked: Ha sido expulsado"}  # fmt: skip
    docs = tmp_path / "doc" / "asterisk-core-sounds-es"
    docs.mkdir(parents=True)
    with gzip.open(docs / "core-sounds-es.txt.gz", "wt", encoding="utf-8") as f:
        f.write("; Core Asterisk Sounds in Spanish\n\n" + "".join(f"{k}: {v}\n" for k, v in lines.items()))
    for name in lines:
        wav = tmp_path / "sounds" / "es" / f"{name}.g722"
        wav.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=d=0.5:sample_rate=16000", "-c:a", "g722",
                        "-f", "g722", str(wav)], check=True)  # fmt: skip
    monkeypatch.setattr(real_speech, "SOUNDS", tmp_path / "sounds")
    monkeypatch.setattr(real_speech, "DOCS", tmp_path / "doc")
    monkeypatch.setattr(real_speech, "OUT", tmp_path / "out")
    real_speech.build(["es"])
    rows = {s: list(csv.DictReader(open(tmp_path / "out" / "es" / s / "metadata.csv"))) for s in ("train", "test")}
    kept = {r["transcription"] for split in rows.values() for r in split}
    assert kept == {"Por favor ingrese su contrasena", "Marque 0 para obtener ayuda.", "Ha sido expulsado"}
    for split, found in rows.items():
        assert all(real_speech.is_test(r["file_name"][:-4].replace("__", "/")) == (split == "test") for r in found)
        assert all((tmp_path / "out" / "es" / split / r["file_name"]).stat().st_size > 1000 for r in found)
