"""One training epoch of :func:`~nlp_transfer.training.loop.fit`: its batches and optimizer steps.

:class:`FitRun` holds what the steps of one ``fit`` call share; :func:`train_epoch` runs the
batches of one epoch (the rest of it when resumed mid-epoch), with gradient accumulation, the
NaN check and stop signals agreed between processes, tracker logging and step checkpoints.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from accelerate.data_loader import skip_first_batches
from accelerate.logging import get_logger
from torch import nn
from torch.utils.data import DataLoader

from ..transfer.freeze import set_train_mode
from ..transfer.gradual import GradualUnfreezer
from .checkpoint import Checkpointer, ProcessState, StopSignals, TrainerState, TrainingInterrupted
from .eta import TrainingEstimate
from .evaluation import forward_logits
from .progress import TrainingProgress

logger = get_logger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class FitRun:
    """What the steps of one :func:`~nlp_transfer.training.loop.fit` call share.

    The first group is ``fit``'s arguments (see there); then the run's mutable state:
    ``state`` (saved in checkpoints), this process's share of the epoch, the best epoch's
    weights when they are not the current ones, the progress display, the stop signals and
    whether a stop was requested.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler
    accelerator: Accelerator
    train_dataloader: DataLoader
    num_train_epochs: int
    loss_fn: LossFn
    regularizer: Callable[[], torch.Tensor] | None
    max_grad_norm: float | None
    logging_steps: int
    unfreezer: GradualUnfreezer | None
    checkpointer: Checkpointer | None
    state: TrainerState
    process: ProcessState
    best_state: dict[str, torch.Tensor] | None
    progress: TrainingProgress
    signals: StopSignals | None = None
    stop_requested: bool = False
    estimate: TrainingEstimate | None = None  # logs the steps and the time they will take

    @property
    def saving(self) -> bool:
        """Whether checkpoints are written."""
        return self.checkpointer is not None and self.checkpointer.enabled

    @property
    def num_batches(self) -> int:
        """Training batches per epoch, per process."""
        return self.state.num_batches_per_epoch


def train_epoch(run: FitRun, epoch: int) -> tuple[float, float]:
    """Train epoch ``epoch`` (1-based): its remaining batches, in the order of seed and epoch.

    Returns:
        ``(start, seconds)``: ``time.perf_counter()`` when the epoch started and its training
        time in seconds (validation excluded).

    Raises:
        FloatingPointError: The loss became NaN or infinite on some process.
        TrainingInterrupted: A stop signal arrived; a checkpoint was written at this step.
    """
    state = run.state
    state.epoch = epoch
    run.train_dataloader.set_epoch(epoch - 1)  # the order is a function of seed + epoch
    batches = run.train_dataloader
    if state.batches_done:  # resumed mid-epoch: skip seen batches by index
        batches = skip_first_batches(run.train_dataloader, state.batches_done)
        batches.set_epoch(epoch - 1)
    if run.unfreezer is not None:
        _update_unfreezing(run.unfreezer, epoch, state.global_step)
    set_train_mode(run.model)
    start, runtime_before = time.perf_counter(), state.train_runtime_s
    run.progress.start_epoch()
    for batch in batches:
        _train_batch(run, epoch, batch)
        stepped = run.accelerator.sync_gradients
        state.global_step += int(stepped)
        run.progress.update(
            epoch=epoch,
            batch_in_epoch=state.batches_done,
            global_step=state.global_step,
            samples=len(batch["labels"]) * run.accelerator.num_processes,
            loss=lambda: run.process.loss_sum.item() / run.process.loss_count,
        )
        if run.estimate is not None:
            run.estimate.update()
        if stepped:
            _after_optimizer_step(run, epoch, runtime_before + time.perf_counter() - start)
    run.progress.end_epoch()
    seconds = time.perf_counter() - start
    state.train_runtime_s = runtime_before + seconds
    return start, seconds


