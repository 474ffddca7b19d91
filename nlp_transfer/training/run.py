"""What every task does around the :class:`~nlp_transfer.training.trainer.Trainer`: the checks
and Accelerator at the start of a run, and the final predictions of a trained model.

Text, images and domain adaptation build their own data and model, then call
:func:`train_and_predict`, which trains a ``Trainer`` and predicts with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader

from .arguments import TrainingConfig
from .checkpoint import resolve_resume_path
from .setup import build_accelerator, check_output_dir
from .trackers import tracker_config
from .trainer import FitResult, Trainer


@dataclass
class TrainOutcome:
    """Result of a training run.

    Attributes:
        model: The model holding the best epoch's weights (prepared, or the plain model when a
            prefix cache trained in its place).
        fit: Training history.
        validation: ``(logits (n, C), labels (n,))`` of the validation split, final model;
            None when nothing needs them (they are computed for threshold tuning).
        test: ``(logits, labels)`` of the test split.
        calibration: ``(logits, labels)`` of the held-out calibration split (split conformal
            prediction's scores; never seen by training or epoch selection), or None.
    """

    model: nn.Module
    fit: FitResult
    validation: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray]
    calibration: tuple[np.ndarray, np.ndarray] | None = None


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
        config.output_dir,
        config.overwrite_output_dir,
        resuming=bool(config.resume_from_checkpoint),
        ignore=AUDIT_DIRS if getattr(config, "audit", False) else (),
    )
    if check_resume:  # fail now, not after loading data and model, if there is no checkpoint
        resume_path(config)
    if trackers:
        accelerator.init_trackers(task_name.replace(" ", "_"), config=tracker_config(config))
    return accelerator


AUDIT_DIRS = ("audit",)  # what --audit writes into output_dir before training starts


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
    args: TrainingConfig,
    dataloaders: Mapping[str, DataLoader],
    *,
    accelerator: Accelerator,
    compute_metrics: Callable[[np.ndarray, np.ndarray], dict],
    loss_fn: Callable,
    predict_validation: bool = False,
    **trainer_options,
) -> TrainOutcome:
    """Train a :class:`~nlp_transfer.training.trainer.Trainer` (resuming from
    ``--resume_from_checkpoint`` if set), then predict the test split (and the validation split)
    with the final model.

    Args:
        model: The model to train.
        args: The run's arguments.
        dataloaders: Unprepared ``train``, ``validation`` (picks the best epoch) and ``test``
            batches, and ``calibration`` (predicted at the end only) when the run holds one out.
        accelerator: The run's Accelerator.
        compute_metrics: ``(labels, logits) -> metrics`` of a split.
        loss_fn: ``(logits, labels) -> loss``.
        predict_validation: Also return the final model's validation predictions (threshold
            tuning needs them).
        **trainer_options: The Trainer's other arguments (``plan``, ``regularizer``,
            ``callbacks``, ``prefix_cache``).

    Returns:
        A :class:`TrainOutcome`.
    """
    trainer = Trainer(
        model,
        args,
        accelerator=accelerator,
        train_dataloader=dataloaders["train"],
        eval_dataloader=dataloaders["validation"],
        compute_metrics=compute_metrics,
        loss_fn=loss_fn,
        **trainer_options,
    )
    result = trainer.train(resume_from_checkpoint=resume_path(trainer.args))
    validation = trainer.predict(desc="Validation") if predict_validation else None
    test = trainer.predict(dataloaders["test"], desc="Test")
    held_out = dataloaders.get("calibration")
    calibration = trainer.predict(held_out, desc="Calibration split") if held_out else None
    return TrainOutcome(
        model=trainer.trained_model,
        fit=result,
        validation=validation,
        test=test,
        calibration=calibration,
    )
