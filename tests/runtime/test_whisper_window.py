"""Whisper on a cropped window (`model.window_seconds`): the encoder's position table and the feature extractor
shrink together, a LoRA adapter trained on the window reloads onto its full-window base, and the saved model
decodes in plain `pipeline()` exactly as `slp transcribe` does."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch

from slp_toolkit.config import ConfigError, recipe_from_dict
from slp_toolkit.runtime.loading import ModelLoadError
from slp_toolkit.runtime.scratch import build_whisper
from slp_toolkit.runtime.whisper_window import crop_window


def test_the_crop_keeps_the_first_positions_and_the_extractor_pads_to_the_window():
    torch.manual_seed(0)
    model, processor = build_whisper("tiny")  # an 8-s window
    full = model.get_encoder().embed_positions.weight.detach().clone()
    crop_window(model, processor, 4, "tiny")
    table = model.get_encoder().embed_positions
    assert model.config.max_source_positions == 200 and torch.equal(table.weight, full[:200])
    assert not table.weight.requires_grad  # Whisper's sinusoids stay fixed
    features = processor.feature_extractor([torch.zeros(16000).numpy()], sampling_rate=16000, return_tensors="pt")
    assert features.input_features.shape[-1] == 400
    assert model.get_encoder()(features.input_features).last_hidden_state.shape[1] == 200
    with pytest.raises(ModelLoadError, match=r"^model.window_seconds: tiny hears at most 4 s"):
        crop_window(model, processor, 8, "tiny")


def test_a_window_on_a_scratch_model_is_one_line():
    raw = {"task": "asr_seq2seq", "model": {"init": "scratch", "preset": "tiny", "window_seconds": 4},
           "data": {"train": "x", "max_seconds": 4}, "train": {"max_steps": 1}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"model.window_seconds: a scratch model's window is its preset's"):
        recipe_from_dict(raw)


def test_a_lora_on_a_10s_window_reloads_merges_and_decodes_in_plain_pipeline(real_tiny_en, corpus, tmp_path, capsys):
    from transformers import pipeline

    from slp_toolkit.cli import main
    from slp_toolkit.tasks import asr_seq2seq

    raw = {
        "task": "asr_seq2seq",
        "model": {"name_or_path": str(real_tiny_en), "window_seconds": 10},
        "data": {"train": str(corpus / "train"), "eval": str(corpus / "validation"), "max_seconds": 10,
                 "max_train_samples": 8, "max_eval_samples": 2},
        "train": {"learning_rate": 1e-3, "max_steps": 2, "eval_every": 2, "batch_seconds": 40, "num_threads": 1},
        "lora": {"r": 4},
        "output_dir": str(tmp_path / "run"),
    }  # fmt: skip
    (tmp_path / "r.yaml").write_text(json.dumps(raw))
    assert main(["train", str(tmp_path / "r.yaml")]) == 0
    model, processor = asr_seq2seq.load(str(tmp_path / "run"))
    assert model.config.max_source_positions == 500 and processor.feature_extractor.chunk_length == 10
    assert main(["merge", str(tmp_path / "run"), str(tmp_path / "merged")]) == 0
    saved = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert saved["max_source_positions"] == 500
    clip = tmp_path / "clip.wav"
    wave = sf.read(next((corpus / "validation").glob("*.flac")))[0]
    sf.write(clip, wave, 16000)
    capsys.readouterr()
    assert main(["transcribe", str(tmp_path / "merged"), str(clip), "--precision", "fp32"]) == 0
    ours = capsys.readouterr().out.strip().split("\t")[-1]
    pipe = pipeline("automatic-speech-recognition", model=str(tmp_path / "merged"), device="cpu")
    assert pipe(str(clip))["text"].strip() == ours.strip() and ours.strip()
