"""Loading models and processors: every `from_pretrained` goes through `load_or_fail`, which refuses
pickled weights in a local dir and turns the libraries' many failure modes into one line. A bottom
module: it imports nothing of the package but the error base class."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slp_toolkit.errors import UserError


class ModelLoadError(UserError):
    """A model or processor could not be loaded; the message names it and says why in one line."""


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def refuse_pickle(name: str) -> None:
    """A local model dir whose weights are only pickles is refused: unpickling can run code. The Hub
    path is left to transformers, which unpickles with torch.load(weights_only=True)."""
    folder = Path(name)
    if not folder.is_dir() or os.environ.get("SLP_ALLOW_PICKLE") == "1" or any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelLoadError(
            f"{name}: weights only as pickle ({', '.join(pickles[:3])}), which can run code when loaded; convert "
            "them to safetensors (from_pretrained + save_pretrained), or set SLP_ALLOW_PICKLE=1 if you trust them"
        )


def load_or_fail(loader: Callable, name: str, what: str, **kwargs) -> Any:
    """Call a `from_pretrained` and turn its many failure modes into one line."""
    refuse_pickle(str(name))
    try:
        return loader(name, **kwargs)
    except OSError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"cannot load {what} from {name!r}: {first[:300]}") from None
    except (ValueError, KeyError) as err:
        if "custom code" in str(err):  # an auto_map to a .py of its own: never run (trust_remote_code stays off)
            raise ModelLoadError(
                f"{name}: the model needs its own Python code (auto_map in config.json), which slp_toolkit never "
                "runs; use a model of a transformers architecture, or convert it to one"
            ) from None
        first = " ".join(str(err).split())[:300]
        raise ModelLoadError(f"cannot load {what} from {name!r}: {type(err).__name__}: {first}") from None


# The one mapping from recipe keys to model configs, for every task, pretrained or scratch: a recipe key -> the
# config attributes it sets, in whichever of the family's configs (top level or a sub-config such as Parakeet's
# encoder_config) has them: families name dropout, layerdrop and the CTC blank differently. A key not listed
# sets the attribute of its own name (mask_time_prob, use_cache, ...).
CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "dropout": (
        "hidden_dropout",
        "attention_dropout",
        "activation_dropout",
        "feat_proj_dropout",
        "final_dropout",
        "dropout",
    ),  # fmt: skip
    "layerdrop": ("layerdrop", "encoder_layerdrop", "decoder_layerdrop"),
    "pad_token_id": ("pad_token_id", "blank_token_id"),  # the CTC blank is the tokenizer's pad
    "vocab_size": ("vocab_size",),
}
SUB_CONFIGS = ("encoder_config", "audio_config", "text_config", "decoder_config")


def config_parts(config) -> list:
    """A model config and its sub-configs (Parakeet's encoder_config, OmniASR's audio_config, ...)."""
    return [config, *(getattr(config, k) for k in SUB_CONFIGS if getattr(config, k, None) is not None)]


def apply_settings(config, settings: dict[str, Any], explicit: set[str], family: str) -> list[str]:
    """Set each recipe setting on the config attributes CONFIG_KEYS maps it to (else its own name), wherever the
    family has them; returns the settings it has nowhere. A None value is the checkpoint's own and changes
    nothing. One the recipe set explicitly (in `explicit`) is a ModelLoadError naming the key; a default the
    family lacks is simply not applied."""
    missing = []
    for key, value in settings.items():
        if value is None:
            continue
        names = CONFIG_KEYS.get(key, (key,))
        hits = [(part, n) for part in config_parts(config) for n in names if hasattr(part, n)]
        for part, name in hits:
            setattr(part, name, value)
        if not hits:
            if key in explicit:
                raise ModelLoadError(
                    f"model.{key}: {family} models ({type(config).__name__}) have no such setting; drop model.{key}"
                )
            missing.append(key)
    return missing


def scratch_values(settings: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """A scratch model has no checkpoint of its own to keep: a setting the recipe left unset (None) takes
    `defaults`' value, else 0 (no dropout, no layerdrop, no masks)."""
    defaults = defaults or {}
    return {k: v if v is not None else defaults.get(k, 0.0) for k, v in settings.items()}


def explicit_keys(cfg) -> set[str]:
    """The keys of a model section that differ from their defaults: what the recipe asked for."""
    import dataclasses

    default = type(cfg)()
    return {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(default, f.name)}
