"""Multi-label metrics and thresholds, computed offline with scikit-learn.

A multi-label model scores every label independently: ``sigmoid(logit) >= threshold`` per label.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import expit
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    hamming_loss,
    precision_recall_fscore_support,
)

from .classification import select_threshold


def sigmoid_probabilities(logits: np.ndarray) -> np.ndarray:
    """``(n, C)`` logits -> ``(n, C)`` independent label probabilities (float64)."""
    return expit(np.asarray(logits, dtype=np.float64))


def binary_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean binary cross-entropy (nats, over examples and labels) of ``(n, C)`` logits against
    ``(n, C)`` 0/1 targets; numerically stable (as ``BCEWithLogitsLoss``)."""
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    return float(np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))))


def predict_label_sets(probs: np.ndarray, thresholds: float | Sequence[float] = 0.5) -> np.ndarray:
    """``(n, C)`` 0/1 predictions: label ``j`` when ``probs[:, j] >= thresholds[j]``."""
    return (np.asarray(probs) >= np.asarray(thresholds, dtype=np.float64)).astype(np.int64)


def multilabel_metrics(
    targets: np.ndarray,
    logits: np.ndarray,
    label_names: Sequence[str],
    thresholds: float | Sequence[float] = 0.5,
) -> dict:
    """The evaluation report of a multi-label classifier.

    Args:
        targets: True labels as a 0/1 matrix, shape ``(n, C)``.
        logits: Model scores, shape ``(n, C)`` (a sigmoid is applied per label).
        label_names: Names of the ``C`` labels, in column order.
        thresholds: One threshold for all labels, or one per label (length ``C``).

    Returns:
        ``f1_micro``, ``f1_macro``, ``f1_samples``, ``precision_micro``, ``recall_micro``,
        ``subset_accuracy`` (every label right), ``hamming_loss`` (share of wrong label
        decisions), ``average_precision`` (macro over labels with a positive example, None if
        none), ``loss`` (binary cross-entropy), flat ``f1_<name>``, ``per_label`` ({name:
        precision, recall, f1, support, average_precision}), ``thresholds``, ``num_examples``.

    Raises:
        ValueError: If the shapes disagree.
    """
    y = np.asarray(targets).astype(np.int64)
    logits = np.asarray(logits, dtype=np.float64)
    num = len(label_names)
    if y.shape != logits.shape or logits.ndim != 2 or logits.shape[1] != num:
        raise ValueError(f"targets {y.shape} and logits {logits.shape} must both be (n, {num}).")
    probs = sigmoid_probabilities(logits)
    preds = predict_label_sets(probs, thresholds)
    p, r, f, s = precision_recall_fscore_support(y, preds, zero_division=0)
    avg = {
        a: precision_recall_fscore_support(y, preds, average=a, zero_division=0)
        for a in ("micro", "macro", "samples")
    }
    ap = [
        float(average_precision_score(y[:, j], probs[:, j])) if y[:, j].any() else None
        for j in range(num)
    ]
    known = [a for a in ap if a is not None]
    metrics = {
        "num_examples": len(y),
        "f1_micro": float(avg["micro"][2]),
        "f1_macro": float(avg["macro"][2]),
        "f1_samples": float(avg["samples"][2]),
        "precision_micro": float(avg["micro"][0]),
        "recall_micro": float(avg["micro"][1]),
        "subset_accuracy": float(accuracy_score(y, preds)),
        "hamming_loss": float(hamming_loss(y, preds)),
        "average_precision": float(np.mean(known)) if known else None,
        "loss": binary_cross_entropy(logits, y),
    }
    metrics |= {f"f1_{name}": float(f[j]) for j, name in enumerate(label_names)}
    metrics["per_label"] = {
        name: {
            "precision": float(p[j]),
            "recall": float(r[j]),
            "f1": float(f[j]),
            "support": int(s[j]),
            "average_precision": ap[j],
        }
        for j, name in enumerate(label_names)
    }
    metrics["thresholds"] = np.broadcast_to(np.asarray(thresholds, float), (num,)).tolist()
    return metrics


def select_label_thresholds(targets: np.ndarray, logits: np.ndarray) -> list[float]:
    """One threshold per label maximising that label's F1 on these (validation) data.

    Each label's threshold comes from :func:`~nlp_transfer.metrics.classification.select_threshold`; a label
    without a positive example keeps 0.5. Choose on validation, never on test.

    Returns:
        ``C`` thresholds in ``(0, 1)``.
    """
    y = np.asarray(targets).astype(np.int64)
    probs = sigmoid_probabilities(logits)
    return [
        select_threshold(y[:, j], probs[:, j])[0] if y[:, j].any() else 0.5
        for j in range(y.shape[1])
    ]
