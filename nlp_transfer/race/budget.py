"""The race's time budget: ``--time_budget 20m`` parsed, the clock kept across a resumed race,
and a Trainer callback that ends a candidate's training before the budget runs out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..args import parse_duration
from ..training.callbacks import TrainerCallback, true_on_any_process

__all__ = ["BudgetCallback", "TimeBudget", "parse_duration"]

logger = logging.getLogger(__name__)

# Share of the budget kept for what follows the last candidate (promoting the winner, plots).
RESERVE_SHARE = 0.05


class TimeBudget:
    """Seconds left of a race: ``total`` minus the time spent before (an earlier, interrupted
    process of the same race) and since :meth:`start`.

    Args:
        total: The whole budget, seconds.
        spent_before: Seconds an earlier process of the race already used.
        clock: Monotonic seconds (``time.monotonic``; tests pass a fake clock).
    """

    def __init__(
        self, total: float, spent_before: float = 0.0, clock: Callable[[], float] = time.monotonic
    ):
        self.total, self.spent_before, self.clock = float(total), float(spent_before), clock
        self.started = clock()

    @property
    def spent(self) -> float:
        """Seconds used so far, this process and earlier ones."""
        return self.spent_before + self.clock() - self.started

    @property
    def remaining(self) -> float:
        """Seconds left before the reserve (:data:`RESERVE_SHARE` of the budget) starts."""
        return self.total * (1 - RESERVE_SHARE) - self.spent

    def allows(self, estimate_s: float) -> bool:
        """Whether work of about ``estimate_s`` seconds still fits."""
        return estimate_s <= self.remaining


class BudgetCallback(TrainerCallback):
    """Ends a candidate's training after an epoch when another epoch would not fit in the budget
    (its estimate: the longest epoch so far, validation included); the best epoch is kept, as
    with early stopping.

    Args:
        budget: The race's :class:`TimeBudget`.
        name: The candidate, for the log line.
    """

    def __init__(self, budget: TimeBudget, name: str):
        self.budget, self.name = budget, name
        self.epoch_started = 0.0
        self.longest_epoch = 0.0
        self.stopped_at: int | None = None

    def on_epoch_begin(self, trainer) -> None:
        self.epoch_started = self.budget.clock()

    def on_epoch_end(self, trainer) -> None:
        self.longest_epoch = max(self.longest_epoch, self.budget.clock() - self.epoch_started)
        if trainer.control.should_training_stop:
            return
        wants_stop = not self.budget.allows(self.longest_epoch)  # each process reads its clock
        if not true_on_any_process(getattr(trainer, "accelerator", None), wants_stop):
            return
        trainer.control.should_training_stop = True
        self.stopped_at = trainer.state.epoch - 1
        logger.info(
            f"race: {self.name} stops after epoch {self.stopped_at}: another epoch "
            f"(~{self.longest_epoch:.0f} s) would not fit in the {self.budget.remaining:.0f} s left"
        )
