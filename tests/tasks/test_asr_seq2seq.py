"""Task asr_seq2seq on a tiny scratch Whisper: learning, one decoding everywhere, labels, freezing, limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from slp_toolkit.cli import main
from slp_toolkit.config import ConfigError, recipe_from_dict
from slp_toolkit.metrics import asr_metrics
from slp_toolkit.tasks import get_task

TASK = get_task("asr_seq2seq")
SEQ2SEQ = sys.modules["slp_toolkit.tasks.asr_seq2seq"]


def tiny_recipe(corpus: Path, out: Path, **model) -> dict:
    return {
        "task": "asr_seq2seq",
        "model": {"init": "scratch", "preset": "tiny", **model},
        "data": {"train": str(corpus / "train"), "eval": str(corpus / "validation"), "max_seconds": 8,
                 "max_train_samples": 8, "max_eval_samples": 8},
        "train": {"learning_rate": 1e-2, "max_steps": 80, "eval_every": 80, "batch_seconds": 40, "warmup": 0.1,
                  "num_threads": 1, "log_every": 1},
        "output_dir": str(out),
    }  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus) -> Path:
    """The shipped tiny-Whisper recipe on 8 clips, decoding with 2 beams (a pipeline default would differ)."""
    out = tmp_path_factory.mktemp("whisper") / "out"
    recipe = Path(__file__).parents[2] / "recipes" / "asr" / "whisper_tiny_scratch.yaml"
    overrides = {"data": tiny_recipe(corpus, out)["data"], "train": tiny_recipe(corpus, out)["train"],
                 "model.num_beams": 2, "output_dir": str(out)}  # fmt: skip
    assert main(["train", str(recipe), *[f"{k}={json.dumps(v)}" for k, v in overrides.items()]]) == 0
    return out


def test_overfit_eight_clips_loss_halves(trained):
    curve = [h["loss"] for h in json.loads((trained / "history.json").read_text()) if "loss" in h]
    assert curve[-1] < 0.5 * curve[0], curve


def test_training_eval_slp_eval_and_pipeline_agree(trained, corpus):
    gen = json.loads((trained / "generation_config.json").read_text())
    assert (gen["language"], gen["task"], gen["num_beams"]) == ("en", "transcribe", 2)
    during = json.loads((trained / "metrics.json").read_text())

    assert main(["eval", str(trained), "--data", str(corpus / "validation"), "--max-samples", "8"]) == 0
    after = json.loads((trained / "eval" / "validation" / "metrics.json").read_text())
    rows = [json.loads(line) for line in (trained / "eval" / "validation" / "predictions.jsonl").open()]
    assert any(r["prediction"] for r in rows), "the model says nothing: the comparison would be empty"

    code = (
        "import json, sys, soundfile as sf; from transformers import pipeline;"
        "asr = pipeline('automatic-speech-recognition', model=sys.argv[1]);"
        "assert 'slp_toolkit' not in sys.modules;"
        "texts = [asr({'raw': sf.read(p, dtype='float32')[0], 'sampling_rate': 16000})['text'] for p in sys.argv[2:]];"
        "print(json.dumps(texts))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code, str(trained), *[r["path"] for r in rows]],
                          capture_output=True, text=True, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    texts = json.loads(done.stdout.strip().splitlines()[-1])
    assert [t.strip() for t in texts] == [r["prediction"] for r in rows]
    refs = [r["reference"] for r in rows]
    piped = asr_metrics(texts, refs, normalizer=SEQ2SEQ.text_normalizer("english"))
    for key in ("wer", "cer", "wer_raw", "cer_raw"):
        assert during[key] == pytest.approx(after[key], abs=1e-9) == pytest.approx(piped[key], abs=1e-9), key


def test_labels_carry_the_prefix_and_pad_with_minus_100():
    from slp_toolkit.runtime.scratch import whisper_processor

    processor = whisper_processor("english", "transcribe", chunk_length=8)
    tok = processor.tokenizer
    a = TASK.preprocess({"text": "hello there"}, processor)["labels"]
    b = TASK.preprocess({"text": "hi"}, processor)["labels"]
    # the model prepends <|startoftranscript|> itself (decoder_start) when it shifts labels right
    assert tok.convert_ids_to_tokens(a[:3]) == ["<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    assert tok.convert_ids_to_tokens(a[-1:]) == ["<|endoftext|>"]
    assert tok.decode(a, skip_special_tokens=True).strip() == "hello there"
    batch = TASK.collate([{"audio": [0.0] * 16000, "labels": a}, {"audio": [0.0] * 8000, "labels": b}], processor)
    assert batch["input_features"].shape == (2, 80, 800)  # the 8 s window: both padded to it
    assert batch["labels"][1, len(b) :].eq(-100).all() and batch["labels"][1, : len(b)].ne(-100).all()


def test_frozen_encoder_with_gradient_checkpointing_still_trains_the_decoder(tmp_path, corpus):
    recipe = recipe_from_dict(tiny_recipe(corpus, tmp_path, freeze_encoder=True, gradient_checkpointing=True))
    torch.manual_seed(0)
    model, processor = TASK.build(recipe, {"text": ["a short line", "another one"]})
    from slp_toolkit.training.loop import checkpointing  # what `slp train` does after every task's build

    checkpointing(model, recipe.model.gradient_checkpointing)
    assert model.model.decoder.gradient_checkpointing
    model.train()
    examples = [{"audio": torch.randn(16000).numpy(), **TASK.preprocess({"text": "a short line"}, processor)}]
    model(**TASK.collate(examples, processor)).loss.backward()
    decoder = [p.grad for n, p in model.named_parameters() if ".decoder.layers." in n]
    assert decoder and all(g is not None and g.abs().sum() > 0 for g in decoder)
    assert all(p.grad is None and not p.requires_grad for p in model.model.encoder.parameters())


def test_clips_longer_than_the_window_are_refused_before_training(tmp_path, corpus):
    raw = tiny_recipe(corpus, tmp_path)
    raw["data"]["max_seconds"] = 20
    with pytest.raises(ConfigError, match=r"data.max_seconds is 20 .* 8 s windows .* silently cut"):
        TASK.build(recipe_from_dict(raw), {"text": ["a"]})


def test_english_and_basic_normalisers_by_language():
    preds, refs = ["the colour is grey"], ["The color is gray."]
    english = asr_metrics(preds, refs, normalizer=SEQ2SEQ.text_normalizer("english"))
    basic = asr_metrics(preds, refs, normalizer=SEQ2SEQ.text_normalizer("french"))
    assert english["wer_raw"] == pytest.approx(3 / 4)  # The/the, color/colour, gray./grey
    assert english["wer"] == 0.0  # British spellings, case and punctuation unified
    assert basic["wer"] == pytest.approx(2 / 4)  # only case and punctuation
    assert SEQ2SEQ.text_normalizer("en")("Mr. Smith won't pay $5") == SEQ2SEQ.text_normalizer("english")(
        "mister smith will not pay 5 dollars"
    )


def test_a_clip_longer_than_the_window_is_decoded_in_pieces_between_its_pauses(corpus):
    from slp_toolkit.runtime.scratch import build_whisper

    torch.manual_seed(0)
    model, processor = build_whisper("tiny")
    model.generation_config.max_new_tokens = 8
    rng = np.random.default_rng(0)
    long = np.zeros(16000 * 10, np.float32)  # 10 s > the tiny preset's 8 s window; "speech" at 1-3 s and 6-8.5 s
    for a, b in ((1.0, 3.0), (6.0, 8.5)):
        long[int(a * 16000) : int(b * 16000)] = 0.1 * rng.standard_normal(int((b - a) * 16000))
    texts = TASK.predict(model.eval(), processor, [{"audio": long}, {"audio": long[:16000]}])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    timed = TASK.caps.timed(model, processor, [{"audio": long}, {"audio": long[:16000]}])  # `slp transcribe --json`
    assert [t["text"] for t in timed] == texts
    assert timed[1]["chunks"] == [{"text": texts[1], "start": 0.0, "end": 1.0}]
    spans = [(c["start"], c["end"]) for c in timed[0]["chunks"]]
    assert spans == [(0.9, 3.1), (5.9, 8.6)]  # each burst and 0.1 s of its pause; the silence is not decoded
    alone = TASK.predict(model, processor, [{"audio": long[int(0.9 * 16000) : int(3.1 * 16000)]}])
    assert timed[0]["chunks"][0]["text"] == alone[0]


def test_a_pretrained_dir_gets_the_recipe_decoding_and_spec_augment(tmp_path, corpus, tiny_models):
    raw = tiny_recipe(corpus, tmp_path, name_or_path=str(tiny_models["whisper"]), language="french", num_beams=3,
                      max_new_tokens=500, mask_time_prob=0.1)  # fmt: skip
    del raw["model"]["init"], raw["model"]["preset"]
    model, processor = TASK.build(recipe_from_dict(raw), {"text": ["bonjour"]})
    gen = model.generation_config
    assert (gen.language, gen.task, gen.num_beams) == ("fr", "transcribe", 3)
    assert gen.max_new_tokens == model.config.max_target_positions - 4  # clamped to what the decoder holds
    assert model.config.apply_spec_augment and model.config.mask_time_prob == 0.1
    assert processor.tokenizer.convert_ids_to_tokens(processor.tokenizer("x").input_ids[1]) == "<|fr|>"


def test_a_pretrained_whisper_keeps_its_dropout_unless_the_recipe_sets_it(tmp_path, corpus, tiny_models):
    """Recipe defaults (dropout 0, layerdrop 0, SpecAugment off) overwrote a checkpoint's own regularisation."""
    import shutil

    from transformers import AutoConfig

    base = tmp_path / "base"
    shutil.copytree(tiny_models["whisper"], base)
    config = AutoConfig.from_pretrained(base)
    config.update(dict(dropout=0.1, attention_dropout=0.1, encoder_layerdrop=0.1, apply_spec_augment=True,
                       mask_time_prob=0.05))  # fmt: skip
    config.save_pretrained(base)

    def built(**keys):
        raw = tiny_recipe(corpus, tmp_path, name_or_path=str(base), **keys)
        del raw["model"]["init"], raw["model"]["preset"]
        return TASK.build(recipe_from_dict(raw), {"text": ["hello"]})[0].config

    c = built()
    assert (c.dropout, c.attention_dropout, c.encoder_layerdrop, c.apply_spec_augment, c.mask_time_prob) == (
        0.1, 0.1, 0.1, True, 0.05)  # fmt: skip
    c = built(dropout=0.0, layerdrop=0.0, mask_time_prob=0.0)
    assert (c.dropout, c.attention_dropout, c.encoder_layerdrop, c.apply_spec_augment, c.mask_time_prob) == (
        0.0, 0.0, 0.0, False, 0.0)  # fmt: skip


