"""Tiny checkpoints load with plain transformers classes, offline, and run; presets build and run."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    AutoModelForCTC,
    AutoModelForSpeechSeq2Seq,
    AutoModelForTextToSpectrogram,
    AutoProcessor,
    SpeechT5HifiGan,
    pipeline,
)

from slp_toolkit.runtime import scratch, whisper_vocab
from slp_toolkit.synth import tiny as tiny_ckpts


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_ckpts.write_tiny_checkpoints(tmp_path_factory.mktemp("tiny"))


def _audio(seconds: float = 1.0) -> np.ndarray:
    return (0.1 * np.random.default_rng(0).standard_normal(int(16000 * seconds))).astype(np.float32)


def _silence() -> dict:
    return {"raw": np.zeros(16000, np.float32), "sampling_rate": 16000}  # pipelines pop keys: fresh each call


def test_writes_every_checkpoint_deterministically(tiny, tmp_path):
    assert set(tiny) == {
        "wav2vec2-ctc",
        "whisper",
        "speecht5-tts",
        "speecht5-hifigan",
        "wav2vec2-emotion",
        "whisper-emotion",
    }
    again = tiny_ckpts.write_tiny_checkpoints(tmp_path)
    for name, path in tiny.items():
        assert (path / "config.json").is_file()
        assert (path / "model.safetensors").read_bytes() == (again[name] / "model.safetensors").read_bytes(), name


def test_ctc_checkpoint_loads_and_runs(tiny):
    model = AutoModelForCTC.from_pretrained(tiny["wav2vec2-ctc"])
    processor = AutoProcessor.from_pretrained(tiny["wav2vec2-ctc"])
    assert type(AutoFeatureExtractor.from_pretrained(tiny["wav2vec2-ctc"])).__name__ == "Wav2Vec2FeatureExtractor"
    tokenizer = processor.tokenizer
    assert tokenizer.pad_token_id == model.config.pad_token_id == 0
    assert len(tokenizer) == model.config.vocab_size
    assert "<s>" not in tokenizer.get_vocab()  # bos/eos=None kept transformers 5 from adding them
    ids = tokenizer("hello world").input_ids
    assert tokenizer.decode(ids, group_tokens=False) == "hello world"
    batch = processor(audio=_audio(), sampling_rate=16000, text="hello world", return_tensors="pt")
    out = model(input_values=batch.input_values, attention_mask=batch.attention_mask, labels=batch.labels)
    assert out.logits.shape == (1, 49, len(tokenizer))  # 320x downsampling: 20 ms frames
    assert torch.isfinite(out.loss)
    result = pipeline("automatic-speech-recognition", model=str(tiny["wav2vec2-ctc"]))(_silence())
    assert isinstance(result["text"], str)


def test_ctc_processor_maps_space_to_delimiter():
    tokenizer = scratch.ctc_processor(["a", "b", " "]).tokenizer
    assert tokenizer.get_vocab() == {"[PAD]": 0, "[UNK]": 1, "|": 2, "a": 3, "b": 4}
    assert tokenizer.decode(tokenizer("ab ba c").input_ids, group_tokens=False) == "ab ba [UNK]"


def test_whisper_tokenizer_ids_match_openai_whisper(tiny):
    tokenizer = AutoProcessor.from_pretrained(tiny["whisper"]).tokenizer
    ids = tokenizer.convert_tokens_to_ids
    assert len(tokenizer) == 51865
    assert ids("<|endoftext|>") == 50257
    assert ids("<|startoftranscript|>") == 50258
    assert ids("<|en|>") == 50259
    assert ids("<|translate|>") == 50358
    assert ids("<|transcribe|>") == 50359
    assert ids("<|notimestamps|>") == 50363
    assert ids("<|0.00|>") == 50364 and ids("<|30.00|>") == 51864
    assert tokenizer("Hello world", add_special_tokens=False).input_ids == [15947, 1002]
    labels = tokenizer("Hello world").input_ids
    assert labels == [50258, 50259, 50359, 50363, 15947, 1002, 50257]
    assert tokenizer.decode(labels, skip_special_tokens=True) == "Hello world"


def test_whisper_tokenizer_agrees_with_tiktoken():
    whisper_tokenizer = pytest.importorskip("whisper.tokenizer")
    reference = whisper_tokenizer.get_tokenizer(multilingual=True, language="de", task="translate")
    ours = scratch.whisper_processor(language="german", task="translate").tokenizer
    assert ours("", add_special_tokens=True).input_ids[:-1] == list(reference.sot_sequence_including_notimestamps)
    for text in [" Hello world", "Grüß Gott, 日本語 – naïve café!  \n  ok", "e=mc² 3.14159 <|en|>?"]:
        expected = reference.encoding.encode(text, disallowed_special=())
        assert ours(text, add_special_tokens=False, split_special_tokens=True).input_ids == expected, text
    for token, token_id in reference.special_tokens.items():
        assert ours.convert_tokens_to_ids(token) == token_id, token


def test_whisper_conversion_cold_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = whisper_vocab.whisper_tokenizer_dir()
    assert path.parent == tmp_path / "slp_toolkit" and (path / "tokenizer.json").is_file()
    assert whisper_vocab.whisper_tokenizer_dir() == path


def test_shipped_whisper_vocabulary_is_openai_whispers_file(monkeypatch, tmp_path):
    import gzip

    source = importlib.metadata.distribution("openai-whisper").locate_file("whisper/assets/multilingual.tiktoken")
    assert gzip.decompress(whisper_vocab.TIKTOKEN_FILE.read_bytes()) == Path(source).read_bytes()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(whisper_vocab, "TIKTOKEN_FILE", tmp_path / "missing.tiktoken.gz")
    with pytest.raises(FileNotFoundError, match=r"missing.tiktoken.gz unreadable .*reinstall slp_toolkit"):
        whisper_vocab.whisper_tokenizer_dir()


def test_whisper_checkpoint_loads_generates_and_skips_language_detection(tiny, monkeypatch):
    model = AutoModelForSpeechSeq2Seq.from_pretrained(tiny["whisper"])
    processor = AutoProcessor.from_pretrained(tiny["whisper"])
    extractor = AutoFeatureExtractor.from_pretrained(tiny["whisper"])
    assert extractor.chunk_length * 50 == model.config.max_source_positions
    batch = processor(audio=_audio(), sampling_rate=16000, text="Hello world", return_tensors="pt")
    assert batch.input_features.shape == (1, 80, 2 * model.config.max_source_positions)
    assert torch.isfinite(model(input_features=batch.input_features, labels=batch.labels).loss)

    def no_detection(*args, **kwargs):
        raise AssertionError("language detection ran")

    monkeypatch.setattr(type(model), "detect_language", no_detection)
    for kwargs in ({"language": "en", "task": "transcribe"}, {}):
        tokens = model.generate(batch.input_features, max_new_tokens=3, **kwargs)
        assert tokens.shape[0] == 1
    result = pipeline("automatic-speech-recognition", model=str(tiny["whisper"]))(_silence())
    assert isinstance(result["text"], str)


@pytest.mark.parametrize("name", ["wav2vec2-emotion", "whisper-emotion"])
def test_emotion_checkpoints_classify(tiny, name):
    model = AutoModelForAudioClassification.from_pretrained(tiny[name])
    extractor = AutoFeatureExtractor.from_pretrained(tiny[name])
    inputs = extractor(_audio(), sampling_rate=16000, return_tensors="pt")
    assert model(**inputs).logits.shape == (1, len(tiny_ckpts.EMOTIONS))
    result = pipeline("audio-classification", model=str(tiny[name]))(_silence())
    assert {r["label"] for r in result} == set(tiny_ckpts.EMOTIONS)


def test_speecht5_checkpoints_load_and_run(tiny):
    model = AutoModelForTextToSpectrogram.from_pretrained(tiny["speecht5-tts"])
    processor = AutoProcessor.from_pretrained(tiny["speecht5-tts"])
    vocoder = SpeechT5HifiGan.from_pretrained(tiny["speecht5-hifigan"])
    tokenizer = processor.tokenizer
    assert [tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id] == [
        0,
        1,
        2,
        3,
    ]
    inputs = processor(text="The birch canoe slid.", return_tensors="pt")
    assert tokenizer.decode(inputs.input_ids[0], skip_special_tokens=True) == "The birch canoe slid."
    assert tokenizer.unk_token_id not in inputs.input_ids[0].tolist()
    speaker = torch.zeros(1, model.config.speaker_embedding_dim)
    labels = processor(audio_target=_audio(), sampling_rate=16000, return_tensors="pt")["input_values"]
    labels = labels[:, : labels.shape[1] // 2 * 2]  # a multiple of reduction_factor
    out = model(**inputs, speaker_embeddings=speaker, labels=labels)
    assert labels.shape[-1] == 80 and torch.isfinite(out.loss)
    mel = torch.randn(10, 80)
    assert vocoder(mel).shape == (10 * 256,)  # hop 256 at 16 kHz


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_presets_build_and_run(preset):
    torch.manual_seed(0)
    ctc, processor = scratch.build_ctc(list("abc "), preset)
    frames = ctc(torch.randn(1, 16000)).logits.shape
    assert frames[0] == 1 and frames[2] == len(processor.tokenizer)
    assert 48 <= frames[1] <= 50  # 20 ms frames, whatever the conv stack's edge effects
    whisper, processor = scratch.build_whisper(preset)
    features = processor(audio=_audio(), sampling_rate=16000, return_tensors="pt").input_features
    assert whisper.generate(features, max_new_tokens=2).shape[0] == 1
    tts, processor = scratch.build_speecht5(tiny_ckpts.DEFAULT_TEXTS[:5], preset)
    ids = processor(text="a rod", return_tensors="pt").input_ids
    spectrogram = tts.generate_speech(ids, torch.zeros(1, 512), maxlenratio=2.0)
    assert spectrogram.shape[-1] == 80
    assert scratch.build_hifigan(preset)(spectrogram).shape == (spectrogram.shape[0] * 256,)
    for family in ["wav2vec2", "hubert", "wavlm", "whisper"]:
        model, extractor = scratch.build_audio_classifier(["a", "b"], family, preset)
        inputs = extractor(_audio(), sampling_rate=16000, return_tensors="pt")
        assert model(**inputs).logits.shape == (1, 2), family


def test_builders_reject_bad_arguments():
    with pytest.raises(ValueError, match="unknown preset"):
        scratch.build_ctc(["a"], "huge")
    with pytest.raises(ValueError, match="unknown family"):
        scratch.build_audio_classifier(["a"], "conformer")
    with pytest.raises(ValueError, match="multiple of 50"):
        scratch.build_whisper(max_source_positions=420)
    with pytest.raises(ValueError, match="unknown Whisper language"):
        scratch.build_whisper(language="klingon")
