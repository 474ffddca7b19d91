"""Callbacks of the :class:`~nlp_transfer.training.trainer.Trainer`: the events, the control object
and the handler that calls them in order.

The event names are those of ``transformers.TrainerCallback``; each gets the trainer (its
``state``, ``control``, ``accelerator``, ``model``, ``args``) and, for some events, a value::

    class PrintAccuracy(TrainerCallback):
        def on_evaluate(self, trainer, metrics):
            print(trainer.state.epoch, metrics["accuracy"])

    Trainer(..., callbacks=[PrintAccuracy()])

Progress, checkpoint schedule, early stopping, gradual unfreezing, tracker logging and a search's
pruning are callbacks (their modules in :mod:`nlp_transfer.training`); the Trainer calls
:class:`CallbackHandler`, never one of them by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .trainer import Trainer

EVENTS = (
    "on_train_begin",
    "on_epoch_begin",
    "on_step_begin",
    "on_substep_end",
    "on_step_end",
    "on_evaluate",
    "on_save",
    "on_epoch_end",
    "on_train_end",
)


@dataclass
class TrainerControl:
    """What callbacks ask of the Trainer (as ``transformers.TrainerControl``).

    Attributes:
        should_training_stop: End training after this epoch (early stopping).
        should_save: Write a checkpoint now (reset by the Trainer once written).
    """

    should_training_stop: bool = False
    should_save: bool = False


class TrainerCallback:
    """Base class: override the events you need; every one does nothing by default.

    Events, in the order a run calls them (epochs are 1-based, as in the logs):

    - ``on_train_begin(trainer)``: state fresh or restored from a checkpoint.
    - ``on_epoch_begin(trainer)``: before the epoch's first batch (``trainer.state.epoch``).
    - ``on_step_begin(trainer)``: before each training batch's forward pass.
    - ``on_substep_end(trainer)``: after a batch that only accumulated gradients.
    - ``on_step_end(trainer)``: after a batch that ended with an optimizer step.
    - ``on_evaluate(trainer, metrics)``: after each epoch's validation, with the validation
      metrics (no prefix); the epoch's record is ``trainer.state.history[-1]``. Called on every
      process; if a callback raises on any process, every process stops here
      (:class:`CallbackError` on the others).
    - ``on_save(trainer, checkpoint)``: after a checkpoint was written (its directory).
    - ``on_epoch_end(trainer)``: after validation, the state already at the next epoch; set
      ``control.should_save`` for the end-of-epoch checkpoint.
    - ``on_train_end(trainer)``: always, also when training raised (close resources here).
    """

    def on_train_begin(self, trainer: Trainer) -> None: ...
    def on_epoch_begin(self, trainer: Trainer) -> None: ...
    def on_step_begin(self, trainer: Trainer) -> None: ...
    def on_substep_end(self, trainer: Trainer) -> None: ...
    def on_step_end(self, trainer: Trainer) -> None: ...
    def on_evaluate(self, trainer: Trainer, metrics: dict) -> None: ...
    def on_save(self, trainer: Trainer, checkpoint) -> None: ...
    def on_epoch_end(self, trainer: Trainer) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...


def true_on_any_process(accelerator, flag: bool) -> bool:
    """``flag`` or'ed over the processes (one small all-reduce; every process must call it at
    the same point). ``accelerator`` None or one process: ``flag`` itself."""
    if accelerator is None or accelerator.num_processes == 1:
        return flag
    total = accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), "sum")
    return bool(total[0] > 0)


class CallbackError(RuntimeError):
    """A callback raised on another process; this one stops at the same point."""


class CallbackHandler:
    """Calls an event on every callback, in order.

    Args:
        callbacks: The callbacks, called in this order.
    """

    def __init__(self, callbacks: Iterable[TrainerCallback] = ()):
        self.callbacks = list(callbacks)

    def add(self, callback: TrainerCallback) -> None:
        """Append ``callback`` (called after the ones already there)."""
        self.callbacks.append(callback)

    def __getattr__(self, event: str):
        if event not in EVENTS:
            raise AttributeError(event)

        def call(trainer: Trainer, *args) -> None:
            for callback in self.callbacks:
                getattr(callback, event)(trainer, *args)

        return call

    def on_evaluate(self, trainer: Trainer, metrics: dict) -> None:
        """``on_evaluate`` on every callback; if one raises on any process, every process stops.

        Under several processes one small all-reduce tells every process whether a callback
        raised on any of them, so that all stop at the same point (one that went on alone into
        the next collective operation would hang the others).

        Raises:
            Exception: What the callback raised, on the processes where it raised.
            CallbackError: On the other processes.
        """
        error: Exception | None = None
        try:
            for callback in self.callbacks:
                callback.on_evaluate(trainer, dict(metrics))
        except Exception as exc:  # re-raised below, once the processes agree
            error = exc
        raised_somewhere = true_on_any_process(trainer.accelerator, error is not None)
        if error is not None:
            raise error
        if raised_somewhere:
            raise CallbackError(
                f"A callback raised on another process after epoch {trainer.state.epoch}; "
                "stopped here too."
            )
