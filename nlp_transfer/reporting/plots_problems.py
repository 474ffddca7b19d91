"""Report plots of multi-label and regression runs: per-label PR curves, predicted vs true."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve


def plot_label_pr_curves(
    targets: np.ndarray, probs: np.ndarray, label_names: Sequence[str], path: Path
) -> Path:
    """One precision-recall curve per label (labels without a positive example skipped).

    Args:
        targets: 0/1 matrix ``(n, C)``.
        probs: Sigmoid probabilities ``(n, C)``.
        label_names: The ``C`` label names.
        path: The PNG to write.
    """
    fig, ax = plt.subplots(figsize=(6, 5))
    for j, name in enumerate(label_names):
        if targets[:, j].any():
            precision, recall, _ = precision_recall_curve(targets[:, j], probs[:, j])
            ax.plot(recall, precision, label=str(name))
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall per label (test)")
    ax.legend(fontsize="small", loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_predicted_vs_true(targets: np.ndarray, predictions: np.ndarray, path: Path) -> Path:
    """Scatter of predicted against true values, with the diagonal ``y = x``."""
    y, p = np.reshape(targets, -1), np.reshape(predictions, -1)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y, p, s=8, alpha=0.5)
    low, high = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([low, high], [low, high], color="grey", linewidth=1)
    ax.set(xlabel="true", ylabel="predicted", title="Predicted vs true (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
