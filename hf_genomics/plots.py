"""Matplotlib figures for training reports: loss curves, the RandomMask schedule, pair maps, confusion matrices.

Every function takes plain data (a Trainer ``log_history`` list, numpy arrays) and writes one PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _series(log_history: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
    return [p[0] for p in points], [p[1] for p in points]


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_loss_curves(runs: dict[str, Sequence[dict]], path: str | Path) -> Path:
    """One panel per run: training ``loss`` and validation ``eval_loss`` against the optimizer step."""
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.2), squeeze=False)
    for ax, (name, history) in zip(axes[0], runs.items()):
        for key, label in (("loss", "train"), ("eval_loss", "validation")):
            steps, values = _series(history, key)
            if steps:
                ax.plot(steps, values, marker="o" if len(steps) < 20 else None, ms=3, label=label)
        ax.set(title=name, xlabel="step", ylabel="loss")
        ax.legend()
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_randommask_schedule(log_history: Sequence[dict], path: str | Path) -> Path:
    """Mask boundary m and hidden nucleotides per sequence over training (from ``RandomMaskCallback`` logs)."""
    steps, boundary = _series(log_history, "randommask_boundary")
    hidden_steps, hidden = _series(log_history, "randommask_hidden_nucleotides")
    if not steps:
        raise ValueError("log_history has no 'randommask_boundary' entries: was RandomMaskCallback used?")
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.step(steps, boundary, where="post", color="tab:blue", label="mask boundary m")
    ax.set(xlabel="step", ylabel="mask boundary m (tokens)")
    twin = ax.twinx()
    twin.plot(hidden_steps, hidden, color="tab:orange", marker=".", label="hidden nucleotides / sequence")
    twin.set_ylabel("hidden nucleotides per sequence")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=8)
    ax.set_title("RandomMask schedule")
    return _save(fig, path)


def plot_pair_map(true: np.ndarray, predicted: np.ndarray, path: str | Path, title: str = "") -> Path:
    """True base-pair matrix beside the predicted pairing probabilities for one RNA."""
    if true.shape != predicted.shape or true.ndim != 2:
        raise ValueError(f"need two L x L matrices of the same shape, got {true.shape} and {predicted.shape}.")
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    axes[0].imshow(true, cmap="Greys", vmin=0, vmax=1)
    axes[0].set_title("true base pairs")
    image = axes[1].imshow(predicted, cmap="viridis", vmin=0, vmax=1)
    axes[1].set_title("predicted P(pair)")
    fig.colorbar(image, ax=axes[1], fraction=0.046)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_confusion_matrix(matrix: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows: true class, columns: predicted class)."""
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion matrix of shape {matrix.shape} does not match {len(labels)} labels.")
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)
