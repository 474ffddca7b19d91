"""Feature extraction for text: pooled encoder features computed once, then a head fitted on them.

The encoder runs once per example (eval mode, no gradients, batches sorted by length); the
head is fitted by the shared :mod:`nlp_transfer.training.heads`. The saved model is a
:class:`~nlp_transfer.transfer.features.FeatureExtractionClassifier` (encoder + head).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from datasets import DatasetDict
from torch import nn
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from ..data.columns import sequence_lengths
from ..data.samplers import ClassBalancedSampler, EpochShuffleSampler
from ..training.heads import Features, fit_sklearn_head, train_torch_head
from ..training.imbalance import cross_entropy_loss
from ..training.run import TrainOutcome
from ..transfer.features import (
    FeatureDataset,
    FeatureExtractionClassifier,
    FeatureHead,
    default_sklearn_head,
    encoder_of,
    extract_features,
    linear_from_logistic_regression,
)
from ..transfer.plan import TransferPlan
from .config import TextClassificationConfig
from .loaders import class_weights, metrics_fn
from .tokenize import tokenize_dataset

logger = get_logger(__name__)


def encode_splits(
    encoder: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    dataset: DatasetDict,
    accelerator: Accelerator,
    config: TextClassificationConfig,
) -> tuple[Features, dict[str, float]]:
    """Pooled features ``(n, hidden)`` of every split, in dataset order, computed once.

    Returns:
        ``({split: (features, labels)}, {split: seconds})``.
    """
    with accelerator.main_process_first():
        tokenized = tokenize_dataset(
            dataset,
            tokenizer,
            config.max_seq_length,
            config.preprocessing_num_workers,
            config.long_text_settings(),
        )
    mixed = accelerator.mixed_precision != "no"
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if mixed else None)
    features, seconds = {}, {}
    for split, ds in tokenized.items():
        start = time.perf_counter()
        order = np.argsort(sequence_lengths(ds), kind="stable")
        loader = accelerator.prepare(
            DataLoader(
                ds.select(order),
                batch_size=config.per_device_eval_batch_size,
                collate_fn=collator,
                num_workers=config.dataloader_num_workers,
                generator=torch.Generator().manual_seed(config.seed),
            )
        )
        x, y = extract_features(encoder, loader, accelerator, config.pooling, f"Features ({split})")
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        features[split] = (x[inverse], y[inverse])
        seconds[split] = time.perf_counter() - start
    logger.info(
        f"Features ({config.pooling} pooling, {features['train'][0].shape[1]} dims) computed once: "
        + ", ".join(f"{s} {t:.0f}s" for s, t in seconds.items())
    )
    return features, seconds


def feature_loaders(features: Features, config: TextClassificationConfig) -> dict[str, DataLoader]:
    """DataLoaders of feature vectors; training batches shuffled (or class-balanced, ``--sampling``)."""
    y_train = features["train"][1]
    sampler = (
        ClassBalancedSampler(y_train, config.sampling, seed=config.seed)
        if config.sampling != "none"
        else EpochShuffleSampler(len(y_train), seed=config.seed)
    )
    return {
        split: DataLoader(
            FeatureDataset(*features[split]),
            batch_size=config.per_device_train_batch_size
            if split == "train"
            else config.per_device_eval_batch_size,
            sampler=sampler if split == "train" else None,
            generator=torch.Generator().manual_seed(config.seed),
        )
        for split in ("train", "validation", "test")
    }


def train_feature_extractor(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    dataset: DatasetDict,
    accelerator: Accelerator,
    config: TextClassificationConfig,
    plan: TransferPlan,
    estimator: object | None = None,
) -> TrainOutcome:
    """Feature extraction: pooled features of the frozen encoder, computed once; a head on them.

    A torch head (``--feature_extraction linear|mlp``, trained for ``num_train_epochs`` at
    ``head_learning_rate``, default 1e-3) or a scikit-learn estimator (``logistic_regression``,
    or ``estimator``) is fitted on the training features. ``train_runtime_s`` counts the
    training split's feature extraction plus the head's fit. Updates ``plan.freeze`` with the
    head's parameter count.

    Args:
        model: A sequence-classification model; only its encoder (``model.base_model``) is used.
        tokenizer: Its tokenizer.
        dataset: ``train``/``validation``/``test`` splits with ``text`` and ``label``.
        accelerator: The run's Accelerator.
        config: ``feature_extraction``, ``pooling``, ``head_learning_rate``, ``class_weights``,
            ``sampling``...
        plan: The run's transfer plan (feature extraction).
        estimator: An unfitted scikit-learn classifier with ``predict_proba``; overrides
            ``config.feature_extraction``.

    Returns:
        The outcome; its ``model`` is a
        :class:`~nlp_transfer.transfer.features.FeatureExtractionClassifier`.

    Raises:
        TypeError: The estimator has no ``predict_proba``.
        ValueError: ``--class_weights`` with an estimator whose ``fit`` takes no
            ``sample_weight``.
    """
    label_names = dataset["train"].features["label"].names
    weights = class_weights(dataset, config)
    encoder = encoder_of(model)
    encoder.requires_grad_(False)
    encoder.to(accelerator.device)
    features, seconds = encode_splits(encoder, tokenizer, dataset, accelerator, config)
    if estimator is not None or config.feature_extraction == "logistic_regression":
        if config.sampling != "none":
            logger.warning("--sampling does not apply to a scikit-learn head; use --class_weights.")
        default_head = estimator is None
        estimator = estimator if estimator is not None else default_sklearn_head(config.seed)
        outcome = fit_sklearn_head(
            estimator,
            features,
            class_weights=weights.numpy() if weights is not None else None,
            extract_s=seconds["train"],
        )
        head: object = estimator
        trainable = sum(np.size(getattr(estimator, a, [])) for a in ("coef_", "intercept_"))
        if default_head and len(estimator.classes_) == len(label_names):
            head = linear_head_of(estimator, len(label_names), features, outcome)
        outcome.fit.best_metric = fitted_head_metric(outcome, label_names, config)
    else:
        x_train = features["train"][0]
        head = FeatureHead(x_train.shape[1], len(label_names), config.feature_extraction)
        outcome = train_torch_head(
            head,
            feature_loaders(features, config),
            accelerator,
            config,
            compute_metrics=metrics_fn(label_names, config),
            loss_fn=cross_entropy_loss(weights),
            extract_s=seconds["train"],
        )
        head = accelerator.unwrap_model(outcome.model)
        trainable = sum(p.numel() for p in head.parameters())
    plan.freeze.trainable_params = int(trainable)
    plan.freeze.total_params = sum(p.numel() for p in encoder.parameters()) + int(trainable)
    outcome.model = FeatureExtractionClassifier(encoder, head, config.pooling)
    return outcome


def linear_head_of(estimator, num_labels: int, features: Features, outcome: TrainOutcome):
    """The default logistic-regression head as its equal linear :class:`FeatureHead` (saved as
    ``head.safetensors``: exportable to ONNX and int8), with ``outcome``'s validation and test
    logits recomputed through it (the model as saved)."""
    head = FeatureHead(features["train"][0].shape[1], num_labels, "linear")
    head.net = linear_from_logistic_regression(estimator, num_labels)
    with torch.no_grad():
        for split in ("validation", "test"):
            x, y = features[split]
            logits = head(torch.as_tensor(x, dtype=torch.float32)).numpy()
            setattr(outcome, split, (logits, y))
    return head


def fitted_head_metric(outcome: TrainOutcome, label_names: list[str], config) -> float | None:
    """A fitted scikit-learn head's validation ``--metric_for_best_model`` (one fit, no epochs:
    ``metrics.json``'s ``best_metric``, what the strategy race compares); None when the split
    or the metric is missing."""
    if outcome.validation is None:
        return None
    logits, labels = outcome.validation
    metrics = metrics_fn(label_names, config)(labels, logits)
    value = metrics.get(config.metric_for_best_model.removeprefix("eval_"))
    return None if value is None else float(value)
