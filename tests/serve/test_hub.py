"""`slp push`: the staged upload of a tiny CTC run (made by `slp train`, then `slp eval`), its model card,
the Space, and one-line failures offline, without a token and when the Hub cannot be reached."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, SpaceCard

from slp_toolkit.cli import main
from slp_toolkit.metrics import classification_metrics
from slp_toolkit.serve.hub import headline

FAKE_TOKEN = "hf_fakeTokenForTests0123456789abcdefXYZ"
RUN_FILES = {"config.json", "model.safetensors", "processor_config.json", "tokenizer_config.json", "vocab.json",
             "recipe.yaml", "metrics.json", "curves.png", "eval/test/metrics.json"}  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(ctc_run, corpus, tmp_path_factory) -> Path:
    """A copy of the session's CTC run, evaluated on the test split (eval/test/metrics.json)."""
    out = tmp_path_factory.mktemp("push") / "run"
    shutil.copytree(ctc_run, out)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLP_CACHE", str(tmp_path_factory.getbasetemp() / "slp_cache"))
        assert main(["eval", str(out), "--data", str(corpus / "test"), "--max-samples", "8"]) == 0
    return out


@pytest.fixture(autouse=True)
def _fake_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)


def staged(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def no_token_anywhere(folder: Path, *texts: str) -> None:
    for p in folder.rglob("*"):
        assert not p.is_file() or FAKE_TOKEN.encode() not in p.read_bytes(), p
    for text in texts:
        assert FAKE_TOKEN not in text


def test_dry_run_stages_exactly_the_upload_with_a_complete_card(run_dir, tmp_path, capsys):
    stage = tmp_path / "stage"
    assert main(["push", str(run_dir), "--repo-id", "someone/tiny-ctc", "--dry-run", str(stage)]) == 0
    out, err = capsys.readouterr()
    assert staged(stage) == RUN_FILES | {"README.md"}
    assert "nothing uploaded (--dry-run)" in out
    no_token_anywhere(stage, out, err)

    card = ModelCard.load(stage / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "automatic-speech-recognition"
    assert {"slp_toolkit", "asr_ctc"} <= set(card.data.tags) and card.data.base_model is None  # a scratch model
    measured = {
        (split, key): value
        for split, path in (("validation", "metrics.json"), ("test", "eval/test/metrics.json"))
        for key, value in headline(json.loads((run_dir / path).read_text())).items()
        if value is not None
    }
    in_card = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert in_card == measured and {"wer", "cer", "wer_raw", "cer_raw"} <= {key for _, key in in_card}
    breakdown = [k for k in json.loads((run_dir / "eval/test/metrics.json").read_text()) if "/" in k]
    assert all(f"| test | {k} |" in card.text for k in breakdown)
    assert "![curves](curves.png)" in card.text


def test_lora_run_stages_only_the_adapter_and_names_its_base(run_dir, tmp_path):
    """An adapter dir (files as peft writes them; staging never loads the weights) on a Hub base."""
    adapter = tmp_path / "adapter_run"
    shutil.copytree(run_dir, adapter, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "best"))
    (adapter / "model.safetensors").rename(adapter / "adapter_model.safetensors")
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "facebook/wav2vec2-base",
                                                             "peft_type": "LORA", "r": 8}))  # fmt: skip
    (adapter / "README.md").write_text("peft's own card, replaced by ours\n")
    stage = tmp_path / "stage"
    assert main(["push", str(adapter), "--repo-id", "someone/tiny-lora", "--dry-run", str(stage)]) == 0
    expected = RUN_FILES - {"config.json", "model.safetensors"} | {"adapter_model.safetensors", "adapter_config.json"}
    assert staged(stage) == expected | {"README.md"}
    card = ModelCard.load(stage / "README.md")
    assert (card.data.library_name, card.data.base_model) == ("peft", "facebook/wav2vec2-base")
    assert "lora" in card.data.tags


def test_space_is_staged_ready_to_run(run_dir, tmp_path):
    stage = tmp_path / "stage"
    assert main(["push", str(run_dir), "--repo-id", "someone/tiny-ctc", "--dry-run", str(stage), "--space"]) == 0
    assert staged(stage) == RUN_FILES | {"README.md", "space/app.py", "space/requirements.txt", "space/README.md"}
    space = SpaceCard.load(stage / "space" / "README.md")
    assert space.data.sdk == "gradio" and space.data.app_file == "app.py" and space.data.models == ["someone/tiny-ctc"]
    app = (stage / "space" / "app.py").read_text()
    compile(app, "app.py", "exec")
    assert 'MODEL_ID = "someone/tiny-ctc"' in app and 'PIPELINE_TAG = "automatic-speech-recognition"' in app
    assert "transformers==" in (stage / "space" / "requirements.txt").read_text()
    no_token_anywhere(stage)


