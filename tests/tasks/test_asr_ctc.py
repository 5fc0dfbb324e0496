"""asr_ctc's long-form decoding: a clip over LONG_SECONDS is cut at its pauses and each piece decoded alone
(a piece over LONG_SECONDS in overlapping windows whose middles tile it exactly once); the clip gives as many
CTC frames as one pass over it would."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slp_toolkit.tasks import asr_ctc


@pytest.mark.parametrize("n", [1, 319, 320, 6400, 6401, 100_000, 123_457])
def test_windows_keep_every_sample_once(n):
    spans = asr_ctc.windows(n, chunk=6400, context=640, align=320)
    covered = np.zeros(n, dtype=int)
    for start, stop, keep_from, keep_to in spans:
        assert start <= keep_from < keep_to <= stop and stop - start <= 6400 + 2 * 640
        assert start % 320 == 0 and keep_from % 320 == 0
        covered[keep_from:keep_to] += 1
    assert (covered == 1).all()


def test_a_long_clip_gives_the_frames_of_one_pass_and_its_pieces_texts(ctc_run, monkeypatch):
    from helpers import bursts

    from slp_toolkit.data.segment import segments

    model, processor = asr_ctc.load(str(ctc_run))
    rate = processor.feature_extractor.sampling_rate
    wave = bursts([(1.0, 4.0), (5.0, 8.0), (9.0, 40.0), (41.0, 74.0)], 75.0)  # two runs of speech over 30 s
    with torch.no_grad():
        whole = asr_ctc._logits(model, processor, [wave])[0].shape[1]
    logits = asr_ctc.long_form_logits(model, processor, wave)
    assert len(logits) == whole and logits.shape[1] == model.config.vocab_size
    assert (logits[: int(0.9 / 0.02)].argmax(-1) == processor.tokenizer.pad_token_id).all()  # the pause: blank
    pieces = segments(wave, rate)
    assert len(pieces) == 4 and pieces[2][1] - pieces[2][0] > asr_ctc.LONG_SECONDS * rate  # windows
    assert pieces[0][1] - pieces[0][0] == pieces[1][1] - pieces[1][0]  # one batch, no padding to tell apart
    [text] = asr_ctc.predict(model, processor, [{"audio": wave}])
    alone = [asr_ctc.predict(model, processor, [{"audio": wave[a:b]}])[0] for a, b in pieces]
    assert text.split() == " ".join(alone).split()  # a word delimiter between pieces, nothing else changed
    with torch.no_grad():
        windowed = asr_ctc.windowed_logits(model, processor, wave)
    assert abs(len(windowed) - whole) <= 1
    monkeypatch.setattr(asr_ctc, "CHUNK_SECONDS", 10.0)  # the windowing, not the window size, decides frames
    assert abs(len(asr_ctc.windowed_logits(model, processor, wave)) - whole) <= 1


@pytest.mark.slow
def test_a_three_minute_file_scores_like_its_clips_one_by_one():
    """Clips of a split joined (0.3 s of silence between) into one file of >= 3 minutes: decoded long-form,
    its CER is within 0.02 of the clips decoded one by one (a single pass over the whole file is printed for
    comparison: the models trained here never heard a pause or a second utterance). Needs a trained model:
    SLP_TRAINED_CTC (default outputs/ctc_quickstart, `make quickstart`) and SLP_LONGFORM_SPLIT (default
    data/synth/test_unseen)."""
    import csv
    import os
    from pathlib import Path

    import soundfile as sf

    from slp_toolkit.data.text import normalize_text as norm
    from slp_toolkit.metrics import error_rates

    model_dir = Path(os.environ.get("SLP_TRAINED_CTC", "outputs/ctc_quickstart"))
    split = Path(os.environ.get("SLP_LONGFORM_SPLIT", "data/synth/test_unseen"))
    if not (model_dir / "config.json").is_file() or not (split / "metadata.csv").is_file():
        pytest.skip(f"needs a trained CTC model in {model_dir} and the split {split} (make quickstart)")
    model, processor = asr_ctc.load(str(model_dir))
    rate = processor.feature_extractor.sampling_rate
    with (split / "metadata.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    waves, refs, gap = [], [], np.zeros(int(0.3 * rate), np.float32)
    for row in rows:
        wave, clip_rate = sf.read(split / row["file_name"], dtype="float32")
        assert clip_rate == rate
        waves += [wave, gap]
        refs.append(row["transcription"])
        if sum(len(w) for w in waves) >= 180 * rate:
            break
    joined, reference = np.concatenate(waves), norm(" ".join(refs))
    [windowed] = asr_ctc.predict(model, processor, [{"audio": joined}])
    with torch.no_grad():
        one_pass = processor.batch_decode([asr_ctc._logits(model, processor, [joined])[0][0].argmax(-1)])[0]
    clips = [asr_ctc.predict(model, processor, [{"audio": w}])[0] for w in waves[::2]]
    cer = {name: error_rates([norm(text)], [reference])["cer"]
           for name, text in (("long-form", windowed), ("one pass", one_pass), ("clip by clip", " ".join(clips)))}  # fmt: skip
    print(f"{len(refs)} clips, {len(joined) / rate:.0f} s: CER " + ", ".join(f"{k} {v:.4f}" for k, v in cer.items()))
    assert abs(cer["long-form"] - cer["clip by clip"]) <= 0.02


def test_word_timestamps_follow_the_greedy_path():
    """Repeats merge, blanks split a doubled letter, the delimiter ends a word; times are frame * 20 ms."""
    from slp_toolkit.runtime.scratch import ctc_processor

    tok = ctc_processor(list("abcdehlo")).tokenizer
    path = [tok.pad_token_id if ch == "_" else tok.convert_tokens_to_ids(ch) for ch in "_hhe_l_lo__||_aab_c__"]
    assert asr_ctc.ctc_words(path, tok, 0.02) == [
        {"word": "hello", "start": 0.02, "end": 0.18},
        {"word": "abc", "start": 0.28, "end": 0.38},
    ]
    assert asr_ctc.ctc_words([tok.pad_token_id] * 5, tok, 0.02) == []


def test_transcribe_json_has_word_timestamps(ctc_run, corpus, capsys):
    import json

    import soundfile as sf

    from slp_toolkit.cli import main

    clips = sorted((corpus / "test").glob("*.flac"))[:2]
    assert main(["transcribe", str(ctc_run), *map(str, clips), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["path"] for r in rows] == list(map(str, clips)) and any(r["words"] for r in rows)
    for row, clip in zip(rows, clips):
        seconds = sf.info(clip).duration
        assert " ".join(w["word"] for w in row["words"]) == row["text"]
        times = [t for w in row["words"] for t in (w["start"], w["end"])]
        assert times == sorted(times) and all(0 <= t <= seconds + 0.02 for t in times), (times, seconds)
    assert main(["transcribe", str(ctc_run), str(clips[0])]) == 0  # plain output: the same text
    assert capsys.readouterr().out.splitlines()[0] == f"{clips[0]}\t{rows[0]['text']}"


def test_bf16_inference_runs_and_keeps_the_output_shape(ctc_run, corpus, capsys):
    from slp_toolkit.cli import main

    clips = sorted((corpus / "test").glob("*.flac"))[:3]
    outputs = {}
    for precision in ("fp32", "bf16"):
        assert main(["transcribe", str(ctc_run), *map(str, clips), "--json", "--precision", precision]) == 0
        outputs[precision] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(outputs["bf16"]) == len(outputs["fp32"]) == 3
    assert main(["eval", str(ctc_run), "--data", str(corpus / "test"), "--max-samples", "4", "--precision", "bf16",
                 "--output-dir", str(ctc_run.parent / "bf16_eval")]) == 0  # fmt: skip


def _build(corpus, model: str, **keys):
    """asr_ctc's build on the corpus' train split for a pretrained dir (what `slp train` builds)."""
    from slp_toolkit.config import recipe_from_dict
    from slp_toolkit.data.splits import load_split

    recipe = recipe_from_dict({"task": "asr_ctc", "model": {"name_or_path": model, **keys},
                               "data": {"train": str(corpus / "train")}, "train": {"max_steps": 1}})  # fmt: skip
    ds = load_split(str(corpus / "train"), recipe.data, 16000, ("text",), 8)
    return asr_ctc.build(recipe, ds)


def test_a_base_keeps_its_own_feature_extractor(corpus, tmp_path):
    """WavLM was pretrained on unnormalised audio, without masks: its extractor's settings stay (the toolkit
    once swapped in a normalising, masking wav2vec2 one for any base without a CTC tokenizer)."""
    import json

    from slp_toolkit.synth.families import write_family

    base = write_family("wavlm", "ctc", tmp_path)
    settings = json.loads((base / "preprocessor_config.json").read_text())
    settings.update(do_normalize=False, return_attention_mask=False)
    (base / "preprocessor_config.json").write_text(json.dumps(settings))
    model, processor = _build(corpus, str(base))
    assert processor.feature_extractor.do_normalize is False
    assert processor.feature_extractor.return_attention_mask is False
    assert model.config.vocab_size == len(processor.tokenizer) > 8  # a character vocabulary from the data


def test_new_vocab_replaces_a_checkpoint_head_and_tokenizer(corpus, tiny_models, caplog):
    """A CTC checkpoint keeps its tokenizer and head; model.new_vocab builds both from the training text."""
    from transformers import AutoTokenizer

    original = AutoTokenizer.from_pretrained(tiny_models["wav2vec2-ctc"])
    kept_model, kept = _build(corpus, str(tiny_models["wav2vec2-ctc"]))
    assert kept.tokenizer.get_vocab() == original.get_vocab()
    with caplog.at_level("INFO", logger="slp"):
        model, fresh = _build(corpus, str(tiny_models["wav2vec2-ctc"]), new_vocab=True)
    assert fresh.tokenizer.get_vocab() != original.get_vocab() and "model.new_vocab" in caplog.text
    assert model.config.vocab_size == len(fresh.tokenizer)
    assert not torch.equal(model.lm_head.weight[:4], kept_model.lm_head.weight[:4])  # a fresh output layer


def test_new_vocab_renews_a_head_of_the_same_size(corpus, tiny_models, tmp_path):
    """A checkpoint whose head happens to have the new vocabulary's size loads without a size mismatch, so its
    old rows (other symbols) were kept as the new characters' outputs."""
    from transformers import AutoModelForCTC

    _, fresh = _build(corpus, str(tiny_models["wav2vec2-ctc"]), new_vocab=True)
    same = AutoModelForCTC.from_pretrained(tiny_models["wav2vec2-ctc"], vocab_size=len(fresh.tokenizer),
                                           ignore_mismatched_sizes=True)  # fmt: skip
    same.save_pretrained(tmp_path / "same")
    fresh.save_pretrained(tmp_path / "same")
    model, _ = _build(corpus, str(tmp_path / "same"), new_vocab=True)
    assert model.lm_head.weight.shape == same.lm_head.weight.shape
    assert not torch.equal(model.lm_head.weight, same.lm_head.weight)
    kept, _ = _build(corpus, str(tmp_path / "same"))
    assert torch.equal(kept.lm_head.weight, same.lm_head.weight)  # without new_vocab the head is the checkpoint's


