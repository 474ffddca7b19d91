"""Class imbalance: weighted cross-entropy and class weights from a flag."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight


def class_weights_from_spec(
    spec: str | None, labels: Sequence[int], label_names: Sequence[str]
) -> torch.Tensor | None:
    """Turn ``--class_weights`` into a weight per class, or None for plain cross-entropy.

    ``balanced`` gives class ``c`` the weight ``n_samples / (n_classes * n_c)`` over the
    training labels, exactly scikit-learn's ``compute_class_weight("balanced", ...)`` (King &
    Zeng 2001). A comma list gives the weights in label-id order.

    Args:
        spec: ``"none"``/None, ``"balanced"``, or e.g. ``"1,6.5"``.
        labels: Training label ids, shape ``(n,)``.
        label_names: Names of label ids ``0..C-1``.

    Returns:
        Float tensor of shape ``(C,)``, or None.

    Raises:
        ValueError: Unparseable list, wrong length, a non-positive weight, or ``balanced`` with
            a class absent from training.
    """
    if spec is None or spec.strip().lower() in ("", "none"):
        return None
    num_labels = len(label_names)
    if spec.strip().lower() == "balanced":
        present = set(np.unique(labels).tolist())
        missing = [label_names[i] for i in range(num_labels) if i not in present]
        if missing:
            raise ValueError(f"--class_weights balanced: label(s) {missing} have no training rows.")
        weights = compute_class_weight(
            "balanced", classes=np.arange(num_labels), y=np.asarray(labels)
        )
        return torch.tensor(weights, dtype=torch.float32)
    try:
        weights = [float(w) for w in spec.split(",")]
    except ValueError as err:
        raise ValueError(
            f"--class_weights must be none, balanced, or a comma list of numbers, got {spec!r}."
        ) from err
    if len(weights) != num_labels or any(w <= 0 for w in weights):
        raise ValueError(
            f"--class_weights needs {num_labels} positive numbers, one per label in the order "
            f"{', '.join(label_names)}; got {spec!r}."
        )
    return torch.tensor(weights, dtype=torch.float32)


def cross_entropy_loss(weight: torch.Tensor | None = None):
    """``(logits (batch, C), labels (batch,)) -> loss``: cross-entropy, class-weighted if given.

    With weights, the loss is the weighted mean ``sum_i w_{y_i} * ce_i / sum_i w_{y_i}``
    (``torch.nn.functional.cross_entropy(weight=...)``).
    """
    if weight is None:
        return F.cross_entropy

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, weight=weight.to(logits.device))

    return loss
