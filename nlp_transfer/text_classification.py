"""Text classification end to end: the steps every text recipe runs, and the Python API.

from nlp_transfer import TextClassificationConfig, run_text_classification

config = TextClassificationConfig(train_file="reviews.csv", text_column="review",
                                  label_column="stars", output_dir="outputs/reviews")
metrics = run_text_classification(config)
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from datasets import DatasetDict
from torch import nn
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from .baselines import tfidf_logreg_baseline
from .config import TextClassificationConfig
from .data import load_text_classification_dataset
from .data.fetch import default_cache_dir
from .data.samplers import ClassBalancedSampler, EpochShuffleSampler
from .data.tokenize import build_dataloaders, tokenize_dataset
from .hub import check_push_to_hub, push_to_hub
from .metrics import classification_metrics, cross_entropy, probabilities, select_threshold
from .model_card import write_model_card
from .models.blocks import get_block_view
from .models.text import DEFAULT_MODEL_NAME, build_text_classifier, resolve_model_path
from .plots import write_report_plots
from .training.imbalance import class_weights_from_spec, cross_entropy_loss
from .training.loop import (
    FitResult,
    create_optimizer,
    create_scheduler,
    fit,
    predict_logits,
)
from .training.outputs import format_summary, run_metrics, save_run
from .training.run import TrainOutcome, start_run, train_and_predict
from .transfer.cache import (
    CACHE_DTYPES,
    CachedPrefixModel,
    CachingCollator,
    PrefixCache,
    add_cache_index,
    cache_key,
    choose_storage,
    compute_prefix_cache,
    load_disk_cache,
)
from .transfer.features import (
    FeatureDataset,
    FeatureExtractionClassifier,
    FeatureHead,
    default_sklearn_head,
    encoder_of,
    extract_features,
    sklearn_logits,
)
from .transfer.freeze import FreezeReport, freeze_encoder_layers

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
        encoding=config.file_encoding,
        empty_texts=config.empty_texts,
    )
    caps = {"train": config.max_train_samples}
    caps |= {s: config.max_eval_samples for s in ("validation", "test")}
    for split, cap in caps.items():
        if cap is not None and cap < len(dataset[split]):
            dataset[split] = dataset[split].select(range(cap))
    sizes = ", ".join(f"{s} {len(d):,}" for s, d in dataset.items())
    logger.info(f"Data: {sizes}; labels {dataset['train'].features['label'].names}")
    return dataset


def _class_weights(dataset: DatasetDict, config: TextClassificationConfig) -> torch.Tensor | None:
    label_names = dataset["train"].features["label"].names
    weights = class_weights_from_spec(
        config.class_weights, list(dataset["train"]["label"]), label_names
    )
    if weights is not None:
        shown = [round(w, 4) for w in weights.tolist()]
        logger.info(f"Class weights: {dict(zip(label_names, shown, strict=True))}")
    return weights


def _metrics_fn(label_names: list[str], config: TextClassificationConfig):
    threshold = config.decision_threshold if len(label_names) == 2 else None

    def compute_metrics(labels, logits):
        return classification_metrics(labels, logits, label_names, threshold)

    return compute_metrics


def use_prefix_cache(config: TextClassificationConfig) -> bool:
    """Whether this run caches its frozen prefix (``--cache_frozen_prefix`` with k >= 1)."""
    return (
        config.cache_frozen_prefix != "no"
        and config.freeze_layers >= 1
        and config.feature_extraction == "none"
    )


def build_prefix_caches(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    tokenized: DatasetDict,
    accelerator: Accelerator,
    config: TextClassificationConfig,
) -> tuple[DatasetDict, dict[str, PrefixCache]]:
    """Compute (or reuse from disk) the frozen-prefix cache of every split.

    Returns:
        The splits with a ``cache_index`` column, and ``{split: PrefixCache}``.
    """
    k = config.freeze_layers
    dtype = CACHE_DTYPES[config.cache_dtype]
    collator = DataCollatorWithPadding(tokenizer)
    tokens = sum(sum(len(ids) for ids in ds["input_ids"]) for ds in tokenized.values())
    estimate = tokens * model.config.hidden_size * torch.finfo(dtype).bits // 8
    storage = choose_storage(config.cache_frozen_prefix, estimate, accelerator.num_processes)
    if storage == "disk" and dtype == torch.bfloat16:
        dtype = torch.float16
    start = time.perf_counter()
    caches, reused = {}, []
    for split, ds in tokenized.items():
        path = None
        if storage == "disk":
            key = cache_key(model, k, tokenizer, config.max_seq_length, ds, dtype)
            path = default_cache_dir(config.cache_dir) / "prefix_cache" / f"{split}-{key}"
        with accelerator.main_process_first():
            cache = load_disk_cache(path) if path is not None else None
            if cache is None:
                cache = compute_prefix_cache(
                    model,
                    k,
                    ds,
                    collator,
                    batch_size=config.per_device_eval_batch_size,
                    dtype=dtype,
                    device=accelerator.device,
                    path=path,
                    desc=f"Caching frozen layers ({split})",
                    disable_progress=not accelerator.is_local_main_process,
                )
            else:
                reused.append(split)
        caches[split] = cache
    size = sum(c.nbytes for c in caches.values()) / 2**20
    counts = " + ".join(f"{len(c):,}" for c in caches.values())
    where = (
        f"memory-mapped in {default_cache_dir(config.cache_dir) / 'prefix_cache'}"
        if storage == "disk"
        else "in memory"
    )
    logger.info(
        f"Frozen-prefix cache: embeddings + layer_0..layer_{k - 1} computed once for {counts} "
        f"examples ({size:.0f} MiB {str(dtype).removeprefix('torch.')}, {where}"
        + (f"; reused for {', '.join(reused)}" if reused else "")
        + f") in {time.perf_counter() - start:.1f} s; training runs only the layers above"
    )
    indexed = DatasetDict({split: add_cache_index(ds) for split, ds in tokenized.items()})
    return indexed, caches


def _dataloaders(
    dataset: DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    accelerator: Accelerator,
    config: TextClassificationConfig,
    model: nn.Module | None = None,
    **overrides,
) -> dict:
    with accelerator.main_process_first():
        tokenized = tokenize_dataset(dataset, tokenizer, config.max_seq_length)
    wrap = None
    if model is not None and use_prefix_cache(config):
        tokenized, caches = build_prefix_caches(model, tokenizer, tokenized, accelerator, config)

        def wrap(split, collator):
            return CachingCollator(collator, caches[split])

    mixed = accelerator.mixed_precision != "no"
    settings = dict(
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        pad_to_multiple_of=8 if mixed else None,
        group_by_length=config.group_by_length,
        sampling=config.sampling,
        seed=config.seed,
        num_workers=config.dataloader_num_workers,
        wrap_collator=wrap,
    )
    return build_dataloaders(tokenized, tokenizer, **(settings | overrides))


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
    weights = _class_weights(dataset, config)
    loaders = _dataloaders(dataset, tokenizer, accelerator, config, model=model)
    cached = None
    if use_prefix_cache(config):  # from here on the frozen prefix does no work
        cached = CachedPrefixModel(model, config.freeze_layers)
    return train_and_predict(
        model,
        loaders,
        accelerator,
        config,
        compute_metrics=_metrics_fn(label_names, config),
        loss_fn=cross_entropy_loss(weights),
        cached=cached,
        # only threshold tuning needs the final model's validation predictions
        predict_validation=config.tune_decision_threshold and len(label_names) == 2,
    )


FEATURE_HEAD_LEARNING_RATE = 1e-3


def train_feature_extractor(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    dataset: DatasetDict,
    accelerator: Accelerator,
    config: TextClassificationConfig,
    estimator: object | None = None,
) -> tuple[TrainOutcome, FreezeReport]:
    """Feature extraction: pooled features of the frozen encoder, computed once; a head on them.

    The encoder runs once per example (eval mode, no gradients, batches sorted by length); then
    a torch head (``--feature_extraction linear|mlp``, trained by :func:`fit` for
    ``num_train_epochs`` at ``head_learning_rate``, default 1e-3) or a scikit-learn estimator
    (``logistic_regression``, or ``estimator``) is fitted on the training features.
    ``train_runtime_s`` counts the training split's feature extraction plus the head's fit.

    Args:
        model: A sequence-classification model; only its encoder (``model.base_model``) is used.
        tokenizer: Its tokenizer.
        dataset: ``train``/``validation``/``test`` splits with ``text`` and ``label``.
        accelerator: The run's Accelerator.
        config: ``feature_extraction``, ``pooling``, ``head_learning_rate``, ``class_weights``,
            ``sampling``...
        estimator: An unfitted scikit-learn classifier with ``predict_proba``; overrides
            ``config.feature_extraction``.

    Returns:
        ``(outcome, report)``; ``outcome.model`` is a
        :class:`~nlp_transfer.transfer.features.FeatureExtractionClassifier`.

    Raises:
        TypeError: The estimator has no ``predict_proba``.
        ValueError: ``--class_weights`` with an estimator whose ``fit`` takes no
            ``sample_weight``.
    """
    label_names = dataset["train"].features["label"].names
    weights = _class_weights(dataset, config)
    encoder = encoder_of(model)
    encoder.requires_grad_(False)
    encoder.to(accelerator.device)
    with accelerator.main_process_first():
        tokenized = tokenize_dataset(dataset, tokenizer, config.max_seq_length)
    mixed = accelerator.mixed_precision != "no"
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if mixed else None)
    features, extract_s = {}, {}
    for split, ds in tokenized.items():
        start = time.perf_counter()
        order = np.argsort([len(ids) for ids in ds["input_ids"]], kind="stable")
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
        extract_s[split] = time.perf_counter() - start
    logger.info(
        f"Features ({config.pooling} pooling, {features['train'][0].shape[1]} dims) computed once: "
        + ", ".join(f"{s} {t:.0f}s" for s, t in extract_s.items())
    )
    x_train, y_train = features["train"]
    if estimator is not None or config.feature_extraction == "logistic_regression":
        estimator = estimator if estimator is not None else default_sklearn_head(config.seed)
        fit_kwargs = {}
        if weights is not None:
            if "sample_weight" not in inspect.signature(estimator.fit).parameters:
                raise ValueError(
                    f"--class_weights needs an estimator whose fit takes sample_weight; "
                    f"{type(estimator).__name__}'s does not."
                )
            fit_kwargs["sample_weight"] = weights.numpy()[y_train]
        if config.sampling != "none":
            logger.warning("--sampling does not apply to a scikit-learn head; use --class_weights.")
        start = time.perf_counter()
        estimator.fit(x_train, y_train, **fit_kwargs)
        head_s = time.perf_counter() - start
        logger.info(f"Fitted {estimator!r} on {len(y_train):,} feature vectors in {head_s:.1f}s")
        runtime = extract_s["train"] + head_s
        result = FitResult(
            train_runtime_s=runtime, train_samples_per_second=len(y_train) / max(runtime, 1e-9)
        )
        validation, test = (
            (sklearn_logits(estimator, features[s][0]), features[s][1])
            for s in ("validation", "test")
        )
        head: object = estimator
        trainable = sum(
            np.asarray(getattr(estimator, a)).size
            for a in ("coef_", "intercept_")
            if hasattr(estimator, a)
        )
    else:
        head = FeatureHead(x_train.shape[1], len(label_names), config.feature_extraction)
        sampler = (
            ClassBalancedSampler(y_train, config.sampling, seed=config.seed)
            if config.sampling != "none"
            else EpochShuffleSampler(len(y_train), seed=config.seed)
        )
        loaders = [
            DataLoader(
                FeatureDataset(*features[split]),
                batch_size=config.per_device_train_batch_size
                if split == "train"
                else config.per_device_eval_batch_size,
                sampler=sampler if split == "train" else None,
                generator=torch.Generator().manual_seed(config.seed),
            )
            for split in ("train", "validation", "test")
        ]
        learning_rate = config.head_learning_rate or FEATURE_HEAD_LEARNING_RATE
        logger.info(
            f"Training a {head.kind} head on the features at learning rate {learning_rate:g}"
        )
        optimizer = create_optimizer(head, learning_rate, config.weight_decay)
        scheduler = create_scheduler(
            optimizer,
            num_batches_per_epoch=len(loaders[0]),
            num_train_epochs=config.num_train_epochs,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            warmup_ratio=config.warmup_ratio,
            lr_scheduler_type=config.lr_scheduler_type,
        )
        head, optimizer, scheduler, train_dl, val_dl, test_dl = accelerator.prepare(
            head, optimizer, scheduler, *loaders
        )
        result = fit(
            head,
            optimizer,
            scheduler,
            train_dl,
            val_dl,
            accelerator,
            num_train_epochs=config.num_train_epochs,
            compute_metrics=_metrics_fn(label_names, config),
            metric_for_best_model=config.metric_for_best_model,
            load_best_model_at_end=config.load_best_model_at_end,
            max_grad_norm=config.max_grad_norm,
            loss_fn=cross_entropy_loss(weights),
            logging_steps=config.logging_steps,
        )
        result.train_runtime_s += extract_s["train"]
        result.train_samples_per_second = (
            len(y_train) * config.num_train_epochs / max(result.train_runtime_s, 1e-9)
        )
        validation = predict_logits(head, val_dl, accelerator, desc="Validation")
        test = predict_logits(head, test_dl, accelerator, desc="Test")
        head = accelerator.unwrap_model(head)
        trainable = sum(p.numel() for p in head.parameters())
    classifier = FeatureExtractionClassifier(encoder, head, config.pooling)
    view = get_block_view(model)
    encoder_params = sum(p.numel() for p in encoder.parameters())
    report = FreezeReport(
        frozen_blocks=[b.name for b in view.blocks],
        trainable_blocks=["head"],
        trainable_params=int(trainable),
        total_params=int(encoder_params + trainable),
    )
    return TrainOutcome(model=classifier, fit=result, validation=validation, test=test), report


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


def describe_strategy(config: TextClassificationConfig, estimator: object | None = None) -> dict:
    """The transfer strategy of a run, for ``metrics.json`` and model cards."""
    if config.feature_extraction != "none" or estimator is not None:
        head = type(estimator).__name__ if estimator is not None else config.feature_extraction
        return {"name": "feature_extraction", "head": head, "pooling": config.pooling}
    strategy: dict = {"name": "fine_tuning", "freeze_layers": config.freeze_layers}
    if config.gradual_unfreezing:
        strategy["gradual_unfreezing"] = {"unfreeze_every_n_steps": config.unfreeze_every_n_steps}
    if config.layer_lr_decay != 1.0:
        strategy["layer_lr_decay"] = config.layer_lr_decay
    if config.head_learning_rate:
        strategy["head_learning_rate"] = config.head_learning_rate
    if config.l2sp_alpha:
        strategy["l2sp"] = {"alpha": config.l2sp_alpha, "beta": config.l2sp_beta}
    if config.init_from:
        strategy["init_from"] = config.init_from
    return strategy


def run_text_classification(
    config: TextClassificationConfig,
    dataset: DatasetDict | None = None,
    task_name: str = "text classification",
    estimator: object | None = None,
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
        estimator: Feature extraction with this unfitted scikit-learn classifier (it needs
            ``predict_proba``) as the head, e.g. ``SVC(probability=True)``; saved with skops.

    Returns:
        The metrics written to ``output_dir/metrics.json``.

    Raises:
        FileExistsError: ``output_dir`` is not empty and ``overwrite_output_dir`` is False.
        ValueError, FileNotFoundError, OSError: Bad data, model path or settings (the message
            names the flag to fix).
    """
    start = time.perf_counter()
    accelerator = start_run(config, task_name)
    if config.push_to_hub:
        check_push_to_hub()
    set_seed(config.seed)
    if dataset is None:
        with accelerator.main_process_first():
            dataset = load_data(config)
    labels = dataset["train"].features["label"].names
    model, tokenizer = build_text_classifier(
        config.init_from or config.model_name_or_path,
        label_names=labels,
        trust_remote_code=config.trust_remote_code,
        new_head=config.init_from is not None,
    )
    if config.init_from:
        logger.info(f"Weight transfer: encoder initialised from {config.init_from}, new head")
    if config.feature_extraction != "none" or estimator is not None:
        outcome, freeze = train_feature_extractor(
            model, tokenizer, dataset, accelerator, config, estimator
        )
        logger.info(f"Transfer strategy: feature extraction | {freeze}")
    else:
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
    metrics["transfer_strategy"] = describe_strategy(config, estimator)
    model_path = config.init_from or resolve_model_path(config.model_name_or_path)[0]
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
        write_model_card(config.output_dir, metrics, config, labels)
        if config.push_to_hub:
            repo_id = config.hub_model_id or Path(config.output_dir).name
            logger.info(f"Pushed to the Hub: {push_to_hub(config.output_dir, repo_id)}")
    accelerator.print(format_summary(metrics, task_name))
    accelerator.end_training()
    return metrics