def test_cached_log_mel_gives_the_extractors_features_and_a_changed_clip_the_extractor(corpus):
    from slp_toolkit.data.prepare import prepare
    from slp_toolkit.data.splits import load_split
    from slp_toolkit.runtime.scratch import build_whisper

    _, processor = build_whisper("tiny")
    extractor = processor.feature_extractor  # an 8 s window
    rng = np.random.default_rng(0)
    window = extractor.n_samples
    clips = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, window - 100, window, 4321, 401)]
    examples = [{"audio": c, "text": "hello", **SEQ2SEQ.preprocess({"audio": c, "text": "hello"}, processor)}
                for c in clips]  # fmt: skip
    want = extractor(clips, sampling_rate=16000, return_tensors="pt")["input_features"]
    got = SEQ2SEQ.cached_features(examples, extractor)
    assert got is not None and got.shape == want.shape
    assert torch.equal(TASK.collate(examples, processor)["input_features"], got)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    changed = [{**examples[0], "audio": clips[0] * 0.5}, examples[1]]  # e.g. augment: gain, same length
    assert SEQ2SEQ.cached_features(changed, extractor) is None
    torch.testing.assert_close(
        TASK.collate(changed, processor)["input_features"],
        extractor([clips[0] * 0.5, clips[1]], sampling_rate=16000, return_tensors="pt")["input_features"],
    )
    assert not torch.allclose(TASK.collate(changed, processor)["input_features"][0], got[0])
    # through the real preparation: the cached column is there and its rows collate to the extractor's features
    d = recipe_from_dict(tiny_recipe(corpus, corpus / "unused")).data
    ds = prepare(load_split(str(corpus / "train"), d, 16000, TASK.needs, 4), TASK, processor)
    rows = [ds[i] for i in range(4)]
    assert "log_mel" in ds.column_names
    torch.testing.assert_close(
        SEQ2SEQ.cached_features(rows, extractor),
        extractor([r["audio"] for r in rows], sampling_rate=16000, return_tensors="pt")["input_features"],
        rtol=0,
        atol=1e-5,
    )


