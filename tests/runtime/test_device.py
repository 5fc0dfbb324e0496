"""One device rule for every inference command: --device picks, auto takes a GPU when there is one."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

from slp_toolkit.cli import main
from slp_toolkit.runtime.device import DeviceError, load_placed, model_device, precision_for, resolve
from slp_toolkit.tasks import get_task

NO_GPU = not torch.cuda.is_available()


@pytest.mark.skipif(not NO_GPU, reason="checks the CPU-only answers")
def test_auto_is_the_cpu_here_and_a_missing_gpu_is_one_line_naming_what_there_is():
    assert resolve("auto") == torch.device("cpu") == resolve(None)
    with pytest.raises(DeviceError, match=r"--device cuda:1: this machine has no such device \(it has: cpu"):
        resolve("cuda:1")
    with pytest.raises(DeviceError, match="not a device name"):
        resolve("banana")
    assert precision_for(torch.device("cpu"), "auto") == "fp32"  # bf16 on CPU only when asked
    assert precision_for(torch.device("cpu"), "bf16") == "bf16"


def test_auto_precision_is_the_runs_own(tmp_path, ctc_run):
    """`slp eval` defaulted to bf16 on a GPU while in-training evaluation followed train.mixed_precision: auto is
    now the run's precision (its recipe.yaml), so the two agree; the demo and --folds take --precision too."""
    import yaml

    from slp_toolkit.cli import build_parser
    from slp_toolkit.serve import demo

    cpu = torch.device("cpu")
    for trained, expected in (("bf16", "bf16"), ("no", "fp32"), ("fp16", "fp32")):
        (tmp_path / "recipe.yaml").write_text(
            yaml.safe_dump({"task": "asr_ctc", "train": {"mixed_precision": trained}})
        )
        assert precision_for(cpu, "auto", str(tmp_path)) == expected
        assert precision_for(cpu, "fp32", str(tmp_path)) == "fp32"  # asked beats the run's
    assert precision_for(cpu, "auto", str(tmp_path / "none")) == "fp32"
    parser = build_parser()
    for argv in (
        ["demo", "x", "--precision", "bf16"],
        ["eval", "x", "--data", "d", "--folds", "2", "--precision", "bf16"],
    ):
        assert parser.parse_args(argv).precision == "bf16"
    served, _ = demo.load_models({"asr": str(ctc_run)}, "cpu", "bf16")
    plain, _ = demo.load_models({"asr": str(ctc_run)}, "cpu", "fp32")
    assert served["asr"].task.predict is not plain["asr"].task.predict == get_task("asr_ctc").predict


def test_the_model_is_placed_where_asked(ctc_run):
    model, _ = load_placed(get_task("asr_ctc"), str(ctc_run), "cpu")
    assert model_device(model) == torch.device("cpu")


@pytest.mark.parametrize("command", ["eval", "transcribe", "classify", "synthesize"])
def test_every_inference_command_takes_device(command, ctc_run, tiny_models, corpus, tmp_path, capsys, caplog):
    import json

    import numpy as np

    split = str(corpus / "validation")
    tts = tiny_models["speecht5-tts"]
    dim = json.loads((tts / "config.json").read_text())["speaker_embedding_dim"]
    np.save(tmp_path / "voice.npy", np.zeros(dim, dtype=np.float32))
    argv = {"eval": ["eval", str(ctc_run), "--data", split, "--output-dir", str(tmp_path)],
            "transcribe": ["transcribe", str(ctc_run), split],
            "classify": ["classify", str(tiny_models["wav2vec2-emotion"]), split],
            "synthesize": ["synthesize", str(tts), "hello", "--speaker", str(tmp_path / "voice.npy"),
                           "-o", str(tmp_path / "x.wav")]}[command]  # fmt: skip
    wanted = "cpu" if NO_GPU else "cuda:0"
    with caplog.at_level("INFO", logger="slp"):
        assert main([*argv, "--device", wanted]) == 0
    assert f"running on {wanted}" in caplog.text
    capsys.readouterr()
    if NO_GPU:
        assert main([*argv, "--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert "--device cuda: this machine has no such device" in err and err.count("\n") == 1


def test_bf16_whisper_inference_in_every_command_and_the_demo(tiny_models, corpus, tmp_path, capsys):
    """Whisper's log-mel computed under CPU autocast was bf16, and numpy refused it: `--precision bf16` was a
    traceback (TypeError: Got unsupported ScalarType BFloat16) in transcribe, eval, classify and the demo."""
    from slp_toolkit.cli import main
    from slp_toolkit.serve import demo

    split = corpus / "validation"
    clip = str(next(split.glob("*.flac")))
    whisper, emotion = str(tiny_models["whisper"]), str(tiny_models["whisper-emotion"])
    for argv in (["transcribe", whisper, clip], ["transcribe", whisper, clip, "--json"],
                 ["eval", whisper, "--data", str(split), "--max-samples", "4", "--output-dir", str(tmp_path / "e")],
                 ["classify", emotion, clip]):  # fmt: skip
        assert main([*argv, "--precision", "bf16", "--device", "cpu"]) == 0, argv
    served, _ = demo.load_models({"asr": whisper, "emotion": emotion}, "cpu", "bf16")
    wave = np.zeros(16000, np.float32)
    assert isinstance(demo.predict(served["asr"], [wave])[0], str)
    ranking = dataclasses.replace(
        served["emotion"].task, predict=functools.partial(served["emotion"].task.caps.ranked, k=2)
    )
    assert len(demo.predict(served["emotion"], [wave], ranking)[0]) == 2


def test_int8_quantises_linear_layers_on_cpu_only(tiny_models, corpus, capsys):
    """`--precision int8` (dynamic int8 linear layers, CPU) runs every inference command on a Whisper; its
    encoder states stay close to fp32's; anywhere but the CPU it is one line."""
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

    from slp_toolkit.cli import main
    from slp_toolkit.runtime.device import quantize_int8

    whisper = str(tiny_models["whisper"])
    clip = str(next((corpus / "validation").glob("*.flac")))
    for argv in (["transcribe", whisper, clip], ["classify", str(tiny_models["whisper-emotion"]), clip]):
        assert main([*argv, "--precision", "int8"]) == 0, argv
    task = get_task("asr_seq2seq")
    model, _ = load_placed(task, whisper, "cpu")
    features = torch.randn(1, model.config.num_mel_bins, 2 * model.config.max_source_positions)
    with torch.inference_mode():
        before = model.get_encoder()(features).last_hidden_state
        quantize_int8(model, torch.device("cpu"))
        after = model.get_encoder()(features).last_hidden_state
    assert isinstance(model.get_encoder().layers[0].fc1, Int8Linear)
    assert torch.nn.functional.cosine_similarity(before.flatten(), after.flatten(), dim=0) > 0.99
    assert not torch.equal(before, after)
    with pytest.raises(DeviceError, match="--precision int8 runs on the CPU"):
        quantize_int8(model, torch.device("meta"))
