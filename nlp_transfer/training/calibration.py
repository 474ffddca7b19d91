"""Temperature scaling after training: probabilities that match observed frequencies.

Guo, Pleiss, Sun and Weinberger 2017, "On Calibration of Modern Neural Networks": divide the
logits by one temperature ``T > 0`` fitted on validation by minimising the negative
log-likelihood. The predicted label (argmax) does not change; the probabilities do. Multi-label:
one temperature per label, each fitted on its own binary cross-entropy (Platt scaling without
the bias term).

The temperature is **folded into the classifier's last linear layer** (``W / T``, ``b / T``), so
the saved model's logits are the calibrated ones: every backend (PyTorch, ONNX, int8,
``transformers.pipeline``) applies it without knowing, and ``config.json`` records it
(``calibration``) for the model card and for users.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from torch import nn

from ..metrics.calibration import calibration_metrics

# auto: the temperature, then (binary text models) an isotonic map where it lowers the
# cross-validated NLL (nlp_transfer.metrics.recalibration); temperature: that alone.
CALIBRATION_METHODS = ("auto", "temperature", "none")
# Search range of log T: T in [0.05, 20].
LOG_T_BOUNDS = (float(np.log(0.05)), float(np.log(20.0)))


def _single_label_nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    log_probs = log_softmax(logits / temperature, axis=1)
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))


def _binary_nll(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    return float(np.mean(np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z)))))


def _fit_one(nll, logits, labels) -> float:
    """The temperature minimising ``nll`` (bounded search over log T); 1.0 when that is no
    better, so calibration never raises the fitted NLL."""
    result = minimize_scalar(
        lambda log_t: nll(logits, labels, float(np.exp(log_t))),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-6},
    )
    temperature = float(np.exp(result.x))
    return temperature if nll(logits, labels, temperature) < nll(logits, labels, 1.0) else 1.0


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, multi_label: bool = False
) -> float | list[float]:
    """Temperature(s) minimising the NLL of ``logits / T`` on these (validation) data.

    Args:
        logits: ``(n, C)`` validation logits of the trained model.
        labels: ``(n,)`` label ids, or ``(n, C)`` 0/1 targets when ``multi_label``.
        multi_label: One temperature per label (each on its binary cross-entropy).

    Returns:
        One temperature (single-label) or ``C`` of them (multi-label; 1.0 for a label without
        both classes in ``labels``).

    Raises:
        ValueError: No examples, or shapes that disagree.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or len(logits) == 0 or len(labels) != len(logits):
        raise ValueError(f"calibration needs (n, C) logits and n labels, got {logits.shape}.")
    if not multi_label:
        return _fit_one(_single_label_nll, logits, np.asarray(labels).astype(np.int64))
    y = np.asarray(labels, dtype=np.float64)
    return [
        _fit_one(_binary_nll, logits[:, j], y[:, j]) if 0 < y[:, j].sum() < len(y) else 1.0
        for j in range(logits.shape[1])
    ]


def apply_temperature(logits: np.ndarray, temperature: float | list[float]) -> np.ndarray:
    """``logits / T`` (per column when ``temperature`` is a list)."""
    return np.asarray(logits, dtype=np.float64) / np.asarray(temperature, dtype=np.float64)


def calibration_report(
    validation: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray] | None,
    temperature: float | list[float],
    multi_label: bool = False,
) -> dict:
    """``metrics.json``'s ``calibration``: the temperature(s) and ECE, Brier and NLL before and
    after on validation (where it was fitted) and test.

    Args:
        validation: ``(logits, labels)`` the temperature was fitted on.
        test: ``(logits, labels)`` of the test split, or None.
        temperature: What :func:`fit_temperature` returned.
        multi_label: As :func:`fit_temperature`.
    """
    report = {"method": "temperature", "temperature": temperature, "fitted_on": "validation"}
    for name, split in (("validation", validation), ("test", test)):
        if split is None:
            continue
        logits, labels = split
        report[name] = {
            "before": calibration_metrics(logits, labels, multi_label),
            "after": calibration_metrics(
                apply_temperature(logits, temperature), labels, multi_label
            ),
        }
    return report


# Path segments that name a classification head's module (BERT's classifier, decoders' score,
# ResNet's fc, RoBERTa's classifier.out_proj); peft keeps the head in a wrapper with two copies.
HEAD_NAMES = {"classifier", "score", "fc", "out_proj", "head"}


def head_layers(model: nn.Module, num_labels: int) -> list[nn.Linear]:
    """The ``num_labels``-output linear layer(s) of the classification head: those under a
    module named as a head (both copies where peft wraps it), else the last such layer."""
    found = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and m.out_features == num_labels
    ]
    named = [m for name, m in found if HEAD_NAMES & set(name.split("."))]
    return named or [m for _, m in found[-1:]]


def fold_temperature(model: nn.Module, temperature: float | list[float], num_labels: int) -> None:
    """Divide the head's last linear layer by the temperature(s), in place, so the model's
    logits are the calibrated ones (``W / T``, ``b / T``; a row per label when ``temperature``
    is a list).

    Raises:
        ValueError: The model has no ``num_labels``-output linear layer.
    """
    heads = head_layers(model, num_labels)
    if not heads:
        raise ValueError(f"No {num_labels}-output linear layer to fold the temperature into.")
    scale = 1.0 / np.broadcast_to(np.asarray(temperature, dtype=np.float64), (num_labels,))
    with torch.no_grad():
        for head in heads:
            factor = torch.as_tensor(scale, dtype=head.weight.dtype, device=head.weight.device)
            head.weight.mul_(factor[:, None])
            if head.bias is not None:
                head.bias.mul_(factor)


def calibrate_outcome(outcome, model: nn.Module, num_labels: int, multi_label: bool = False):
    """Fit the temperature on ``outcome.validation``, fold it into ``model`` and return the
    outcome with calibrated validation, test (and held-out calibration split) logits, and the
    report for ``metrics.json``.

    Args:
        outcome: A :class:`~nlp_transfer.training.run.TrainOutcome` with validation predictions.
        model: The trained (unwrapped) model to fold the temperature into.
        num_labels: Outputs of the head.
        multi_label: One temperature per label.

    Returns:
        ``(outcome, report)``; ``report`` as :func:`calibration_report`.

    Raises:
        ValueError: ``outcome.validation`` is None (no validation predictions to fit on).
    """
    if outcome.validation is None:
        raise ValueError("Calibration needs the validation split's predictions.")
    temperature = fit_temperature(*outcome.validation, multi_label=multi_label)
    report = calibration_report(outcome.validation, outcome.test, temperature, multi_label)
    fold_temperature(model, temperature, num_labels)
    splits = {"validation": outcome.validation, "test": outcome.test}
    if outcome.calibration is not None:  # the held-out conformal split is scaled alike
        splits["calibration"] = outcome.calibration
    scaled = {
        name: (apply_temperature(split[0], temperature).astype(np.float32), split[1])
        for name, split in splits.items()
    }
    return dataclasses.replace(outcome, **scaled), report
