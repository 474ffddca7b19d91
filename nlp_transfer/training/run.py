"""What every task does around :func:`~nlp_transfer.training.loop.fit`: the optimizer of the
run's transfer strategy, the schedule, ``accelerator.prepare``, gradual unfreezing, predictions.

Text and vision runs build their own data and model, then call :func:`train_and_predict`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from torch import nn
from torch.utils.data import DataLoader

from ..transfer.gradual import GradualUnfreezer
from ..transfer.l2sp import L2SPRegularizer
from ..transfer.lr import describe_lrs, layerwise_lr_param_groups
from .checkpoint import Checkpointer, resolve_resume_path
from .loop import (
    FitResult,
    LossFn,
    MetricsFn,
    adamw,
    create_optimizer,
    create_scheduler,
    fit,
    predict_logits,
)
from .setup import build_accelerator, check_output_dir

logger = get_logger(__name__)


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


def start_run(config, task_name: str) -> Accelerator:
    """The run's Accelerator, after the checks that must fail before any data or model loads.

    Builds it (``--mixed_precision``, ``--gradient_accumulation_steps``, ``--use_cpu``,
    ``--report_to``), refuses a non-empty ``output_dir``, resolves ``--resume_from_checkpoint``
    and starts the trackers with the config as hyper-parameters. Shared by the text and image
    runs.

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
        find_unused_parameters=config.gradual_unfreezing,
        log_with=trackers,
        project_dir=config.output_dir,
    )
    check_output_dir(
        config.output_dir, config.overwrite_output_dir, resuming=bool(config.resume_from_checkpoint)
    )
    resume_path(config)  # fail now, not after loading data and model, if there is no checkpoint
    if trackers:
        accelerator.init_trackers(task_name.replace(" ", "_"), config=tracker_config(config))
    return accelerator


def tracker_config(config) -> dict:
    """The config as tracker hyper-parameters (scalars and strings only; None becomes "none")."""
    values = {}
    for key, value in dataclasses.asdict(config).items():
        if value is None:
            value = "none"
        elif not isinstance(value, int | float | str | bool):
            value = str(value)
        values[key] = value
    return values


def resume_path(config) -> Path | None:
    """The checkpoint ``--resume_from_checkpoint`` names (``latest`` resolved), or None.

    Raises:
        FileNotFoundError: No such (complete) checkpoint.
    """
    if not config.resume_from_checkpoint:
        return None
    return resolve_resume_path(config.output_dir, config.resume_from_checkpoint)


def build_optimizer(
    model: nn.Module, config
) -> tuple[torch.optim.Optimizer, L2SPRegularizer | None]:
    """AdamW with the run's learning-rate strategy, and the L2-SP penalty when asked for.

    Plain AdamW over trainable parameters unless ``--layer_lr_decay``, ``--head_learning_rate``
    or ``--l2sp_alpha`` ask for per-block groups (which need a supported block layout).
    Logs the learning rate of every block.

    Args:
        model: The model, its freezing applied.
        config: A run config with ``learning_rate``, ``weight_decay``, ``layer_lr_decay``,
            ``head_learning_rate``, ``l2sp_alpha`` and ``l2sp_beta``.
    """
    strategy = config.layer_lr_decay != 1.0 or config.head_learning_rate or config.l2sp_alpha > 0
    if not strategy:
        return create_optimizer(model, config.learning_rate, config.weight_decay), None
    regularizer = None
    if config.l2sp_alpha > 0:
        regularizer = L2SPRegularizer(model, config.l2sp_alpha, config.l2sp_beta)
        logger.info(
            f"L2-SP: alpha {config.l2sp_alpha} on {len(regularizer.pretrained)} pretrained tensors, "
            f"beta {config.l2sp_beta} on {len(regularizer.new_params)} new-head tensors (no weight decay there)"
        )
    groups = layerwise_lr_param_groups(
        model,
        config.learning_rate,
        layer_lr_decay=config.layer_lr_decay,
        head_learning_rate=config.head_learning_rate,
        weight_decay=config.weight_decay,
        no_decay_for=regularizer.parameter_ids if regularizer else None,
    )
    logger.info(f"Learning rate per block: {describe_lrs(groups)}")
    return adamw(groups, config.learning_rate), regularizer


def train_and_predict(
    model: nn.Module,
    loaders: dict[str, DataLoader],
    accelerator: Accelerator,
    config,
    *,
    compute_metrics: MetricsFn,
    loss_fn: LossFn,
    cached: nn.Module | None = None,
    predict_validation: bool = False,
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
        cached: A frozen-prefix wrapper of ``model`` to train instead (it must expose
            ``disable()`` when it changes ``model``); the trained weights are ``model``'s.
        predict_validation: Also return the final model's validation predictions.

    Returns:
        A :class:`TrainOutcome`; its ``model`` is ``model`` (prepared) when ``cached`` was used.
    """
    unfreezer = None
    if config.gradual_unfreezing:  # made before the optimizer, which must hold every block
        unfreezer = GradualUnfreezer(model, config.unfreeze_every_n_steps)
    optimizer, regularizer = build_optimizer(model, config)
    scheduler = create_scheduler(
        optimizer,
        num_batches_per_epoch=len(loaders["train"]),
        num_train_epochs=config.num_train_epochs,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_ratio=config.warmup_ratio,
        lr_scheduler_type=config.lr_scheduler_type,
    )
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
        unfreezer.start()
        stage = (
            "epoch"
            if not config.unfreeze_every_n_steps
            else f"{config.unfreeze_every_n_steps} steps"
        )
        logger.info(
            f"Gradual unfreezing: the head trains alone first, then one more block from the top "
            f"every {stage} ({unfreezer.num_stages} stages)"
        )
    result = fit(
        model,
        optimizer,
        scheduler,
        train_dl,
        val_dl,
        accelerator,
        num_train_epochs=config.num_train_epochs,
        compute_metrics=compute_metrics,
        metric_for_best_model=config.metric_for_best_model,
        load_best_model_at_end=config.load_best_model_at_end,
        max_grad_norm=config.max_grad_norm,
        loss_fn=loss_fn,
        regularizer=regularizer,
        logging_steps=config.logging_steps,
        unfreezer=unfreezer,
        checkpointer=Checkpointer(
            config.output_dir, config.save_strategy, config.save_steps, config.save_total_limit
        ),
        resume_from_checkpoint=resume_path(config),
        early_stopping_patience=config.early_stopping_patience,
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