def test_packed_windows_hold_every_clip_once_with_its_transcript_and_cached_frames(corpus):
    from types import SimpleNamespace

    from slp_toolkit.data.prepare import prepare
    from slp_toolkit.data.splits import load_split
    from slp_toolkit.runtime.scratch import build_whisper

    model, processor = build_whisper("tiny")  # an 8 s window, 64 label positions
    ext, hop = processor.feature_extractor, processor.feature_extractor.hop_length
    d = recipe_from_dict(tiny_recipe(corpus, corpus / "unused")).data
    ds = prepare(load_split(str(corpus / "train"), d, 16000, TASK.needs, 12), TASK, processor)
    rows = [ds[i] for i in range(12)]
    packed = TASK.caps.pack(rows, processor, np.random.default_rng(0), model.config)
    assert len(packed) < len(rows) / 2
    for p in packed:
        assert len(p["audio"]) <= ext.n_samples and p["labels"] == SEQ2SEQ.label_ids(p["text"], processor.tokenizer)
    assert sorted(" ".join(p["text"] for p in packed).split()) == sorted(" ".join(r["text"] for r in rows).split())
    clips = [0] * len(packed)
    for r in rows:  # each clip whole, once, on the frame grid of some window
        audio, n = np.asarray(r["audio"], np.float32), len(r["audio"])
        found = [w for w, p in enumerate(packed) for s in range(0, len(p["audio"]) - n + 1, hop)
                 if np.array_equal(p["audio"][s : s + n], audio)]  # fmt: skip
        assert len(found) == 1
        clips[found[0]] += 1
    # the cached frames, placed: the extractor's features of the joined audio but for the 3 frames whose
    # STFT window straddles a join (their cache saw silence or a reflection there)
    got = SEQ2SEQ.cached_features(packed, ext)
    want = ext([p["audio"] for p in packed], sampling_rate=16000, return_tensors="pt")["input_features"]
    differ = ((got - want).abs().amax(dim=1) > 1e-4).sum(dim=1).tolist()
    assert all(n <= 3 * (c - 1) for n, c in zip(differ, clips, strict=True)), (differ, clips)
    assert sum(differ) > 0 and (got - want).abs().mean() < 1e-3
    # the batch's generator decides: the same draw packs alike, another differently
    again = TASK.caps.pack(rows, processor, np.random.default_rng(0), model.config)
    assert [p["text"] for p in again] == [p["text"] for p in packed]
    assert [p["text"] for p in TASK.caps.pack(rows, processor, np.random.default_rng(1), model.config)] != [
        p["text"] for p in packed
    ]
    # transcripts bound the window too; a clip changed by augmentation leaves its window to the extractor
    short = TASK.caps.pack(rows, processor, np.random.default_rng(0), SimpleNamespace(max_target_positions=20))
    assert len(short) > len(packed) and all(len(p["labels"]) <= 20 for p in short)
    changed = [{**rows[0], "audio": np.asarray(rows[0]["audio"]) * 0.5}, *rows[1:]]
    mixed = TASK.caps.pack(changed, processor, np.random.default_rng(0), model.config)
    assert sum("log_mel" not in p for p in mixed) == 1
    torch.testing.assert_close(
        TASK.collate(mixed, processor)["input_features"],
        ext([p["audio"] for p in mixed], sampling_rate=16000, return_tensors="pt")["input_features"],
    )


