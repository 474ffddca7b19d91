"""Classification metrics, computed offline with scikit-learn.

(``evaluate.load("accuracy")`` fetches metric scripts from the Hub and fails offline.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import softmax
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    matthews_corrcoef,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis: ``(n, C)`` logits -> ``(n, C)`` probabilities (float64)."""
    return softmax(np.asarray(logits, dtype=np.float64), axis=1)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy (nats) of ``(n, C)`` logits against ``(n,)`` label ids."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), np.asarray(labels)].mean())


def predict_labels(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Label ids from probabilities ``(n, C)``: argmax, or for binary tasks ``p(1) >= threshold``."""
    if threshold is not None and probs.shape[1] == 2:
        return (probs[:, 1] >= threshold).astype(np.int64)
    return probs.argmax(axis=1)


def classification_metrics(
    labels: np.ndarray,
    logits: np.ndarray,
    label_names: Sequence[str],
    threshold: float | None = None,
) -> dict:
    """The evaluation report of a classifier's predictions.

    Args:
        labels: True label ids, shape ``(n,)``.
        logits: Model scores, shape ``(n, num_labels)`` (softmax is applied).
        label_names: Names of ids ``0..num_labels-1``; for binary tasks id 1 is the positive
            class (``spam``, ``positive``).
        threshold: Binary tasks only: predict id 1 when its probability is ``>= threshold``
            (None: argmax, i.e. 0.5).

    Returns:
        A JSON-serialisable dict: ``accuracy``, ``precision_macro``, ``recall_macro``,
        ``f1_macro``, ``f1_weighted``, ``mcc`` (Matthews correlation), ``roc_auc`` and
        ``average_precision`` (PR-AUC; binary: of id 1; multi-class: one-vs-rest macro; None
        when a class is absent from ``labels``), flat ``precision_<name>``/``recall_<name>``/
        ``f1_<name>`` per class, ``per_class`` ({name: precision, recall, f1, support}),
        ``confusion_matrix`` (rows true, columns predicted), ``num_examples`` and, for binary
        tasks, ``decision_threshold``.

    Raises:
        ValueError: If shapes disagree.
    """
    labels = np.asarray(labels)
    num_labels = len(label_names)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape != (len(labels), num_labels):
        raise ValueError(f"logits must be (n={len(labels)}, {num_labels}), got {logits.shape}")
    probs = probabilities(logits)
    preds = predict_labels(probs, threshold)
    ids = list(range(num_labels))
    metrics = {"num_examples": len(labels)}
    metrics |= _summary_metrics(labels, preds, ids)
    metrics |= _ranking_metrics(labels, probs, num_labels)
    metrics |= _per_class_metrics(labels, preds, label_names)
    metrics["confusion_matrix"] = confusion_matrix(labels, preds, labels=ids).tolist()
    if num_labels == 2:
        metrics["decision_threshold"] = 0.5 if threshold is None else float(threshold)
    return metrics


def _summary_metrics(labels: np.ndarray, preds: np.ndarray, ids: list[int]) -> dict:
    """Accuracy, macro precision/recall/F1, weighted F1 and MCC of ``(n,)`` predicted ids."""
    averaged = {
        avg: precision_recall_fscore_support(
            labels, preds, labels=ids, average=avg, zero_division=0
        )
        for avg in ("macro", "weighted")
    }
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "precision_macro": float(averaged["macro"][0]),
        "recall_macro": float(averaged["macro"][1]),
        "f1_macro": float(averaged["macro"][2]),
        "f1_weighted": float(averaged["weighted"][2]),
        "mcc": float(matthews_corrcoef(labels, preds)),
    }


def _ranking_metrics(labels: np.ndarray, probs: np.ndarray, num_labels: int) -> dict:
    """ROC-AUC and average precision of ``(n, C)`` probabilities; None if a class is absent.

    Binary: of id 1; multi-class: one-vs-rest, macro-averaged.
    """
    roc_auc = average_precision = None
    if len(np.unique(labels)) == num_labels:
        if num_labels == 2:
            roc_auc = roc_auc_score(labels, probs[:, 1])
            average_precision = average_precision_score(labels, probs[:, 1])
        else:
            ids = list(range(num_labels))
            roc_auc = roc_auc_score(labels, probs, multi_class="ovr", labels=ids)
            average_precision = average_precision_score(
                np.eye(num_labels)[labels], probs, average="macro"
            )
    return {
        "roc_auc": None if roc_auc is None else float(roc_auc),
        "average_precision": None if average_precision is None else float(average_precision),
    }


def _per_class_metrics(labels: np.ndarray, preds: np.ndarray, label_names: Sequence[str]) -> dict:
    """Flat ``precision_<name>``/``recall_<name>``/``f1_<name>`` and the ``per_class`` table."""
    ids = list(range(len(label_names)))
    p, r, f, s = precision_recall_fscore_support(labels, preds, labels=ids, zero_division=0)
    metrics = {}
    for i, name in enumerate(label_names):
        metrics |= {
            f"precision_{name}": float(p[i]),
            f"recall_{name}": float(r[i]),
            f"f1_{name}": float(f[i]),
        }
    metrics["per_class"] = {
        name: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, name in enumerate(label_names)
    }
    return metrics


def select_threshold(labels: np.ndarray, prob_positive: np.ndarray) -> tuple[float, float]:
    """The decision threshold on ``p(positive)`` that maximises the positive class's F1.

    Candidates are the distinct scores (``sklearn.metrics.precision_recall_curve``). The best
    point is then moved down to the middle of the gap to the next lower score, so predicting
    positive when ``p >= threshold`` still reproduces it on these data while leaving a margin
    on both sides (the score of the least confident positive is no better a boundary for
    unseen data than the most confident negative's). Choose it on validation data, never on
    the test split.

    Args:
        labels: Binary true labels (1 = positive), shape ``(n,)``.
        prob_positive: Probability of the positive class, shape ``(n,)``.

    Returns:
        ``(threshold, f1)``.

    Raises:
        ValueError: If ``labels`` has no positive example.
    """
    labels = np.asarray(labels)
    if not labels.any():
        raise ValueError("Cannot choose a threshold: the validation split has no positive example.")
    precision, recall, thresholds = precision_recall_curve(labels, prob_positive)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.argmax(f1))
    threshold = float(thresholds[best])
    lower = np.asarray(prob_positive)[np.asarray(prob_positive) < threshold]
    if lower.size:
        threshold = (threshold + float(lower.max())) / 2
    return threshold, float(f1[best])
