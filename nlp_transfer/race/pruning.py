"""When the race stops a candidate early: behind the best by more than validation noise.

Racing in the sense of Maron and Moore (1994, "Hoeffding Races: Accelerating Model Selection
Search for Classification and Function Approximation"): a candidate is dropped once the
validation examples say it cannot be the best, not merely because it ranks low. Rank-based
successive halving (Optuna's ``SuccessiveHalvingPruner``) was tried first and measured worse
here: run one after another, a candidate must be the best so far at epoch 1 (then 3) to go on,
and fine-tuning's first epochs are its warm-up. On 1,000 sentiment sentences it stopped full
fine-tuning after epoch 1 at 0.566 validation accuracy; run alone it reached 0.836 at epoch 4
and the best test accuracy (0.830 against the winner's 0.795; benchmarks/strategy_race.py).
"""

from __future__ import annotations

import math

import optuna

# Epochs every candidate that trains epochs gets before it can be stopped: the first is its
# learning-rate warm-up (10% of the steps of about 10 epochs).
MIN_EPOCHS_BEFORE_PRUNING = 2


def noise_margin(n_validation: int) -> float:
    """``1 / sqrt(n_validation)``: about two standard errors of an accuracy near 0.5 (for a loss
    or an error, that fraction of it)."""
    return 1.0 / math.sqrt(max(n_validation, 1))


def behind_by_more_than(value: float, best: float, margin: float, greater_is_better: bool) -> bool:
    """Whether ``value`` trails ``best`` by more than ``margin`` (absolute when greater is
    better, as for accuracies; relative for losses and errors)."""
    if greater_is_better:
        return value < best - margin
    return value > best * (1 + margin)


class NoiseMarginPruner(optuna.pruners.BasePruner):
    """Stop a trial at epoch ``e`` (>= ``min_epoch``) when its validation value is behind the best
    value another trial had at epoch ``e`` by more than ``1 / sqrt(n_validation)`` (about two
    standard errors of an accuracy near 0.5; for a loss or an error, that fraction of the best).

    Args:
        n_validation: Validation examples the metric is computed on.
        greater_is_better: The metric's direction.
        min_epoch: No trial is stopped before this epoch.
    """

    def __init__(
        self, n_validation: int, greater_is_better: bool, min_epoch: int = MIN_EPOCHS_BEFORE_PRUNING
    ):
        self.margin = noise_margin(n_validation)
        self.greater_is_better, self.min_epoch = greater_is_better, min_epoch

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        epoch = trial.last_step
        if epoch is None or epoch < self.min_epoch:
            return False
        value = trial.intermediate_values[epoch]
        others = [
            t.intermediate_values[epoch]
            for t in study.get_trials(deepcopy=False)
            if t.number != trial.number and epoch in t.intermediate_values
        ]
        if not others:
            return False
        best = max(others) if self.greater_is_better else min(others)
        return behind_by_more_than(value, best, self.margin, self.greater_is_better)
