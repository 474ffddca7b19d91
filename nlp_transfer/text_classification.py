"""Text classification end to end: the steps every text recipe runs, and the Python API.

from nlp_transfer import TextClassificationConfig, run_text_classification

config = TextClassificationConfig(train_file="reviews.csv", text_column="review",
                                  label_column="stars", output_dir="outputs/reviews")
metrics = run_text_classification(config)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from datasets import DatasetDict
from torch import nn
from transformers import PreTrainedTokenizerBase

from .baselines import tfidf_logreg_baseline
from .config import TextClassificationConfig
from .data import load_text_classification_dataset
from .data.tokenize import build_dataloaders, tokenize_dataset
from .metrics import classification_metrics, cross_entropy, probabilities, select_threshold
from .models.text import DEFAULT_MODEL_NAME, build_text_classifier, resolve_model_path
from .plots import write_report_plots
from .training.imbalance import class_weights_from_spec, cross_entropy_loss
from .training.loop import FitResult, create_optimizer, create_scheduler, fit, predict_logits
from .training.outputs import format_summary, run_metrics, save_run
from .training.setup import build_accelerator, check_output_dir
from .transfer.freeze import freeze_encoder_layers
from .transfer.l2sp import L2SPRegularizer
from .transfer.lr import describe_lrs, layerwise_lr_param_groups

logger = get_logger(__name__)


def load_data(config: TextClassificationConfig) -> DatasetDict:
    """Load the run's data (``--dataset_name`` or ``--train_file`` [+ validation/test files]).

    Applies ``--max_train_samples`` / ``--max_eval_samples`` after splitting, so the splits stay
    the same whatever the caps.

    Raises:
        ValueError, FileNotFoundError: No data named, or see
            :func:`~nlp_transfer.data.load_text_classification_dataset`.
    """
    if config.dataset_name is None and config.train_file is None:
        raise ValueError("Give the data: --dataset_name (built-in or Hub) or --train_file.")
    dataset = load_text_classification_dataset(
        config.dataset_name or config.train_file,
        validation=config.validation_file,
        test=config.test_file,
        text_column=config.text_column,
        label_column=config.label_column,
        validation_size=config.validation_size,
        test_size=config.test_size,
        seed=config.seed,
        cache_dir=config.cache_dir,
    )
    caps = {"train": config.max_train_samples}
    caps |= {s: config.max_eval_samples for s in ("validation", "test")}
    for split, cap in caps.items():
        if cap is not None and cap < len(dataset[split]):
            dataset[split] = dataset[split].select(range(cap))
    sizes = ", ".join(f"{s} {len(d):,}" for s, d in dataset.items())
    logger.info(f"Data: {sizes}; labels {dataset['train'].features['label'].names}")
    return dataset


@dataclass
class TrainOutcome:
    """Result of :func:`train_text_classifier`.

    Attributes:
        model: The prepared model, holding the best epoch's weights.
        fit: Training history.
        validation: ``(logits (n, C), labels (n,))`` of the validation split, final model.
        test: ``(logits, labels)`` of the test split.
    """

    model: nn.Module
    fit: FitResult
    validation: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


def train_text_classifier(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    dataset: DatasetDict,
    accelerator: Accelerator,
    config: TextClassificationConfig,
) -> TrainOutcome:
    """Tokenize, build dataloaders, loss, optimizer and schedule; train with :func:`fit`; predict.

    Args:
        model: Classifier with its transfer strategy applied (frozen parameters set).
        tokenizer: Its tokenizer.
        dataset: ``train``/``validation``/``test`` splits with ``text`` and ``label``.
        accelerator: The run's Accelerator.
        config: Hyper-parameters (``learning_rate``, ``num_train_epochs``, batch sizes,
            ``class_weights``, ``sampling``, ``decision_threshold``...).

    Returns:
        A :class:`TrainOutcome` with validation and test predictions of the final model.

    Raises:
        ValueError: Bad ``--class_weights``.
    """
    label_names = dataset["train"].features["label"].names
    weights = class_weights_from_spec(
        config.class_weights, list(dataset["train"]["label"]), label_names
    )
    if weights is not None:
        logger.info(
            f"Class weights: {dict(zip(label_names, [round(w, 4) for w in weights.tolist()], strict=True))}"
        )
    with accelerator.main_process_first():
        tokenized = tokenize_dataset(dataset, tokenizer, config.max_seq_length)
    mixed = accelerator.mixed_precision != "no"
    loaders = build_dataloaders(
        tokenized,
        tokenizer,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        pad_to_multiple_of=8 if mixed else None,
        group_by_length=config.group_by_length,
        sampling=config.sampling,
        seed=config.seed,
        num_workers=config.dataloader_num_workers,
    )
    optimizer, regularizer = build_optimizer(model, config)
    scheduler = create_scheduler(
        optimizer,
        num_batches_per_epoch=len(loaders["train"]),
        num_train_epochs=config.num_train_epochs,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_ratio=config.warmup_ratio,
        lr_scheduler_type=config.lr_scheduler_type,
    )
    model, optimizer, scheduler, train_dl, val_dl, test_dl = accelerator.prepare(
        model, optimizer, scheduler, loaders["train"], loaders["validation"], loaders["test"]
    )
    threshold = config.decision_threshold if len(label_names) == 2 else None

    def compute_metrics(labels, logits):
        return classification_metrics(labels, logits, label_names, threshold)

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
        loss_fn=cross_entropy_loss(weights),
        regularizer=regularizer,
        logging_steps=config.logging_steps,
    )
    validation = predict_logits(model, val_dl, accelerator, desc="Validation")
    test = predict_logits(model, test_dl, accelerator, desc="Test")
    return TrainOutcome(model=model, fit=result, validation=validation, test=test)


def build_optimizer(
    model: nn.Module, config: TextClassificationConfig
) -> tuple[torch.optim.Optimizer, L2SPRegularizer | None]:
    """AdamW with the run's learning-rate strategy, and the L2-SP penalty when asked for.

    Plain AdamW over trainable parameters unless ``--layer_lr_decay``, ``--head_learning_rate``
    or ``--l2sp_alpha`` ask for per-block groups (which need a supported block layout).
    Logs the learning rate of every block.
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
    return torch.optim.AdamW(groups, lr=config.learning_rate, foreach=True), regularizer


