"""What to try next, read off a finished run's history: printed under the summary.

Two signs that a run did not fit its data, each with the flags that address it:

* the fine-tuned model ends below the TF-IDF baseline on **validation** (the test split is never
  used to advise);
* the training accuracy was still rising at the last epoch and training did not stop early
  (the budget ran out before the model fitted the training data).
"""

from __future__ import annotations

# A rise of the training accuracy over the last epoch above this counts as "still rising".
RISING_MIN = 0.01

TRY_MORE_EPOCHS = "more epochs (--num_train_epochs)"
TRY_LEARNING_RATE = "another learning rate (--learning_rate, e.g. 2x or 0.5x)"
TRY_SEARCH = "a search over both: nlp-transfer search"


def still_rising(history: list[dict], stopped_early: bool, key: str = "train_accuracy") -> bool:
    """Whether ``key`` rose by more than :data:`RISING_MIN` over the last epoch of a full run.

    Args:
        history: One dict per epoch (``train_accuracy``...), as ``metrics.json`` ``validation``.
        stopped_early: Early stopping ended the run (then it had converged on validation).
        key: The training metric to read.

    Returns:
        False for fewer than two epochs with ``key``, or when the run stopped early.
    """
    values = [h[key] for h in history if h.get(key) is not None]
    return not stopped_early and len(values) >= 2 and values[-1] - values[-2] > RISING_MIN


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
            ``best_epoch``, ``stopped_early`` and ``baseline`` (with ``validation_accuracy``).

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
    if still_rising(history, bool(metrics.get("stopped_early"))):
        first, last = history[-2]["train_accuracy"], history[-1]["train_accuracy"]
        lines.append(
            f"note: training accuracy was still rising at the last epoch ({first:.4f} -> "
            f"{last:.4f}, epoch {history[-1]['epoch']}): the model had not finished fitting."
        )
        tries.insert(0, TRY_MORE_EPOCHS)
    if not lines:
        return []
    tries = [*dict.fromkeys(tries), TRY_SEARCH]
    return [*lines, "try: " + "; ".join(tries) + "."]
