"""Report plots of multi-label and regression runs: per-label PR curves and F1, predicted vs true."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve


def _label_order(targets: np.ndarray) -> np.ndarray:
    """Label columns by test support, most frequent first (ties by column)."""
    return np.argsort(-targets.sum(axis=0), kind="stable")


def plot_label_pr_curves(
    targets: np.ndarray,
    probs: np.ndarray,
    label_names: Sequence[str],
    path: Path,
    thresholds: Sequence[float] | None = None,
    max_panels: int = 36,
) -> Path:
    """Precision-recall curves as small multiples: the micro-average, then one panel per label.

    Stays legible at any number of labels: each label has its own panel (titled with its name,
    average precision and test support), sorted by support; the operating point at the label's
    decision threshold is marked. Beyond ``max_panels - 1`` labels, the most frequent are shown
    and the title says how many were left out. Labels without a positive example are skipped.

    Args:
        targets: 0/1 matrix ``(n, C)``.
        probs: Sigmoid probabilities ``(n, C)``.
        label_names: The ``C`` label names.
        path: The PNG to write.
        thresholds: The ``C`` decision thresholds in use (None: no operating points).
        max_panels: Most panels drawn, the micro-average included.
    """
    targets = np.asarray(targets).astype(np.int64)
    present = [j for j in _label_order(targets) if targets[:, j].any()]
    shown = present[: max_panels - 1]
    cols = min(6, len(shown) + 1)
    rows = int(np.ceil((len(shown) + 1) / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.3 * cols, 2.1 * rows + 0.5), sharex=True, sharey=True, squeeze=False
    )
    panels = [(None, "micro-average")] + [(j, str(label_names[j])) for j in shown]
    for ax, (j, name) in zip(axes.flat, panels, strict=False):
        y, p = (targets.ravel(), probs.ravel()) if j is None else (targets[:, j], probs[:, j])
        precision, recall, _ = precision_recall_curve(y, p)
        color = "black" if j is None else "tab:blue"
        ax.plot(recall, precision, color=color, linewidth=1.2)
        ax.set_title(
            f"{name[:22]}\nAP {average_precision_score(y, p):.2f}, n={int(y.sum())}", fontsize=8
        )
        if j is not None and thresholds is not None:
            predicted = p >= thresholds[j]
            if predicted.any():
                ax.plot(
                    y[predicted].sum() / y.sum(), y[predicted].mean(), "o", color="tab:red", ms=4
                )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    left_out = len(present) - len(shown)
    note = f" ({left_out} rarer labels not shown)" if left_out else ""
    marker = "; red dot: decision threshold" if thresholds is not None else ""
    fig.suptitle(f"Precision (y) vs recall (x), test, by label support{note}{marker}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_label_f1_support(per_label: dict, path: Path) -> Path:
    """Per-label test F1 (at the saved thresholds) beside its support, one row per label.

    Args:
        per_label: ``{name: {"f1": float, "support": int, ...}}``, as ``multilabel_metrics``'s
            ``per_label``.
        path: The PNG to write.
    """
    names = sorted(per_label, key=lambda k: (-per_label[k]["support"], k))
    f1 = [per_label[k]["f1"] for k in names]
    support = [per_label[k]["support"] for k in names]
    height = max(3.0, 0.24 * len(names) + 1.2)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(9, height), sharey=True, gridspec_kw={"width_ratios": [3, 2]}
    )
    ys = np.arange(len(names))
    left.barh(ys, f1, color="tab:blue")
    for y, value in zip(ys, f1, strict=True):
        left.text(min(value + 0.01, 0.93), y, f"{value:.2f}", va="center", fontsize=7)
    left.set(xlim=(0, 1), xlabel="F1 (test)", title="F1 per label")
    left.set_yticks(ys, [n[:28] for n in names], fontsize=8)
    left.invert_yaxis()
    right.barh(ys, support, color="tab:grey")
    right.set(xlabel="examples with the label (test)", title="support")
    for ax in (left, right):
        ax.grid(axis="x", alpha=0.3)
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
