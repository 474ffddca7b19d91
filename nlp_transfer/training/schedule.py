"""The learning-rate schedule of a run, sized in optimizer steps."""

from __future__ import annotations

import math

import torch
from transformers import get_scheduler


def create_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    num_batches_per_epoch: int,
    num_train_epochs: int,
    gradient_accumulation_steps: int = 1,
    warmup_ratio: float = 0.0,
    lr_scheduler_type: str = "linear",
) -> torch.optim.lr_scheduler.LRScheduler:
    """A ``transformers.get_scheduler`` schedule sized for the whole run.

    Create it *before* ``accelerator.prepare``, from the global number of batches per epoch:
    Accelerate steps a prepared scheduler once per process per optimizer step, so the count
    stays right under any number of processes.

    Args:
        optimizer: The optimizer.
        num_batches_per_epoch: Batches per epoch of the unprepared train DataLoader.
        num_train_epochs: Epochs.
        gradient_accumulation_steps: Batches per optimizer step.
        warmup_ratio: Fraction of optimizer steps of linear warm-up, in [0, 1).
        lr_scheduler_type: Any name ``transformers.get_scheduler`` accepts.

    Returns:
        The scheduler.
    """
    steps = math.ceil(num_batches_per_epoch / gradient_accumulation_steps) * num_train_epochs
    return get_scheduler(
        lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=int(warmup_ratio * steps),
        num_training_steps=steps,
    )
