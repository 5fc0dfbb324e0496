"""Task tts on tiny SpeechT5 models and the synthetic corpus: learning, batch shapes, MCD, round-trip CER,
`slp synthesize` with both vocoders, plain-transformers loading, speakers and bad text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import losses

from slp_toolkit.cli import main
from slp_toolkit.config import recipe_from_dict
from slp_toolkit.metrics import dtw_path, mel_cepstral_distortion
from slp_toolkit.runtime import scratch
from slp_toolkit.tasks import get_task, tts_audio
from slp_toolkit.tasks.tts import TtsProcessor

TASK = get_task("tts")


def test_eval_rows_without_a_speaker_embedding_are_an_error(tmp_path, corpus, capsys, tts_recipe):
    recipe = tts_recipe(tmp_path, corpus, max_steps=2)
    assert main(["train", str(recipe), f"data.eval={corpus / 'test_unseen'}"]) == 2
    assert "none of its" in capsys.readouterr().err


def tiny_processor(texts=("hello there", "general kenobi")) -> tuple:
    model, processor = scratch.build_speecht5(list(texts), "tiny")
    speakers = tts_audio.table_vectors(["a", "b"], model.config.speaker_embedding_dim)
    return model, TtsProcessor(processor, speakers, model.config.reduction_factor, "griffin-lim", None)


def test_tiny_speecht5_overfits_eight_clips_loss_halves(tts_run):
    curve = losses(tts_run)
    assert np.mean(curve[-5:]) < 0.5 * np.mean(curve[:3])
    metrics = json.loads((tts_run / "metrics.json").read_text())
    assert metrics["mcd_sl"] >= metrics["mcd"] > 0 and metrics["n"] == 2
    assert (tts_run / "samples").is_dir() and list((tts_run / "samples").glob("*/alignment.png"))


def test_reduction_factor_two_batch_shapes_are_consistent():
    torch.manual_seed(0)
    model, processor = tiny_processor()
    rng = np.random.default_rng(0)
    examples = [
        {"input_ids": processor.encode("hello"), "labels": rng.normal(size=(n, 80)).astype(np.float32), "speaker": s}
        for n, s in ((17, "a"), (24, "b"), (9, "a"))
    ]
    batch = TASK.collate(examples, processor)
    labels, frames = batch["labels"], batch["decoder_attention_mask"]
    assert labels.shape == (3, 24, 80) and frames.shape == (3, 24)
    assert frames.sum(1).tolist() == [16, 24, 8]  # each clip trimmed down to a multiple of 2
    assert ((labels[:, :, 0] != -100).long() == frames).all()
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["speaker_embeddings"].shape == (3, model.config.speaker_embedding_dim)
    loss = model(**batch).loss
    assert torch.isfinite(loss)


def test_guided_attention_weight_reaches_the_loss_and_zero_turns_it_off():
    import datasets

    ds = datasets.Dataset.from_dict({"raw_text": ["a b", "c d"], "speaker": ["x", "x"]})
    for weight in (0.0, 10.0):
        raw = {"task": "tts", "model": {"init": "scratch", "preset": "tiny", "guided_attention_weight": weight},
               "data": {"train": "unused"}, "train": {"max_steps": 1}}  # fmt: skip
        torch.manual_seed(0)
        model, processor = TASK.build(recipe_from_dict(raw), ds)
        assert model.config.use_guided_attention_loss is (weight > 0)
        example = {"input_ids": processor.encode("a b"), "labels": np.zeros((8, 80), np.float32), "speaker": "x"}
        assert torch.isfinite(model(**TASK.collate([example], processor)).loss)


def test_synthesis_is_repeatable_despite_prenet_dropout(tts_run):
    model, processor = TASK.load(str(tts_run))
    speaker = next(iter(processor.speakers))
    first, second = (TASK.predict(model, processor, [{"text": "hello", "speaker": speaker}])[0] for _ in range(2))
    assert np.array_equal(first["audio"], second["audio"]) and first["transcript"] is None
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    TASK.predict(model, processor, [{"text": "hello", "speaker": speaker}])
    assert torch.equal(torch.rand(3), expected)  # the training loop's stream is left where it was


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU generators: needs a GPU")
def test_seeded_synthesis_leaves_the_gpu_generator_alone():
    """torch.manual_seed inside fork_rng(devices=[]) reseeded the GPU's generator and never restored it."""
    from slp_toolkit.tasks.tts import seeded

    torch.cuda.manual_seed(5)
    expected = torch.rand(3, device="cuda")
    torch.cuda.manual_seed(5)
    with seeded(torch.device("cuda:0")):
        first = torch.rand(3, device="cuda")
    with seeded(torch.device("cuda:0")):
        assert torch.equal(torch.rand(3, device="cuda"), first)
    assert torch.equal(torch.rand(3, device="cuda"), expected)


