"""When a run stops and when it saves: early stopping and the checkpoint schedule, as callbacks
(the part of ``transformers``' ``DefaultFlowCallback`` and ``EarlyStoppingCallback`` that this
toolkit uses). They set the :class:`~nlp_transfer.training.callbacks.TrainerControl`; the
Trainer writes the checkpoint, since it owns the state a checkpoint holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from accelerate.logging import get_logger

from .callbacks import TrainerCallback
from .checkpoint import Checkpointer

if TYPE_CHECKING:
    from .trainer import Trainer

logger = get_logger(__name__)


class EarlyStoppingCallback(TrainerCallback):
    """Stop after ``patience`` evaluations without a better ``metric_for_best_model``.

    The last epoch never counts as stopped early (there is nothing left to skip). The decision
    is saved in checkpoints: a resumed run that had stopped early does not train on.

    Args:
        patience: Evaluations without improvement before stopping, >= 1.
    """

    def __init__(self, patience: int):
        self.patience = patience

    def on_evaluate(self, trainer: Trainer, metrics: dict) -> None:
        state = trainer.state
        if state.epochs_without_improvement < self.patience:
            return
        if state.epoch >= trainer.args.num_train_epochs:
            return
        state.stopped_early = True
        trainer.control.should_training_stop = True
        logger.info(
            f"Early stopping: no better {trainer.args.metric_for_best_model} for "
            f"{self.patience} epoch(s); best was epoch {state.best_epoch}"
        )


class CheckpointCallback(TrainerCallback):
    """Asks for a checkpoint at the end of every epoch, every ``save_steps`` optimizer steps
    (``--save_strategy steps``), and at once when a stop signal arrived mid-epoch.

    Args:
        checkpointer: Where and how often (``save_strategy``, ``save_steps``).
    """

    def __init__(self, checkpointer: Checkpointer):
        self.checkpointer = checkpointer

    def on_step_end(self, trainer: Trainer) -> None:
        state = trainer.state
        if state.batches_done == trainer.num_batches:
            return  # the end-of-epoch checkpoint follows the evaluation
        if trainer.stop_requested or self.checkpointer.due_after_step(state.global_step):
            trainer.control.should_save = True

    def on_epoch_end(self, trainer: Trainer) -> None:
        trainer.control.should_save = True
