"""Gradual unfreezing (Howard & Ruder 2018, ULMFiT) as a Trainer callback: the head trains
alone first, then one more block from the top every epoch or every ``unfreeze_every_n_steps``
optimizer steps (the schedule: :class:`~nlp_transfer.transfer.gradual.GradualUnfreezer`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from accelerate.logging import get_logger

from ..transfer.freeze import set_train_mode
from ..transfer.gradual import GradualUnfreezer
from .callbacks import TrainerCallback

if TYPE_CHECKING:
    from .trainer import Trainer

logger = get_logger(__name__)


class GradualUnfreezingCallback(TrainerCallback):
    """Moves a :class:`~nlp_transfer.transfer.gradual.GradualUnfreezer` through its stages and
    records the unfrozen blocks in every epoch's record (``unfrozen_blocks``).

    Args:
        unfreezer: Made from the model before the optimizer (which must hold every block).
    """

    def __init__(self, unfreezer: GradualUnfreezer):
        self.unfreezer = unfreezer

    def on_train_begin(self, trainer: Trainer) -> None:
        # after prepare: DDP must register every block it will train
        self.unfreezer.start()
        every = self.unfreezer.unfreeze_every_n_steps
        stage = "epoch" if not every else f"{every} steps"
        logger.info(
            f"Gradual unfreezing: the head trains alone first, then one more block from the top "
            f"every {stage} ({self.unfreezer.num_stages} stages)"
        )

    def on_epoch_begin(self, trainer: Trainer) -> None:
        self._update(trainer)  # the Trainer sets the train mode next

    def on_step_begin(self, trainer: Trainer) -> None:
        if self._update(trainer):
            set_train_mode(trainer.model)

    def on_evaluate(self, trainer: Trainer, metrics: dict) -> None:
        trainer.state.history[-1]["unfrozen_blocks"] = self.unfreezer.trainable_blocks()

    def _update(self, trainer: Trainer) -> bool:
        state = trainer.state
        if not self.unfreezer.update(state.epoch, state.global_step):
            return False
        unfrozen = ", ".join(self.unfreezer.trainable_blocks()) or "nothing (head only)"
        logger.info(f"Gradual unfreezing, step {state.global_step}: unfrozen {unfrozen}")
        return True
