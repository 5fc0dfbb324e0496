"""Reading a LoRA adapter dir: the base it names and the adapter put on that base (for evaluation and serving).
Training and merging adapters is training/lora.py; this half sits low so that every task's `load` can use it."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from slp_toolkit.runtime.loading import ModelLoadError

log = logging.getLogger("slp")

ADAPTER_CONFIG = "adapter_config.json"


@contextmanager
def quiet_peft() -> Iterator[None]:
    """peft 0.21 still asks transformers 5 for `is_gradient_checkpointing`, a deprecated alias."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def adapter_base(model_dir: str | Path) -> str | None:
    """The base model an adapter dir refers to, or None when `model_dir` is not an adapter.

    A recorded local path that no longer exists (the output dir moved) falls back to a `base` dir
    beside the adapter."""
    config = Path(model_dir) / ADAPTER_CONFIG
    if not config.is_file():
        return None
    base = json.loads(config.read_text()).get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"{config}: names no base_model_name_or_path")
    looks_local = base.startswith(("/", ".", "~")) or base.count("/") > 1
    if looks_local and not Path(base).exists():
        for candidate in (Path(model_dir) / "base", Path(model_dir).parent / "base"):
            if (candidate / "config.json").is_file():
                return str(candidate)
        raise ModelLoadError(f"{config}: its base model {base} does not exist")
    return base


def load_adapter(model, adapter_dir: str | Path):
    """Put the adapter of `adapter_dir` on a loaded base model (for inference)."""
    from peft import PeftModel

    try:
        with quiet_peft():
            return PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ModelLoadError(f"cannot load LoRA adapter from {adapter_dir}: {str(err)[:300]}") from None
