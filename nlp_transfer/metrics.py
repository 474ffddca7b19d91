"""Classification metrics, computed offline with scikit-learn.

(``evaluate.load("accuracy")`` fetches metric scripts from the Hub and fails offline.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import softmax
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)


def classification_metrics(
    labels: np.ndarray, logits: np.ndarray, label_names: Sequence[str]
) -> dict:
    """Accuracy, precision/recall/F1 (macro and per class), ROC-AUC and the confusion matrix.

    Args:
        labels: True label ids, shape ``(n,)``.
        logits: Model scores, shape ``(n, num_labels)`` (logits or probabilities; softmax is
            applied for ROC-AUC, which only needs a monotone score).
        label_names: Names of ids ``0..num_labels-1``.

    Returns:
        A JSON-serialisable dict: ``accuracy``, ``precision_macro``, ``recall_macro``,
        ``f1_macro``, ``roc_auc`` (binary: positive class = id 1; multi-class: one-vs-rest macro;
        None if a class is absent from ``labels``), ``per_class`` ({name: precision, recall,
        f1, support}), ``confusion_matrix`` (rows = true, columns = predicted, id order) and
        ``num_examples``.

    Raises:
        ValueError: If shapes disagree.
    """
    labels = np.asarray(labels)
    logits = np.asarray(logits, dtype=np.float64)
    num_labels = len(label_names)
    if logits.ndim != 2 or logits.shape != (len(labels), num_labels):
        raise ValueError(f"logits must be (n={len(labels)}, {num_labels}), got {logits.shape}")
    preds = logits.argmax(axis=1)
    ids = list(range(num_labels))
    p, r, f, s = precision_recall_fscore_support(labels, preds, labels=ids, zero_division=0)
    pm, rm, fm, _ = precision_recall_fscore_support(
        labels, preds, labels=ids, average="macro", zero_division=0
    )
    probs = softmax(logits, axis=1)
    roc_auc = None
    if len(np.unique(labels)) == num_labels:
        if num_labels == 2:
            roc_auc = float(roc_auc_score(labels, probs[:, 1]))
        else:
            roc_auc = float(roc_auc_score(labels, probs, multi_class="ovr", labels=ids))
    return {
        "num_examples": len(labels),
        "accuracy": float(accuracy_score(labels, preds)),
        "precision_macro": float(pm),
        "recall_macro": float(rm),
        "f1_macro": float(fm),
        "roc_auc": roc_auc,
        "per_class": {
            name: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": confusion_matrix(labels, preds, labels=ids).tolist(),
    }