def _train_batch(run: FitRun, epoch: int, batch: dict) -> None:
    """Forward, backward and (at the end of an accumulation cycle) an optimizer step."""
    state, process, accelerator = run.state, run.process, run.accelerator
    if run.unfreezer is not None and _update_unfreezing(run.unfreezer, epoch, state.global_step):
        set_train_mode(run.model)
    with accelerator.accumulate(run.model):
        logits = forward_logits(run.model, batch).float()
        loss = run.loss_fn(logits, batch["labels"])
        nonfinite, signalled = _step_flags(loss, run.signals, accelerator)
        if nonfinite:
            raise FloatingPointError(_nonfinite_message(loss, state, run.checkpointer))
        run.stop_requested = run.stop_requested or signalled
        accelerator.backward(loss + run.regularizer() if run.regularizer is not None else loss)
        if accelerator.sync_gradients and run.max_grad_norm:
            accelerator.clip_grad_norm_(run.model.parameters(), run.max_grad_norm)
        run.optimizer.step()
        run.lr_scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
    state.batches_done += 1
    process.loss_sum += loss.detach()
    process.loss_count += 1
    process.logits.append(logits.detach().cpu())
    process.labels.append(batch["labels"].cpu())


def _after_optimizer_step(run: FitRun, epoch: int, train_runtime_s: float) -> None:
    """Tracker logging every ``logging_steps`` steps; a step checkpoint when due or signalled."""
    state = run.state
    if run.accelerator.trackers and state.global_step % run.logging_steps == 0:
        run.accelerator.log(
            {
                "train/loss": run.process.loss_sum.item() / run.process.loss_count,
                "train/learning_rate": run.lr_scheduler.get_last_lr()[0],
                "train/epoch": epoch - 1 + state.batches_done / run.num_batches,  # epochs done
            },
            step=state.global_step,
        )
    if state.batches_done == run.num_batches:
        return  # the end-of-epoch checkpoint follows the evaluation
    if run.stop_requested or (run.saving and run.checkpointer.due_after_step(state.global_step)):
        state.train_runtime_s = train_runtime_s
        saved = run.checkpointer.save(run.accelerator, state, run.process, run.best_state)
        if run.stop_requested:
            raise TrainingInterrupted(run.signals.received or signal.SIGTERM, saved)


def _update_unfreezing(unfreezer: GradualUnfreezer, epoch: int, global_step: int) -> bool:
    if not unfreezer.update(epoch, global_step):
        return False
    unfrozen = ", ".join(unfreezer.trainable_blocks()) or "nothing (head only)"
    logger.info(f"Gradual unfreezing, step {global_step}: unfrozen {unfrozen}")
    return True


def _nonfinite_message(
    loss: torch.Tensor, state: TrainerState, checkpointer: Checkpointer | None
) -> str:
    last = None if checkpointer is None else checkpointer.last_saved or checkpointer.latest()
    where = (
        f"The last good checkpoint, {last}, is intact; resume from it with "
        f"--resume_from_checkpoint {last} after changing what diverged."
        if last is not None
        else "No checkpoint was written (see --save_strategy)."
    )
    return (
        f"The training loss is {loss.item()} at optimizer step {state.global_step + 1} (epoch "
        f"{state.epoch}, batch {state.batches_done + 1}); training stopped before this update. "
        f"Typical causes: a --learning_rate too high for this model, fp16 overflow "
        f"(--mixed_precision bf16 or no), or bad inputs. {where}"
    )


def _step_flags(
    loss: torch.Tensor, signals: StopSignals | None, accelerator: Accelerator
) -> tuple[bool, bool]:
    """``(loss not finite on some process, a stop signal reached some process)``.

    One small all-reduce per batch under several processes, so that every process takes the
    same decision at the same batch (a process that stopped alone would hang the others).
    """
    received = signals is not None and signals.received is not None
    flags = torch.tensor(
        [float(not torch.isfinite(loss.detach()).item()), float(received)],
        device=accelerator.device,
    )
    if accelerator.num_processes > 1:
        flags = accelerator.reduce(flags, "sum")
    return bool(flags[0] > 0), bool(flags[1] > 0)