def test_a_packed_run_fills_fewer_windows_and_learns(tmp_path, corpus, caplog):
    """data.pack through the CLI: fewer, fuller windows per step; the loss still halves on 8 clips."""
    out = tmp_path / "out"
    recipe = tiny_recipe(corpus, out)
    recipe["data"] |= {"pack": True}
    recipe["train"] |= {"max_steps": 60, "eval_every": 60}
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps(recipe))
    with caplog.at_level("INFO", logger="slp"):
        assert main(["train", str(path)]) == 0
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("data.pack:"))
    clips, inputs = (int(w) for w in line.split() if w.isdigit())
    assert inputs < clips / 2, line
    curve = [h["loss"] for h in json.loads((out / "history.json").read_text()) if "loss" in h]
    assert curve[-1] < 0.5 * curve[0], curve


def test_a_packed_run_killed_and_resumed_equals_the_uninterrupted_one(tmp_path, corpus):
    """Packing draws from the batch's own generator and the tied output layer is restored on load, so a
    SIGKILL and --resume change nothing; the save no longer warns about the tie."""
    from helpers import SLP, kill_and_resume, losses

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    runs = {}
    for name in ("full", "cut"):
        recipe = tiny_recipe(corpus, tmp_path / name / "out")
        recipe["data"] |= {"pack": True}
        recipe["train"] |= {"max_steps": 30, "eval_every": 10, "log_every": 1}
        recipe["augment"] = {"noise_prob": 0.5, "speed_prob": 0.5}
        runs[name] = tmp_path / name / "r.yaml"
        runs[name].parent.mkdir()
        runs[name].write_text(json.dumps(recipe))
    full = subprocess.run([*SLP, "train", str(runs["full"])], capture_output=True, text=True, env=env)
    assert full.returncode == 0, full.stderr[-2000:]
    assert "Removed shared tensor" not in full.stderr
    kill_and_resume(runs["cut"], tmp_path / "cut" / "out", env)
    a, b = (json.loads((tmp_path / n / "out" / "metrics.json").read_text()) for n in ("full", "cut"))
    assert a["step"] == b["step"] == 30 and b["wer"] == pytest.approx(a["wer"], abs=1e-6)
    assert losses(tmp_path / "cut" / "out")[-5:] == pytest.approx(losses(tmp_path / "full" / "out")[-5:], rel=1e-4)


