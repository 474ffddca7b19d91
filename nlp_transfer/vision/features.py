"""Feature extraction for ResNets: pooled ``layer4`` features computed once, a head fitted on them.

The head becomes the model's ``fc`` (a fitted logistic regression is turned into the equivalent
linear layer), so the saved model is a plain
:class:`~nlp_transfer.vision.models.ResNetClassifier` that predicts and exports like any other.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from accelerate import Accelerator

from ..metrics.classification import classification_metrics
from ..training.heads import fit_sklearn_head, train_torch_head
from ..training.run import TrainOutcome
from ..transfer.features import (
    FeatureDataset,
    FeatureHead,
    default_sklearn_head,
    linear_from_logistic_regression,
)
from ..transfer.freeze import count_parameters
from ..transfer.plan import TransferPlan
from .config import ImageClassificationConfig
from .data import ImageData
from .models import ResNetClassifier
from .prefix import compute_block_outputs, plain_loader
from .transforms import ImageCollator, image_dataloaders


def metrics_fn(label_names: list[str]):
    """``(labels, logits) -> classification_metrics(...)`` for the loop."""

    def compute_metrics(labels, logits):
        return classification_metrics(labels, logits, label_names)

    return compute_metrics


def _sklearn_head(model, features, accelerator, config, extract_s: float) -> TrainOutcome:
    """Fit ``LogisticRegression`` on the training features and make it the model's ``fc``."""
    arrays = {s: (x.numpy(), y.numpy()) for s, (x, y) in features.items()}
    outcome = fit_sklearn_head(default_sklearn_head(config.seed), arrays, extract_s=extract_s)
    model.fc = linear_from_logistic_regression(outcome.model, model.config.num_labels)
    model.fc.to(accelerator.device)
    with torch.no_grad():  # the test logits of the model as saved (its fc)
        logits = model.fc(features["test"][0].to(accelerator.device)).float().cpu().numpy()
    outcome.model, outcome.validation = model, None
    outcome.test = (logits, arrays["test"][1])
    return outcome


def _torch_head(model, features, accelerator, config, label_names, extract_s) -> TrainOutcome:
    """Train a ``linear``/``mlp`` :class:`FeatureHead` with the shared loop; it becomes ``fc``."""
    x_train = features["train"][0]
    head = FeatureHead(x_train.shape[1], model.config.num_labels, config.feature_extraction)
    loaders = image_dataloaders(
        {s: FeatureDataset(x.numpy(), y.numpy()) for s, (x, y) in features.items()},
        dict.fromkeys(features),
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        seed=config.seed,
    )
    outcome = train_torch_head(
        head,
        loaders,
        accelerator,
        config,
        compute_metrics=metrics_fn(label_names),
        loss_fn=F.cross_entropy,
        extract_s=extract_s,
    )
    head = accelerator.unwrap_model(outcome.model)
    model.fc = head.net if head.kind == "linear" else head
    model.config.head = head.kind
    outcome.model = model
    return outcome


def train_image_feature_head(
    model: ResNetClassifier,
    data: ImageData,
    accelerator: Accelerator,
    config: ImageClassificationConfig,
    plan: TransferPlan,
) -> TrainOutcome:
    """Feature extraction: features of every split computed once, then a head fitted on them.

    ``--feature_extraction linear|mlp`` trains a torch head for ``num_train_epochs`` at
    ``--head_learning_rate`` (default 1e-3); ``logistic_regression`` fits scikit-learn's.
    ``train_runtime_s`` counts the training split's features and the head's fit.

    Updates ``plan.freeze`` with the head's parameter count.

    Returns:
        The outcome; ``outcome.model`` is the whole classifier, its new ``fc`` in place.
    """
    mc = model.config
    collator = ImageCollator(mc.image_size, mc.mean, mc.std)
    model.to(accelerator.device)
    features, extract_s = {}, {}
    for split, dataset in data.splits.items():
        start = time.perf_counter()
        features[split] = compute_block_outputs(
            model,
            plain_loader(dataset, collator, config),
            accelerator,
            num_blocks=5,
            pooled=True,
            dtype=torch.float32,
            desc=f"Features ({split})",
        )
        extract_s[split] = time.perf_counter() - start
    if config.feature_extraction == "logistic_regression":
        outcome = _sklearn_head(model, features, accelerator, config, extract_s["train"])
    else:
        labels = list(data.label_names)
        outcome = _torch_head(model, features, accelerator, config, labels, extract_s["train"])
    plan.freeze.trainable_params = sum(p.numel() for p in model.fc.parameters())
    plan.freeze.total_params = count_parameters(model)[1]
    return outcome
