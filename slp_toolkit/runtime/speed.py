"""Training-speed switches that do not change what is learned: compiling the convolutional front end's
normalisation and activation, and checking that bf16 autocast has hardware behind it.

Measured on 2 CPU cores (avx512_bf16, torch 2.14), fwd+bwd+AdamW of the `small` wav2vec2 CTC preset on
10 x 4 s clips (see benchmarks/README.md for whole runs). The raw-waveform conv stack runs at the audio
rate, where eager PyTorch spends its time in layout copies around each per-frame layer norm (it
normalises over channels, so the tensor is transposed there and back) and in GELU's backward over the
non-contiguous result; inductor fuses the three into one pass. The convolutions stay eager: inductor's
conv-backward lowering fixes the length, so a compiled conv recompiles for every batch length (64
graphs in 40 s of training), while the fused part compiles once with a symbolic length. Compiling the
whole model was slower, and a Whisper encoder gained nothing (1.07 vs 1.08 s/step).
"""

from __future__ import annotations

import logging
import types

import torch

log = logging.getLogger("slp")


def _norm_act(hidden: torch.Tensor, norm: torch.nn.LayerNorm, activation) -> torch.Tensor:
    hidden = torch.nn.functional.layer_norm(
        hidden.transpose(-2, -1), norm.normalized_shape, norm.weight, norm.bias, norm.eps
    )
    return activation(hidden.transpose(-2, -1))


_compiled = None


def _fused_forward(layer, hidden_states: torch.Tensor) -> torch.Tensor:
    return _compiled(layer.conv(hidden_states), layer.layer_norm, layer.activation)


def compile_front_end(model: torch.nn.Module) -> list[str]:
    """Fuse, in place, the layer norm and activation of every layer-norm conv layer of a wav2vec2-family
    feature encoder (wav2vec2, HuBERT, WavLM, data2vec-audio; `feat_extract_norm: layer`); returns their
    names. Same arithmetic, same parameter names, so checkpoints and `save_pretrained` are unchanged.
    A graph inductor cannot build (no C++ compiler) runs eagerly instead of failing the run."""
    import torch._dynamo

    global _compiled
    torch._dynamo.config.suppress_errors = True  # fall back to eager, with a warning, instead of raising
    # one graph per layer (each passes its own modules); past the limit (8) layers would silently run eagerly
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    if _compiled is None:
        _compiled = torch.compile(_norm_act, dynamic=True)
    names = [
        name
        for name, layer in model.named_modules()
        if type(layer).__name__.endswith("LayerNormConvLayer")
        and isinstance(getattr(layer, "layer_norm", None), torch.nn.LayerNorm)
    ]
    for name in names:
        layer = model.get_submodule(name)
        layer.forward = types.MethodType(_fused_forward, layer)
    if names:
        log.info(
            "train.compile: fusing norm+activation of %d conv layers (the first steps are slow while "
            "inductor builds it)",
            len(names),
        )
    else:
        log.warning(
            "train.compile: %s has no layer-norm conv front end to compile; training eagerly", type(model).__name__
        )
    return names


# Attention by shape. On CPU in bf16, PyTorch's flash-attention kernel is slow for short sequences, its
# backward most of all: fwd+bwd of one layer of the `small` wav2vec2 preset (13 clips x 150 frames, 4 heads)
# takes 18.7 ms, the same arithmetic as matmul-softmax-matmul 5.7 ms; a Whisper `small` encoder layer
# (750 frames) 72 vs 38 ms. With 1,500 frames and 12 heads (whisper-small) flash wins (269 vs 350 ms) and
# the score matrices would cost gigabytes, so past SCORES_LIMIT elements sdpa is kept.
SCORES_LIMIT = 1 << 22  # batch x heads x queries x keys: 16 MB of fp32 scores per layer
ATTENTION = "slp_sdpa"


def shape_aware_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs
):
    """transformers' sdpa attention, except for bf16 on CPU with small score matrices and nothing unusual
    (no position bias, soft cap or grouped heads): there the plain math, to rounding the same."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    b, h, q, k = query.shape[0], query.shape[1], query.shape[2], key.shape[2]
    causal = (
        q > 1
        and attention_mask is None
        and (is_causal if is_causal is not None else getattr(module, "is_causal", True))
    )
    plain = (
        query.device.type == "cpu"
        and query.dtype == torch.bfloat16
        and b * h * q * k <= SCORES_LIMIT
        and key.shape[1] == h
        and kwargs.get("position_bias") is None
        and kwargs.get("softcap") is None
        and not (causal and k != q)
    )
    if not plain:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    scores = torch.matmul(query, key.transpose(2, 3)) * (query.shape[-1] ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:
        mask = attention_mask[:, :, :, :k]
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    if causal:
        scores = scores.masked_fill(~torch.ones(q, k, dtype=torch.bool, device=query.device).tril(), float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(value.dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


def use_shape_aware_attention(model) -> bool:
    """Switch a transformers model that dispatches through AttentionInterface (and now uses sdpa) to
    `shape_aware_attention`; False (and nothing changed) for any other. `restore_attention` undoes it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa" or not hasattr(model, "set_attn_implementation"):
        return False
    AttentionInterface.register(ATTENTION, shape_aware_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # the masks sdpa gets (boolean, or none at all)
    try:
        model.set_attn_implementation(ATTENTION)
    except (ValueError, ImportError) as e:  # a model class that cannot switch: keep its sdpa
        log.debug("attention stays sdpa: %s", e)
        return False
    return model.config._attn_implementation == ATTENTION


def restore_attention(model) -> None:
    """Back to sdpa, so that a saved config never names an attention only this process registered."""
    if getattr(getattr(model, "config", None), "_attn_implementation", None) == ATTENTION:
        model.set_attn_implementation("sdpa")


def bf16_supported_on_cpu() -> bool:
    """Whether this CPU runs bf16 matmuls natively (avx512_bf16 or AMX); without, autocast emulates them
    and bf16 is several times slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
