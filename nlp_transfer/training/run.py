"""What every task does around :func:`~nlp_transfer.training.loop.fit`: the optimizer of the
run's transfer strategy, the schedule, ``accelerator.prepare``, gradual unfreezing, predictions.

Text and vision runs build their own data and model, then call :func:`train_and_predict`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from torch import nn
from torch.utils.data import DataLoader

from .arguments import TrainingConfig
from .checkpoint import Checkpointer, resolve_resume_path
from .loop import (
    FitResult,
    LossFn,
    MetricsFn,
    create_optimizer,
    create_scheduler,
    fit,
    predict_logits,
)
from .setup import build_accelerator, check_output_dir

if TYPE_CHECKING:
    from ..transfer.plan import TransferPlan

logger = get_logger(__name__)

# An epoch-end callback for every train_and_predict inside a ``with epoch_end_hook(...)``: how
# a hyperparameter search prunes the runs of any task without their run functions passing it.
EPOCH_END_HOOK: ContextVar[Callable[[int, dict], None] | None] = ContextVar(
    "epoch_end_hook", default=None
)


@contextmanager
def epoch_end_hook(callback: Callable[[int, dict], None]) -> Iterator[None]:
    """Within the block, runs call ``callback(epoch, validation_metrics)`` after each epoch
    (unless given their own ``epoch_end_callback``)."""
    token = EPOCH_END_HOOK.set(callback)
    try:
        yield
    finally:
        EPOCH_END_HOOK.reset(token)


@dataclass
class TrainOutcome:
    """Result of a training run.

    Attributes:
        model: The prepared model, holding the best epoch's weights.
        fit: Training history.
        validation: ``(logits (n, C), labels (n,))`` of the validation split, final model;
            None when nothing needs them (they are computed for threshold tuning).
        test: ``(logits, labels)`` of the test split.
    """

    model: nn.Module
    fit: FitResult
    validation: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray]


def start_run(config: TrainingConfig, task_name: str, check_resume: bool = True) -> Accelerator:
    """The run's Accelerator, after the checks that must fail before any data or model loads.

    Builds it (``--mixed_precision``, ``--gradient_accumulation_steps``, ``--use_cpu``,
    ``--report_to``), refuses a non-empty ``output_dir``, resolves ``--resume_from_checkpoint``
    and starts the trackers with the config as hyper-parameters. Shared by every task; a task
    with several trainings per run (domain adaptation) resolves its checkpoints itself
    (``check_resume=False``).

    Raises:
        FileExistsError: ``output_dir`` is not empty and ``overwrite_output_dir`` is False.
        FileNotFoundError: No checkpoint where ``--resume_from_checkpoint`` points.
        ValueError: An unknown ``--report_to`` tracker.
    """
    trackers = config.report_to_list()
    accelerator = build_accelerator(
        config.mixed_precision,
        config.gradient_accumulation_steps,
        config.use_cpu,
        find_unused_parameters=config.find_unused_parameters,
        log_with=trackers,
        project_dir=config.output_dir,
    )
    check_output_dir(
        config.output_dir, config.overwrite_output_dir, resuming=bool(config.resume_from_checkpoint)
    )
    if check_resume:  # fail now, not after loading data and model, if there is no checkpoint
        resume_path(config)
    if trackers:
        accelerator.init_trackers(task_name.replace(" ", "_"), config=tracker_config(config))
    return accelerator


def tracker_config(config: TrainingConfig) -> dict:
    """The config as tracker hyper-parameters (scalars and strings only; None becomes "none")."""
    values = {}
    for key, value in dataclasses.asdict(config).items():
        if value is None:
            value = "none"
        elif not isinstance(value, int | float | str | bool):
            value = str(value)
        values[key] = value
    return values


def resume_path(config: TrainingConfig) -> Path | None:
    """The checkpoint ``--resume_from_checkpoint`` names (``latest`` resolved), or None.

    Raises:
        FileNotFoundError: No such (complete) checkpoint.
    """
    if not config.resume_from_checkpoint:
        return None
    return resolve_resume_path(config.output_dir, config.resume_from_checkpoint)


def train_and_predict(
    model: nn.Module,
    loaders: dict[str, DataLoader],
    accelerator: Accelerator,
    config: TrainingConfig,
    *,
    compute_metrics: MetricsFn,
    loss_fn: LossFn,
    plan: TransferPlan | None = None,
    regularizer: Callable[[], torch.Tensor] | None = None,
    cached: nn.Module | None = None,
    predict_validation: bool = False,
    epoch_end_callback: Callable[[int, dict], None] | None = None,
) -> TrainOutcome:
    """Optimizer, schedule, prepare, :func:`fit`, then test (and validation) predictions.

    Args:
        model: The model with its transfer strategy applied (frozen parameters set).
        loaders: Unprepared ``train``/``validation``/``test`` DataLoaders (of ``cached``'s
            inputs when it is given).
        accelerator: The run's Accelerator.
        config: The run config (optimisation, checkpointing, unfreezing settings by their
            ``TrainingArguments`` names).
        compute_metrics: ``(labels, logits) -> dict``.
        loss_fn: ``(logits, labels) -> loss``.
        plan: The run's transfer plan: its optimizer groups, L2-SP and gradual unfreezing.
            None: plain AdamW over the trainable parameters (e.g. a feature head).
        regularizer: A task's own term added to the loss (e.g. a domain-alignment loss), on
            top of the plan's L2-SP.
        cached: A frozen-prefix wrapper of ``model`` to train instead (it must expose
            ``disable()`` when it changes ``model``); the trained weights are ``model``'s.
        predict_validation: Also return the final model's validation predictions.
        epoch_end_callback: Called as ``(epoch, validation_metrics)`` after each epoch's
            validation (e.g. Optuna's pruning); an exception it raises stops training.

    Returns:
        A :class:`TrainOutcome`; its ``model`` is ``model`` (prepared) when ``cached`` was used.
    """
    # the unfreezer is made before the optimizer, which must hold every block
    unfreezer = plan.unfreezer(model) if plan is not None else None
    optimizer, scheduler, regularizer = _optimization(model, loaders, config, plan, regularizer)
    trained = model
    model, optimizer, scheduler, train_dl, val_dl, test_dl = accelerator.prepare(
        cached if cached is not None else model,
        optimizer,
        scheduler,
        loaders["train"],
        loaders["validation"],
        loaders["test"],
    )
    if unfreezer is not None:  # after prepare: DDP must register every block it will train
        _start_unfreezing(unfreezer, config)
    result = fit(
        model,
        optimizer,
        scheduler,
        train_dl,
        val_dl,
        accelerator,
        compute_metrics=compute_metrics,
        loss_fn=loss_fn,
        regularizer=regularizer,
        unfreezer=unfreezer,
        **_fit_settings(config, epoch_end_callback),
    )
    validation = None
    if predict_validation:
        validation = predict_logits(model, val_dl, accelerator, desc="Validation")
    test = predict_logits(model, test_dl, accelerator, desc="Test")
    if cached is not None:
        if hasattr(cached, "disable"):
            cached.disable()  # the model computes its prefix again
        model = trained  # what is saved: the plain model, holding the trained weights
    return TrainOutcome(model=model, fit=result, validation=validation, test=test)


def _combine(*terms):
    """The sum of the regularisers that are not None (None when there is none)."""
    terms = [t for t in terms if t is not None]
    if len(terms) <= 1:
        return terms[0] if terms else None
    return lambda: sum(t() for t in terms)


def _optimization(
    model: nn.Module,
    loaders: dict[str, DataLoader],
    config: TrainingConfig,
    plan: TransferPlan | None,
    regularizer: Callable[[], torch.Tensor] | None,
):
    """``(optimizer, scheduler, regularizer)``: the plan's groups and L2-SP (plain AdamW without a
    plan), the schedule over the run's optimizer steps, and every loss term added."""
    if plan is not None:
        optimizer, l2sp = plan.optimizer(model)
    else:
        optimizer, l2sp = create_optimizer(model, config.learning_rate, config.weight_decay), None
    scheduler = create_scheduler(
        optimizer,
        num_batches_per_epoch=len(loaders["train"]),
        num_train_epochs=config.num_train_epochs,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_ratio=config.warmup_ratio,
        lr_scheduler_type=config.lr_scheduler_type,
    )
    return optimizer, scheduler, _combine(l2sp, regularizer)


def _start_unfreezing(unfreezer, config: TrainingConfig) -> None:
    unfreezer.start()
    every = config.unfreeze_every_n_steps
    stage = "epoch" if not every else f"{every} steps"
    logger.info(
        f"Gradual unfreezing: the head trains alone first, then one more block from the top "
        f"every {stage} ({unfreezer.num_stages} stages)"
    )


def _fit_settings(config: TrainingConfig, epoch_end_callback) -> dict:
    """:func:`fit`'s keyword arguments that come from the run's arguments."""
    settings = dict(
        num_train_epochs=config.num_train_epochs,
        metric_for_best_model=config.metric_for_best_model,
        load_best_model_at_end=config.load_best_model_at_end,
        max_grad_norm=config.max_grad_norm,
        logging_steps=config.logging_steps,
        checkpointer=Checkpointer(
            config.output_dir, config.save_strategy, config.save_steps, config.save_total_limit
        ),
        resume_from_checkpoint=resume_path(config),
        early_stopping_patience=config.early_stopping_patience,
    )
    # a hyperparameter search's pruning: this run's callback, or the one of epoch_end_hook
    settings["epoch_end_callback"] = epoch_end_callback or EPOCH_END_HOOK.get()
    return settings
