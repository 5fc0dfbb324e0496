"""A run's bookkeeping around the loop in train.py: when to evaluate and stop, evaluation, checkpoints
(through checkpoint.py), logging, and the final export of the best model with metrics.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from slp_toolkit.config import Recipe, UserError
from slp_toolkit.data.batches import examples_at
from slp_toolkit.inference.evaluate import evaluate_split, write_metrics
from slp_toolkit.runtime.device import is_sharded
from slp_toolkit.tasks import Task
from slp_toolkit.training.checkpoint import copy_into, export, gathered_state_dict, save

log = logging.getLogger("slp")


class TrainError(UserError):
    """A run that cannot start or continue; the message says what to do."""


class Run:
    """The loop's bookkeeping: stopping rules, evaluation, checkpoints and the final export."""

    def __init__(
        self,
        task: Task,
        recipe: Recipe,
        accelerator,
        model,
        optimizer,
        processor,
        eval_ds,
        state,
        out,
        writer,
    ):
        self.task, self.recipe, self.cfg, self.acc = task, recipe, recipe.train, accelerator
        self.model, self.optimizer, self.processor, self.eval_ds = model, optimizer, processor, eval_ds
        self.state, self.out, self.writer = state, out, writer
        self.last_eval_time = state.elapsed
        self.stop_early = False
        self.last_checkpoint = -1
        self.position: dict = dict(state.position)
        # every rank must agree on whether finish() evaluates (collectives inside); only rank 0 holds evals
        self.last_eval_step = (
            state.step if any(h.get("step") == state.step and "eval" in h for h in state.history) else -1
        )
        self.metric = self.cfg.metric_for_best or task.main_metric

    def finished(self, epochs_done: float) -> bool:
        c, s = self.cfg, self.state
        if self.stop_early or (c.max_steps and s.step >= c.max_steps):
            return True
        if c.max_minutes and s.elapsed >= 60 * c.max_minutes:
            return True
        return bool(c.epochs and epochs_done >= c.epochs)

    def shared_time(self, seconds: float) -> float:
        """Every process must agree on elapsed time, or time-based schedules and stops diverge."""
        if self.acc.num_processes == 1:
            return seconds
        from accelerate.utils import broadcast

        return float(broadcast(torch.tensor([seconds], device=self.acc.device), from_process=0).item())

    def eval_due(self) -> bool:
        c, s = self.cfg, self.state
        if c.eval_every_minutes and s.elapsed - self.last_eval_time >= 60 * c.eval_every_minutes:
            return True
        return s.step % c.eval_every == 0

    def log_train(self, losses: list[float], lr: float, bar) -> None:
        s = self.state
        loss = float(np.mean(losses)) if losses else float("nan")
        speed = s.audio_seconds / max(s.elapsed, 1e-9)
        s.history.append({"step": s.step, "loss": loss, "lr": lr, "elapsed": round(s.elapsed, 2)})
        if bar is not None:
            bar.show(step=s.step, loss=f"{loss:.3f}", lr=f"{lr:.2e}", audio_s_per_s=f"{speed:.3g}")
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, s.step)
            self.writer.add_scalar("train/lr", lr, s.step)
            self.writer.add_scalar("train/audio_seconds_per_second", speed, s.step)

    @property
    def sharded(self) -> bool:
        """FSDP: every process holds a shard of the weights, so every forward and every export takes all of them."""
        from accelerate.utils import DistributedType

        return self.acc.distributed_type == DistributedType.FSDP or is_sharded(self.model)

    def evaluate(self) -> dict | None:
        """Every process predicts its shard of the eval split; the main process scores them (others: None)."""
        if self.eval_ds is None:
            return None
        if self.sharded and not self.task.caps.lockstep_predict:
            if self.acc.is_main_process and self.state.step <= self.cfg.eval_every:
                log.warning(
                    "evaluation skipped: %s cannot predict with a model sharded over processes (FSDP); "
                    "train with DDP to evaluate during training, or `slp eval` the saved model",
                    self.task.name,
                )
            return None
        model = self.acc.unwrap_model(self.model)
        state = self.acc.state if self.acc.num_processes > 1 else None
        metrics, predictions = evaluate_split(
            self.task, model, self.processor, self.eval_ds, self.cfg.batch_seconds, state, lockstep=self.sharded
        )
        # e.g. TTS: audio samples, spectrogram and alignment plots; a sharded model cannot run on one process
        if self.acc.is_main_process and self.task.caps.report is not None and not self.sharded:
            examples = examples_at(self.eval_ds, list(range(min(3, len(self.eval_ds)))))
            where = self.out / "samples" / f"step-{self.state.step:07d}"
            self.task.caps.report(model, self.processor, predictions[:3], examples, where, self.writer, self.state.step)
        model.train()
        return metrics

    def evaluate_and_checkpoint(self) -> None:
        s, c = self.state, self.cfg
        metrics = self.evaluate()
        self.last_eval_time = s.elapsed
        self.last_eval_step = s.step
        flags = torch.zeros(2, device=self.acc.device)
        if metrics is not None:
            if self.metric not in metrics:
                raise TrainError(
                    f"train.metric_for_best {self.metric!r} is not among the eval metrics ({', '.join(metrics)})"
                )
            value = metrics[self.metric]
            s.history.append({"step": s.step, "eval": {k: v for k, v in metrics.items() if "/" not in k}})
            better = s.best is None or (value > s.best if self.task.greater_is_better else value < s.best)
            if better:
                s.best, s.best_step, s.bad_evals = value, s.step, 0
            else:
                s.bad_evals += 1
            flags[0] = float(better)
            flags[1] = float(bool(c.early_stopping_patience and s.bad_evals >= c.early_stopping_patience))
            log.info("step %d: %s", s.step, "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if "/" not in k))
            if self.writer is not None:
                for k, v in metrics.items():
                    self.writer.add_scalar(f"eval/{k}", v, s.step)
        if self.acc.num_processes > 1:
            from accelerate.utils import broadcast

            flags = broadcast(flags, from_process=0)
        if flags[0].item():
            self._export(self.out / "best")  # every process: a sharded model's weights are gathered first
        self.stop_early = bool(flags[1].item())
        self.checkpoint()

    def checkpoint(self) -> None:
        if self.last_checkpoint != self.state.step:
            self.last_checkpoint = self.state.step
            save(self.acc, self.out, self.state, self.position, self.cfg.keep_checkpoints)

    def _export(self, target: Path) -> None:
        """The model into `target` (main process). Called by every process: under FSDP the full weights
        are gathered from the shards (Accelerate's get_state_dict) before the main process writes them."""
        weights = gathered_state_dict(self.model) if self.sharded else None
        if self.acc.is_main_process:
            export(self.acc.unwrap_model(self.model), self.processor, target, weights)

    def finish(self) -> dict:
        s = self.state
        if self.eval_ds is not None and self.last_eval_step != s.step:
            self.evaluate_and_checkpoint()
        self.checkpoint()
        metrics: dict = {"step": s.step, "elapsed_s": round(s.elapsed, 1)}
        self.acc.wait_for_everyone()  # every process sees the same best/ before deciding (an export is collective)
        if not (self.out / "best").is_dir():  # no evaluation: the last weights (every process, see _export)
            self._export(self.out / "best")
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            copy_into(self.out / "best", self.out)
            evals = [h for h in s.history if "eval" in h and h["step"] == s.best_step]
            metrics.update(best_step=s.best_step, **(evals[-1]["eval"] if evals else {}))
            metrics["audio_seconds_per_second"] = round(s.audio_seconds / max(s.elapsed, 1e-9), 2)
            if s.skipped_steps:
                metrics["skipped_steps"] = s.skipped_steps
            if torch.cuda.is_available():  # this process's peak, what decides the batch that fits
                metrics["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
            write_metrics(metrics, self.out / "metrics.json")
            (self.out / "history.json").write_text(json.dumps(s.history))
            from slp_toolkit.plots import plot_history

            plot_history(s.history, self.out / "curves.png", self.metric)
            if self.writer is not None:
                self.writer.close()
        self.acc.wait_for_everyone()
        return metrics


def tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but a missing optional logger must not stop training
        return None
    return SummaryWriter(str(out / "tensorboard"))
