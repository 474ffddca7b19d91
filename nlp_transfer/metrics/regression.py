"""Regression metrics (one real-valued target per text), computed offline with scipy/scikit-learn."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score


def regression_metrics(targets: np.ndarray, predictions: np.ndarray) -> dict:
    """The evaluation report of a regression model.

    Args:
        targets: True values, shape ``(n,)``.
        predictions: Predicted values, shape ``(n,)`` or ``(n, 1)``, in the targets' units.

    Returns:
        ``pearson`` and ``spearman`` correlations (None when either side is constant), ``mse``,
        ``rmse``, ``mae`` (in the targets' units, squared for ``mse``), ``r2``, ``loss`` (= ``mse``)
        and ``num_examples``.

    Raises:
        ValueError: If the lengths disagree.
    """
    y = np.asarray(targets, dtype=np.float64).reshape(-1)
    p = np.asarray(predictions, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"targets {y.shape} and predictions {p.shape} must have the same length.")
    constant = np.ptp(y) == 0 or np.ptp(p) == 0
    mse = float(mean_squared_error(y, p))
    return {
        "num_examples": len(y),
        "pearson": None if constant else float(pearsonr(y, p)[0]),
        "spearman": None if constant else float(spearmanr(y, p)[0]),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(mean_absolute_error(y, p)),
        "r2": float(r2_score(y, p)) if len(y) > 1 else None,
        "loss": mse,
    }
