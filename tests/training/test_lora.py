"""LoRA adapters: only the adapter trains and is saved, it reloads and merges, resumes, and runs on DDP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import SLP, kill_and_resume, losses, train_two_processes
from safetensors.torch import load_file

from slp_toolkit.cli import main
from slp_toolkit.tasks import get_task

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def write_recipe(folder: Path, corpus: Path, model: dict, task: str = "asr_ctc", lora: dict | None = None,
                 **train) -> Path:  # fmt: skip
    settings = {"learning_rate": 1e-2, "max_steps": 10, "eval_every": 10, "batch_seconds": 40, "warmup": 0.1,
                "num_threads": 1, "log_every": 1, **train}  # fmt: skip
    recipe = {
        "task": task,
        "model": model,
        "data": {"train": str(corpus / "train"), "eval": str(corpus / "validation"), "max_seconds": 8,
                 "max_train_samples": 8, "max_eval_samples": 8},
        "train": settings,
        "lora": {"r": 4, **(lora or {})},
        "output_dir": str(folder / "out"),
    }  # fmt: skip
    path = folder / "r.yaml"
    path.write_text("# test recipe\n#   slp train r.yaml\n" + json.dumps(recipe))  # JSON is YAML
    return path


def split_checkpoint(out: Path) -> tuple[dict, dict]:
    """The last checkpoint's weights as (base weights under the base model's names, adapter weights)."""
    state = load_file(sorted((out / "checkpoints").glob("step-*"))[-1] / "model.safetensors")
    base, adapter = {}, {}
    for key, value in state.items():
        key = key.removeprefix("base_model.model.")
        if "lora_" in key or ".modules_to_save." in key:
            adapter[key] = value
        else:
            base[key.replace(".base_layer", "").replace(".original_module", "")] = value
    return base, adapter


def assert_only_the_adapter_trained(out: Path, base_dir: Path) -> dict:
    base, adapter = split_checkpoint(out)
    # a checkpoint holds what trains; the frozen base stays in base_dir, not copied into every checkpoint
    assert not base, sorted(base)[:5]
    assert (base_dir / "model.safetensors").is_file()
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: nonzero means it trained
    # only the adapter is exported: no full model beside it
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    assert not (out / "model.safetensors").exists()
    return adapter


def assert_merge_matches_adapter(out: Path, merged: Path, batch_of) -> None:
    from slp_toolkit.tasks import detect_task

    assert main(["merge", str(out), str(merged)]) == 0
    task = detect_task(str(out))
    adapted, processor = task.load(str(out))
    plain, _ = task.load(str(merged))
    assert type(plain).__name__ != "PeftModel" and not (merged / "adapter_config.json").exists()
    batch = batch_of(task, processor)
    with torch.no_grad():
        a, b = adapted(**batch).logits, plain(**batch).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def corpus_batch(corpus: Path, extra: dict | None = None):
    import soundfile as sf

    files = sorted((corpus / "test").glob("*.flac"))[:2]

    def make(task, processor):
        examples = [{"audio": sf.read(f, dtype="float32")[0]} for f in files]
        return {**task.collate(examples, processor), **(extra or {})}

    return make


def test_lora_whisper_trains_only_the_adapter_saves_it_alone_reloads_and_merges(tmp_path, corpus):
    model = {"init": "scratch", "preset": "tiny"}
    recipe = write_recipe(tmp_path, corpus, model, task="asr_seq2seq", max_steps=6, eval_every=6)
    assert main(["train", str(recipe)]) == 0
    out = tmp_path / "out"
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((out / "base").resolve()) and config["task_type"] is None
    assert_only_the_adapter_trained(out, out / "base")
    assert json.loads((out / "generation_config.json").read_text())["language"] == "en"

    # an adapter dir works wherever a model dir does
    assert main(["eval", str(out / "best"), "--data", str(corpus / "validation"), "--max-samples", "8"]) == 0
    during = json.loads((out / "metrics.json").read_text())
    after = json.loads((out / "best" / "eval" / "validation" / "metrics.json").read_text())
    assert during["wer"] == pytest.approx(after["wer"], abs=1e-9)

    decoder_ids = torch.tensor([[50258, 50259, 50359, 50363, 440]] * 2)
    assert_merge_matches_adapter(out, tmp_path / "merged", corpus_batch(corpus, {"decoder_input_ids": decoder_ids}))


def test_lora_ctc_on_a_local_pretrained_base_keeps_the_new_head_trainable(tmp_path, corpus, tiny_models):
    base = tiny_models["wav2vec2-ctc"]
    recipe = write_recipe(tmp_path, corpus, {"name_or_path": str(base), "mask_time_prob": 0.0})
    assert main(["train", str(recipe)]) == 0
    out = tmp_path / "out"
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(Path(base).resolve()) and config["modules_to_save"] == ["lm_head"]
    adapter = assert_only_the_adapter_trained(out, Path(base))
    head = load_file(Path(base) / "model.safetensors")["lm_head.weight"]
    assert not torch.equal(adapter["lm_head.modules_to_save.default.weight"], head)
    assert not (out / "base").exists()  # a loadable base is referred to, not copied

    merged = tmp_path / "merged"
    assert_merge_matches_adapter(out, merged, corpus_batch(corpus))
    code = (
        "import sys, soundfile as sf; from transformers import pipeline;"
        "asr = pipeline('automatic-speech-recognition', model=sys.argv[1]);"
        "assert 'slp_toolkit' not in sys.modules;"
        "print(repr(asr({'raw': sf.read(sys.argv[2], dtype='float32')[0], 'sampling_rate': 16000})['text']))"
    )
    clip = sorted((corpus / "test").glob("*.flac"))[0]
    done = subprocess.run([sys.executable, "-c", code, str(merged), str(clip)], capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    ours = subprocess.run([*SLP, "transcribe", str(out), str(clip)], capture_output=True, text=True, env=ENV)
    assert ours.returncode == 0, ours.stderr[-2000:]
    assert repr(ours.stdout.rstrip("\n").split("\t", 1)[1]) == done.stdout.strip()


def test_lora_with_gradient_checkpointing_reaches_adapters_in_encoder_and_decoder():
    from slp_toolkit.config import LoraConfig
    from slp_toolkit.runtime.scratch import build_whisper
    from slp_toolkit.training.lora import apply_lora

    torch.manual_seed(0)
    model, processor = build_whisper("tiny")
    model.activation_checkpointing_enable()
    model = apply_lora(model, LoraConfig(r=2, dropout=0.0), get_task("asr_seq2seq"))
    model.train()
    task = get_task("asr_seq2seq")
    examples = [{"audio": torch.randn(16000).numpy(), **task.preprocess({"text": "a line"}, processor)}]
    model(**task.collate(examples, processor)).loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert any(".encoder." in n for n in grads) and any(".decoder." in n for n in grads)
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]


def test_lora_resume_after_sigkill_matches_uninterrupted_run(tmp_path, corpus):
    model = {"init": "scratch", "preset": "tiny", "mask_time_prob": 0.0}
    settings = {"max_steps": 40, "eval_every": 10, "learning_rate": 3e-3}
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full_dir.mkdir(), cut_dir.mkdir()
    full = write_recipe(full_dir, corpus, model, **settings)  # LoRA dropout on: its RNG must resume too
    cut = write_recipe(cut_dir, corpus, model, **settings)
    assert main(["train", str(full)]) == 0

    kill_and_resume(cut, cut_dir / "out", ENV)
    a = json.loads((full_dir / "out" / "metrics.json").read_text())
    b = json.loads((cut_dir / "out" / "metrics.json").read_text())
    assert a["step"] == b["step"] == 40
    assert b["cer"] == pytest.approx(a["cer"], abs=1e-6)
    assert losses(cut_dir / "out")[-5:] == pytest.approx(losses(full_dir / "out")[-5:], rel=1e-4)
    a_w, b_w = (load_file(d / "out" / "adapter_model.safetensors") for d in (full_dir, cut_dir))
    assert a_w.keys() == b_w.keys() and all(torch.allclose(a_w[k], b_w[k], atol=1e-6) for k in a_w)


@pytest.mark.skipif(not Path(sys.executable).with_name("accelerate").exists() and shutil.which("accelerate") is None,
                    reason="accelerate CLI missing")  # fmt: skip
def test_lora_two_process_ddp_matches_one_process(tmp_path, corpus):
    model = {"init": "scratch", "preset": "tiny", "mask_time_prob": 0.0}
    # 8 clips in batches of exactly 4, no dropout: the same global batches and maths on 1 or 2 processes
    settings = {"max_steps": 8, "eval_every": 8, "batch_seconds": 200, "max_batch_size": 4}
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    one_dir.mkdir(), two_dir.mkdir()
    one = write_recipe(one_dir, corpus, model, lora={"dropout": 0.0}, **settings)
    two = write_recipe(two_dir, corpus, model, lora={"dropout": 0.0}, **settings)
    assert main(["train", str(one)]) == 0
    train_two_processes(two, ENV)
    # without ACCELERATE_USE_CPU a GPU-less --multi_gpu launch runs two unconnected single processes
    assert (two_dir / "out" / "checkpoints" / "step-0000008" / "random_states_1.pkl").is_file(), "not one DDP group"
    assert losses(two_dir / "out") == pytest.approx(losses(one_dir / "out"), rel=1e-3, abs=1e-4)
    assert (two_dir / "out" / "adapter_model.safetensors").is_file() and (two_dir / "out" / "base").is_dir()


def test_a_missing_target_module_is_one_line_naming_the_choices():
    from slp_toolkit.config import ConfigError, LoraConfig
    from slp_toolkit.runtime.scratch import build_ctc
    from slp_toolkit.training.lora import apply_lora

    model, _ = build_ctc(list("abc "), "tiny")
    with pytest.raises(
        ConfigError, match=r"lora.target_modules: Wav2Vec2ForCTC has no module named 'qv_proj' \(.*q_proj"
    ):
        apply_lora(model, LoraConfig(target_modules=["qv_proj"]), get_task("asr_ctc"))


def test_lora_within_the_encoder_leaves_the_decoder_alone():
    """`lora.within: encoder`: adapters only in the encoder (not in the decoder's cross-attention, whose name
    says encoder_attn); a part the model lacks is one line naming the parts it has."""
    from slp_toolkit.config import ConfigError, LoraConfig
    from slp_toolkit.runtime.scratch import build_whisper
    from slp_toolkit.training.lora import apply_lora

    task = get_task("asr_seq2seq")
    targets = ["q_proj", "v_proj"]
    model = apply_lora(build_whisper("tiny")[0], LoraConfig(r=2, target_modules=targets, within="encoder"), task)
    adapted = [n for n, p in model.named_parameters() if p.requires_grad]
    layers = len(model.base_model.model.model.encoder.layers)
    assert len(adapted) == 2 * len(targets) * layers  # lora_A and lora_B of each
    assert all(".encoder.layers." in n and ".decoder." not in n for n in adapted), adapted
    with pytest.raises(ConfigError, match=r"^lora.within: no q_proj inside a part named 'neck' \(parts: .*decoder"):
        apply_lora(build_whisper("tiny")[0], LoraConfig(target_modules=["q_proj"], within="neck"), task)