def test_whisper_defaults_follow_the_fine_tuning_guides(tmp_path):
    base = {"task": "asr_seq2seq", "data": {"train": "x", "max_seconds": 8}, "train": {"max_steps": 1}}
    scratch = recipe_from_dict({**base, "model": {"init": "scratch", "preset": "tiny"}})
    tuned = recipe_from_dict({**base, "model": {"name_or_path": "openai/whisper-small"}})
    adapted = recipe_from_dict({**base, "model": {"name_or_path": "openai/whisper-small"}, "lora": {}})
    assert (tuned.train.learning_rate, adapted.train.learning_rate) == (1e-5, 1e-3)
    assert scratch.data.normalize_text is False  # Whisper learns cased, punctuated text
    assert tuned.model.max_new_tokens == 225 and tuned.model.no_repeat_ngram_size == 0  # as Whisper releases ship
    explicit = recipe_from_dict({**base, "model": {"name_or_path": "x"}, "train": {"max_steps": 1, "learning_rate": 2e-4},
                                 "data": {"train": "x", "max_seconds": 8, "normalize_text": True}})  # fmt: skip
    assert explicit.train.learning_rate == 2e-4 and explicit.data.normalize_text is True
    ctc = recipe_from_dict({"task": "asr_ctc", "model": {"name_or_path": "x"}, "data": {"train": "x"},
                            "train": {"max_steps": 1}})  # fmt: skip
    assert ctc.train.learning_rate == 1e-4 and ctc.data.normalize_text is True