def test_a_checkpoint_keeps_its_regularisation_unless_the_recipe_sets_it(corpus, tiny_models, tmp_path):
    """Recipe defaults wrote dropout 0, layerdrop 0 and the CTC masks onto every pretrained config, zeroing
    wav2vec2-base's 0.1 unasked: only keys the recipe sets change a pretrained config."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_models["wav2vec2-ctc"])
    config.update(dict(hidden_dropout=0.1, attention_dropout=0.1, layerdrop=0.1, mask_time_prob=0.07,
                       mask_time_length=7))  # fmt: skip
    base = tmp_path / "base"
    import shutil

    shutil.copytree(tiny_models["wav2vec2-ctc"], base)
    config.save_pretrained(base)
    c = _build(corpus, str(base))[0].config
    assert (c.hidden_dropout, c.attention_dropout, c.layerdrop, c.mask_time_prob, c.mask_time_length) == (
        0.1, 0.1, 0.1, 0.07, 7)  # fmt: skip
    c = _build(corpus, str(base), dropout=0.0, layerdrop=0.0, mask_time_prob=0.0)[0].config
    assert (c.hidden_dropout, c.attention_dropout, c.layerdrop, c.mask_time_prob, c.mask_time_length) == (
        0.0, 0.0, 0.0, 0.0, 7)  # fmt: skip


def test_a_pretrained_front_end_is_frozen_by_default_a_scratch_one_trains(corpus, tiny_models):
    model, _ = _build(corpus, str(tiny_models["wav2vec2-ctc"]))
    assert not any(p.requires_grad for p in model.wav2vec2.feature_extractor.parameters())
    model, _ = _build(corpus, str(tiny_models["wav2vec2-ctc"]), freeze_feature_encoder=False)
    assert all(p.requires_grad for p in model.wav2vec2.feature_extractor.parameters())
