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


def plot_confusion(matrix: list[list[int]], labels: list[str], path: Path) -> None:
    """A confusion matrix (rows: reference, columns: prediction) with counts in the cells, shaded by
    the row's share (per-class recall on the diagonal), so that rare classes are as visible as common ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(matrix, dtype=float).reshape(len(labels), len(labels))
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.6 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(len(labels)):
        for j in range(len(labels)):
            color = "white" if shares[i, j] > 0.5 else "black"
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", color=color, fontsize=9)
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="predicted", ylabel="reference", title="confusion matrix (shade: share of the row)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_spectrograms(synthesized, reference, path: Path, title: str = "") -> None:
    """Two log-mel spectrograms (frames x bins) one above the other: synthesised, then recorded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    low, high = float(reference.min()), float(reference.max())  # one colour scale: levels compare too
    for ax, mel, name in ((axes[0], synthesized, "synthesised"), (axes[1], reference, "recorded")):
        ax.imshow(mel.T, origin="lower", aspect="auto", interpolation="none", vmin=low, vmax=high)
        ax.set(ylabel="mel bin", title=name)
    axes[1].set(xlabel="frame (16 ms)")
    fig.suptitle(title[:100])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_alignment(attention, path: Path) -> None:
    """Decoder-step x text-token cross attention (mean over layers and heads): a clean diagonal means
    the model reads the text in order, once."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.imshow(attention.T, origin="lower", aspect="auto", interpolation="none")
    ax.set(xlabel="decoder step", ylabel="text token", title="attention alignment")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_durations(durations, path: Path, title: str) -> None:
    """Histogram of clip durations (seconds), with the total hours in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    durations = np.asarray(durations, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(durations, bins=min(50, max(5, len(durations) // 20)))
    ax.set(title=f"{title}: {len(durations)} clips, {durations.sum() / 3600:.2f} h", xlabel="seconds", ylabel="clips")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
