"""The state of a training run: where it stands (saved in checkpoints), this process's share of
the epoch in progress, the best epoch's weights, and what training returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class TrainerState:
    """Where training stands; saved as ``trainer_state.json``.

    Epochs are 1-based, as in the logs and the history. After epoch k's validation the state
    moves to ``epoch = k + 1, batches_done = 0``: a checkpoint written then is logged as "end of
    epoch k" and resumes at the start of epoch k + 1.

    Attributes:
        epoch: 1-based epoch in progress; ``num_train_epochs + 1`` once training is complete.
        batches_done: Training batches of ``epoch`` already processed (on each process).
        epochs_completed: Epochs trained and validated (the records in ``history``); written
            for readers of ``trainer_state.json``, never read back.
        global_step: Optimizer steps taken.
        history: Per-epoch records so far.
        best_epoch: Best epoch so far (0: none yet).
        best_metric: Its value of the selection metric.
        epochs_without_improvement: Evaluations since the best one (early stopping).
        stopped_early: Whether early stopping ended training.
        train_runtime_s: Training wall time so far, seconds.
        has_best_state: Whether ``best_model.safetensors`` holds the best weights.
        num_processes: Processes of the run that wrote the checkpoint.
        num_batches_per_epoch: Training batches per epoch on each process.
    """

    epoch: int = 1
    batches_done: int = 0
    epochs_completed: int = 0
    global_step: int = 0
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float | None = None
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    train_runtime_s: float = 0.0
    has_best_state: bool = False
    num_processes: int = 1
    num_batches_per_epoch: int = 0

    def position(self) -> str:
        """Where training stands, in words: ``end of epoch 1`` or ``epoch 2, 5 batches into it``."""
        if self.batches_done == 0 and self.epoch > 1:
            return f"end of epoch {self.epoch - 1}"
        return f"epoch {self.epoch}, {self.batches_done} batches into it"


@dataclass
class ProcessState:
    """One process's share of the epoch in progress."""

    loss_sum: torch.Tensor
    loss_count: int
    logits: list[torch.Tensor]
    labels: list[torch.Tensor]

    @classmethod
    def empty(cls, device: torch.device | str = "cpu") -> ProcessState:
        return cls(torch.zeros((), device=device), 0, [], [])

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Count one training batch: its loss, and its logits and labels (kept on the CPU)."""
        self.loss_sum += loss
        self.loss_count += 1
        self.logits.append(logits.cpu())
        self.labels.append(labels.cpu())


@dataclass
class FitResult:
    """What :meth:`Trainer.train` returns.

    Attributes:
        history: One dict per epoch: ``epoch`` (1-based, as in the logs), ``train_loss``,
            ``learning_rate`` (at the end of the epoch), ``eval_*`` metrics, ``epoch_runtime_s``.
        best_epoch: 1-based epoch whose weights the model holds at the end.
        best_metric: Its value of the selection metric.
        train_runtime_s: Wall time of the training steps (evaluation excluded), seconds.
        train_samples_per_second: Training examples processed per second, all processes.
        global_step: Optimizer steps taken.
        stopped_early: Whether early stopping ended training before ``num_train_epochs``.
    """

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float | None = None
    train_runtime_s: float = 0.0
    train_samples_per_second: float = 0.0
    global_step: int = 0
    stopped_early: bool = False


def snapshot_weights(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
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
