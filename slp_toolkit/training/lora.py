"""LoRA adapters (peft) for any task's model: wrap for training and merge into a plain model (reloading an
adapter for inference is runtime/adapters.py, which the tasks use).

A LoRA run saves only the adapter (`adapter_model.safetensors` + `adapter_config.json`). The adapter
config names its base: the Hub name, the absolute path of a local base, or, for a scratch base (random
weights nobody else has), `OUTPUT/base`, which `apply_lora` writes once before training.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from slp_toolkit.config import ConfigError, LoraConfig
from slp_toolkit.runtime.adapters import ADAPTER_CONFIG, adapter_base, load_adapter, quiet_peft  # noqa: F401
from slp_toolkit.runtime.loading import ModelLoadError
from slp_toolkit.runtime.storage import save_pretrained
from slp_toolkit.tasks import Task

log = logging.getLogger("slp")


def checkpoint_trainable_only(accelerator) -> None:
    """Checkpoints of a LoRA run keep what training changes, not a copy of the frozen base: 28 MB instead
    of 1 GB per checkpoint for whisper-small at r 32 (resume reloads the base from its own dir)."""

    def drop_frozen(models, weights, _output_dir) -> None:
        for model, state in zip(models, weights):
            for name, param in model.named_parameters(remove_duplicate=False):  # tied weights: every name
                if not param.requires_grad:
                    state.pop(name, None)

    accelerator.register_save_state_pre_hook(drop_frozen)


def apply_lora(model, cfg: LoraConfig, task: Task, base_dir: str | Path | None = None):
    """Freeze `model` and add LoRA matrices to `cfg.target_modules` (default: the task's
    `lora_targets`); `cfg.modules_to_save` (default: the task's new heads) train in full."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = list(cfg.target_modules or task.caps.lora_targets)
    heads = list(task.caps.lora_heads if cfg.modules_to_save is None else cfg.modules_to_save)
    _check_modules(model, targets, "lora.target_modules")
    _check_modules(model, heads, "lora.modules_to_save")
    if cfg.within:
        targets = _within(model, targets, cfg.within)
    base = _base_reference(model, base_dir)
    peft_config = PeftLoraConfig(  # task_type unset: a typed one makes Whisper's forward receive input_ids
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets,
        modules_to_save=heads or None,
    )
    with quiet_peft():
        model = get_peft_model(model, peft_config)
    model.peft_config["default"].base_model_name_or_path = base
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    base_size = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n and ".modules_to_save." not in n)
    log.info(
        "LoRA r=%d on %s%s%s: %s trainable parameters, %.2f%% of the base's %s (adapter ~%.2f MB, base %.1f MB)",
        cfg.r,
        ", ".join(cfg.target_modules or task.caps.lora_targets),
        f" in the {cfg.within} ({len(targets)} modules)" if cfg.within else "",
        f" (+ full {', '.join(heads)})" if heads else "",
        f"{trainable:,}",
        100 * trainable / base_size,
        f"{base_size:,}",
        4 * trainable / 1e6,
        4 * base_size / 1e6,
    )
    return model


def _check_modules(model, names: list[str], key: str) -> None:
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [n for n in names if n.rsplit(".", 1)[-1] not in present]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"})
        raise ConfigError(
            f"{key}: {type(model).__name__} has no module named {', '.join(map(repr, missing))} "
            f"(its linear layers: {', '.join(linear)})"
        )


def _within(model, targets: list[str], part: str) -> list[str]:
    """The full names of the target modules that sit inside `part` (a component of their dotted path): peft
    matches a full name exactly, so only those get adapters."""
    names = [n for n, _ in model.named_modules()]
    found = [n for n in names if n.rsplit(".", 1)[-1] in targets and part in n.split(".")[:-1]]
    if not found:
        parts = sorted({c for n in names for c in n.split(".")[:3] if c and not c.isdigit()})
        raise ConfigError(
            f"lora.within: no {', '.join(targets)} inside a part named {part!r} (parts: {', '.join(parts)})"
        )
    return found


def _base_reference(model, base_dir: str | Path | None) -> str | None:
    """What the adapter config should name as its base: something `from_pretrained` can load later."""
    name = getattr(model, "name_or_path", "") or ""
    if name and Path(name).is_dir():
        return str(Path(name).resolve())  # the run's cwd is not the reader's
    if name:
        return name  # a Hub name
    if base_dir is None:
        log.warning("LoRA on a scratch model without a base_dir: the adapter cannot be reloaded on its own")
        return None
    base_dir = Path(base_dir)
    from accelerate import PartialState

    if PartialState().is_main_process:  # one writer under DDP; the weights are the same on every rank
        tmp = base_dir.with_name(f".tmp-{base_dir.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        save_pretrained(tmp, model)
        shutil.rmtree(base_dir, ignore_errors=True)
        os.replace(tmp, base_dir)
        log.info("scratch base model saved to %s (the adapter refers to it)", base_dir)
    return str(base_dir.resolve())


def merge(adapter_dir: str | Path, out_dir: str | Path) -> dict:
    """Fold an adapter into its base and save a plain model dir (+ processor) that `pipeline()` loads."""
    from slp_toolkit.tasks import detect_task

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if adapter_base(adapter_dir) is None:
        raise ModelLoadError(f"{adapter_dir}: not a LoRA adapter dir (no {ADAPTER_CONFIG})")
    task = detect_task(str(adapter_dir))
    model, processor = task.load(str(adapter_dir))
    merged = model.merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_pretrained(out_dir, merged, processor)
    adapter_bytes = _size(adapter_dir, "adapter_model.safetensors")
    merged_bytes = _size(out_dir, "*.safetensors")
    return {
        "task": task.name,
        "merged": str(out_dir),
        "adapter_mb": round(adapter_bytes / 1e6, 3),
        "merged_mb": round(merged_bytes / 1e6, 3),
        "adapter_fraction": round(adapter_bytes / max(merged_bytes, 1), 4),
    }


def _size(folder: Path, pattern: str) -> int:
    return sum(f.stat().st_size for f in folder.glob(pattern))
