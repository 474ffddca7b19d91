"""A monotone map after the temperature, for binary classifiers whose miscalibration a single
temperature cannot fix (a bend, not a scale; ``docs/calibration.md``).

Isotonic regression of the label on the temperature-scaled probability of label 1 (Zadrozny
and Elkan 2002, "Transforming classifier scores into accurate multiclass probability
estimates"), through scikit-learn's :func:`~sklearn.isotonic.isotonic_regression`, **centered**
(Oron and Flournoy 2017, "Centered Isotonic Regression"): each of its constant blocks becomes one
point at the block's mean probability, joined by straight lines. Plain isotonic regression is a
staircase whose jumps cost log-likelihood on new rows; centering keeps the fit and removes the
stairs (on the movie-review runs its cross-validated NLL was lower than the temperature's where
the staircase's was not: ``docs/benchmarks.md``). Two more choices make it safe to put before users:

- **The ranking is kept.** The map is flat beyond its first and last points, so it is blended
  with the identity, ``g(p) = (1 - eps) * iso(p) + eps * p`` (``eps`` = :data:`IDENTITY_SHARE`):
  strictly increasing, so texts keep their order (ROC AUC, precision-recall curves and a tuned
  threshold's partition are unchanged). Labels follow the calibrated probabilities: where
  ``g`` moves the 0.5 crossing, the few texts between change label, as the validation rows say
  they should (``transformers.pipeline``, which knows the temperature only, keeps the old ones).
- **NLL stays finite.** ``iso`` is clipped to ``[1 / (n + 1), n / (n + 1)]``.

The map is kept only where it helps: its negative log-likelihood cross-validated on the rows it
is fitted on (5 folds, 5 shuffles) must be lower than the temperature's (:func:`fit_binary_map`). It is
stored as breakpoints in ``config.json`` (``calibration.isotonic``) and applied to the logits
by :func:`map_logits` wherever a saved model's logits become probabilities
(:class:`~nlp_transfer.text.classifier.TextClassifier`: PyTorch, ONNX, int8, the server,
``predict`` and ``evaluate``). The mapped logits are log-probabilities, so softmax gives the
mapped probabilities and everything downstream (conformal sets, abstention) reads them as
logits.
"""

from __future__ import annotations

import numpy as np
from scipy.special import softmax
from sklearn.isotonic import isotonic_regression
from sklearn.model_selection import StratifiedKFold

IDENTITY_SHARE = 1e-3  # eps of g(p) = (1 - eps) iso(p) + eps p: strictly increasing
CV_FOLDS = 5
CV_REPEATS = 5  # shuffles of the folds, averaged
MIN_MAP_ROWS = 100  # fewer validation rows: the temperature alone


def centered_isotonic(p: np.ndarray, y: np.ndarray) -> dict:
    """Centered isotonic regression of ``y`` on ``p``: ``{"x", "y"}`` breakpoints, one per
    block of the pool-adjacent-violators fit (scikit-learn's
    :func:`~sklearn.isotonic.isotonic_regression` on the distinct ``p``, weighted by their
    counts): ``x`` the block's mean ``p``, ``y`` its value, clipped to
    ``[1 / (n + 1), n / (n + 1)]``; both increasing."""
    n = len(y)
    distinct, row, counts = np.unique(p, return_inverse=True, return_counts=True)
    mean_y = np.bincount(row, weights=y) / counts
    fitted = isotonic_regression(mean_y, sample_weight=counts, y_min=1 / (n + 1), y_max=n / (n + 1))
    values, block = np.unique(fitted, return_inverse=True)
    centers = np.bincount(block, weights=distinct * counts) / np.bincount(block, weights=counts)
    return {"x": [float(v) for v in centers], "y": [float(v) for v in values]}


