"""Image classification end to end: the steps of every image run, and the Python API.

    from nlp_transfer.vision import ImageClassificationConfig, run_image_classification

    metrics = run_image_classification(ImageClassificationConfig(
        train_dir="photos/", weights="IMAGENET1K_V1", freeze_layers=3,
        output_dir="outputs/photos"))

The same shared pieces as text: the block view and transfer strategies, the one training loop
(:class:`~nlp_transfer.training.trainer.Trainer`), checkpoints, metrics, report plots,
outputs and model cards.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed

from ..data.memory import GB, memory_budget_bytes
from ..metrics.classification import classification_metrics, cross_entropy
from ..reporting.outputs import format_summary, run_metrics, save_run, write_report
from ..reporting.plots import plot_reliability_diagram
from ..training.calibration import calibrate_outcome
from ..training.callbacks import TrainerCallback
from ..training.run import TrainOutcome, start_run, train_and_predict
from ..transfer.adapters import save_adapter_outputs
from ..transfer.cache import remove_disk_cache
from ..transfer.plan import TransferPlan, plan_transfer
from .config import ImageClassificationConfig
from .data import ImageData, load_image_data
from .features import metrics_fn, train_image_feature_head
from .models import ImageModelConfig, ResNetClassifier
from .prefix import CachedPrefixResNet, cache_prefix_splits
from .transforms import ImageCollator, channel_stats, image_dataloaders
from .weights import InitialWeights, apply_initial_weights, load_initial_weights

logger = logging.getLogger(__name__)


def build_model(
    config: ImageClassificationConfig, weights: InitialWeights, data: ImageData
) -> ResNetClassifier:
    """The classifier for ``data``'s classes: architecture, input size, normalisation, weights.

    The input size is ``--image_size``, else the weights' (torchvision preset or saved model),
    else the data's own; the normalisation is the weights' (preset or saved model) or, from
    scratch, the training images' channel statistics.
    """
    saved = weights.config
    image_size = (
        config.image_size
        or weights.image_size
        or (saved.image_size if saved else None)
        or data.native_size
    )
    if weights.mean is not None:
        mean, std = weights.mean, weights.std
    elif saved is not None:
        mean, std = saved.mean, saved.std
    else:
        mean, std = channel_stats(data.splits["train"], num_workers=config.dataloader_num_workers)
    model_config = ImageModelConfig(
        architecture=config.architecture,
        label_names=list(data.label_names),
        image_size=image_size,
        mean=list(mean),
        std=list(std),
        stem_maxpool=config.resolved_stem_maxpool(
            image_size, saved.stem_maxpool if saved else None
        ),
        resize_size=_resize_size(image_size, weights),
        weights=weights.spec,
    )
    model = ResNetClassifier(model_config)
    loaded = apply_initial_weights(model, weights)
    origin = f"{len(loaded)} tensors from {weights.spec}, new fc" if loaded else "from scratch"
    logger.info(
        f"Model: {config.architecture} ({origin}) for {model_config.num_labels} classes, "
        f"{image_size}x{image_size} input, stem max-pool {model_config.stem_maxpool}"
    )
    return model


def _resize_size(image_size: int, weights: InitialWeights) -> int | None:
    """Shorter side before the centre crop: the preset's ratio (256/224) at ``image_size``."""
    saved = weights.config
    crop = weights.image_size or (saved.image_size if saved else None)
    resize = weights.resize_size or (saved.resize_size if saved else None)
    return round(image_size * resize / crop) if crop and resize else None


def _folder_sizes(
    config: ImageClassificationConfig, weights: InitialWeights
) -> tuple[int | None, int | None]:
    """``(image_size, resize_size)`` for decoding folder images (None: the defaults)."""
    saved = weights.config
    size = config.image_size or weights.image_size or (saved.image_size if saved else None)
    return size, _resize_size(size, weights) if size else None


