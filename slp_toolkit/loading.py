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
