"""The first log line of a training: how many steps, and about how long, measured.

    Training: 855 optimizer steps (3 epochs x 285 batches), about 61 min (4.30 s/step over
    steps 2-6; validation not included)

The first batch is not timed (warm-up: allocations, lazy initialisation); the next few are, and
the estimate is the mean time per batch times the batches left, printed once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

WARMUP_BATCHES = 1
MEASURED_BATCHES = 5


def format_duration(seconds: float) -> str:
    """``"about 12 min"``, ``"about 40 s"``, ``"about 1.5 h"``."""
    if seconds < 1:
        return "under 1 s"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 90 * 60:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


class TrainingEstimate:
    """Times the first batches of a training and logs the steps and the estimated time, once.

    Args:
        total_batches: Batches of the whole run (epochs x batches per epoch).
        batches_done: Batches already done (a resumed run).
        num_epochs: Epochs of the run (for the message).
        gradient_accumulation_steps: Batches per optimizer step.
        log: Where the line goes (e.g. ``logger.info``).
        early_stopping: The run may stop sooner (the line says "at most").
        measured: Batches timed after the warm-up one.
    """

    def __init__(
        self,
        total_batches: int,
        batches_done: int,
        num_epochs: int,
        gradient_accumulation_steps: int,
        log: Callable[[str], object],
        early_stopping: bool = False,
        measured: int = MEASURED_BATCHES,
    ):
        self.early_stopping = early_stopping
        self.total = total_batches
        self.done = batches_done
        self.num_epochs = num_epochs
        self.accumulation = max(1, gradient_accumulation_steps)
        self.log = log
        left = total_batches - batches_done
        # short runs: time what there is (at least one batch after the warm-up one)
        self.measured = max(1, min(measured, left - WARMUP_BATCHES - 1))
        self.seen = 0
        self.start: float | None = None
        self.finished = left <= WARMUP_BATCHES + 1

    def update(self) -> None:
        """Call after every training batch; logs the estimate once enough batches are timed."""
        if self.finished:
            return
        self.seen += 1
        if self.seen == WARMUP_BATCHES:
            self.start = time.perf_counter()
        elif self.seen == WARMUP_BATCHES + self.measured and self.start is not None:
            per_batch = (time.perf_counter() - self.start) / self.measured
            self.log(self.message(per_batch))
            self.finished = True

    def message(self, seconds_per_batch: float) -> str:
        """The log line, for ``seconds_per_batch`` measured."""
        steps = self.total // self.accumulation
        per_epoch = self.total // max(self.num_epochs, 1)
        left = (self.total - self.done - self.seen) * seconds_per_batch
        first = self.done + WARMUP_BATCHES + 1
        at_most = "at most " if self.early_stopping else ""
        return (
            f"Training: {at_most}{steps:,} optimizer steps ({self.num_epochs} "
            f"epoch{'s' if self.num_epochs != 1 else ''} x {per_epoch:,} "
            f"batches), {format_duration(left)} ({seconds_per_batch:.2f} s/batch over "
            f"batches {first}-{first + self.measured - 1}; validation not included)"
        )
