"""The callbacks a run's arguments ask for, in the order the Trainer calls them."""

from __future__ import annotations

from collections.abc import Iterable

from accelerate import Accelerator

from ..transfer.gradual import GradualUnfreezer
from .arguments import TrainingConfig
from .callbacks import TrainerCallback
from .checkpoint import Checkpointer
from .flow import CheckpointCallback, EarlyStoppingCallback
from .progress import ProgressCallback
from .trackers import TrackerCallback
from .unfreezing import GradualUnfreezingCallback


def default_callbacks(
    args: TrainingConfig,
    accelerator: Accelerator,
    unfreezer: GradualUnfreezer | None,
    checkpointer: Checkpointer,
    callbacks: Iterable[TrainerCallback],
) -> list[TrainerCallback]:
    """The callbacks ``args`` asks for, with the user's: progress, trackers, gradual unfreezing,
    ``callbacks``, then early stopping and the checkpoint schedule (which act on what the
    others decided)."""
    early_stopping = args.early_stopping_patience is not None
    chosen: list[TrainerCallback] = [ProgressCallback(args.logging_steps, early_stopping)]
    if accelerator.trackers:
        chosen.append(TrackerCallback(args.logging_steps))
    if unfreezer is not None:
        chosen.append(GradualUnfreezingCallback(unfreezer))
    chosen += list(callbacks)
    if early_stopping:
        chosen.append(EarlyStoppingCallback(args.early_stopping_patience))
    if checkpointer.enabled:
        chosen.append(CheckpointCallback(checkpointer))
    return chosen