def test_reduction_factor_from_the_recipe_sets_the_frame_multiple():
    import datasets

    from slp_toolkit.config import ConfigError

    ds = datasets.Dataset.from_dict({"raw_text": ["a b"], "speaker": ["x"]})
    raw = {"task": "tts", "model": {"init": "scratch", "preset": "tiny", "reduction_factor": 3},
           "data": {"train": "unused"}, "train": {"max_steps": 1}}  # fmt: skip
    model, processor = TASK.build(recipe_from_dict(raw), ds)
    assert model.config.reduction_factor == processor.reduction_factor == 3
    example = {"input_ids": processor.encode("a b"), "labels": np.zeros((17, 80), np.float32), "speaker": "x"}
    batch = TASK.collate([example], processor)
    assert batch["labels"].shape[1] == 15 and torch.isfinite(model(**batch).loss)
    raw["model"] = {"name_or_path": "microsoft/speecht5_tts", "reduction_factor": 3}
    with pytest.raises(ConfigError, match="scratch models only"):
        recipe_from_dict(raw)


def test_mcd_is_zero_against_itself_and_grows_with_noise():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    assert mel_cepstral_distortion(wave, wave, 16000) == pytest.approx(0.0, abs=1e-6)
    scores = [mel_cepstral_distortion(wave, wave + rng.normal(scale=s, size=wave.shape), 16000) for s in (0.01, 0.1)]
    assert 0 < scores[0] < scores[1]


def test_dtw_aligns_a_stretched_sequence_monotonically():
    a = np.array([0.0, 1.0, 2.0, 3.0])
    b = np.array([0.0, 0.0, 1.0, 2.0, 2.0, 3.0])
    path = dtw_path(np.abs(a[:, None] - b[None, :]))
    assert path[0] == (0, 0) and path[-1] == (3, 5)
    assert all(a[i] == b[j] for i, j in path)


def test_round_trip_cer_through_a_real_tiny_asr_dir(tts_run, tiny_models, corpus, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", str(tts_run), "--data", str(corpus / "train"), "--max-samples", "2", "--output-dir", str(out)])
    assert code == 0
    assert "cer" not in json.loads((out / "metrics.json").read_text())  # no judge in this recipe
    settings = json.loads((tts_run / "tts_config.json").read_text())
    (tts_run / "tts_config.json").write_text(json.dumps({**settings, "judge_asr": str(tiny_models["wav2vec2-ctc"])}))
    try:
        assert main(["eval", str(tts_run), "--data", str(corpus / "train"), "--max-samples", "2",
                     "--output-dir", str(out)]) == 0  # fmt: skip
    finally:
        (tts_run / "tts_config.json").write_text(json.dumps(settings))
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("cer", "wer", "cer_raw", "wer_raw"):
        assert 0.0 <= metrics[key] and np.isfinite(metrics[key])
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(isinstance(r["prediction"]["transcript"], str) for r in rows)


@pytest.mark.parametrize("vocoder", ["griffin-lim", "hifigan"])
def test_synthesize_writes_a_16khz_wav_with_either_vocoder(tts_run, tiny_models, tmp_path, vocoder, capsys):
    name = str(tiny_models["speecht5-hifigan"]) if vocoder == "hifigan" else vocoder
    speaker = json.loads((tts_run / "speaker_embeddings" / "index.json").read_text())
    wav = tmp_path / "out.wav"
    code = main(["synthesize", str(tts_run), "The birch canoe.", "--speaker", next(iter(speaker)),
                 "-o", str(wav), "--vocoder", name])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    audio, rate = sf.read(wav)
    assert rate == 16000 and audio.ndim == 1 and len(audio) > 0 and np.isfinite(audio).all()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "text is empty"),
        ("   ", "text is empty"),
        ("?!...,", "no letters or digits"),
        ("ß∆≈", "no letters"),
        ("word " * 100, "reads at most 448"),
    ],
)
def test_bad_text_gets_one_clear_line(tts_run, tmp_path, capsys, text, says):
    assert main(["synthesize", str(tts_run), text, "-o", str(tmp_path / "x.wav")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "Loading weights" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0]
    assert not (tmp_path / "x.wav").exists()


def test_characters_outside_the_vocab_are_folded_or_dropped():
    clean, dropped = tts_audio.speakable("Café   naïve ☃ ok", set("abcdefghijklmnopqrstuvwxyz"), 100)
    assert clean == "cafe naive ok" and dropped == ["☃"]
    with pytest.raises(tts_audio.TextError, match="at most 5"):
        tts_audio.speakable("abcdefgh", set("abcdefgh"), 5)


def test_unknown_speaker_is_an_error_naming_the_known_ones(tts_run, tmp_path, capsys):
    assert main(["synthesize", str(tts_run), "hello", "--speaker", "nobody", "-o", str(tmp_path / "x.wav")]) == 2
    assert "unknown speaker 'nobody' (known:" in capsys.readouterr().err


def test_output_loads_in_plain_transformers_text_to_speech_pipeline(tts_run, tiny_models):
    from transformers import SpeechT5HifiGan, pipeline

    index = json.loads((tts_run / "speaker_embeddings" / "index.json").read_text())
    embedding = np.load(tts_run / "speaker_embeddings" / next(iter(index.values())))
    vocoder = SpeechT5HifiGan.from_pretrained(tiny_models["speecht5-hifigan"])
    tts = pipeline("text-to-speech", model=str(tts_run), vocoder=vocoder)
    out = tts("hello", forward_params={"speaker_embeddings": torch.tensor(embedding)[None]})
    assert out["sampling_rate"] == 16000 and np.asarray(out["audio"]).size > 0


def test_speakers_with_too_few_clips_are_dropped_and_counted(corpus, caplog):
    import datasets

    raw = {"task": "tts", "model": {"init": "scratch", "preset": "tiny", "min_clips_per_speaker": 2},
           "data": {"train": "unused"}, "train": {"max_steps": 1}}  # fmt: skip
    ds = datasets.Dataset.from_dict({"raw_text": ["a b", "c d", "e f"], "speaker": ["x", "x", "y"]})
    with caplog.at_level("INFO", logger="slp"):
        _, processor = TASK.build(recipe_from_dict(raw), ds)
    assert list(processor.speakers) == ["x"]
    assert "dropped 1 speakers with fewer than 2 clips (1 clips in all)" in caplog.text
    assert [TASK.caps.keep(r, processor) for r in ds] == [True, True, False]
    assert not TASK.caps.keep({"raw_text": "?!", "speaker": "x"}, processor)  # nothing speakable: left out
    assert not TASK.caps.keep({"raw_text": "a " * 300, "speaker": "x"}, processor)  # beyond the text positions


def test_file_embeddings_are_read_per_speaker_and_checked(tmp_path):
    import datasets

    from slp_toolkit.config import ConfigError, load_recipe

    folder = tmp_path / "emb"
    folder.mkdir()
    np.save(folder / "x.npy", np.ones(512, dtype=np.float32))
    raw = {"task": "tts", "model": {"init": "scratch", "preset": "tiny", "speaker_embedding": "file",
           "speaker_embedding_dir": str(folder)}, "data": {"train": "unused"}, "train": {"max_steps": 1}}  # fmt: skip
    ds = datasets.Dataset.from_dict({"raw_text": ["a b", "c d"], "speaker": ["x", "y"]})
    _, processor = TASK.build(recipe_from_dict(raw), ds)
    assert list(processor.speakers) == ["x"] and processor.vector("x").sum() == 512
    np.save(folder / "x.npy", np.ones(16, dtype=np.float32))
    with pytest.raises(tts_audio.SpeakerError, match="16-d embedding; the model expects 512-d"):
        TASK.build(recipe_from_dict(raw), ds)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: tts\nmodel: {init: scratch, speaker_embedding: file}\ndata: {train: .}\n"
                      "train: {max_steps: 1}\n")  # fmt: skip
    with pytest.raises(ConfigError, match="needs 'model.speaker_embedding_dir'"):
        load_recipe(recipe)


