"""A task defined here, outside the package, runs through every public entry point: `slp validate`,
`slp train`, `slp eval`, `slp classify` and the demo. The package is not edited for it: the registry,
the recipe loader (its own model section and recipe check), the loop and the demo find it through the
`Task` it registers.

The toy task is speaker identification (which synthetic voice speaks) with a model of its own: a
log-spectrum, one projection, mean and std pooling and a linear head, written as a transformers
`PreTrainedModel` so that `save_pretrained`/`from_pretrained` work as for any other model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from slp_toolkit.cli import main
from slp_toolkit.config import ModelConfig, rule
from slp_toolkit.metrics import classification_metrics
from slp_toolkit.serve import demo
from slp_toolkit.tasks import TASKS, Capabilities, Tab, Task, get_task, no_grad, register

PACKAGE = Path(__file__).resolve().parents[2] / "slp_toolkit"
NAME = "toy_voice"


# ---------------------------------------------------------------- the task, as a user would write it
@dataclass(frozen=True)
class VoiceModelConfig(ModelConfig):
    hidden: int = field(default=48, metadata=rule(min=4))
    n_fft: int = field(default=400, metadata=rule(min=16))


def _classes():
    import torch
    from transformers import PretrainedConfig, PreTrainedModel
    from transformers.modeling_outputs import SequenceClassifierOutput

    class VoiceConfig(PretrainedConfig):
        model_type = "slp_test_voice"

        def __init__(self, hidden: int = 48, n_fft: int = 400, hop: int = 160, **kwargs):
            super().__init__(**kwargs)
            self.hidden, self.n_fft, self.hop = hidden, n_fft, hop

    class VoiceModel(PreTrainedModel):
        config_class = VoiceConfig
        base_model_prefix = "voice"
        main_input_name = "input_values"

        def __init__(self, config):
            super().__init__(config)
            self.proj = torch.nn.Linear(config.n_fft // 2 + 1, config.hidden)
            self.head = torch.nn.Linear(2 * config.hidden, config.num_labels)
            self.post_init()

        def forward(self, input_values, attention_mask=None, labels=None):
            c = self.config
            window = torch.hann_window(c.n_fft, device=input_values.device)
            spec = torch.stft(input_values, c.n_fft, c.hop, window=window, return_complex=True).abs()
            h = torch.tanh(self.proj(spec.clamp_min(1e-5).log().transpose(1, 2)))  # (batch, frames, hidden)
            samples = (
                attention_mask.sum(-1)
                if attention_mask is not None
                else torch.full_like(h[:, 0, 0], spec.shape[-1] * c.hop)
            )
            valid = (torch.arange(h.shape[1], device=h.device)[None] <= samples[:, None] // c.hop).float()[..., None]
            mean = (h * valid).sum(1) / valid.sum(1)
            std = (((h - mean[:, None]) ** 2 * valid).sum(1) / valid.sum(1)).clamp_min(1e-6).sqrt()
            logits = self.head(torch.cat([mean, std], -1))
            loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
            return SequenceClassifierOutput(loss=loss, logits=logits)

    return VoiceConfig, VoiceModel


def build(recipe, train_ds):
    from transformers import Wav2Vec2FeatureExtractor

    from slp_toolkit.data.splits import column

    VoiceConfig, VoiceModel = _classes()
    labels = sorted(set(column(train_ds, "speaker")))
    cfg = recipe.model
    config = VoiceConfig(hidden=cfg.hidden, n_fft=cfg.n_fft, id2label=dict(enumerate(labels)),
                         label2id={v: i for i, v in enumerate(labels)})  # fmt: skip
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=cfg.sampling_rate, do_normalize=True, return_attention_mask=True)
    extractor.voices = labels  # saved with the extractor: preprocessing maps speakers to label ids with it
    return VoiceModel(config), extractor


def preprocess(example, extractor):
    return {"labels": extractor.voices.index(example["speaker"])}


def keep(example, extractor):
    return example["speaker"] in extractor.voices


def load(model_dir):
    from transformers import Wav2Vec2FeatureExtractor

    _, VoiceModel = _classes()
    return VoiceModel.from_pretrained(model_dir), Wav2Vec2FeatureExtractor.from_pretrained(model_dir)


def collate(examples, extractor):
    import torch

    waves = [np.asarray(e["audio"], dtype=np.float32) for e in examples]
    batch = dict(extractor(waves, sampling_rate=extractor.sampling_rate, padding=True, return_tensors="pt"))
    if all("labels" in e for e in examples):
        batch["labels"] = torch.tensor([int(e["labels"]) for e in examples])
    return batch


@no_grad
def ranked(model, extractor, examples, k=3):
    batch = collate([{"audio": e["audio"]} for e in examples], extractor)
    probs = model(**{key: v.to(model.device) for key, v in batch.items()}).logits.softmax(-1)
    scores, ids = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [[(model.config.id2label[int(i)], float(s)) for s, i in zip(ss, ii)] for ss, ii in zip(scores, ids)]


def validate(recipe, fail):
    if recipe.model.init != "scratch":
        fail("model.init", "the toy voice model is trained from scratch only: set model.init: scratch")


TOY = Task(
    name=NAME,
    needs=("speaker",),
    build=build,
    load=load,
    preprocess=preprocess,
    collate=collate,
    predict=lambda model, extractor, examples: [best[0][0] for best in ranked(model, extractor, examples, 1)],
    metrics=lambda predictions, examples: classification_metrics(predictions, [e["speaker"] for e in examples]),
    main_metric="wa",
    greater_is_better=True,
    pipeline_tag="audio-classification",
    model_config=VoiceModelConfig,
    caps=Capabilities(
        preprocess_reads=("speaker",),
        keep=keep,
        keep_why="a voice the model was not trained on",
        ranked=ranked,
        validate=validate,
        tab=Tab("voice", "Voice", "classify"),
    ),
)


# ---------------------------------------------------------------- the proof
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def toy_task():
    register(TOY)
    yield TOY
    del TASKS[NAME]


def write_recipe(tmp_path: Path, corpus: Path, **model) -> Path:
    settings = {"learning_rate": 1e-2, "max_steps": 200, "eval_every": 200, "batch_seconds": 24, "num_threads": 1,
                "log_every": 1, "warmup": 0.0}  # fmt: skip
    path = tmp_path / "voice.yaml"
    path.write_text(
        f"# toy voice id\ntask: {NAME}\nmodel: {json.dumps({'init': 'scratch', **model})}\n"
        f"data: {{train: {corpus / 'train'}, eval: {corpus / 'validation'}}}\n"
        f"train: {json.dumps(settings)}\noutput_dir: {tmp_path / 'out'}\n"
    )
    return path


def test_no_package_file_names_the_toy_task():
    assert not [p for p in PACKAGE.rglob("*.py") if NAME in p.read_text() or "VoiceModel" in p.read_text()]


def test_the_recipe_loader_takes_the_tasks_own_section_and_checks(toy_task, tmp_path, corpus, capsys):
    assert main(["validate", str(write_recipe(tmp_path, corpus, hidden=16))]) == 0
    capsys.readouterr()
    assert main(["validate", str(write_recipe(tmp_path, corpus, hiden=16))]) == 2
    assert "'model.hidden'" in capsys.readouterr().err  # the unknown key, with the toy section's suggestion
    assert main(["validate", str(write_recipe(tmp_path, corpus, hidden=2))]) == 2  # the field's own rule
    path = write_recipe(tmp_path, corpus)
    assert main(["validate", str(path), "model.init=pretrained", "model.name_or_path=x"]) == 2
    assert "the toy voice model is trained from scratch only" in capsys.readouterr().err


def test_a_task_from_outside_trains_evaluates_classifies_and_is_served(toy_task, tmp_path, corpus, capsys):
    recipe = write_recipe(tmp_path, corpus)
    assert main(["train", str(recipe)]) == 0
    out = tmp_path / "out"
    history = [h["loss"] for h in json.loads((out / "history.json").read_text()) if "loss" in h]
    assert np.mean(history[-10:]) < 0.5 * np.mean(history[:10]), history  # it learns (memorises the voices)
    assert get_task(NAME) is TOY and (out / "model.safetensors").is_file()

    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(corpus / "test")]) == 0
    metrics = json.loads((out / "eval" / "test" / "metrics.json").read_text())
    voices = sorted(json.loads((out / "config.json").read_text())["label2id"])
    assert metrics["n"] > 0 and 0.0 <= metrics["wa"] <= 1.0

    clips = sorted((corpus / "test").glob("*.flac"))[:3]
    capsys.readouterr()
    assert main(["classify", str(out), *map(str, clips), "--json", "--top-k", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line["path"] for line in lines] == list(map(str, clips))
    assert all(len(line["labels"]) == 2 and line["labels"][0]["label"] in voices for line in lines)

    args = demo.build_parser().parse_args(["--port", str(free_port()), "--voice", str(out)])
    running = demo.serve({key: getattr(args, key) for key in demo.tabs()}, args, block=False)
    try:
        from gradio_client import Client, handle_file

        wav = tmp_path / "clip.wav"
        audio, rate = sf.read(clips[0])
        sf.write(wav, audio, rate)
        scores, message = Client(running.local_url, verbose=False).predict(handle_file(str(wav)), api_name="/classify")
    finally:
        running.close()
    assert message.startswith("Classified") and {c["label"] for c in scores["confidences"]} == set(voices)
    assert abs(sum(c["confidence"] for c in scores["confidences"]) - 1.0) < 1e-3


def test_an_installed_task_runs_through_the_slp_command(tmp_path, corpus):
    """A package that declares the task as an `slp_toolkit.tasks` entry point (here a dist-info beside this
    file's module) gets the `slp` command itself: validate, train and classify in their own processes."""
    import os
    import subprocess
    import sys

    info = tmp_path / "site" / "slp_toy_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: slp-toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[slp_toolkit.tasks]\n{NAME} = test_toy_task:TOY\n")
    path = os.pathsep.join([str(tmp_path / "site"), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    recipe = write_recipe(tmp_path, corpus)

    def slp(*args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "slp_toolkit", *args], capture_output=True, text=True, env=env)

    assert slp("validate", str(recipe)).returncode == 0
    done = slp("train", str(recipe), "train.max_steps=20", "train.eval_every=20")
    assert done.returncode == 0, done.stderr[-2000:]
    clip = sorted((corpus / "test").glob("*.flac"))[0]
    done = slp("classify", str(tmp_path / "out"), str(clip), "--json")
    assert done.returncode == 0 and json.loads(done.stdout.splitlines()[-1])["path"] == str(clip), done.stderr[-2000:]
    unknown = subprocess.run([sys.executable, "-m", "slp_toolkit", "validate", str(recipe)], capture_output=True,
                             text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})  # fmt: skip
    assert unknown.returncode == 2 and f"got '{NAME}'" in unknown.stderr  # not installed: an unknown task