def apply_binary_map(p: np.ndarray, isotonic: dict) -> np.ndarray:
    """``g(p)``: the saved map applied to probabilities of label 1.

    Args:
        p: ``(n,)`` temperature-scaled probabilities of label 1, in [0, 1].
        isotonic: ``{"x", "y"}`` breakpoints (increasing ``x``), as :func:`fit_binary_map`
            returns; linear between them, constant beyond.

    Returns:
        ``(n,)`` mapped probabilities in (0, 1), strictly increasing in ``p``.
    """
    p = np.asarray(p, dtype=np.float64)
    mapped = np.interp(p, np.asarray(isotonic["x"]), np.asarray(isotonic["y"]))
    return (1.0 - IDENTITY_SHARE) * mapped + IDENTITY_SHARE * p


def _binary_nll(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def cross_validated_nll(
    p: np.ndarray, y: np.ndarray, folds: int = CV_FOLDS, repeats: int = CV_REPEATS, seed: int = 0
) -> tuple[float, float]:
    """``(map NLL, identity NLL)``: the map's NLL on each row when fitted on the other folds
    (stratified; the mean over ``repeats`` shuffles, so that one lucky split does not decide),
    and the probabilities' own NLL on the same rows."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    losses = []
    for repeat in range(repeats):
        mapped = np.empty_like(p)
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + repeat)
        for fit_rows, held in splitter.split(p.reshape(-1, 1), y):
            mapped[held] = apply_binary_map(p[held], centered_isotonic(p[fit_rows], y[fit_rows]))
        losses.append(_binary_nll(mapped, y))
    return float(np.mean(losses)), _binary_nll(p, y)


def fit_binary_map(logits: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict | None:
    """The isotonic map of a binary classifier's (temperature-scaled) validation logits, or
    None when it does not lower the cross-validated NLL.

    Args:
        logits: ``(n, 2)`` temperature-scaled validation logits.
        labels: ``(n,)`` label ids in {0, 1}.
        seed: Seeds the cross-validation folds.

    Returns:
        ``{"x", "y"}`` breakpoints (lists of floats: JSON for ``config.json``), plus
        ``cv_nll`` (the map's) and ``cv_nll_temperature`` on the same folds; None with fewer
        than :data:`MIN_MAP_ROWS` rows, fewer than :data:`CV_FOLDS` of either label, or no
        gain.

    Raises:
        ValueError: Logits that are not ``(n, 2)``, or as many labels as rows.
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    if logits.ndim != 2 or logits.shape[1] != 2 or len(y) != len(logits):
        raise ValueError(f"A binary map needs (n, 2) logits and n labels, got {logits.shape}.")
    if len(y) < MIN_MAP_ROWS or min(np.bincount(y, minlength=2)) < CV_FOLDS:
        return None
    p = softmax(logits, axis=1)[:, 1]
    map_nll, temperature_nll = cross_validated_nll(p, y, seed=seed)
    if not map_nll < temperature_nll:
        return None
    return centered_isotonic(p, y) | {"cv_nll": map_nll, "cv_nll_temperature": temperature_nll}


def map_logits(logits: np.ndarray, isotonic: dict | None) -> np.ndarray:
    """Logits whose softmax is the mapped probabilities: ``(log(1 - g(p)), log g(p))`` per row
    (``p`` the softmax probability of label 1); ``logits`` unchanged when ``isotonic`` is None.

    Args:
        logits: ``(n, 2)`` temperature-scaled logits of any backend.
        isotonic: The saved map (``config.calibration["isotonic"]``) or None.

    Returns:
        ``(n, 2)`` float64 logits (log-probabilities).
    """
    if isotonic is None:
        return logits
    g = apply_binary_map(softmax(np.asarray(logits, dtype=np.float64), axis=1)[:, 1], isotonic)
    return np.stack([np.log1p(-g), np.log(g)], axis=1)


def saved_binary_map(config) -> dict | None:
    """The isotonic map a model's config saved (``calibration.isotonic``), or None."""
    calibration = getattr(config, "calibration", None)
    return calibration.get("isotonic") if isinstance(calibration, dict) else None