def test_classifier_metrics_land_in_the_card(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "best"))
    (run / "eval" / "emo").mkdir()
    scores = classification_metrics(["happy", "sad", "sad"], ["happy", "happy", "sad"])
    (run / "eval" / "emo" / "metrics.json").write_text(json.dumps(scores))
    stage = tmp_path / "stage"
    assert main(["push", str(run), "--repo-id", "x/y", "--dry-run", str(stage)]) == 0
    card = ModelCard.load(stage / "README.md")
    ua = [r.metric_value for r in card.data.eval_results if (r.dataset_name, r.metric_type) == ("emo", "ua")]
    assert ua == [scores["ua"]] and "Confusion on emo" in card.text


def one_line_error(capsys) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    no_token_anywhere(Path("/nonexistent"), out, err)
    return err.strip()


def test_offline_push_fails_in_one_line(run_dir, capsys):
    assert main(["push", str(run_dir), "--repo-id", "someone/tiny-ctc"]) == 2
    assert one_line_error(capsys).startswith("error: cannot push while offline")


def test_push_without_a_token_fails_in_one_line(run_dir, capsys, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    monkeypatch.delenv("HF_TOKEN")
    assert main(["push", str(run_dir), "--repo-id", "someone/tiny-ctc"]) == 2
    assert one_line_error(capsys).startswith("error: no Hugging Face token")


def test_unreachable_hub_fails_in_one_line_without_the_token(run_dir, capsys, monkeypatch):
    """Online mode with a token, but conftest lets no socket leave the machine."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert main(["push", str(run_dir), "--repo-id", "someone/tiny-ctc", "--private"]) == 2
    assert one_line_error(capsys).startswith("error: push to someone/tiny-ctc failed:")


def test_stage_dir_must_be_empty_and_repo_id_valid(run_dir, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.txt").write_text("x")
    assert main(["push", str(run_dir), "--repo-id", "a/b", "--dry-run", str(tmp_path / "full")]) == 2
    assert "is not an empty directory" in one_line_error(capsys)
    assert main(["push", str(run_dir), "--repo-id", "a/b/c", "--dry-run", str(tmp_path / "s")]) == 2
    assert "--repo-id 'a/b/c'" in one_line_error(capsys)


def test_the_token_never_reaches_a_run_s_outputs(corpus, tmp_path, capsys):
    """HF_TOKEN is set (autouse fixture): train, evaluate and stage a run; no file and no line holds it."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "# t\n#   slp train r.yaml\ntask: asr_ctc\nmodel: {init: scratch, preset: tiny}\n"
        f"data: {{train: {corpus / 'train'}, eval: {corpus / 'validation'}, max_train_samples: 4, max_eval_samples: 2}}\n"
        f"train: {{max_steps: 2, eval_every: 1, batch_seconds: 8, num_threads: 1}}\noutput_dir: {tmp_path / 'out'}\n"
    )
    assert main(["train", str(recipe)]) == 0
    assert main(["eval", str(tmp_path / "out"), "--data", str(corpus / "test"), "--max-samples", "2"]) == 0
    assert main(["push", str(tmp_path / "out"), "--repo-id", "a/b", "--dry-run", str(tmp_path / "stage")]) == 0
    printed = capsys.readouterr()
    assert (tmp_path / "out" / "checkpoints").is_dir() and any((tmp_path / "out" / "tensorboard").rglob("*"))
    no_token_anywhere(tmp_path, printed.out, printed.err)


def test_stray_files_in_the_output_dir_are_never_staged(run_dir, tmp_path):
    """A user's output dir collects other things: an .env, a token file, caches, notebooks, checkpoints."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / ".env").write_text(f"HF_TOKEN={FAKE_TOKEN}\n")
    (run / "token").write_text(FAKE_TOKEN)
    (run / ".cache" / "huggingface").mkdir(parents=True)
    (run / ".cache" / "huggingface" / "token").write_text(FAKE_TOKEN)
    (run / "notes.ipynb").write_text("{}")
    (run / "checkpoints" / "step-0000001").mkdir(parents=True, exist_ok=True)
    (run / "checkpoints" / "step-0000001" / "optimizer.bin").write_bytes(b"\0" * 10)
    stage = tmp_path / "stage"
    assert main(["push", str(run), "--repo-id", "someone/tiny-ctc", "--dry-run", str(stage)]) == 0
    assert staged(stage) == RUN_FILES | {"README.md"}
    no_token_anywhere(stage)
