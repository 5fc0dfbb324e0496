"""slp_toolkit/runtime/speed.py: the compiled front end computes what the eager one does, compiles once for every
batch length, and leaves parameter names (so checkpoints and exports) as they were."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import SLP, write_recipe

from slp_toolkit.runtime.scratch import build_ctc
from slp_toolkit.runtime.speed import bf16_supported_on_cpu, compile_front_end

VOCAB = list("abcdefghijklmnopqrstuvwxyz' ")


def _loss_and_grads(model, lengths: list[int]) -> tuple[float, dict]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(len(lengths), max(lengths), generator=g)
    mask = torch.zeros_like(x, dtype=torch.long)
    for i, n in enumerate(lengths):
        x[i, n:], mask[i, :n] = 0.0, 1
    labels = torch.randint(3, len(VOCAB), (len(lengths), 5), generator=g)
    model.zero_grad()
    loss = model(input_values=x, attention_mask=mask, labels=labels).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_compiled_front_end_matches_eager_and_compiles_once():
    import torch._dynamo

    torch.manual_seed(0)
    eager, _ = build_ctc(VOCAB, "tiny", mask_time_prob=0.0)
    compiled, _ = build_ctc(VOCAB, "tiny", mask_time_prob=0.0)
    compiled.load_state_dict(eager.state_dict())
    eager.eval(), compiled.eval()  # no dropout: the two must compute the same numbers
    keys = list(compiled.state_dict())
    torch._dynamo.reset()
    names = compile_front_end(compiled)
    assert len(names) == 3 and all("feature_extractor.conv_layers" in n for n in names)
    assert list(compiled.state_dict()) == keys  # save_pretrained and checkpoints see the same names
    graphs = []
    for lengths in (
        [16000, 12000],
        [9000, 20000, 11000],
        [24000, 5000],
    ):  # three lengths, two batch sizes (1 is special)
        want, want_grads = _loss_and_grads(eager, lengths)
        got, got_grads = _loss_and_grads(compiled, lengths)
        assert got == pytest.approx(want, rel=1e-4)
        for name, grad in want_grads.items():
            torch.testing.assert_close(got_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)
        graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    # graphs for the first batch only: a length-specialised graph (a compiled conv backward) recompiles per batch
    assert graphs[0] > 0 and graphs[0] == graphs[-1], f"graphs compiled after each batch: {graphs}"


def test_compile_finds_nothing_to_fuse_in_a_group_norm_front_end(caplog):
    model, _ = build_ctc(VOCAB, "tiny", feat_extract_norm="group")
    assert compile_front_end(model) == []
    assert "no layer-norm conv front end" in caplog.text


def test_training_with_compile_and_bf16_saves_a_plain_model(tmp_path, corpus):
    import subprocess

    from transformers import Wav2Vec2ForCTC

    # its own process: Accelerate's precision is fixed once per process
    recipe = write_recipe(tmp_path, corpus, max_steps=3, eval_every=3, compile=True, mixed_precision="bf16")
    done = subprocess.run([*SLP, "train", str(recipe)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "train.compile: fusing norm+activation of 3 conv layers" in done.stderr
    model = Wav2Vec2ForCTC.from_pretrained(tmp_path / "out")  # no _orig_mod. or missing keys
    assert "compile: true" in (tmp_path / "out" / "recipe.yaml").read_text()
    assert model.config.feat_extract_norm == "layer"
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["step"] == 3


def test_bf16_support_is_read_from_the_cpu():
    flags = open("/proc/cpuinfo").read() if __import__("os").path.exists("/proc/cpuinfo") else ""
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        assert bf16_supported_on_cpu()


@pytest.mark.parametrize("mask", ["none", "additive", "bool", "causal"])
def test_shape_aware_attention_computes_what_sdpa_does(mask):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from slp_toolkit.runtime.speed import SCORES_LIMIT, shape_aware_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 4, 50, 16, generator=g).bfloat16().requires_grad_() for _ in range(3))
    module = torch.nn.Module()
    module.is_causal = mask == "causal"
    keep = torch.ones(3, 1, 50, 50, dtype=torch.bool)
    keep[1, :, :, 30:] = False  # the second clip is 30 frames long
    attention = {"none": None, "causal": None, "bool": keep,
                 "additive": torch.zeros(3, 1, 50, 50).masked_fill(~keep, torch.finfo(torch.float32).min)}[mask]  # fmt: skip
    want = sdpa_attention_forward(module, q, k, v, attention)[0]
    (want.float().square().sum()).backward()
    want_grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    got = shape_aware_attention(module, q, k, v, attention)[0]
    (got.float().square().sum()).backward()
    torch.testing.assert_close(got.float(), want.float(), rtol=0.02, atol=0.02)
    for a, b in zip([t.grad for t in (q, k, v)], want_grads):
        torch.testing.assert_close(a.float(), b.float(), rtol=0.05, atol=0.05)
    assert 3 * 4 * 50 * 50 <= SCORES_LIMIT  # the plain path ran: sdpa's own result is not compared with itself
    assert not torch.equal(got, want)


def test_a_model_trained_with_shape_aware_attention_saves_and_loads_as_sdpa(tmp_path):
    from transformers import Wav2Vec2ForCTC

    from slp_toolkit.runtime.speed import ATTENTION, use_shape_aware_attention

    model, _ = build_ctc(VOCAB, "tiny", mask_time_prob=0.0)
    assert use_shape_aware_attention(model) and model.config._attn_implementation == ATTENTION
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, grads = _loss_and_grads(model, [16000, 9000])
    assert torch.isfinite(torch.tensor(loss)) and all(torch.isfinite(g).all() for g in grads.values())
    model.save_pretrained(tmp_path)
    assert ATTENTION not in (tmp_path / "config.json").read_text()
    assert Wav2Vec2ForCTC.from_pretrained(tmp_path).config._attn_implementation == "sdpa"
