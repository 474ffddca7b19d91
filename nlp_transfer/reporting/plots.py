"""The evaluation report's plots (matplotlib, headless): confusion matrix, ROC, PR, training curves."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display needed, safe in every process

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    RocCurveDisplay,
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from ..metrics.classification import predict_labels, probabilities


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_confusion_matrix(
    labels, preds, label_names: Sequence[str], path: Path, title: str
) -> Path:
    """Counts and row-normalised (recall per true class) confusion matrices side by side.

    The figure grows with the number of classes (about half an inch a class), the predicted
    labels are written vertically when there are more than 4 classes or long names, and the
    cell values get a smaller font (normalised ones two decimals) from 9 classes, none from 31.
    """
    n = len(label_names)
    side = max(4.8, 0.5 * n + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(max(11.0, 2 * side + 1), side))
    many = n > 8
    vertical = n > 4 or max((len(str(name)) for name in label_names), default=0) > 10
    for ax, normalize, name in (
        (axes[0], None, "counts"),
        (axes[1], "true", "normalised by true class"),
    ):
        ConfusionMatrixDisplay.from_predictions(
            labels,
            preds,
            labels=list(range(n)),
            display_labels=list(label_names),
            normalize=normalize,
            cmap="Blues",
            colorbar=False,
            ax=ax,
            include_values=n <= 30,
            values_format="d" if normalize is None else (".2f" if many else ".3f"),
            xticks_rotation="vertical" if vertical else "horizontal",
            text_kw={"fontsize": 8} if many else None,
        )
        ax.set_title(f"{title}: {name}")
    return _save(fig, path)


def _one_vs_rest(labels, probs, label_names):
    """(name, y_true, score) per curve: the positive class for binary tasks, each class otherwise."""
    if len(label_names) == 2:
        return [(label_names[1], np.asarray(labels) == 1, probs[:, 1])]
    return [(name, np.asarray(labels) == i, probs[:, i]) for i, name in enumerate(label_names)]


def plot_roc_curve(labels, probs, label_names: Sequence[str], path: Path, title: str) -> Path:
    """ROC curve of the positive class (binary) or of each class one-vs-rest, with AUC."""
    fig, ax = plt.subplots(figsize=(6, 5.5))
    for name, y_true, score in _one_vs_rest(labels, probs, label_names):
        if y_true.any() and not y_true.all():
            fpr, tpr, _ = roc_curve(y_true, score)
            auc = roc_auc_score(y_true, score)
            RocCurveDisplay(fpr=fpr, tpr=tpr, name=f"{name} (AUC {auc:.4f})").plot(ax=ax)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title=f"{title}: ROC curve")
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_precision_recall_curve(
    labels,
    probs,
    label_names: Sequence[str],
    path: Path,
    title: str,
    threshold: float | None = None,
) -> Path:
    """Precision-recall curve(s) with average precision; marks the binary decision threshold."""
    fig, ax = plt.subplots(figsize=(6, 5.5))
    for name, y_true, score in _one_vs_rest(labels, probs, label_names):
        if y_true.any():
            precision, recall, _ = precision_recall_curve(y_true, score)
            ap = average_precision_score(y_true, score)
            PrecisionRecallDisplay(
                precision=precision, recall=recall, name=f"{name} (AP {ap:.4f})"
            ).plot(ax=ax)
            ax.axhline(y_true.mean(), linestyle=":", color="grey", label=f"chance ({name} rate)")
    if threshold is not None and len(label_names) == 2:
        y_true, pred = np.asarray(labels) == 1, probs[:, 1] >= threshold
        tp = (y_true & pred).sum()
        point_p, point_r = tp / max(pred.sum(), 1), tp / max(y_true.sum(), 1)
        ax.plot(point_r, point_p, "o", color="crimson", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="Recall", ylabel="Precision", title=f"{title}: precision-recall curve")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left")
    return _save(fig, path)


def plot_training_curves(history: Sequence[dict], metric: str, path: Path, title: str) -> Path:
    """Loss and the selection metric per epoch, training vs validation."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key in zip(axes, ("loss", metric), strict=True):
        for prefix, style in (("train_", "o-"), ("eval_", "s--")):
            values = [h.get(prefix + key) for h in history]
            if all(v is not None for v in values):
                ax.plot(
                    epochs, values, style, label="training" if prefix == "train_" else "validation"
                )
        ax.set(xlabel="epoch", ylabel=key, title=f"{title}: {key} per epoch")
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_reliability_diagram(
    before: tuple[np.ndarray, np.ndarray],
    after: tuple[np.ndarray, np.ndarray],
    path: Path,
    multi_label: bool = False,
    split: str = "test",
) -> Path:
    """Reliability diagram before and after calibration: per confidence bin (15), the accuracy
    against the mean confidence, the diagonal being perfect calibration; ECE in the legend.

    Args:
        before: ``(logits (n, C), labels)`` of ``split`` before calibration.
        after: The same after calibration.
        path: The PNG to write.
        multi_label: Labels are ``(n, C)`` 0/1 targets (every label decision counts).
        split: Name of the split, for the title.
    """
    from ..metrics.calibration import (
        confidence_and_correct,
        expected_calibration_error,
        reliability_bins,
    )

    fig, (ax, counts) = plt.subplots(
        2, 1, figsize=(5.5, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle=":", label="perfect")
    for (logits, labels), name, style in ((before, "before", "o--"), (after, "after", "s-")):
        confidence, correct = confidence_and_correct(logits, labels, multi_label)
        bins = reliability_bins(confidence, correct)
        ece = expected_calibration_error(confidence, correct)
        ax.plot(bins["confidence"], bins["accuracy"], style, label=f"{name}: ECE {ece:.3f}")
        counts.bar(
            np.asarray(bins["bin_lower"]) + (0.0 if name == "before" else 1 / 30),
            bins["count"],
            width=1 / 30,
            align="edge",
            label=name,
        )
    ax.set(ylabel="accuracy in the bin", title=f"Reliability diagram ({split})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    counts.set(xlabel="confidence (predicted probability)", ylabel="examples")
    counts.set_yscale("log")
    counts.grid(alpha=0.3)
    return _save(fig, path)


def write_report_plots(
    output_dir: str | os.PathLike,
    labels: np.ndarray,
    logits: np.ndarray,
    label_names: Sequence[str],
    *,
    history: Sequence[dict] | None = None,
    metric: str = "accuracy",
    threshold: float | None = None,
    split: str = "test",
) -> list[Path]:
    """Write the report's PNGs into ``output_dir/plots/``.

    Args:
        output_dir: Run directory; plots go to its ``plots/`` subdirectory.
        labels: True label ids of ``split``, shape ``(n,)``.
        logits: Scores, shape ``(n, C)``.
        label_names: Class names by id.
        history: Per-epoch records of :class:`~nlp_transfer.training.trainer.Trainer` (adds
            ``training_curves.png``).
        metric: The selection metric shown beside the loss.
        threshold: Binary decision threshold used for predictions.
        split: Name of the split, for titles.

    Returns:
        Paths of the written files.
    """
    plots = Path(output_dir) / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    probs = probabilities(logits)
    preds = predict_labels(probs, threshold)
    paths = [
        plot_confusion_matrix(labels, preds, label_names, plots / "confusion_matrix.png", split),
        plot_roc_curve(labels, probs, label_names, plots / "roc_curve.png", split),
        plot_precision_recall_curve(
            labels, probs, label_names, plots / "precision_recall_curve.png", split, threshold
        ),
    ]
    if history:
        paths.append(
            plot_training_curves(history, metric, plots / "training_curves.png", "training")
        )
    return paths