def choose_decision_threshold(
    config: TextClassificationConfig, validation: tuple[np.ndarray, np.ndarray], num_labels: int
) -> tuple[float | None, dict | None]:
    """The binary decision threshold: ``--decision_threshold``, or tuned on validation.

    Returns:
        ``(threshold, tuning)``: threshold None for multi-class tasks; ``tuning`` holds the
        validation F1 of the positive class at the tuned threshold, or None.
    """
    if num_labels != 2:
        return None, None
    if not config.tune_decision_threshold:
        return config.decision_threshold, None
    logits, labels = validation
    threshold, f1 = select_threshold(labels, probabilities(logits)[:, 1])
    logger.info(
        f"Decision threshold tuned on validation: {threshold:.4f} (positive-class F1 {f1:.4f})"
    )
    return threshold, {"tuned_on": "validation", "validation_f1_positive": f1}


def run_text_classification(
    config: TextClassificationConfig,
    dataset: DatasetDict | None = None,
    task_name: str = "text classification",
) -> dict:
    """Fine-tune, evaluate and save a text classifier as ``config`` says; what every text recipe runs.

    Steps: Accelerator -> check ``output_dir`` -> data -> model -> transfer strategy (freezing)
    -> train with validation each epoch -> test -> TF-IDF baseline -> save -> print a summary.

    Args:
        config: The run's settings.
        dataset: Ready ``train``/``validation``/``test`` splits (e.g. from
            :func:`~nlp_transfer.data.load_text_classification_dataset` on a DataFrame); None
            loads what ``config`` names.
        task_name: Title of the printed summary.

    Returns:
        The metrics written to ``output_dir/metrics.json``.

    Raises:
        FileExistsError: ``output_dir`` is not empty and ``overwrite_output_dir`` is False.
        ValueError, FileNotFoundError, OSError: Bad data, model path or settings (the message
            names the flag to fix).
    """
    start = time.perf_counter()
    accelerator = build_accelerator(
        config.mixed_precision, config.gradient_accumulation_steps, config.use_cpu
    )
    check_output_dir(config.output_dir, config.overwrite_output_dir)
    set_seed(config.seed)
    if dataset is None:
        with accelerator.main_process_first():
            dataset = load_data(config)
    labels = dataset["train"].features["label"].names
    model, tokenizer = build_text_classifier(
        config.model_name_or_path, label_names=labels, trust_remote_code=config.trust_remote_code
    )
    freeze = freeze_encoder_layers(model, config.freeze_layers)
    logger.info(f"Transfer strategy: {freeze}")
    outcome = train_text_classifier(model, tokenizer, dataset, accelerator, config)
    threshold, tuning = choose_decision_threshold(config, outcome.validation, len(labels))
    test_logits, test_labels = outcome.test
    test_metrics = classification_metrics(test_labels, test_logits, labels, threshold)
    test_metrics["loss"] = cross_entropy(test_logits, test_labels)
    unwrapped = accelerator.unwrap_model(outcome.model)
    if threshold is not None:  # travels with the model (config.json); prediction uses it
        unwrapped.config.decision_threshold = threshold
    baseline = None
    if config.run_baseline and accelerator.is_main_process:
        baseline = tfidf_logreg_baseline(
            dataset, seed=config.seed, tune_decision_threshold=config.tune_decision_threshold
        )
    metrics = run_metrics(
        outcome.fit,
        test_metrics,
        freeze,
        baseline,
        model_name=config.model_name_or_path or DEFAULT_MODEL_NAME,
        output_dir=config.output_dir,
        metric_for_best_model=config.metric_for_best_model,
        accelerator=accelerator,
        start_time=start,
    )
    metrics["decision_threshold"] = threshold
    metrics["threshold_tuning"] = tuning
    model_path = resolve_model_path(config.model_name_or_path)[0]
    save_run(
        config.output_dir,
        accelerator,
        outcome.model,
        metrics,
        config,
        tokenizer,
        resolved_model_path=model_path,
    )
    if accelerator.is_main_process:
        write_report_plots(
            config.output_dir,
            test_labels,
            test_logits,
            labels,
            history=outcome.fit.history,
            metric=config.metric_for_best_model,
            threshold=threshold,
        )
    accelerator.print(format_summary(metrics, task_name))
    accelerator.end_training()
    return metrics
