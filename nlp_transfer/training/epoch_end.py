"""The end of an epoch in :func:`~nlp_transfer.training.loop.fit`, one step per function.

In order: :func:`validate_epoch` (training metrics, validation, the epoch's history record),
:func:`keep_best`, :func:`log_epoch`, :func:`call_epoch_end_callback`,
:func:`check_early_stopping`, :func:`end_epoch` (the end-of-epoch checkpoint). Epochs are
1-based everywhere: in the history, the logs and the trackers.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import gather_object
from torch import nn
from torch.utils.data import DataLoader

from .checkpoint import ProcessState, TrainingInterrupted
from .epoch import FitRun
from .evaluation import MetricsFn, evaluate

logger = get_logger(__name__)

EpochEndCallback = Callable[[int, dict], None]


class EpochEndCallbackError(RuntimeError):
    """``epoch_end_callback`` raised on another process; this one stops at the same point."""


def validate_epoch(
    run: FitRun,
    epoch: int,
    eval_dataloader: DataLoader,
    compute_metrics: MetricsFn,
    metric_for_best_model: str,
    epoch_start: float,
) -> tuple[dict, dict]:
    """Training metrics of the epoch, validation, and the epoch's record (appended to the history).

    Returns:
        ``(record, metrics)``: the history record (``epoch``, ``train_*``, ``learning_rate``,
        ``eval_*``, ``epoch_runtime_s``) and the validation metrics without prefix.

    Raises:
        KeyError: ``metric_for_best_model`` is not among the validation metrics.
    """
    accelerator, process = run.accelerator, run.process
    count = torch.tensor(float(process.loss_count), device=accelerator.device)
    stats = accelerator.reduce(torch.stack([process.loss_sum, count]), "sum")
    train_metrics = _training_metrics(process.logits, process.labels, accelerator, compute_metrics)
    metrics = evaluate(run.model, eval_dataloader, accelerator, compute_metrics, desc="Validation")
    if metric_for_best_model not in metrics:
        raise KeyError(
            f"--metric_for_best_model {metric_for_best_model!r} is not an evaluation metric; "
            f"choose one of {', '.join(k for k, v in metrics.items() if isinstance(v, float))}."
        )
    record = {
        "epoch": epoch,
        "train_loss": float(stats[0] / stats[1]),
        **{f"train_{k}": v for k, v in train_metrics.items() if k != "loss"},
        "learning_rate": run.lr_scheduler.get_last_lr()[0],
        **{f"eval_{k}": v for k, v in metrics.items()},
        "epoch_runtime_s": time.perf_counter() - epoch_start,
    }
    if run.unfreezer is not None:
        record["unfrozen_blocks"] = run.unfreezer.trainable_blocks()
    run.state.history.append(record)
    if accelerator.trackers:
        accelerator.log(_tracker_values(record), step=run.state.global_step)
    return record, metrics


def keep_best(
    run: FitRun, epoch: int, value: float, greater_is_better: bool, load_best_model_at_end: bool
) -> None:
    """Record epoch ``epoch`` as the best if ``value`` improves on the best so far.

    With ``load_best_model_at_end``, a better epoch's weights are copied (to CPU) unless it is
    the last epoch, whose weights the model holds at the end anyway.
    """
    state = run.state
    if not _is_better(value, state.best_metric, greater_is_better):
        state.epochs_without_improvement += 1
        return
    state.best_epoch, state.best_metric = epoch, value
    state.epochs_without_improvement = 0
    if load_best_model_at_end and epoch < run.num_train_epochs:
        run.best_state = _snapshot(run.accelerator.unwrap_model(run.model), run.optimizer)
    elif load_best_model_at_end:
        run.best_state = None  # the final weights are the best ones


def log_epoch(
    record: dict, metrics: dict, metric_for_best_model: str, num_epochs: int, train_s: float
) -> None:
    """One log line per epoch: losses, the main validation metrics, training and validation time."""
    shown = dict.fromkeys(["loss", "accuracy", "f1_macro", metric_for_best_model])
    summary = " | ".join(f"eval_{k} {metrics[k]:.4f}" for k in shown if metrics.get(k) is not None)
    logger.info(
        f"epoch {record['epoch']}/{num_epochs}: train_loss {record['train_loss']:.4f} | "
        f"{summary} | {train_s:.0f}s training + "
        f"{record['epoch_runtime_s'] - train_s:.0f}s validation"
    )


def call_epoch_end_callback(
    callback: EpochEndCallback, accelerator: Accelerator, epoch: int, metrics: dict
) -> None:
    """Call ``callback(epoch, metrics)`` on every process; if it raises anywhere, stop everywhere.

    Under several processes one small all-reduce tells every process whether the callback
    raised on any of them, so that all stop at the same point (one that went on alone into the
    next collective operation would hang the others).

    Raises:
        Exception: What the callback raised, on the processes where it raised.
        EpochEndCallbackError: On the other processes.
    """
    error: Exception | None = None
    try:
        callback(epoch, dict(metrics))
    except Exception as exc:  # re-raised below, once the processes agree
        error = exc
    raised_somewhere = error is not None
    if accelerator.num_processes > 1:
        flag = torch.tensor([float(raised_somewhere)], device=accelerator.device)
        raised_somewhere = bool(accelerator.reduce(flag, "sum")[0] > 0)
    if error is not None:
        raise error
    if raised_somewhere:
        raise EpochEndCallbackError(
            f"epoch_end_callback raised on another process after epoch {epoch}; stopped here too."
        )


def check_early_stopping(run: FitRun, epoch: int, patience: int | None, metric: str) -> None:
    """Mark the run as stopped early after ``patience`` epochs without improvement."""
    state = run.state
    if patience is None or state.epochs_without_improvement < patience:
        return
    if epoch >= run.num_train_epochs:
        return  # the last epoch: nothing left to skip
    state.stopped_early = True
    logger.info(
        f"Early stopping: no better {metric} for {patience} epoch(s); "
        f"best was epoch {state.best_epoch}"
    )


def end_epoch(run: FitRun, epoch: int) -> None:
    """Close epoch ``epoch``: the state moves to the next one, and the end-of-epoch checkpoint.

    Raises:
        TrainingInterrupted: A stop signal arrived during the epoch (after the checkpoint).
    """
    run.state.epoch, run.state.batches_done = epoch + 1, 0
    run.process = ProcessState.empty(run.accelerator.device)
    if not run.saving:
        return
    saved = run.checkpointer.save(run.accelerator, run.state, run.process, run.best_state)
    if run.stop_requested:
        raise TrainingInterrupted(run.signals.received or signal.SIGTERM, saved)


def _training_metrics(
    logits: list[torch.Tensor],
    labels: list[torch.Tensor],
    accelerator: Accelerator,
    compute_metrics: MetricsFn,
) -> dict:
    """Scalar metrics of the epoch's training-pass predictions, gathered from every process.

    They come for free (the logits were computed for the loss) and show over- or under-fitting
    beside the validation metrics; they are measured with dropout on and weights changing, as
    in Keras' ``accuracy`` vs ``val_accuracy``.
    """
    local = (torch.cat(logits).numpy(), torch.cat(labels).numpy())
    parts = gather_object([local]) if accelerator.num_processes > 1 else [local]
    all_logits = np.concatenate([p[0] for p in parts])
    all_labels = np.concatenate([p[1] for p in parts])
    metrics = compute_metrics(all_labels, all_logits)
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


def _tracker_values(record: dict) -> dict[str, float]:
    """An epoch record as tracker scalars: ``eval/accuracy``, ``train/epoch_loss``..."""
    values = {}
    for key, value in record.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if key in ("epoch", "learning_rate"):  # logged every logging_steps already
            continue
        if key.startswith("eval_"):
            values[f"eval/{key.removeprefix('eval_')}"] = value
        elif key == "train_loss":
            values["train/epoch_loss"] = value
        else:
            values[f"train/{key.removeprefix('train_')}"] = value
    return values


def _is_better(value: float, best: float | None, greater_is_better: bool) -> bool:
    return best is None or (value > best if greater_is_better else value < best)


def _snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Copy of what training can change: the optimizer's parameters and all buffers (on CPU).

    The optimizer's parameters, not the currently trainable ones: under gradual unfreezing a
    block frozen now may be unfrozen later, and restoring this epoch must restore it too.
    """
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    state = {
        n: p.detach().to("cpu", copy=True)
        for n, p in model.named_parameters()
        if id(p) in in_optimizer
    }
    state.update({n: b.detach().to("cpu", copy=True) for n, b in model.named_buffers()})
    return state