def test_labels_are_prepared_again_when_the_language_changes():
    """The preparation cache is keyed on the processor: its language/task tokens are part of the labels."""
    from slp_toolkit.data.prepare import processor_fingerprint
    from slp_toolkit.runtime.scratch import build_whisper

    _, english = build_whisper("tiny", "english", "transcribe")
    _, french = build_whisper("tiny", "french", "transcribe")
    _, translate = build_whisper("tiny", "french", "translate")
    prints = {processor_fingerprint(p) for p in (english, french, translate)}
    assert len(prints) == 3


def test_a_loop_stops_at_the_audios_token_budget_and_the_ngram_guard_reaches_generate(tmp_path):
    """A random tiny Whisper loops on a token: it stops at 10 tokens per second of audio + 20, not at
    max_new_tokens; the n-gram guard, when a recipe asks for it, breaks the loop and is saved."""
    from slp_toolkit.runtime.scratch import build_whisper

    torch.manual_seed(0)
    model, processor = build_whisper("tiny", "english", "transcribe")
    clip = {"audio": np.random.default_rng(0).normal(size=16000).astype(np.float32) * 0.1}

    def ids_with(n: int, limit: int = 40) -> list[int]:
        cfg = recipe_from_dict({"task": "asr_seq2seq", "model": {"init": "scratch", "preset": "tiny",
                                "no_repeat_ngram_size": n, "max_new_tokens": limit}, "data": {"train": "x",
                                "max_seconds": 8}, "train": {"max_steps": 1}}).model  # fmt: skip
        SEQ2SEQ.configure_decoding(model, processor, cfg)
        text = TASK.predict(model.eval(), processor, [clip])[0]
        return processor.tokenizer(text, add_special_tokens=False).input_ids

    def repeats(ids: list[int], n: int = 5) -> bool:
        grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
        return len(grams) != len(set(grams))

    assert repeats(ids_with(0)), "the unguarded model should loop (else this test proves nothing)"
    assert 25 <= len(ids_with(0, limit=60)) <= 32  # 1 s of audio: 30 tokens (re-tokenised text: give or take one)
    assert not repeats(ids_with(5))
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "generation_config.json").read_text())["no_repeat_ngram_size"] == 5