def test_xvector_without_speechbrain_says_how_to_get_it():
    import importlib.util

    if importlib.util.find_spec("speechbrain") is not None:
        pytest.skip("speechbrain is installed here")
    with pytest.raises(tts_audio.SpeakerError, match="pip install speechbrain"):
        tts_audio.xvector_vectors(None, ["x"], Path("."))


def test_push_stages_the_speaker_table_and_a_text_to_speech_card(tts_run, tmp_path, capsys):
    stage = tmp_path / "stage"
    assert main(["push", str(tts_run), "--repo-id", "someone/tiny-tts", "--dry-run", str(stage)]) == 0
    assert (stage / "speaker_embeddings" / "index.json").is_file() and (stage / "tts_config.json").is_file()
    card = (stage / "README.md").read_text()
    assert "pipeline_tag: text-to-speech" in card and "MCD (dB)" in card


def test_model_layerdrop_reaches_speecht5(tmp_path):
    """The recipe's model.layerdrop, as for every task (it was ignored: speecht5_tts's own 0.1 stayed)."""
    import datasets

    recipe = recipe_from_dict({"task": "tts", "model": {"init": "scratch", "preset": "tiny", "layerdrop": 0.3},
                               "data": {"train": "x"}, "train": {"max_steps": 1}})  # fmt: skip
    rows = datasets.Dataset.from_dict({"raw_text": ["hello there"] * 2, "text": ["hello there"] * 2,
                                       "speaker": ["a", "b"]})  # fmt: skip
    model, _ = get_task("tts").build(recipe, rows)
    assert model.config.encoder_layerdrop == model.config.decoder_layerdrop == 0.3


def test_griffin_lim_of_a_model_that_stops_at_once_is_short_audio_not_an_error():
    _, processor = tiny_processor()
    wave = tts_audio.griffin_lim(torch.full((1, 80), -4.0), processor.feature_extractor)
    assert wave.ndim == 1 and len(wave) > 0 and np.isfinite(wave).all()
