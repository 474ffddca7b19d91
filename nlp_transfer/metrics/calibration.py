"""How well predicted probabilities match observed frequencies: ECE, Brier score, NLL.

Single-label: the top label's confidence for ECE (Guo, Pleiss, Sun and Weinberger 2017, "On
Calibration of Modern Neural Networks", 15 equal-width bins), the multi-class Brier score (mean
over examples of the squared distance between the probability vector and the one-hot label) and
the negative log-likelihood. Multi-label: every (example, label) decision is one binary
prediction, and the same three are computed over all of them.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_softmax

ECE_BINS = 15


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """Expected calibration error: ``sum_b |B_b| / n * |accuracy(B_b) - confidence(B_b)|``.

    Args:
        confidence: ``(n,)`` predicted probabilities of the predicted event, in [0, 1].
        correct: ``(n,)`` 1 where that event happened, else 0.
        n_bins: Equal-width bins over [0, 1] (15, as Guo et al. 2017).

    Returns:
        ECE in [0, 1] (0 for no examples).
    """
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    if confidence.size == 0:
        return 0.0
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        members = bins == b
        if members.any():
            total += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return float(total / confidence.size)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> dict:
    """Per bin: mean confidence, accuracy and count (bins without examples left out); what a
    reliability diagram draws."""
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    out = {"confidence": [], "accuracy": [], "count": [], "bin_lower": []}
    for b in range(n_bins):
        members = bins == b
        if members.any():
            out["confidence"].append(float(confidence[members].mean()))
            out["accuracy"].append(float(correct[members].mean()))
            out["count"].append(int(members.sum()))
            out["bin_lower"].append(b / n_bins)
    return out


def confidence_and_correct(
    logits: np.ndarray, labels: np.ndarray, multi_label: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """What ECE reads. Single-label: the top probability and whether the top label is right.
    Multi-label: each label's probability of its predicted side (``p`` or ``1 - p``) and whether
    that side is right, flattened over examples and labels."""
    logits = np.asarray(logits, dtype=np.float64)
    if multi_label:
        p = expit(logits).ravel()
        y = np.asarray(labels).ravel() > 0.5
        predicted = p >= 0.5
        return np.where(predicted, p, 1.0 - p), (predicted == y).astype(np.float64)
    probs = np.exp(log_softmax(logits, axis=1))
    labels = np.asarray(labels).astype(np.int64)
    return probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64)


def calibration_metrics(logits: np.ndarray, labels: np.ndarray, multi_label: bool = False) -> dict:
    """ECE (15 bins), Brier score and NLL of ``logits`` against ``labels``.

    Args:
        logits: ``(n, C)`` scores (softmax, or a sigmoid per label when ``multi_label``).
        labels: ``(n,)`` label ids, or ``(n, C)`` 0/1 targets when ``multi_label``.
        multi_label: Independent labels (binary decisions per label).

    Returns:
        ``{"ece", "brier", "nll", "num_examples"}``; NLL in nats per example (multi-label: per
        example and label), Brier as described in the module docstring.
    """
    logits = np.asarray(logits, dtype=np.float64)
    confidence, correct = confidence_and_correct(logits, labels, multi_label)
    if multi_label:
        y = np.asarray(labels, dtype=np.float64)
        p = expit(logits)
        nll = np.mean(np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits))))
        brier = np.mean((p - y) ** 2)
    else:
        labels = np.asarray(labels).astype(np.int64)
        log_probs = log_softmax(logits, axis=1)
        nll = -np.mean(log_probs[np.arange(len(labels)), labels])
        one_hot = np.eye(logits.shape[1])[labels]
        brier = np.mean(np.sum((np.exp(log_probs) - one_hot) ** 2, axis=1))
    return {
        "ece": expected_calibration_error(confidence, correct),
        "brier": float(brier),
        "nll": float(nll),
        "num_examples": len(logits),
    }
