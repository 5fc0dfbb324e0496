"""CTC beam search and its character n-gram LM: the ARPA file is a normalised model, beam search without
an LM equals greedy on a peaked distribution, and with an LM it picks the spelling the text holds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("flashlight.lib.text", reason="flashlight-text is a dependency (pip install -e .)")

from slp_toolkit.cli import main  # noqa: E402
from slp_toolkit.lm import BeamSettings, beam_decoder, beam_texts, build_arpa, token_sentences  # noqa: E402


def read_arpa(text: str) -> tuple[dict, dict]:
    prob, backoff, order = {}, {}, 0
    for line in text.splitlines():
        if line.startswith("\\") and line.endswith("-grams:"):
            order = int(line[1])
        elif order and line.strip() and not line.startswith("\\"):
            parts = line.split("\t")
            gram = tuple(parts[1].split())
            prob[gram] = 10 ** float(parts[0])
            backoff[gram] = 10 ** float(parts[2]) if len(parts) > 2 else 1.0
    return prob, backoff


def p(prob: dict, backoff: dict, history: tuple, w: str) -> float:
    """The backoff probability of w after history, as KenLM computes it."""
    if (*history, w) in prob:
        return prob[(*history, w)]
    if not history:
        return prob[("<unk>",)]
    return backoff.get(history, 1.0) * p(prob, backoff, history[1:], w)


def test_the_arpa_model_is_normalised_for_seen_and_unseen_histories():
    sentences = [list("the|cat|sat"), list("the|cat|ran"), list("a|dog|sat"), list("the|dog")]
    prob, backoff = read_arpa(build_arpa(sentences, order=3))
    words = sorted({w for g in prob for w in g if w != "<s>"})
    for history in [(), ("<s>",), ("t",), ("t", "h"), ("|", "c"), ("x", "q"), ("a", "|")]:
        total = sum(p(prob, backoff, history, w) for w in words)
        assert total == pytest.approx(1.0, abs=1e-4), history


def test_token_sentences_follow_the_model_vocabulary_and_case():
    vocab = {c: i for i, c in enumerate(["[PAD]", "|", "a", "b", "c"])}
    assert list(token_sentences(["A  bc, Z", "!!"], vocab)) == [["a", "|", "b", "c", "|"]]
    upper = {c: i for i, c in enumerate(["<pad>", "|", "A", "B", "C"])}
    assert list(token_sentences(["ab c"], upper)) == [["A", "B", "|", "C"]]


@pytest.fixture(scope="module")
def processor(ctc_run):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(ctc_run)


def emissions_for(processor, frames: list[dict[str, float]]) -> np.ndarray:
    """Log-probabilities over the vocabulary, frame by frame: the given tokens share the mass, others ~0."""
    vocab = processor.tokenizer.get_vocab()
    out = np.full((len(frames), len(vocab)), -30.0, dtype=np.float32)
    for t, frame in enumerate(frames):
        for token, prob in frame.items():
            out[t, vocab[token]] = math.log(prob)
    return out


def test_beam_without_lm_equals_greedy_on_a_peaked_distribution(processor):
    rng = np.random.default_rng(0)
    vocab = processor.tokenizer.get_vocab()
    logits = rng.normal(0, 1, (60, len(vocab))).astype(np.float32)
    logits[np.arange(60), rng.integers(0, len(vocab), 60)] += 12  # one clear winner per frame
    greedy = processor.batch_decode([logits.argmax(-1)])[0]
    beam = beam_texts(beam_decoder(processor, BeamSettings(beam_size=8)), processor, [logits])[0]
    assert beam == greedy and greedy


def test_with_an_lm_the_beam_prefers_the_spelling_the_text_holds(processor, tmp_path):
    pad = processor.tokenizer.pad_token
    # "the cat" where every letter of "cat" is a near tie between the right one and a wrong one
    frames = [{"t": 0.99, pad: 0.01}, {"h": 0.99, pad: 0.01}, {"e": 0.99, pad: 0.01}, {"|": 0.99, pad: 0.01},
              {"k": 0.55, "c": 0.45}, {pad: 0.9, "k": 0.1}, {"a": 0.45, "o": 0.55}, {pad: 1.0},
              {"t": 0.45, "d": 0.55}, {pad: 1.0}]  # fmt: skip
    logp = emissions_for(processor, frames)
    lm = tmp_path / "lm.arpa"
    lm.write_text(
        build_arpa(token_sentences(["the cat sat", "a cat ran", "the cat"] * 5, processor.tokenizer.get_vocab()), 4)
    )
    without = beam_texts(beam_decoder(processor, BeamSettings(beam_size=16)), processor, [logp])[0]
    with_lm = beam_texts(
        beam_decoder(processor, BeamSettings(lm=str(lm), beam_size=16, lm_weight=0.5)), processor, [logp]
    )[0]
    assert without == "the kod" and with_lm == "the cat"  # without: the likelier letter of every tie


def test_lm_build_and_eval_with_beam_report_both_decoders(ctc_run, corpus, tmp_path, capsys):
    model = tmp_path / "model"
    import shutil

    shutil.copytree(ctc_run, model)
    assert main(["lm", "build", str(model), "--text", str(corpus / "train"), "--order", "4"]) == 0
    assert (model / "language_model" / "lm.arpa").stat().st_size > 1000
    out = tmp_path / "eval"
    args = ["eval", str(model), "--data", str(corpus / "test"), "--output-dir", str(out), "--decoder", "beam"]
    assert main([*args, "--beam-size", "4"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"wer", "cer", "wer_greedy", "cer_greedy"} <= set(metrics)
    assert main(["transcribe", str(model), str(corpus / "test"), "--decoder", "beam", "--json"]) == 0
    assert all("text" in json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{"))
    assert main(["eval", str(model), "--data", str(corpus / "test"), "--lm", "x.arpa"]) == 2
