"""Evaluation metrics, all from scikit-learn and scipy: :mod:`.classification` (single-label),
:mod:`.multilabel` and :mod:`.regression`. Imports nothing of the package above it.
"""

# Metrics for which lower is better (besides any name holding "loss").
LOWER_IS_BETTER = ("mse", "rmse", "mae", "hamming_loss")


def greater_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` (``--metric_for_best_model``) is better: False for a
    loss and for the errors of :data:`LOWER_IS_BETTER`, True for scores (accuracy, F1, Pearson).
    """
    name = metric.removeprefix("eval_")
    return "loss" not in name and name not in LOWER_IS_BETTER
