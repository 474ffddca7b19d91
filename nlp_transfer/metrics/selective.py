"""Abstention (selective classification): answer only above a confidence threshold chosen for a
target precision.

Geifman and El-Yaniv 2017, "Selective Classification for Deep Neural Networks": rank examples
by the top label's probability and answer the most confident ones; the threshold is the lowest
confidence at which the answered examples of a held-out split (validation) still reach the
target precision (here: the share of answered examples whose predicted label is right), which
answers as many as possible. On new data the precision reached is an estimate, not a guarantee.
"""

from __future__ import annotations

import numpy as np


def selective_report(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Coverage (share answered: top probability >= ``threshold``) and the precision of the
    answered examples (None when none is answered)."""
    probs = np.asarray(probs, dtype=np.float64)
    answered = probs.max(axis=1) >= threshold
    right = probs.argmax(axis=1) == np.asarray(labels)
    return {
        "coverage": float(answered.mean()) if len(answered) else 0.0,
        "precision": float(right[answered].mean()) if answered.any() else None,
        "num_examples": len(answered),
    }


def select_abstention_threshold(
    probs: np.ndarray, labels: np.ndarray, target_precision: float
) -> float:
    """The lowest confidence threshold whose answered examples reach ``target_precision``.

    Args:
        probs: ``(n, C)`` (calibrated) validation probabilities.
        labels: ``(n,)`` true label ids.
        target_precision: E.g. 0.95.

    Returns:
        The threshold; above 1 (abstain on everything) when even the most confident examples
        miss the target.

    Raises:
        ValueError: ``target_precision`` outside (0, 1] or no examples.
    """
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"--abstain_below_precision must be in (0, 1], got {target_precision}.")
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        raise ValueError("Abstention needs validation predictions; there are none.")
    confidence = probs.max(axis=1)
    right = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    order = np.argsort(-confidence, kind="stable")
    precision = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    # answer the k most confident, for the largest k whose precision reaches the target; a
    # threshold between tied confidences cannot split them, so only the last of a tie counts
    sorted_conf = confidence[order]
    last_of_tie = np.append(sorted_conf[1:] < sorted_conf[:-1], True)
    ok = np.flatnonzero((precision >= target_precision) & last_of_tie)
    if ok.size == 0:
        return float(np.nextafter(1.0, 2.0))
    return float(sorted_conf[ok[-1]])
