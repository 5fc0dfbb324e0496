"""Where inference runs: one rule for `slp eval`, `transcribe`, `classify`, `synthesize`, folds and the demo.

`--device auto` (the default) takes the first CUDA GPU when there is one, else Apple's MPS, else the CPU;
`--device cuda:1` or `cpu` pick one. The model is moved there once, after loading; every task's predict
sends its inputs to the model's device, and the TTS vocoder and judge follow the model. Precision follows
the model: `--precision auto` is what its run evaluated in (train.mixed_precision of MODEL/recipe.yaml: bf16
autocast for a bf16 run, fp32 otherwise), so `slp eval` repeats the score training logged; a model without a
recipe (a Hub name, an import) gets bf16 autocast on a GPU that has bf16 (Ampere and later), fp32 elsewhere
(on CPU bf16 pays only with avx512_bf16/AMX: ask for it). Training places itself through Accelerate
(`accelerate launch`, or the one GPU it finds).
"""

from __future__ import annotations

import argparse
import logging

from slp_toolkit.errors import UserError

log = logging.getLogger("slp")


class DeviceError(UserError):
    """A device that this machine does not have; the message says what it has."""


def available() -> list[str]:
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def resolve(name: str | None = "auto"):
    """The torch.device `name` means here ('auto': the first GPU, else the CPU), or a one-line DeviceError."""
    import torch

    have = available()
    if name in (None, "", "auto"):
        return torch.device(have[1] if len(have) > 1 else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"--device {name!r}: not a device name (this machine has: {', '.join(have)})") from None
    wanted = f"{device.type}:{device.index or 0}" if device.type == "cuda" else device.type
    if wanted not in have:
        raise DeviceError(f"--device {name}: this machine has no such device (it has: {', '.join(have)})")
    return torch.device(wanted)


def speed_settings(device) -> None:
    """TF32 matmuls and convolutions on Ampere and later GPUs (what the Trainer's `tf32` does): ~2-8x the
    fp32 matmul rate at 10 bits of mantissa, well inside what speech models notice."""
    import torch

    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def place(model, device):
    """The model on `device` (moved once), with that device's speed settings."""
    speed_settings(device)
    return model.to(device)


def precision_for(device, asked: str, model_dir: str | None = None) -> str:
    """An explicit fp32/bf16 as asked; 'auto' -> the precision of the run that made `model_dir` (its in-training
    evaluation ran there), else bf16 on a GPU with bf16 and fp32 elsewhere."""
    if asked != "auto":
        return asked
    import torch

    trained = trained_precision(model_dir)
    if trained is not None:
        return "bf16" if trained == "bf16" else "fp32"  # fp16 runs are scored in fp32: no fp16 autocast offered
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def trained_precision(model_dir: str | None) -> str | None:
    """train.mixed_precision of the recipe saved beside a model (None: no readable recipe.yaml)."""
    from pathlib import Path

    import yaml

    path = Path(model_dir or "") / "recipe.yaml"
    try:
        return str(((yaml.safe_load(path.read_text()) or {}).get("train") or {}).get("mixed_precision", "no"))
    except (OSError, yaml.YAMLError, AttributeError):
        return None


def with_precision(task, model, precision: str, model_dir: str | None = None):
    """The task with its predict (and ranked, timed) under bf16 autocast where `precision_for` says bf16: ~2x faster on CPUs with
    AVX512-BF16/AMX and on GPUs, logits within bf16 rounding of fp32 (a near-tie frame may pick another token).
    int8 quantises the model's linear layers in place instead (CPU only)."""
    import dataclasses

    device = model_device(model)
    if precision == "int8":
        quantize_int8(model, device)
        return task
    if precision_for(device, precision, model_dir) == "fp32":
        return task
    import torch

    if device.type == "cpu" and not torch.backends.mkldnn.is_available():
        raise DeviceError("--precision bf16 needs a GPU or a CPU build of torch with oneDNN")
    log.info("bf16 autocast on %s", device)

    def autocast(inner):
        def run(*args, **kwargs):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return inner(*args, **kwargs)

        return run

    caps = {k: autocast(getattr(task.caps, k)) for k in ("ranked", "timed") if getattr(task.caps, k) is not None}
    return dataclasses.replace(task, predict=autocast(task.predict), caps=dataclasses.replace(task.caps, **caps))


def quantize_int8(model, device) -> None:
    """Dynamic int8 quantisation of every nn.Linear, in place: weights int8 with a scale per output row (as
    CTranslate2's int8), activations quantised per batch. CPU only (fbgemm/x86 kernels); see docs/whisper.md
    for what it buys and costs."""
    import warnings

    import torch

    if device.type != "cpu":
        raise DeviceError(f"--precision int8 runs on the CPU (dynamic int8 kernels); on {device.type} use bf16")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's notice that torchao is its successor; the kernels are the same
        quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
    log.info("int8 dynamic quantisation of the linear layers")


def add_precision_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "int8"],
        default="auto",
        help="bf16: autocast inference, ~2x faster on a GPU or where the CPU has bf16 (avx512_bf16/"
        "AMX); int8: dynamic int8 linear layers (CPU); auto: what the model's run evaluated in (its "
        "recipe's train.mixed_precision), else bf16 on a GPU with bf16 and fp32 elsewhere",
    )


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        help="where the model runs: auto (the first GPU, else the CPU), cpu, cuda, cuda:N or mps",
    )


def is_sharded(model) -> bool:
    """Whether the model's weights are split over processes (FSDP2: DTensor parameters), so that its forward, its
    generate (every process decodes as many steps as the longest) and its export need every process."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def model_device(model):
    """The device of a model's weights (the first parameter's; CPU for a model without any)."""
    import torch

    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def load_placed(task, model_dir: str, device: str | None = "auto") -> tuple:
    """(model, processor) of a model dir through its task, the model moved once to `device` (resolved here)."""
    target = resolve(device)
    model, processor = task.load(model_dir)
    if hasattr(model, "merge_and_unload"):
        # a LoRA adapter folded into its base for inference: the same outputs, without the adapters' extra
        # matmuls (the quickstart's whisper-tiny.en LoRA: 120 clips in 2m01s unmerged)
        model = model.merge_and_unload()
    log.info("%s: running on %s", model_dir, target)
    return place(model, target), processor


def process_state():
    """Accelerate's state of this process (rank, world, device). Under `accelerate launch` on a machine
    without GPUs, ACCELERATE_USE_CPU=1 makes the processes one gloo group here as it does for training."""
    import os

    from accelerate import PartialState

    return PartialState(cpu=os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"))
