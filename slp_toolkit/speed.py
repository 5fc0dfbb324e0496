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
    hidden = torch.nn.functional.layer_norm(hidden.transpose(-2, -1), norm.normalized_shape, norm.weight,
                                            norm.bias, norm.eps)  # fmt: skip
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
        if type(layer).__name__.endswith("LayerNormConvLayer") and isinstance(getattr(layer, "layer_norm", None),
                                                                             torch.nn.LayerNorm)
    ]  # fmt: skip
    for name in names:
        layer = model.get_submodule(name)
        layer.forward = types.MethodType(_fused_forward, layer)
    if names:
        log.info("train.compile: fusing norm+activation of %d conv layers (the first steps are slow while "
                 "inductor builds it)", len(names))  # fmt: skip
    else:
        log.warning("train.compile: %s has no layer-norm conv front end to compile; training eagerly",
                    type(model).__name__)  # fmt: skip
    return names


def bf16_supported_on_cpu() -> bool:
    """Whether this CPU runs bf16 matmuls natively (avx512_bf16 or AMX); without, autocast emulates them
    and bf16 is several times slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