def train_image_classifier(
    model: ResNetClassifier,
    data: ImageData,
    accelerator: Accelerator,
    config: ImageClassificationConfig,
    plan: TransferPlan,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainOutcome:
    """Fine-tune ``model`` (its plan applied) with the Trainer; cache the frozen prefix.

    The cache is kept in memory when it fits in the ``--image_cache_memory_gb`` budget left by
    the decoded images held in memory, else memory-mapped on disk and removed afterwards
    (:func:`~nlp_transfer.vision.prefix.cache_prefix_splits`).

    Args:
        callbacks: Trainer callbacks added to the defaults (e.g. a search's pruning).

    Returns:
        A :class:`~nlp_transfer.training.run.TrainOutcome` with the test predictions.
    """
    mc = model.config
    collator = ImageCollator(mc.image_size, mc.mean, mc.std)
    cached, cache_dir = None, None
    if config.augment and config.freeze_layers and config.cache_frozen_prefix != "no":
        logger.info("Frozen-prefix caching is off: --augment changes each image every epoch")
    if plan.cache_prefix:
        model.to(accelerator.device)
        # one budget for the run's data: the decoded images in memory first, then the cache
        budget = memory_budget_bytes(config.image_cache_memory_gb) - data.memory_bytes
        splits, cache_dir = cache_prefix_splits(
            model, data.splits, collator, accelerator, config, budget_bytes=max(budget, 0)
        )
        collators = dict.fromkeys(splits)
        cached = CachedPrefixResNet(model, config.freeze_layers + 1)
    else:
        splits = data.splits
        train_collator = ImageCollator(mc.image_size, mc.mean, mc.std, augment=config.augment)
        collators = {"train": train_collator, "validation": collator, "test": collator}
    loaders = image_dataloaders(
        splits,
        collators,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        seed=config.seed,
        num_workers=config.dataloader_num_workers,
    )
    try:
        return train_and_predict(
            model,
            config,
            loaders,
            accelerator=accelerator,
            compute_metrics=metrics_fn(data.label_names),
            loss_fn=F.cross_entropy,
            plan=plan,
            callbacks=callbacks,
            prefix_cache=cached,
            predict_validation=config.calibration != "none",  # calibration fits on it
        )
    finally:
        if cache_dir is not None:
            remove_disk_cache(cache_dir)


def model_display_name(config: ImageClassificationConfig) -> str:
    """E.g. ``resnet18 (from scratch)``, ``resnet18 (IMAGENET1K_V1)``, ``resnet18 (from runs/src)``."""
    if config.weights.strip().lower() in ("", "none"):
        return f"{config.architecture} (from scratch)"
    if Path(config.weights).expanduser().exists():
        return f"{config.architecture} (from {config.weights})"
    return f"{config.architecture} ({config.weights})"


def run_image_classification(
    config: ImageClassificationConfig,
    data: ImageData | None = None,
    task_name: str = "image classification",
    callbacks: Sequence[TrainerCallback] = (),
) -> dict:
    """Train, evaluate and save an image classifier as ``config`` says.

    Steps: Accelerator -> check ``output_dir`` -> weights -> data -> model -> transfer strategy
    -> train with validation each epoch -> test -> save (model, metrics, config, plots, model
    card) -> print a summary.

    Args:
        config: The run's settings.
        data: Ready splits (e.g. a subset made in Python); None loads what ``config`` names.
        task_name: Title of the printed summary.
        callbacks: Trainer callbacks added to the defaults (e.g. a search's pruning).

    Returns:
        The metrics written to ``output_dir/metrics.json``.

    Raises:
        FileExistsError: ``output_dir`` is not empty and ``overwrite_output_dir`` is False.
        ValueError, FileNotFoundError, OSError: Bad data, weights or settings (the message
            names the flag or file to fix).
    """
    start = time.perf_counter()
    accelerator = start_run(config, task_name)
    weights = load_initial_weights(config.architecture, config.weights)
    set_seed(config.seed)
    if config.image_cache_memory_gb is None:  # one budget for the images and the prefix cache
        budget = max(round(memory_budget_bytes() / GB, 3), 0.001)
        config = dataclasses.replace(config, image_cache_memory_gb=budget)  # in config.yaml
    if data is None:
        with accelerator.main_process_first():
            data = load_image_data(config, *_folder_sizes(config, weights))
    model = build_model(config, weights, data)
    # config.yaml and the model card record the input size in use
    config = dataclasses.replace(config, image_size=model.config.image_size)
    plan = plan_transfer(model, config, cacheable=not config.augment, details=_plan_details(config))
    if plan.feature_extraction != "none":
        outcome = train_image_feature_head(model, data, accelerator, config, plan)
    else:
        outcome = train_image_classifier(model, data, accelerator, config, plan, callbacks)
    return finish_image_run(config, accelerator, outcome, plan, data, start, task_name)


def _plan_details(config: ImageClassificationConfig) -> dict:
    """The image task's entries of the strategy description (``metrics.json``, model card)."""
    if config.feature_extraction != "none":
        return {"weights": config.weights}
    return {"weights": config.weights, "augment": config.augment}


def finish_image_run(
    config: ImageClassificationConfig,
    accelerator: Accelerator,
    outcome: TrainOutcome,
    plan: TransferPlan,
    data: ImageData,
    start: float,
    task_name: str,
) -> dict:
    """Test metrics, ``metrics.json``, the saved model, plots, model card and printed summary."""
    labels = list(data.label_names)
    calibration, uncalibrated_test = None, outcome.test
    if config.calibration != "none" and plan.feature_extraction == "none":
        unwrapped = accelerator.unwrap_model(outcome.model)
        outcome, calibration = calibrate_outcome(outcome, unwrapped, len(labels))
        unwrapped.config.calibration = {
            k: calibration[k] for k in ("method", "temperature", "fitted_on")
        }
        logger.info(
            f"Calibration: temperature {calibration['temperature']:.4f} fitted on validation; "
            "folded into fc"
        )
    test_logits, test_labels = outcome.test
    test_metrics = classification_metrics(test_labels, test_logits, labels)
    test_metrics["loss"] = cross_entropy(test_logits, test_labels)
    metrics = run_metrics(
        outcome.fit,
        test_metrics,
        plan.freeze,
        None,
        model_name=model_display_name(config),
        output_dir=config.output_dir,
        metric_for_best_model=config.metric_for_best_model,
        accelerator=accelerator,
        start_time=start,
    )
    metrics["transfer_strategy"] = plan.describe()
    metrics["data"] = {
        "description": data.description,
        **{f"{s}_examples": len(d) for s, d in data.splits.items()},
    }
    if calibration is not None:
        metrics["calibration"] = calibration
    saved = save_adapter_outputs(plan, accelerator, outcome.model, config.output_dir)  # --peft
    save_run(config.output_dir, accelerator, saved, metrics, config)
    if accelerator.is_main_process:
        write_report(config, outcome, metrics, labels, modality="image")
        if calibration is not None:
            plot_reliability_diagram(
                uncalibrated_test,
                outcome.test,
                Path(config.output_dir) / "plots" / "reliability.png",
            )
    accelerator.print(format_summary(metrics, task_name))
    accelerator.end_training()
    return metrics
