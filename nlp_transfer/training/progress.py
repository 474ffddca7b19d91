"""Training progress for people and for log files.

On a terminal, a tqdm bar (on the local main process). Without one (CI, ``nohup``, output
redirected to a file: ``sys.stderr`` is not a TTY) a bar's carriage-return updates would fill
the log with hundreds of lines, so the bar is off and a plain log line is written every
``every`` batches instead: position, step, running loss, rate and training time left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from accelerate.logging import get_logger
from tqdm.auto import tqdm

from ..console import stderr_is_terminal
from .callbacks import TrainerCallback
from .eta import TrainingEstimate

if TYPE_CHECKING:
    from .trainer import Trainer

# The validation metrics of the per-epoch log line, where the problem type has them: single-label,
# multi-label, regression (in the targets' units).
EPOCH_LOG_METRICS = ("loss", "accuracy", "f1_micro", "f1_macro", "pearson", "spearman", "mae")

logger = get_logger(__name__)


def format_duration(seconds: float) -> str:
    """``3725.0`` -> ``"1h02m"``, ``125.0`` -> ``"2m05s"``, ``9.4`` -> ``"9s"``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class TrainingProgress:
    """The training loop's progress: a bar on a terminal, a log line every ``every`` batches elsewhere.

    Rate and time left count training time only (between :meth:`start_epoch` and
    :meth:`end_epoch`), so validation does not distort them; time left is training time at the
    rate of this run so far.

    Args:
        total_batches: Batches of the whole run (all epochs), per process.
        done_batches: Batches already done (a resumed run).
        batches_per_epoch: Batches per epoch, per process.
        num_epochs: Epochs of the run.
        every: Batches between log lines (and between loss refreshes of the bar), >= 1.
        enabled: Whether this process shows progress (the local main process).
        interactive: Bar (True) or log lines (False); None: :func:`stderr_is_terminal`.
    """

    def __init__(
        self,
        total_batches: int,
        done_batches: int,
        batches_per_epoch: int,
        num_epochs: int,
        every: int,
        enabled: bool = True,
        interactive: bool | None = None,
    ):
        interactive = stderr_is_terminal() if interactive is None else interactive
        self.total, self.done = total_batches, done_batches
        self.batches_per_epoch, self.num_epochs = batches_per_epoch, num_epochs
        self.every = max(1, every)
        self.lines = enabled and not interactive
        self.bar = tqdm(
            total=total_batches,
            initial=done_batches,
            desc="Training",
            disable=not (enabled and interactive),
        )
        self._seconds, self._batches, self._samples = 0.0, 0, 0
        self._since: float | None = None

    def start_epoch(self) -> None:
        """Start counting training time."""
        self._since = time.perf_counter()

    def end_epoch(self) -> None:
        """Stop counting training time (validation follows)."""
        self._seconds = self._elapsed()
        self._since = None

    def _elapsed(self) -> float:
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        return self._seconds + running

    def update(
        self,
        *,
        epoch: int,
        batch_in_epoch: int,
        global_step: int,
        samples: int,
        loss: Callable[[], float],
    ) -> None:
        """Count one batch; refresh the bar's loss or write a log line every ``every`` batches.

        Args:
            epoch: 1-based epoch in progress.
            batch_in_epoch: Batches of it done, this one included (1-based).
            global_step: Optimizer steps taken so far.
            samples: Examples in this batch, all processes together.
            loss: Returns the running training loss; called only when it is shown (it may
                synchronise with the GPU).
        """
        self.done += 1
        self._batches += 1
        self._samples += samples
        self.bar.update(1)
        if batch_in_epoch % self.every:
            return
        if self.lines:
            logger.info(self._line(epoch, batch_in_epoch, global_step, loss()))
        elif not self.bar.disable:
            self.bar.set_postfix(epoch=epoch, loss=f"{loss():.4f}")

    def _line(self, epoch: int, batch_in_epoch: int, global_step: int, loss: float) -> str:
        elapsed = max(self._elapsed(), 1e-9)
        left = (self.total - self.done) * elapsed / self._batches
        return (
            f"epoch {epoch}/{self.num_epochs} | batch {batch_in_epoch}/{self.batches_per_epoch} | "
            f"step {global_step} | loss {loss:.4f} | {self._samples / elapsed:.1f} samples/s | "
            f"{format_duration(left)} of training left"
        )

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


class ProgressCallback(TrainerCallback):
    """The Trainer's progress for people: the bar or log lines (:class:`TrainingProgress`), the
    first line's estimate of steps and time (:class:`~nlp_transfer.training.eta.TrainingEstimate`)
    and one line per epoch (losses, main validation metrics, training and validation time).

    Args:
        logging_steps: Batches between updates of the bar's loss, or between log lines.
        early_stopping: The run may stop sooner (the estimate says "at most").
    """

    def __init__(self, logging_steps: int, early_stopping: bool = False):
        self.logging_steps, self.early_stopping = logging_steps, early_stopping
        self.progress: TrainingProgress | None = None
        self.estimate: TrainingEstimate | None = None
        self._epoch_start, self._train_s = 0.0, 0.0

    def on_train_begin(self, trainer: Trainer) -> None:
        state, epochs = trainer.state, trainer.args.num_train_epochs
        total = trainer.num_batches * epochs
        done = min((state.epoch - 1) * trainer.num_batches + state.batches_done, total)
        self.progress = TrainingProgress(
            total_batches=total,
            done_batches=done,
            batches_per_epoch=trainer.num_batches,
            num_epochs=epochs,
            every=self.logging_steps,
            enabled=trainer.accelerator.is_local_main_process,
        )
        self.estimate = TrainingEstimate(  # "N optimizer steps, about M min" after a few batches
            total,
            done,
            epochs,
            trainer.accelerator.gradient_accumulation_steps,
            logger.info,
            early_stopping=self.early_stopping,
        )

    def on_epoch_begin(self, trainer: Trainer) -> None:
        self.progress.start_epoch()
        self._epoch_start = time.perf_counter()

    def on_step_end(self, trainer: Trainer) -> None:
        state, process = trainer.state, trainer.process
        self.progress.update(
            epoch=state.epoch,
            batch_in_epoch=state.batches_done,
            global_step=state.global_step,
            samples=len(process.labels[-1]) * trainer.accelerator.num_processes,
            loss=lambda: process.loss_sum.item() / process.loss_count,
        )
        self.estimate.update()
        if state.batches_done == trainer.num_batches:  # validation follows
            self.progress.end_epoch()
            self._train_s = time.perf_counter() - self._epoch_start

    on_substep_end = on_step_end

    def on_evaluate(self, trainer: Trainer, metrics: dict) -> None:
        record, key = trainer.state.history[-1], trainer.args.metric_for_best_model
        shown = dict.fromkeys([*EPOCH_LOG_METRICS, key])  # those the problem type has
        summary = " | ".join(
            f"eval_{k} {metrics[k]:.4f}" for k in shown if metrics.get(k) is not None
        )
        logger.info(
            f"epoch {record['epoch']}/{trainer.args.num_train_epochs}: train_loss "
            f"{record['train_loss']:.4f} | {summary} | {self._train_s:.0f}s training + "
            f"{record['epoch_runtime_s'] - self._train_s:.0f}s validation"
        )

    def on_train_end(self, trainer: Trainer) -> None:
        if self.progress is not None:
            self.progress.close()
