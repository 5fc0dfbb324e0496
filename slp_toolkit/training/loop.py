"""The training loop: one for every task, on Accelerate. loss = model(**task.collate(examples)).loss.

Batches hold a budget of audio seconds (lengths computed once at decode time); every process takes
an equal slice of each global batch, so one and N processes see the same data. The learning-rate
schedule follows the run's progress, the largest of steps/max_steps, time/max_minutes and
epochs/epochs, so a time-budgeted run still warms up and decays. Checkpoints (model, optimizer, RNG,
position in the epoch) are written atomically; `--resume` continues from the newest one.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from slp_toolkit.config import Recipe, TrainConfig, save_recipe
from slp_toolkit.data.augment import augmenter_for
from slp_toolkit.data.batches import MapBatches, StreamBatches, prefetched, stream_metadata
from slp_toolkit.data.prepare import prepare, usable
from slp_toolkit.data.splits import load_split, workers_for
from slp_toolkit.runtime.device import speed_settings
from slp_toolkit.runtime.memory import configure as configure_memory
from slp_toolkit.runtime.memory import trim
from slp_toolkit.runtime.speed import bf16_supported_on_cpu, compile_front_end, use_shape_aware_attention
from slp_toolkit.tasks import get_task, model_sampling_rate, window_seconds
from slp_toolkit.training.checkpoint import (
    TrainState,
    checkpoints,
    clean_partial,
    load_position,
    restore,
)
from slp_toolkit.training.progress import Progress
from slp_toolkit.training.run import Run, TrainError, tensorboard

log = logging.getLogger("slp")


def lr_factor(cfg: TrainConfig, progress: float) -> float:
    if progress < cfg.warmup:
        return (progress + 1e-3) / cfg.warmup
    if cfg.schedule == "constant":
        return 1.0
    rest = min(1.0, (progress - cfg.warmup) / max(1e-9, 1.0 - cfg.warmup))
    return 1.0 - rest if cfg.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * rest))


def progress_of(cfg: TrainConfig, state: TrainState, epochs_done: float) -> float:
    parts = [0.0]
    if cfg.max_steps:
        parts.append(state.step / cfg.max_steps)
    if cfg.max_minutes:
        parts.append(state.elapsed / (60 * cfg.max_minutes))
    if cfg.epochs:
        parts.append(epochs_done / cfg.epochs)
    return max(parts)


def train(recipe: Recipe, resume: bool = False) -> dict:
    """Train `recipe` and export the best model into `recipe.output_dir`; returns its metrics."""
    from accelerate.utils import set_seed

    task, cfg, out = get_task(recipe.task), recipe.train, Path(recipe.output_dir)
    resume = _resume_wanted(out, resume)
    accelerator = _accelerator(cfg)
    set_seed(cfg.seed)
    rate = model_sampling_rate(recipe.model)
    augment = augmenter_for(
        recipe.augment, rate, task.caps.audio_is_input, task.caps.augment_changes_label
    )  # fails early
    train_ds, eval_ds, model, processor = _data_and_model(recipe, task, accelerator, rate)
    if recipe.lora is not None:
        from slp_toolkit.training.lora import apply_lora, checkpoint_trainable_only

        model = apply_lora(model, recipe.lora, task, out / "base")  # a scratch base is saved there
        checkpoint_trainable_only(accelerator)
    main = accelerator.is_main_process
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, out / "recipe.yaml")
        processor.save_pretrained(out)
    model, optimizer, params = _optimize(model, cfg, accelerator, recipe.model.attn_implementation is None)
    state, found_at = TrainState(), None
    if resume:
        if main:
            clean_partial(out)
        state, found_at = restore(accelerator, out, strict=recipe.lora is None)

    world, rank = accelerator.num_processes, accelerator.process_index
    # a fixed-window model (Whisper) spends a window on every clip: batches count windows, unless packed
    window = None if recipe.data.pack else window_seconds(processor)
    if recipe.data.streaming:
        source = StreamBatches(recipe, rate, task, processor, rank, world, window)
    else:
        source = MapBatches(train_ds, recipe, rank, world, window)
    writer = tensorboard(out) if main else None
    run = Run(task, recipe, accelerator, model, optimizer, processor, eval_ds, state, out, writer)
    run.position = load_position(found_at, rank, state) if resume else {}
    model_config = accelerator.unwrap_model(model).config
    gpu = accelerator.device.type == "cuda"

    def collated(batch) -> tuple:
        # augmentation randomness is a function of the position, so a resumed run repeats it exactly
        rng = np.random.default_rng([cfg.seed, rank, *batch.key])
        # the task's own crops first: augmenting only the window that trains costs less
        examples = [task.caps.augment(e, rng) for e in batch.examples]
        examples = augment(examples, rng) if augment else examples
        if recipe.data.pack:  # after augmentation: each clip keeps its own noise, speed and level
            clips, examples = len(examples), task.caps.pack(examples, processor, rng, model_config)
            if not run.position:
                log.info("data.pack: the first batch's %d clips fill %d model inputs", clips, len(examples))
        inputs = task.collate(examples, processor)
        # page-locked in the worker thread, so the copy to the GPU is asynchronous (non_blocking below)
        return batch, {k: v.pin_memory() for k, v in inputs.items()} if gpu else inputs

    batches = source.run(run.position)
    workers = cfg.data_workers or (4 if gpu else 1)
    batches = prefetched(batches, collated, workers) if cfg.prefetch else map(collated, batches)
    return _loop(run, source, batches, params)


def _loop(run: Run, source, batches: Iterator, params: list) -> dict:
    """Step until a stop rule holds (run.finished), evaluating and checkpointing when due."""
    task, cfg, state, accelerator = run.task, run.cfg, run.state, run.acc
    model, optimizer = run.model, run.optimizer
    start, losses, nonfinite = time.perf_counter() - state.elapsed, [], 0
    bar = Progress(cfg, state) if accelerator.is_main_process else None
    window: deque = deque()  # (batch, inputs, weight) of the micro-batches of this optimizer step
    while not run.finished(source.epochs_done(run.position)):
        if not window:
            taken = [next(batches) for _ in range(cfg.grad_accum)]
            weights = loss_weights(task, [inputs for _, inputs in taken], accelerator)
            window.extend((b, i, w) for (b, i), w in zip(taken, weights, strict=True))
        batch, cpu_inputs, weight = window.popleft()
        inputs = {k: v.to(accelerator.device, non_blocking=True) for k, v in cpu_inputs.items()}
        run.position = batch.position
        with accelerator.accumulate(model):
            progress = progress_of(cfg, state, source.epochs_done(run.position))
            for group in optimizer.param_groups:
                group["lr"] = cfg.learning_rate * lr_factor(cfg, progress)
            loss = task.caps.compute_loss(model, inputs)
            loss_value = accelerator.reduce(loss.detach(), "mean").item()  # the same on every rank
            finite = _update(accelerator, optimizer, loss * weight, params, cfg) if math.isfinite(loss_value) else False
            optimizer.zero_grad(set_to_none=True)
        nonfinite = 0 if finite else nonfinite + 1
        state.skipped_steps += not finite
        if nonfinite >= cfg.max_nonfinite_steps:
            raise TrainError(
                f"loss or gradient not finite for {nonfinite} steps in a row at step {state.step} (no update made; "
                f"train.max_nonfinite_steps={cfg.max_nonfinite_steps}): lower train.learning_rate, or check the data"
            )
        losses.append(loss_value)
        state.audio_seconds += batch.seconds
        state.elapsed = run.shared_time(time.perf_counter() - start)
        trim()
        if not accelerator.sync_gradients:
            continue
        state.step += 1
        if state.step % cfg.log_every == 0 or state.step == 1:
            run.log_train(losses, optimizer.param_groups[0]["lr"], bar)
            losses = []
        if bar is not None:
            lr, speed = optimizer.param_groups[0]["lr"], state.audio_seconds / max(state.elapsed, 1e-9)
            bar.step(state, progress_of(cfg, state, source.epochs_done(run.position)), loss_value, lr, speed)
        if run.eval_due():
            trim(force=True)  # evaluation allocates on top of what training left: start it from the floor
            run.evaluate_and_checkpoint()
            trim(force=True)
    if bar is not None:
        bar.close(state, progress_of(cfg, state, source.epochs_done(run.position)))
    return run.finish()


def loss_weights(task, window: list[dict], accelerator) -> list[float]:
    """What each micro-batch's mean loss is multiplied by, so that the step's gradient is that of the mean over
    every item (label token, utterance: task.caps.loss_items) of the global batch, all accumulation steps and
    processes together. A mean of per-micro-batch means made a short batch's items weigh more (transformers
    fixed the same in 4.46 with num_items_in_batch). Accelerate divides by the accumulation steps and DDP/FSDP
    average over processes: both undone here. One process, no accumulation: 1.0."""
    items = [float(task.caps.loss_items(inputs)) for inputs in window]
    total = torch.tensor(sum(items), device=accelerator.device)
    if accelerator.num_processes > 1:
        total = accelerator.reduce(total, "sum")
    total, parts = max(float(total), 1.0), accelerator.num_processes * len(window)
    return [n * parts / total for n in items]


def _resume_wanted(out: Path, resume: bool) -> bool:
    found = checkpoints(out)
    if resume and not found:  # killed before its first checkpoint: nothing to lose by starting over
        log.warning("%s: no checkpoint yet, so --resume starts the run from step 0", out)
        return False
    if found and not resume:
        raise TrainError(f"{out}: already holds checkpoints; pass --resume to continue or pick another output_dir")
    return resume


def _accelerator(cfg: TrainConfig):
    from datetime import timedelta

    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        raise TrainError(
            "DeepSpeed is not supported yet (it has never run to the end here): launch with "
            "recipes/accelerate/fsdp.yaml (sharded) or ddp.yaml instead"
        )
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    configure_memory(cfg.trim_memory_mb)
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if launched and launched != cfg.mixed_precision:
        log.warning(
            "the launch config asks for mixed precision %s, the recipe for %s: the recipe's "
            "train.mixed_precision applies",
            launched,
            cfg.mixed_precision,
        )
    timeout = InitProcessGroupKwargs(timeout=timedelta(minutes=cfg.ddp_timeout_minutes))
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum, mixed_precision=cfg.mixed_precision, kwargs_handlers=[timeout]
    )
    if cfg.tf32:
        speed_settings(accelerator.device)
    if cfg.mixed_precision == "bf16" and accelerator.device.type == "cpu" and not bf16_supported_on_cpu():
        log.warning("train.mixed_precision=bf16: this CPU has no native bf16 (avx512_bf16/AMX); expect it slower")
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > accelerator.num_processes:
        # each process would train alone and they would overwrite each other's outputs
        raise TrainError(
            f"launched {launched} processes but Accelerate did not join them (no GPU?); "
            "on a machine without GPUs set ACCELERATE_USE_CPU=1 for a gloo process group"
        )
    return accelerator


def _data_and_model(recipe: Recipe, task, accelerator, rate: int) -> tuple:
    """(train split, eval split, model, processor), the splits decoded/cached and prepared for the model."""
    d = recipe.data
    with accelerator.main_process_first():  # the main process writes the caches, the others then read them
        if d.streaming:
            train_ds = stream_metadata(recipe, task.needs)
        else:
            train_ds = load_split(d.train, d, rate, task.needs, d.max_train_samples)
        eval_ds = load_split(d.eval, d, rate, task.needs, d.max_eval_samples) if d.eval else None
        model, processor = task.build(recipe, train_ds)
        checkpointing(model, recipe.model.gradient_checkpointing)
        if recipe.model.attn_implementation:
            set_attention(model, recipe.model.attn_implementation)
        if not d.streaming:
            train_ds = prepare(train_ds, task, processor, workers_for(d, len(train_ds)))
        if eval_ds is not None:
            eval_ds = usable(eval_ds, task, processor, d.eval)
    return train_ds, eval_ds, model, processor


def checkpointing(model, wanted: bool) -> None:
    """model.gradient_checkpointing, for every task: activations recomputed in the backward pass. Non-reentrant,
    so gradients still reach a decoder (and adapters) behind a frozen encoder."""
    if wanted:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def decay_groups(model, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: weight decay on weights, none on biases and normalisation layers (as the Trainer
    does: decaying a layer norm's gain towards 0 only fights the normalisation)."""
    norms = {
        f"{name}.{p}" if name else p
        for name, module in model.named_modules()
        if "norm" in type(module).__name__.lower()
        for p, _ in module.named_parameters(recurse=False)
    }
    decay, rest = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (rest if name in norms or name.endswith("bias") else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def set_attention(model, name: str) -> None:
    """The recipe's model.attn_implementation, or one line saying why this model or machine cannot have it."""
    try:
        model.set_attn_implementation(name)
    except (ValueError, ImportError) as err:
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrainError(f"model.attn_implementation={name}: {why}") from None


def skips_layers(config) -> bool:
    """Whether a model config drops whole layers in training (any `*layerdrop` above 0, sub-configs too)."""
    found = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return any(
        (isinstance(v, dict) and skips_layers(v)) or (str(k).endswith("layerdrop") and isinstance(v, float) and v > 0)
        for k, v in found.items()
    )


def _optimize(model, cfg: TrainConfig, accelerator, shape_aware: bool = True) -> tuple:
    """(model, optimizer, trainable parameters), prepared by Accelerate, the model in train mode."""
    from accelerate.utils import DistributedDataParallelKwargs

    if cfg.compile:
        compile_front_end(model)
    if shape_aware and use_shape_aware_attention(model):  # only bf16 on CPU changes (speed.py): ~10 % a step
        log.debug("attention: plain math for small bf16 score matrices on CPU, sdpa otherwise")
    params = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in model.parameters())
    log.info("model: %s parameters, %s trainable", f"{total:,}", f"{sum(p.numel() for p in params):,}")
    # fused: one kernel for all parameters (what the Trainer picks on torch >= 2.8); same update as the loop version
    optimizer = torch.optim.AdamW(decay_groups(model, cfg.weight_decay), lr=cfg.learning_rate, fused=True)
    model.train()  # from_pretrained returns eval mode: no dropout, SpecAugment or gradient checkpointing
    find = cfg.find_unused_parameters
    find = skips_layers(model.config) if find is None else find
    if find and accelerator.num_processes > 1:
        log.info("DDP looks for unused parameters every step (the model drops layers in training)")
    accelerator.ddp_handler = DistributedDataParallelKwargs(find_unused_parameters=find)
    model, optimizer = accelerator.prepare(model, optimizer)
    # FSDP2 replaces the parameters with sharded ones: clipping must see those, not the ones captured above
    params = [p for p in model.parameters() if p.requires_grad]
    return model, optimizer, params


def _update(accelerator, optimizer, loss, params, cfg: TrainConfig) -> bool:
    """Backward, clip and step; False (and no step) where the gradient norm is not finite."""
    accelerator.backward(loss)
    if accelerator.sync_gradients:
        norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP2: a DTensor over the shards
        # fp16's loss scaler skips such steps itself, and must see them to lower its scale
        if norm is not None and not math.isfinite(float(norm)) and accelerator.scaler is None:
            return False
    optimizer.step()
    return True
