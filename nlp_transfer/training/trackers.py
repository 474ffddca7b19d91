"""Experiment trackers (TensorBoard, Weights & Biases, MLflow) through Accelerate: the package
check, the config as hyper-parameters, and the Trainer callback that logs to them."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from .callbacks import TrainerCallback

if TYPE_CHECKING:
    from .trainer import Trainer


def tracker_config(config) -> dict:
    """A config dataclass as tracker hyper-parameters (scalars and strings; None becomes "none")."""
    values = {}
    for key, value in dataclasses.asdict(config).items():
        if value is None:
            value = "none"
        elif not isinstance(value, int | float | str | bool):
            value = str(value)
        values[key] = value
    return values


class TrackerCallback(TrainerCallback):
    """Logs the training loss, learning rate and epoch every ``logging_steps`` optimizer steps,
    and every epoch's record (``eval/accuracy``, ``train/epoch_loss``...) after validation.

    Args:
        logging_steps: Optimizer steps between logs of the loss and learning rate.
    """

    def __init__(self, logging_steps: int):
        self.logging_steps = logging_steps

    def on_step_end(self, trainer: Trainer) -> None:
        state, process = trainer.state, trainer.process
        if state.global_step % self.logging_steps:
            return
        trainer.accelerator.log(
            {
                "train/loss": process.loss_sum.item() / process.loss_count,
                "train/learning_rate": trainer.lr_scheduler.get_last_lr()[0],
                # epochs done
                "train/epoch": state.epoch - 1 + state.batches_done / trainer.num_batches,
            },
            step=state.global_step,
        )

    def on_evaluate(self, trainer: Trainer, metrics: dict) -> None:
        record = trainer.state.history[-1]
        trainer.accelerator.log(tracker_values(record), step=trainer.state.global_step)


def tracker_values(record: dict) -> dict[str, float]:
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
