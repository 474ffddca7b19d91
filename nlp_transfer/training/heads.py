"""Feature extraction's second half, shared by every task: fit a head on features computed once.

A task computes one feature vector per example with its frozen network (text: pooled encoder
output; images: pooled ``layer4`` output), then calls :func:`fit_sklearn_head` (any
scikit-learn classifier with ``predict_proba``; the default is logistic regression) or
:func:`train_torch_head` (a ``linear``/``mlp``
:class:`~nlp_transfer.transfer.features.FeatureHead`, trained by the shared loop).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import time
from typing import Any

import numpy as np
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader

from ..transfer.features import sklearn_logits
from .evaluation import MetricsFn
from .run import TrainOutcome, train_and_predict
from .trainer import FitResult, LossFn

logger = logging.getLogger(__name__)

FEATURE_HEAD_LEARNING_RATE = 1e-3

# ``{split: (features (n, dim), labels (n,))}``
Features = dict[str, tuple[np.ndarray, np.ndarray]]


def fit_sklearn_head(
    estimator: Any,
    features: Features,
    *,
    class_weights: np.ndarray | None = None,
    extract_s: float = 0.0,
) -> TrainOutcome:
    """Fit a scikit-learn classifier on the training features; logits of validation and test.

    Args:
        estimator: An unfitted classifier with ``fit`` and ``predict_proba``.
        features: ``{"train", "validation", "test"}`` feature arrays ``(n, dim)`` and labels.
        class_weights: ``(num_labels,)`` weights, passed as ``sample_weight`` to ``fit``.
        extract_s: Seconds spent computing the training features (counted in
            ``train_runtime_s``), seconds.

    Returns:
        A :class:`~nlp_transfer.training.run.TrainOutcome` whose ``model`` is the fitted
        estimator and whose logits are log-probabilities ``(n, num_labels)``.

    Raises:
        TypeError: The estimator has no ``predict_proba``.
        ValueError: ``class_weights`` with an estimator whose ``fit`` takes no ``sample_weight``
            (names ``--class_weights``).
    """
    if not hasattr(estimator, "predict_proba"):
        raise TypeError(
            f"{type(estimator).__name__} has no predict_proba; feature extraction needs class "
            "probabilities. Wrap it in sklearn.calibration.CalibratedClassifierCV."
        )
    x_train, y_train = features["train"]
    fit_kwargs = {}
    if class_weights is not None:
        if "sample_weight" not in inspect.signature(estimator.fit).parameters:
            raise ValueError(
                f"--class_weights needs an estimator whose fit takes sample_weight; "
                f"{type(estimator).__name__}'s does not."
            )
        fit_kwargs["sample_weight"] = np.asarray(class_weights)[y_train]
    start = time.perf_counter()
    estimator.fit(x_train, y_train, **fit_kwargs)
    head_s = time.perf_counter() - start
    logger.info(f"Fitted {estimator!r} on {len(y_train):,} feature vectors in {head_s:.1f}s")
    runtime = extract_s + head_s
    result = FitResult(
        train_runtime_s=runtime, train_samples_per_second=len(y_train) / max(runtime, 1e-9)
    )
    validation, test = (
        (sklearn_logits(estimator, features[s][0]), features[s][1]) for s in ("validation", "test")
    )
    return TrainOutcome(model=estimator, fit=result, validation=validation, test=test)


def train_torch_head(
    head: nn.Module,
    loaders: dict[str, DataLoader],
    accelerator: Accelerator,
    config,
    *,
    compute_metrics: MetricsFn,
    loss_fn: LossFn,
    extract_s: float = 0.0,
    num_train_examples: int | None = None,
) -> TrainOutcome:
    """Train a head on feature batches with the shared loop, at the head's learning rate.

    The head trains for ``num_train_epochs`` at ``--head_learning_rate`` (default
    :data:`FEATURE_HEAD_LEARNING_RATE`, 1e-3: a head alone wants a far larger rate than
    fine-tuning), without checkpoints (it trains in seconds on features computed once).

    Args:
        head: The head, e.g. a :class:`~nlp_transfer.transfer.features.FeatureHead`.
        loaders: Unprepared ``train``/``validation``/``test`` DataLoaders of ``features``/
            ``labels`` batches.
        accelerator: The run's Accelerator.
        config: The run's arguments (optimisation and best-epoch settings).
        compute_metrics: ``(labels, logits) -> dict``.
        loss_fn: ``(logits, labels) -> loss``.
        extract_s: Seconds spent computing the training features, added to the runtime.
        num_train_examples: Training examples (for samples per second); default the loader's.

    Returns:
        The :class:`~nlp_transfer.training.run.TrainOutcome` (``model`` is the prepared head;
        validation predictions included).
    """
    learning_rate = config.head_learning_rate or FEATURE_HEAD_LEARNING_RATE
    logger.info(f"Training a head on the features at learning rate {learning_rate:g}")
    head_config = dataclasses.replace(
        config, learning_rate=learning_rate, head_learning_rate=None, save_strategy="no"
    )
    outcome = train_and_predict(
        head,
        head_config,
        loaders,
        accelerator=accelerator,
        compute_metrics=compute_metrics,
        loss_fn=loss_fn,
        predict_validation=True,
    )
    n = num_train_examples or len(loaders["train"].dataset)
    outcome.fit.train_runtime_s += extract_s
    outcome.fit.train_samples_per_second = (
        n * config.num_train_epochs / max(outcome.fit.train_runtime_s, 1e-9)
    )
    return outcome
