"""Full-size twins of the Hub checkpoints: published sizes and settings, and the Hub recipes run on them
unchanged for 1-2 steps (the long runs are `benchmarks/full_size.py` and the `slow` test below)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import SLP
from safetensors import safe_open

from slp_toolkit.synth.twins import PUBLISHED_MILLIONS, TWINS, WHISPER, WHISPER_SUPPRESS, write_twin

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2", "CUDA_VISIBLE_DEVICES": ""}
RECIPES = Path(__file__).parents[2] / "recipes"


@pytest.fixture(scope="session")
def twins(tmp_path_factory):
    """Twins the fast tests train on, written once per session (~1 GB, ~10 s)."""
    out = tmp_path_factory.mktemp("twins")
    return {name: write_twin(name, out) for name in ("facebook/wav2vec2-base", "openai/whisper-tiny")}


def slp(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([*SLP, *args], capture_output=True, text=True, env=ENV, timeout=600)
    assert not check or done.returncode == 0, done.stderr[-3000:]
    return done


def hub_recipe(name: str, corpus: Path, out: Path, *overrides: str) -> list[str]:
    """`slp train` arguments running a shipped Hub recipe unchanged but for data, length and output."""
    return ["train", str(RECIPES / name), f"data.train={corpus / 'train'}", f"data.eval={corpus / 'validation'}",
            "data.max_train_samples=16", "data.max_eval_samples=2", "train.max_steps=2", "train.eval_every=2",
            "train.batch_seconds=8", "train.num_threads=2", f"output_dir={out}", *overrides]  # fmt: skip


@pytest.mark.parametrize("name", list(TWINS))
def test_twin_parameter_count_matches_the_published_size(name):
    import torch

    torch.manual_seed(0)
    with torch.device("meta"):  # shapes only: the 600-800 M twins would take GBs and a minute to fill
        model, _ = TWINS[name]()
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(millions - PUBLISHED_MILLIONS[name]) / PUBLISHED_MILLIONS[name] < 0.05, millions


def test_whisper_twin_settings_equal_openai_whisper_package():
    whisper = pytest.importorskip("whisper")  # the dev extra: the settings are checked, not needed, there
    import base64
    import gzip

    from whisper.tokenizer import get_tokenizer

    assert WHISPER_SUPPRESS[:-6] == list(get_tokenizer(True).non_speech_tokens)
    for size, shape in WHISPER.items():
        bits = np.frombuffer(gzip.decompress(base64.b85decode(whisper._ALIGNMENT_HEADS[size])), dtype=bool)
        heads = np.argwhere(bits.reshape(shape["layers"], shape["heads"])).tolist()
        assert heads == shape["alignment_heads"]


def test_twin_dirs_load_offline_like_the_hub_checkpoints(twins):
    from transformers import AutoConfig, AutoFeatureExtractor, GenerationConfig, WhisperProcessor

    w2v = twins["facebook/wav2vec2-base"]
    assert AutoConfig.from_pretrained(w2v).architectures == ["Wav2Vec2ForPreTraining"]
    # group-norm wav2vec2 is fed zero-padded audio without a mask, as on the Hub
    assert AutoFeatureExtractor.from_pretrained(w2v).return_attention_mask is False
    whisper = twins["openai/whisper-tiny"]
    gen = GenerationConfig.from_pretrained(whisper)
    assert gen.suppress_tokens == WHISPER_SUPPRESS and gen.lang_to_id["<|en|>"] == 50259
    assert gen.task_to_id == {"transcribe": 50359, "translate": 50358} and gen.no_timestamps_token_id == 50363
    processor = WhisperProcessor.from_pretrained(whisper)
    assert processor.feature_extractor.chunk_length == 30 and processor.tokenizer.pad_token == "<|endoftext|>"
    for path in twins.values():  # weights readable by others (safetensors alone writes them 0600)
        assert os.stat(path / "model.safetensors").st_mode & stat.S_IROTH
        assert json.loads((path / "twin.json").read_text())["twin_of"] in TWINS


def test_unknown_twin_is_one_line(tmp_path):
    done = slp("tiny", "--full-size", "facebook/wav2vec3", str(tmp_path), check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "openai/whisper-small" in done.stderr


@pytest.mark.slow  # ~240 s on a CPU without bf16 instructions: a 95 M-parameter twin trained in bf16
def test_wav2vec2_base_recipe_trains_in_bf16_with_checkpointing_and_loads_in_pipeline(tmp_path, corpus, twins):
    out = tmp_path / "out"
    slp(*hub_recipe("asr/wav2vec2_base_ctc.yaml", corpus, out, f"model.name_or_path={twins['facebook/wav2vec2-base']}",
                    "model.gradient_checkpointing=true", "train.mixed_precision=bf16"))  # fmt: skip
    assert os.stat(out / "model.safetensors").st_mode & stat.S_IROTH
    slp("push", str(out), "--repo-id", "me/w2v", "--dry-run", str(tmp_path / "stage"))
    assert "full-size twin of facebook/wav2vec2-base" in (tmp_path / "stage" / "README.md").read_text()
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(out))
    assert isinstance(asr(np.zeros(16000, dtype=np.float32))["text"], str)
    assert asr.model.config.vocab_size == len(asr.tokenizer)  # the head was rebuilt for our characters


def test_whisper_lora_recipe_on_a_twin_checkpoints_only_the_adapter_and_ships_the_kv_cache(tmp_path, corpus, twins):
    out = tmp_path / "out"
    recipe = hub_recipe("asr/whisper_small_lora.yaml", corpus, out, f"model.name_or_path={twins['openai/whisper-tiny']}",
                        "model.max_new_tokens=4", "train.learning_rate=0.01")  # fmt: skip
    assert yaml.safe_load((RECIPES / "asr/whisper_small_lora.yaml").read_text())["model"]["gradient_checkpointing"]
    slp(*recipe)
    with safe_open(out / "adapter_model.safetensors", "pt") as f:  # lora_B starts at zero: gradients arrived
        assert any(f.get_tensor(k).abs().sum() > 0 for k in f.keys() if "lora_B" in k)
    # a checkpoint holds the adapter and its optimizer, not another copy of the frozen 150 MB base
    checkpoint = out / "checkpoints" / "step-0000002"
    base_bytes = (twins["openai/whisper-tiny"] / "model.safetensors").stat().st_size
    assert sum(f.stat().st_size for f in checkpoint.iterdir()) < 0.3 * base_bytes
    assert json.loads((out / "generation_config.json").read_text()).get("use_cache", True) is True
    slp(*recipe, "train.max_steps=3", "train.eval_every=3", "--resume")
    assert json.loads((out / "metrics.json").read_text())["step"] == 3


def test_transcribe_straight_from_a_hub_style_whisper_dir(tmp_path, corpus, twins):
    clip = sorted((corpus / "test").glob("*.flac"))[0]
    done = slp("transcribe", str(twins["openai/whisper-tiny"]), str(clip))
    assert "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe, twin, extra",
    [
        ("asr/wav2vec2_base_ctc.yaml", "facebook/wav2vec2-base-960h", []),
        ("asr/whisper_small_lora.yaml", "openai/whisper-small", ["model.max_new_tokens=4"]),
        ("emotion/wav2vec2_base_iemocap.yaml", "facebook/wav2vec2-base", ["model.labels=null", "train.epochs=null"]),
        (
            "tts/speecht5_finetune_hub.yaml",
            "microsoft/speecht5_tts",
            ["model.speaker_embedding=table", "model.min_clips_per_speaker=1"],
        ),
    ],
)
def test_every_hub_recipe_trains_on_its_full_size_twin(tmp_path, corpus, emotion_corpus, recipe, twin, extra):
    twin_dir = write_twin(twin, tmp_path / "twins")
    data = emotion_corpus if "emotion" in recipe else corpus
    if "tts" in recipe:  # table embeddings know only training speakers: evaluate on those
        vocoder = write_twin("microsoft/speecht5_hifigan", tmp_path / "twins")
        extra = [*extra, f"model.vocoder={vocoder}", f"data.eval={data / 'train'}"]
    slp(*hub_recipe(recipe, data, tmp_path / "out", f"model.name_or_path={twin_dir}", *extra))
    slp("eval", str(tmp_path / "out"), "--data", str(data / "test"), "--max-samples", "2")