def test_a_test_split_is_scored_whole_with_clips_longer_than_the_window(tiny_models, corpus, tmp_path, capsys):
    """A clip over Whisper's window after a short one used to die in preparation (KeyError 'log_mel' from
    the Arrow writer), and `slp eval` left clips over 60 s out of the score: now every clip counts."""
    import csv

    import soundfile as sf

    from slp_toolkit.cli import main

    rows = list(csv.DictReader(open(corpus / "test" / "metadata.csv")))
    waves = [sf.read(corpus / "test" / r["file_name"], dtype="float32")[0] for r in rows[:6]]
    split = tmp_path / "split"
    split.mkdir()
    sf.write(split / "a.wav", waves[0], 16000)
    long = np.concatenate([np.concatenate([w, np.zeros(8000, np.float32)]) for w in waves * 6])
    assert len(long) / 16000 > 61  # longer than the tiny preset's 8-s window, and than the old 60-s cut
    sf.write(split / "b.wav", long, 16000)
    text = " ".join(r["transcription"] for r in rows[:6] * 6)
    (split / "metadata.csv").write_text(f'file_name,transcription\na.wav,{rows[0]["transcription"]}\nb.wav,"{text}"\n')
    assert main(["eval", str(tiny_models["whisper"]), "--data", str(split), "--output-dir", str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n"] == 2


def test_language_flag_decodes_a_multilingual_whisper_in_another_language(tmp_path, corpus, tiny_models, ctc_run,
                                                                          caplog, capsys):  # fmt: skip
    """A checkpoint imported or trained in English decodes Spanish speech as English unless told: --language."""
    from slp_toolkit.cli import main

    clip = next((corpus / "test").glob("*.flac"))
    with caplog.at_level("INFO", logger="slp"):
        assert main(["transcribe", str(tiny_models["whisper"]), str(clip), "--language", "spanish"]) == 0
    assert "decoding in <|es|>" in caplog.text
    for model, wrong, said in ((tiny_models["whisper"], "klingon", "not a Whisper language"),
                               (ctc_run, "spanish", "--language is for Whisper models")):  # fmt: skip
        capsys.readouterr()
        assert main(["eval", str(model), "--data", str(corpus / "test"), "--language", wrong]) == 2
        err = capsys.readouterr().err
        assert said in err.splitlines()[-1] and err.count("error:") == 1  # (above it: transformers' loading bar)


# ---------------------------------------------------------------- a real Whisper (OpenAI's tiny.en, imported from
# the package index): what it hears when a phrase is said twice, how its English output is scored
def _speak(text: str) -> np.ndarray:
    import torch
    import torchaudio

    from slp_toolkit.synth.espeak import synthesize

    wave, rate = synthesize(text, "en-us", rate=150)
    return torchaudio.functional.resample(torch.from_numpy(wave), rate, 16000).numpy()


def _decoded(model_dir, texts: list[str], **model_keys) -> list[str]:
    from slp_toolkit.tasks import asr_seq2seq

    model, processor = asr_seq2seq.load(str(model_dir))
    recipe = {"task": "asr_seq2seq", "model": {"name_or_path": str(model_dir), **model_keys},
              "data": {"train": "x", "max_seconds": 30}, "train": {"max_steps": 1}}  # fmt: skip
    asr_seq2seq.configure_decoding(model, processor, recipe_from_dict(recipe).model)
    return asr_seq2seq.predict(model, processor, [{"audio": _speak(t)} for t in texts])


def test_a_phrase_said_twice_is_transcribed_twice_by_default(real_tiny_en):
    said = "see you on monday morning. see you on monday morning."
    default, banned = _decoded(real_tiny_en, [said])[0], _decoded(real_tiny_en, [said], no_repeat_ngram_size=5)[0]
    assert default.lower().count("monday morning") == 2, default
    # the n-gram ban (the old default) cannot write the repeat: this is what the default protects
    assert banned.lower().count("monday morning") < 2, banned


def test_an_english_only_model_is_scored_with_whispers_english_normaliser(real_tiny_en):
    from slp_toolkit.tasks import asr_seq2seq

    texts = _decoded(real_tiny_en, ["hello there."])
    assert texts and asr_seq2seq._DECODED["language"] == "en"
    # the English normaliser joins contractions and spelled-out numbers; the basic one would count 4 errors
    m = asr_seq2seq.metrics(["It is twenty five dollars."], [{"text": "It's $25."}])
    assert m["wer"] == 0.0, m


def test_language_settings_that_cannot_agree_are_one_line(real_tiny_en):
    """French on an English-only checkpoint was silently ignored; `language: null` on a multilingual one trained
    labels without a language token while generate() inserted a detected one."""
    from slp_toolkit.runtime.loading import ModelLoadError
    from slp_toolkit.runtime.scratch import build_whisper
    from slp_toolkit.tasks import asr_seq2seq

    def cfg(name: str, **keys):
        recipe = {"task": "asr_seq2seq", "model": {"name_or_path": name, **keys},
                  "data": {"train": "x", "max_seconds": 8}, "train": {"max_steps": 1}}  # fmt: skip
        return recipe_from_dict(recipe).model

    model, processor = asr_seq2seq.load(str(real_tiny_en))
    with pytest.raises(ModelLoadError, match="model.language: french on an English-only"):
        asr_seq2seq.configure_decoding(model, processor, cfg(str(real_tiny_en), language="french"))
    asr_seq2seq.configure_decoding(model, processor, cfg(str(real_tiny_en)))  # the default english is fine
    assert processor.tokenizer.prefix_tokens[1:] == [processor.tokenizer.convert_tokens_to_ids("<|notimestamps|>")]
    many, many_processor = build_whisper("tiny")
    with pytest.raises(ModelLoadError, match="model.language: null"):
        asr_seq2seq.configure_decoding(many, many_processor, cfg("x", language=None))


def test_a_multilingual_whisper_left_at_the_default_english_refuses_speech_it_hears_as_another(
    real_base, tmp_path, capsys
):
    """model.language defaults to english: Spanish speech was trained with <|en|> labels without a word. The
    model now listens to a few training clips first; English speech, or a language the recipe sets, goes on."""
    import soundfile as sf
    import torchaudio

    from slp_toolkit.config import load_recipe
    from slp_toolkit.data.splits import load_split
    from slp_toolkit.synth.espeak import synthesize

    said = {"es": ["buenos dias, bienvenido al sistema de mensajes", "por favor introduzca su numero de buzon",
                   "no hay mensajes nuevos en su buzon", "gracias por su llamada, hasta luego"],
            "en": ["good morning and welcome to the message system", "please enter your mailbox number",
                   "there are no new messages in your mailbox", "thank you for calling, goodbye"]}  # fmt: skip
    for lang, texts in said.items():
        (tmp_path / lang).mkdir()
        for i, text in enumerate(texts):
            wave, rate = synthesize(text, lang, rate=150)
            sf.write(
                tmp_path / lang / f"{i}.wav",
                torchaudio.functional.resample(torch.from_numpy(wave), rate, 16000).numpy(),
                16000,
            )
        rows = "".join(f"{i}.wav,{t}\n" for i, t in enumerate(texts))
        (tmp_path / lang / "metadata.csv").write_text("file_name,transcription\n" + rows)

    def recipe(lang: str, **model) -> Path:
        path = tmp_path / f"{lang}-{len(model)}.yaml"
        path.write_text(json.dumps({
            "task": "asr_seq2seq", "model": {"name_or_path": str(real_base), **model},
            "data": {"train": str(tmp_path / lang), "max_seconds": 30}, "train": {"max_steps": 1},
            "output_dir": str(tmp_path / "out")}))  # fmt: skip
        return path

    assert main(["train", str(recipe("es"))]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "data.train sounds like spanish" in err and "set model.language: spanish" in err, err
    for lang, model in (("en", {}), ("es", {"language": "spanish"})):
        r = load_recipe(recipe(lang, **model))
        ds = load_split(r.data.train, r.data, 16000, TASK.needs)
        TASK.build(r, ds)  # no refusal


def test_whisper_inference_batches_count_clips():
    """A windowed model pays a window per clip: 8 clips a batch on CPU (measured best), 32 on a GPU."""
    from slp_toolkit.inference.evaluate import default_batch_seconds

    class OnCpu:
        device = torch.device("cpu")

    assert default_batch_seconds(OnCpu(), 30.0) == 240.0 and default_batch_seconds(OnCpu()) == 16.0


def test_a_fine_tuned_whisper_still_gives_timestamps(real_tiny_en, corpus, tmp_path, capsys):
    """transformers #30148: Whisper fine-tuned on <|notimestamps|> labels lost its timestamps. `slp transcribe
    --json` gives chunk times after a fine-tune, and the saved generation config keeps what plain pipeline()
    needs for Whisper's own timestamp tokens."""
    import json

    import soundfile as sf
    from transformers import pipeline

    from slp_toolkit.cli import main

    raw = tiny_recipe(corpus, tmp_path / "run", name_or_path=str(real_tiny_en))
    del raw["model"]["init"], raw["model"]["preset"]
    raw["data"].update(max_seconds=30, max_eval_samples=2)
    raw["train"].update(learning_rate=1e-5, max_steps=2, eval_every=2, batch_seconds=60)
    (tmp_path / "r.yaml").write_text(json.dumps(raw))
    assert main(["train", str(tmp_path / "r.yaml")]) == 0
    clip = tmp_path / "said.wav"
    sf.write(clip, _speak("good morning. the meeting starts at nine."), 16000)
    capsys.readouterr()
    assert main(["transcribe", str(tmp_path / "run"), str(clip), "--json"]) == 0
    found = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert "morning" in found["text"].lower() and found["chunks"][0]["end"] > found["chunks"][0]["start"] == 0.0
    pipe = pipeline("automatic-speech-recognition", model=str(tmp_path / "run"), device="cpu")
    chunks = pipe(str(clip), return_timestamps=True)["chunks"]
    assert chunks and all(c["timestamp"][0] is not None for c in chunks), chunks
    assert "morning" in " ".join(c["text"] for c in chunks).lower()
