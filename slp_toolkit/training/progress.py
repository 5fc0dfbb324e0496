"""A training run's progress, for a person at a terminal or reading a log file afterwards.

On a terminal: a tqdm bar (in steps, or in seconds of a `train.max_minutes` budget) with loss, learning rate
and audio-s/s. Into a file or a pipe (`slp train ... > run.log 2>&1`), a bar's carriage-return refreshes
would fill the file with megabytes of half-lines; there it is one plain log line every `SLP_PROGRESS_SECONDS`
(30) seconds instead: step, share done, loss, learning rate, audio-s/s, elapsed time and ETA. `SLP_PROGRESS=bar`
or `lines` chooses either way.
"""

from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger("slp")


def plain_every() -> float:
    """Seconds between plain progress lines (SLP_PROGRESS_SECONDS, default 30)."""
    try:
        return max(1.0, float(os.environ.get("SLP_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


def clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """What the loop reports as it goes (main process only); `show` sets the figures, `advance` after each
    optimizer step, `close` at the end."""

    def __init__(self, cfg, state, terminal: bool | None = None):
        self.cfg, self.values, self.recent = cfg, {}, []
        if terminal is None:
            asked = os.environ.get("SLP_PROGRESS", "").lower()
            terminal = asked == "bar" if asked in ("bar", "lines") else sys.stderr.isatty()
        self.terminal = terminal
        self.every, self.last = plain_every(), time.monotonic()
        self.bar = self._bar(state) if self.terminal else None

    def _bar(self, state):
        from tqdm.auto import tqdm

        c = self.cfg
        if c.max_steps is None and c.max_minutes:  # a time budget: elapsed / budget seconds, with an ETA
            return tqdm(
                total=round(60 * c.max_minutes),
                initial=round(state.elapsed),
                desc="train",
                unit="s",
                dynamic_ncols=True,
            )
        return tqdm(total=c.max_steps, initial=state.step, desc="train", unit="step", dynamic_ncols=True)

    def show(self, **values) -> None:
        self.values = values
        if self.bar is not None:
            self.bar.set_postfix(**values)

    def step(self, state, done: float, loss: float, lr: float, speed: float) -> None:
        """After each optimizer step: its loss, learning rate and the run's audio-s/s, so that a plain line shows
        the mean loss of the steps since the line before it and today's learning rate, not those of the last
        `train.log_every` step."""
        self.recent.append(loss)
        self.lr, self.speed = lr, speed
        self.advance(state, done)

    def advance(self, state, done: float) -> None:
        """After a step; `done` is the run's progress in [0, 1] (train.progress_of)."""
        if self.bar is not None:
            by_time = self.cfg.max_steps is None and self.cfg.max_minutes
            self.bar.update(max(0, min(round(state.elapsed), self.bar.total) - self.bar.n) if by_time else 1)
        elif time.monotonic() - self.last >= self.every:
            self.line(state, done)

    def line(self, state, done: float) -> None:
        self.last = time.monotonic()
        total = f"/{self.cfg.max_steps}" if self.cfg.max_steps else ""
        eta = f", ETA {clock(state.elapsed * (1 - done) / done)}" if 0 < done < 1 else ""
        values = dict(self.values)
        if self.recent:
            values |= {
                "loss": f"{sum(self.recent) / len(self.recent):.3f}",
                "lr": f"{self.lr:.2e}",
                "audio_s_per_s": f"{self.speed:.3g}",
            }
            self.recent = []
        figures = "  ".join(f"{k} {v}" for k, v in values.items() if k != "step")
        log.info(
            "train: step %d%s (%.0f%%)  %s  %s elapsed%s",
            state.step,
            total,
            100 * min(done, 1.0),
            figures,
            clock(state.elapsed),
            eta,
        )

    def close(self, state, done: float) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            self.line(state, done)
