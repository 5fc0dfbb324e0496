"""The training loop on tiny models and the synthetic corpus: learning, resume, outputs, DDP."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SLP, kill_and_resume, losses, plain_pipeline, train_two_nodes, train_two_processes, write_recipe

from slp_toolkit.cli import main


def test_overfit_eight_clips_loss_halves(tmp_path, corpus):
    assert main(["train", str(write_recipe(tmp_path, corpus, max_steps=60, eval_every=60))]) == 0
    curve = losses(tmp_path / "out")
    assert curve[-1] < 0.5 * curve[0], curve
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["step"] == 60 and 0.0 <= metrics["cer"] <= 1.5


def test_outputs_load_in_plain_pipeline(tmp_path, corpus):
    assert main(["train", str(write_recipe(tmp_path, corpus, max_steps=5, eval_every=5))]) == 0
    out = tmp_path / "out"
    for name in ("recipe.yaml", "metrics.json", "curves.png", "model.safetensors", "config.json"):
        assert (out / name).is_file(), name
    clip = sorted((corpus / "test").glob("*.flac"))[0]
    theirs = plain_pipeline("automatic-speech-recognition", out, clip, "repr(pipe(sys.argv[2])['text'])")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    ours = subprocess.run([*SLP, "transcribe", str(out), str(clip)], capture_output=True, text=True, env=env)
    assert ours.returncode == 0, ours.stderr[-2000:]
    assert repr(ours.stdout.rstrip("\n").split("\t", 1)[1]) == theirs  # an empty transcript too


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, corpus):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full_dir.mkdir(), cut_dir.mkdir()
    full = write_recipe(full_dir, corpus, max_steps=40, eval_every=10)
    cut = write_recipe(cut_dir, corpus, max_steps=40, eval_every=10)
    subprocess.run([*SLP, "train", str(full)], check=True, capture_output=True, env=env)

    kill_and_resume(cut, cut_dir / "out", env)
    a = json.loads((full_dir / "out" / "metrics.json").read_text())
    b = json.loads((cut_dir / "out" / "metrics.json").read_text())
    assert a["step"] == b["step"] == 40
    assert b["cer"] == pytest.approx(a["cer"], abs=1e-6) and b["wer"] == pytest.approx(a["wer"], abs=1e-6)
    assert losses(cut_dir / "out")[-5:] == pytest.approx(losses(full_dir / "out")[-5:], rel=1e-4)


def test_existing_checkpoints_need_resume(tmp_path, corpus, capsys):
    recipe = write_recipe(tmp_path, corpus, max_steps=2, eval_every=2)
    assert main(["train", str(recipe)]) == 0
    assert main(["train", str(recipe)]) == 2
    assert "already holds checkpoints; pass --resume" in capsys.readouterr().err


def test_bad_recipe_stops_before_any_model_is_built(tmp_path, corpus, capsys):
    recipe = write_recipe(tmp_path, corpus)
    assert main(["train", str(recipe), "model.preset=tiny", "train.batch_secs=3"]) == 2
    assert "unknown key 'train.batch_secs'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(shutil.which("accelerate") is None and not Path(sys.executable).with_name("accelerate").exists(),
                    reason="accelerate CLI missing")  # fmt: skip
def test_two_process_ddp_matches_one_process(tmp_path, corpus):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env["ACCELERATE_USE_CPU"] = "1"  # without it a GPU-less --multi_gpu launch makes two unconnected processes
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    one_dir.mkdir(), two_dir.mkdir()
    # 8 clips in batches of exactly 4: the same global batches whether 1 or 2 processes share them
    settings = {"max_steps": 8, "eval_every": 8, "batch_seconds": 200, "max_batch_size": 4}
    one = write_recipe(one_dir, corpus, **settings)
    two = write_recipe(two_dir, corpus, **settings)
    subprocess.run([*SLP, "train", str(one)], check=True, capture_output=True, env=env)
    train_two_processes(two, env)
    assert (two_dir / "out" / "checkpoints" / "step-0000008" / "random_states_1.pkl").is_file(), "not one DDP group"
    assert losses(two_dir / "out") == pytest.approx(losses(one_dir / "out"), rel=1e-3, abs=1e-4)


@pytest.mark.skipif(not Path(sys.executable).with_name("accelerate").exists(), reason="accelerate CLI missing")
def test_two_machines_of_one_process_match_one_process(tmp_path, corpus):
    """recipes/accelerate/multinode.yaml as 2 "machines" (machine_rank 0/1) on localhost over gloo."""
    import socket

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    one_dir.mkdir(), two_dir.mkdir()
    settings = {"max_steps": 6, "eval_every": 6, "batch_seconds": 200, "max_batch_size": 4}
    one, two = write_recipe(one_dir, corpus, **settings), write_recipe(two_dir, corpus, **settings)
    subprocess.run([*SLP, "train", str(one)], check=True, capture_output=True, env=env)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    train_two_nodes(two, env, port)
    assert (two_dir / "out" / "checkpoints" / "step-0000006" / "random_states_1.pkl").is_file(), "not one group"
    assert losses(two_dir / "out") == pytest.approx(losses(one_dir / "out"), rel=1e-3, abs=1e-4)


def test_unjoined_processes_are_refused(tmp_path, corpus):
    """A GPU-less --multi_gpu launch without ACCELERATE_USE_CPU: two lone processes racing on one dir."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "WORLD_SIZE": "2"}
    env.pop("ACCELERATE_USE_CPU", None)
    done = subprocess.run([*SLP, "train", str(write_recipe(tmp_path, corpus))], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "did not join them" in done.stderr


def test_user_audiofolder_with_only_four_overrides(tmp_path, corpus, tiny_models, capsys):
    """README's recipe for one's own data: a shipped recipe plus data/output/model overrides."""
    overrides = [
        f"data.train={corpus / 'train'}",
        f"data.eval={corpus / 'validation'}",
        f"output_dir={tmp_path / 'mine'}",
        f"model.name_or_path={tiny_models['wav2vec2-ctc']}",
        "train.max_steps=3",  # keep the test short; the recipe's own budget is for real runs
        "train.eval_every=3",
    ]
    assert main(["train", "recipes/asr/wav2vec2_base_ctc.yaml", *overrides]) == 0
    assert (tmp_path / "mine" / "model.safetensors").is_file()
    assert main(["eval", str(tmp_path / "mine"), "--data", str(corpus / "test_unseen")]) == 0
    assert "cer" in capsys.readouterr().out


def test_a_pretrained_base_trains_in_train_mode_from_the_first_step(tmp_path, corpus, tiny_models):
    """from_pretrained returns a model in eval mode; training it so switches off dropout, SpecAugment and
    gradient checkpointing until the first evaluation. With dropout the first loss must depend on it."""
    first = {}
    for dropout in (0.0, 0.5):
        out = tmp_path / f"d{dropout}"
        overrides = [f"data.train={corpus / 'train'}", f"data.eval={corpus / 'validation'}", f"output_dir={out}",
                     f"model.name_or_path={tiny_models['wav2vec2-ctc']}", "model.mask_time_prob=0", "train.max_steps=1",
                     "train.eval_every=1", "train.log_every=1", "data.max_train_samples=8", "data.max_eval_samples=2",
                     f"model.dropout={dropout}"]  # fmt: skip
        assert main(["train", "recipes/asr/wav2vec2_base_ctc.yaml", *overrides]) == 0
        first[dropout] = losses(out)[0]
    assert first[0.0] != pytest.approx(first[0.5], rel=1e-4), first


def test_a_time_budget_shows_elapsed_over_budget(tmp_path, corpus, capsys, monkeypatch):
    """train.max_minutes without max_steps: the bar counts seconds of the budget (so it has an ETA)."""
    monkeypatch.setenv("SLP_PROGRESS", "bar")  # the terminal's bar (captured output is no terminal)
    recipe = write_recipe(tmp_path, corpus, max_steps=None, max_minutes=0.05, eval_every=10_000)
    assert main(["train", str(recipe)]) == 0
    err = capsys.readouterr().err
    assert re.search(r"train: +\d+%.*\| *3/3 \[", err), err[-500:]


def test_a_step_with_an_infinite_loss_is_skipped_and_counted(tmp_path, corpus):
    """A transcript longer than its clip has frames has no CTC alignment: loss inf (ctc_zero_infinity off).
    That step makes no update, is counted, and the run goes on."""
    import csv

    train = tmp_path / "train"
    shutil.copytree(corpus / "train", train)
    with (train / "metadata.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))[:8]
    rows[0]["transcription"] = "la " * 150  # 450 labels for a clip of a few seconds (50 frames/s)
    with (train / "metadata.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    recipe = write_recipe(tmp_path, corpus, max_steps=8, eval_every=8, max_batch_size=1)
    overrides = [f"data.train={train}", "model.ctc_zero_infinity=false"]
    assert main(["train", str(recipe), *overrides]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["skipped_steps"] == 1 and metrics["step"] == 8
    assert sum(not math.isfinite(x) for x in losses(tmp_path / "out")) == 1


def test_a_diverging_run_stops_after_max_nonfinite_steps_in_a_row(tmp_path, corpus, capsys):
    recipe = write_recipe(tmp_path, corpus, learning_rate=1e6, warmup=0.0, max_nonfinite_steps=3)
    assert main(["train", str(recipe)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in errors[0]
    assert re.search(
        r"error: loss or gradient not finite for 3 steps in a row at step \d+ .*max_nonfinite_steps=3", errors[0]
    )


def test_a_model_dir_with_only_pickle_weights_is_refused_unless_allowed(
    tmp_path, corpus, tiny_models, capsys, monkeypatch
):
    from transformers import AutoModelForCTC

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_models["wav2vec2-ctc"], pickled)
    model = AutoModelForCTC.from_pretrained(pickled)
    (pickled / "model.safetensors").unlink()
    torch_bin = pickled / "pytorch_model.bin"
    import torch

    torch.save(model.state_dict(), torch_bin)  # what an old or untrusted checkpoint ships
    clip = str(sorted((corpus / "test").glob("*.flac"))[0])
    capsys.readouterr()
    assert main(["transcribe", str(pickled), clip]) == 2
    err = capsys.readouterr().err.strip()
    assert "pytorch_model.bin" in err and "SLP_ALLOW_PICKLE=1" in err and "\n" not in err
    monkeypatch.setenv("SLP_ALLOW_PICKLE", "1")
    assert main(["transcribe", str(pickled), clip]) == 0


def test_ddp_looks_for_unused_parameters_only_where_layers_can_drop():
    from transformers import SpeechT5Config, Wav2Vec2Config

    from slp_toolkit.training.loop import skips_layers

    assert not skips_layers(Wav2Vec2Config(layerdrop=0.0)) and skips_layers(Wav2Vec2Config(layerdrop=0.1))
    assert skips_layers(SpeechT5Config(encoder_layerdrop=0.0, decoder_layerdrop=0.2))
    assert skips_layers({"id2label": {0: "a"}, "audio_config": {"layerdrop": 0.5}})  # sub-configs, int keys


def test_attention_implementation_is_set_or_refused_in_one_line(tmp_path, corpus, capsys, tiny_models):
    from transformers import AutoModelForCTC

    from slp_toolkit.training.loop import set_attention

    model = AutoModelForCTC.from_pretrained(tiny_models["wav2vec2-ctc"])
    set_attention(model, "eager")
    assert model.config._attn_implementation == "eager"
    recipe = write_recipe(tmp_path, corpus, max_steps=2, eval_every=2)
    assert main(["train", str(recipe), "model.attn_implementation=eager"]) == 0
    assert "attn_implementation" not in (tmp_path / "out" / "config.json").read_text()  # loads anywhere
    capsys.readouterr()
    shutil.rmtree(tmp_path / "out")
    # flash-attn is not installed here (and needs a GPU): one line naming the key, before any step
    assert main(["train", str(recipe), "model.attn_implementation=flash_attention_2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model.attn_implementation=flash_attention_2:") and err.count("\n") == 1


def test_deepspeed_launches_are_refused_in_one_line(tmp_path, corpus):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_DEEPSPEED": "true"}
    done = subprocess.run([*SLP, "train", str(write_recipe(tmp_path, corpus))], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "DeepSpeed is not supported yet" in done.stderr
    assert "Traceback" not in done.stderr


def test_weight_decay_spares_biases_and_norms(tiny_models):
    from transformers import AutoModelForCTC

    from slp_toolkit.training.loop import decay_groups

    model = AutoModelForCTC.from_pretrained(tiny_models["wav2vec2-ctc"])
    decay, rest = decay_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and rest["weight_decay"] == 0.0
    spared = {names[id(p)] for p in rest["params"]}
    assert "lm_head.bias" in spared and "wav2vec2.encoder.layer_norm.weight" in spared
    assert "lm_head.weight" in {names[id(p)] for p in decay["params"]}
    assert len(decay["params"]) + len(rest["params"]) == sum(p.requires_grad for p in model.parameters())


def test_a_log_file_gets_plain_progress_lines_not_carriage_returns(tmp_path, corpus):
    """`slp train ... 2> run.log`: no bar refreshes in the file, a bounded number of lines, the last progress
    line says where the run ended; --quiet leaves warnings only."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "SLP_PROGRESS_SECONDS": "1"}
    recipe = write_recipe(tmp_path, corpus, max_steps=40, eval_every=20)
    with (tmp_path / "run.log").open("w") as log:
        done = subprocess.run([*SLP, "train", str(recipe)], stdout=log, stderr=log, env=env)
    assert done.returncode == 0
    text = (tmp_path / "run.log").read_text()
    assert "\r" not in text and len(text.splitlines()) < 60, text[-2000:]
    progress = [line for line in text.splitlines() if line.startswith("INFO train: step ")]
    assert progress and progress[-1].startswith("INFO train: step 40/40 (100%)") and "audio_s_per_s" in progress[-1]
    # each line's loss is the mean since the line before (log_every is 10 steps: it used to repeat one value)
    shown = [line.split("loss ")[1].split()[0] for line in progress if "loss " in line]
    assert len(shown) >= 3 and max(shown.count(v) for v in shown) <= 2, progress
    shutil.rmtree(tmp_path / "out")
    quiet = subprocess.run([*SLP, "--quiet", "train", str(recipe)], capture_output=True, text=True, env=env)
    assert quiet.returncode == 0 and "INFO" not in quiet.stderr
    loud = subprocess.run([*SLP, "train", str(recipe), "--resume"], capture_output=True, text=True,
                          env={**env, "SLP_LOG_LEVEL": "shouting"})  # fmt: skip
    assert loud.returncode == 2 and "SLP_LOG_LEVEL=SHOUTING" in loud.stderr


def test_accumulated_micro_batches_weigh_their_label_tokens_as_one_batch():
    """Under gradient accumulation each micro-batch's loss was its own mean, so a batch of 3 label tokens
    weighed as much as one of 40; the step's gradient must be that of the whole global batch's token mean."""
    import torch
    from accelerate import Accelerator

    from slp_toolkit.runtime.scratch import build_whisper
    from slp_toolkit.tasks import get_task
    from slp_toolkit.training.loop import loss_weights

    task = get_task("asr_seq2seq")
    model, _ = build_whisper("tiny", "english", "transcribe")
    torch.manual_seed(0)
    frames = model.config.max_source_positions * 2

    def batch(n: int, tokens: int) -> dict:
        labels = torch.randint(50, 100, (n, tokens))
        labels[1:, tokens // 4 :] = -100  # rows of unequal length
        return {"input_features": torch.randn(n, model.config.num_mel_bins, frames), "labels": labels}

    short, long = batch(2, 4), batch(3, 48)
    whole = {"input_features": torch.cat([short["input_features"], long["input_features"]]),
             "labels": torch.nn.functional.pad(short["labels"], (0, 44), value=-100)}  # fmt: skip
    whole["labels"] = torch.cat([whole["labels"], long["labels"]])

    def grads(weighted: bool) -> torch.Tensor:
        model.zero_grad()
        acc = Accelerator(gradient_accumulation_steps=2, cpu=True)
        weights = loss_weights(task, [short, long], acc) if weighted else [1.0, 1.0]
        for micro, w in zip([short, long], weights, strict=True):
            with acc.accumulate(model):
                acc.backward(task.caps.compute_loss(model, micro) * w)
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    model.train(False)  # no dropout: the same function in every pass
    model.zero_grad()
    task.caps.compute_loss(model, whole).backward()
    expected = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert torch.allclose(grads(True), expected, atol=1e-6, rtol=1e-4)
    assert not torch.allclose(grads(False), expected, atol=1e-6, rtol=1e-4)  # the old mean of means
