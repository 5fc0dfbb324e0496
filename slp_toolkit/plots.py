"""PNG figures written into output dirs: training curves (and, per task, its own plots)."""

from __future__ import annotations

from pathlib import Path


def plot_history(history: list[dict], path: Path, metric: str) -> None:
    """Training loss and the chosen eval metric against steps, side by side."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval"][metric]) for h in history if "eval" in h and metric in h["eval"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    if train:
        axes[0].plot(*zip(*train))
    axes[0].set(
        title="training loss",
        xlabel="step",
        yscale="log" if train and min(v for _, v in train) > 0 else "linear",
    )
    if evals:
        axes[1].plot(*zip(*evals), marker="o")
    axes[1].set(title=f"eval {metric}", xlabel="step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
