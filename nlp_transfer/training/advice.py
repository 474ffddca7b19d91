"""What to try next, read off a finished run's history: printed under the summary.

Two signs that a run did not fit its data, each with the flags that address it:

* the fine-tuned model ends below the TF-IDF baseline on **validation** (the test split is never
  used to advise);
* the validation metric was still improving at the last epoch, by more than :data:`RISING_MIN`,
  and training did not stop early (the budget ran out before the model finished fitting).

The second sign reads validation, not the training accuracy: fine-tuning's training accuracy
rises in every epoch long after validation has stopped moving (the main job at 3 epochs: training
accuracy still rising, validation 0.8790 -> 0.8800), so a training-accuracy rule advised more
epochs to runs that had finished. ``benchmarks/results/main_job_epochs.md`` measures the main
job's budget against this rule.
"""

from __future__ import annotations

from ..metrics import greater_is_better

# A gain of the validation metric over the last epoch above this counts as "still improving":
# an absolute gain for scores in [0, 1] (1 point of accuracy), a relative one for losses/errors.
RISING_MIN = 0.01

TRY_MORE_EPOCHS = "more epochs (--num_train_epochs)"
TRY_LEARNING_RATE = "another learning rate (--learning_rate, e.g. 2x or 0.5x)"
TRY_SEARCH = "a search over both: nlp-transfer search"


def still_rising(
    history: list[dict], stopped_early: bool, key: str = "eval_accuracy", greater: bool = True
) -> bool:
    """Whether validation ``key`` improved by more than :data:`RISING_MIN` over the last epoch
    of a full run.

    Args:
        history: One dict per epoch (``eval_accuracy``...), as ``metrics.json`` ``validation``.
        stopped_early: Early stopping ended the run (then it had converged on validation).
        key: The validation metric to read (``eval_`` + ``--metric_for_best_model``).
        greater: Whether larger values of ``key`` are better (else the gain is relative).

    Returns:
        False for fewer than two epochs with ``key``, or when the run stopped early.
    """
    values = [h[key] for h in history if h.get(key) is not None]
    if stopped_early or len(values) < 2:
        return False
    before, last = values[-2], values[-1]
    gain = last - before if greater else (before - last) / max(abs(before), 1e-12)
    return gain > RISING_MIN


def best_validation_accuracy(metrics: dict) -> float | None:
    """``eval_accuracy`` of the kept (best) epoch, from ``metrics.json``'s history."""
    for record in metrics.get("validation") or []:
        if record.get("epoch") == metrics.get("best_epoch"):
            return record.get("eval_accuracy")
    return None


def advice(metrics: dict) -> list[str]:
    """Lines of advice for the printed summary; empty when the run looks fitted.

    Args:
        metrics: A run's ``metrics.json`` content: ``validation`` (per-epoch history),
            ``best_epoch``, ``stopped_early``, ``metric_for_best_model`` (default accuracy) and
            ``baseline`` (with ``validation_accuracy``).

    Returns:
        Zero to three lines, the last one naming what to try.
    """
    lines, tries = [], []
    history = metrics.get("validation") or []
    baseline = (metrics.get("baseline") or {}).get("validation_accuracy")
    model = best_validation_accuracy(metrics)
    if baseline is not None and model is not None and model < baseline:
        lines.append(
            f"note: the fine-tuned model is below the TF-IDF baseline on validation "
            f"(accuracy {model:.4f} vs {baseline:.4f})."
        )
        tries += [TRY_MORE_EPOCHS, TRY_LEARNING_RATE]
    metric = metrics.get("metric_for_best_model") or "accuracy"
    key = "eval_" + metric.removeprefix("eval_")
    greater = greater_is_better(metric)
    if still_rising(history, bool(metrics.get("stopped_early")), key, greater):
        first, last = history[-2][key], history[-1][key]
        lines.append(
            f"note: validation {metric} was still improving at the last epoch ({first:.4f} -> "
            f"{last:.4f}, epoch {history[-1]['epoch']}): the model had not finished fitting."
        )
        tries.insert(0, TRY_MORE_EPOCHS)
    if not lines:
        return []
    tries = [*dict.fromkeys(tries), TRY_SEARCH]
    return [*lines, "try: " + "; ".join(tries) + "."]
