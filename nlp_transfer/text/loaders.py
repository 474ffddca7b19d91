"""Text data for a run: the splits, class weights, metrics, and tokenized DataLoaders (with the
frozen-prefix cache when the transfer plan caches it)."""

from __future__ import annotations

import dataclasses

import torch
from accelerate import Accelerator, PartialState
from accelerate.logging import get_logger
from datasets import ClassLabel, DatasetDict
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..data.columns import numpy_column
from ..data.pipeline import load_problem_dataset, reading_options
from ..data.read import DataSource
from ..metrics.classification import classification_metrics
from ..training.imbalance import class_weights_from_spec
from ..transfer.cache import CachingCollator
from .config import TextClassificationConfig
from .prefix import build_prefix_caches
from .problem import best_model_metric, label_names_of, problem_type_of
from .tokenize import build_dataloaders, tokenize_dataset

logger = get_logger(__name__)


def load_data(
    config: TextClassificationConfig, source: DataSource | DatasetDict | None = None
) -> DatasetDict:
    """Load the run's data: ``source`` if given, else ``--dataset_name`` or ``--train_file``.

    Whatever the source, the config's data settings apply: ``--text_column``/``--label_column``,
    ``--validation_file``/``--test_file`` (or ``--validation_size``/``--test_size`` splits),
    ``--empty_texts``, and ``--max_train_samples``/``--max_eval_samples`` after splitting, so
    the splits stay the same whatever the caps.

    Args:
        config: The run's settings.
        source: In-memory data: a pandas ``DataFrame``, a ``datasets.Dataset``, or a
            ``DatasetDict`` (its ``train`` split, and its ``validation``/``test`` splits when it
            has them); or a file path. None: what ``config`` names.

    Raises:
        ValueError, FileNotFoundError: No data named, or see
            :func:`~nlp_transfer.data.load_text_classification_dataset`.
    """
    validation, test = config.validation_file, config.test_file
    if isinstance(source, DatasetDict):
        if "train" not in source:
            raise ValueError(f"The DatasetDict has no train split (its splits: {list(source)}).")
        validation = source.get("validation", validation)
        test = source.get("test", test)
        source = source["train"]
    if source is None and config.dataset_name is None and config.train_file is None:
        raise ValueError("Give the data: --dataset_name (built-in or Hub) or --train_file.")
    dataset = load_problem_dataset(
        source if source is not None else config.dataset_name or config.train_file,
        problem_type=config.problem_type,
        validation=validation,
        test=test,
        text_pair_column=config.text_pair_column,
        label_separator=config.label_separator,
        validation_size=config.validation_size,
        test_size=config.test_size,
        **reading_options(config),
    )
    caps = {"train": config.max_train_samples}
    caps |= {s: config.max_eval_samples for s in ("validation", "test")}
    for split, cap in caps.items():
        if cap is not None and cap < len(dataset[split]):
            dataset[split] = dataset[split].select(range(cap))
    sizes = ", ".join(f"{s} {len(d):,}" for s, d in dataset.items())
    logger.info(f"Data: {sizes}; labels {label_names_of(dataset)}")
    return dataset


def selection_metric(config: TextClassificationConfig) -> str:
    """The validation metric a run of ``config`` will select its epoch on: ``--metric_for_best_model``,
    except when left at the single-label default on multi-label or regression data, where the
    problem type's default applies (:func:`~nlp_transfer.text.problem.best_model_metric`: macro
    average precision; RMSE, minimised). Reads the data when ``--problem_type`` is unset and the
    metric is at its default (a search needs it before any run: the study's direction).
    """
    default = next(
        f.default for f in dataclasses.fields(config) if f.name == "metric_for_best_model"
    )
    if config.metric_for_best_model != default:
        return config.metric_for_best_model
    problem = config.problem_type
    if problem is None:
        PartialState()  # load_data logs through Accelerate, which needs its state
        problem = problem_type_of(load_data(config))
    return best_model_metric(config, problem)


def is_prepared(dataset: object) -> bool:
    """Whether ``dataset`` is ready splits to use as is (no column, split or cap to apply).

    True for a ``DatasetDict`` with ``train``, ``validation`` and ``test`` splits, each with a
    ``text`` column and a ``label`` column that is a ``ClassLabel``, a list of ``ClassLabel``
    ids (multi-label) or floats (regression), as :func:`load_data` and
    :func:`~nlp_transfer.data.load_text_classification_dataset` return; anything else (a
    DataFrame, a Dataset, other columns or splits) goes through :func:`load_data`.
    """
    if not isinstance(dataset, DatasetDict) or set(dataset) != {"train", "validation", "test"}:
        return False

    def ready(label) -> bool:
        if isinstance(label, ClassLabel) or isinstance(getattr(label, "feature", None), ClassLabel):
            return True
        return getattr(label, "dtype", None) in ("float32", "float64")

    return all(
        "text" in split.column_names and ready(split.features.get("label"))
        for split in dataset.values()
    )


def class_weights(dataset: DatasetDict, config: TextClassificationConfig) -> torch.Tensor | None:
    """``--class_weights`` as a ``(num_labels,)`` tensor (None for ``none``); logged.

    Raises:
        ValueError: A bad ``--class_weights`` value.
    """
    label_names = dataset["train"].features["label"].names
    weights = class_weights_from_spec(
        config.class_weights, numpy_column(dataset["train"], "label"), label_names
    )
    if weights is not None:
        shown = [round(w, 4) for w in weights.tolist()]
        logger.info(f"Class weights: {dict(zip(label_names, shown, strict=True))}")
    return weights


def metrics_fn(label_names: list[str], config: TextClassificationConfig):
    """``(labels, logits) -> metrics`` for the loop, at ``--decision_threshold`` for binary tasks."""
    threshold = config.decision_threshold if len(label_names) == 2 else None

    def compute_metrics(labels, logits):
        return classification_metrics(labels, logits, label_names, threshold)

    return compute_metrics


def text_dataloaders(
    dataset: DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    accelerator: Accelerator,
    config: TextClassificationConfig,
    cache_model: nn.Module | None = None,
    **overrides,
) -> dict:
    """Tokenize every split and build its DataLoader (length-grouped training batches).

    Args:
        dataset: ``train``/``validation``/``test`` splits with ``text`` and ``label``.
        tokenizer: The model's tokenizer.
        accelerator: The run's Accelerator.
        config: Batch sizes, ``group_by_length``, ``sampling``, ``max_seq_length``...
        cache_model: When the transfer plan caches the frozen prefix: the model whose lower
            ``--freeze_layers`` layers are cached once (in memory, or memory-mapped on disk
            above ``--prefix_cache_memory_gb``); batches then carry their cached output.
        **overrides: Settings of :func:`~nlp_transfer.text.tokenize.build_dataloaders`.

    Returns:
        ``{split: DataLoader}`` (unprepared).
    """
    with accelerator.main_process_first():
        tokenized = tokenize_dataset(
            dataset,
            tokenizer,
            config.max_seq_length,
            config.preprocessing_num_workers,
            config.long_text_settings(),
        )
    wrap = None
    if cache_model is not None:
        tokenized, caches = build_prefix_caches(
            cache_model,
            tokenizer,
            tokenized,
            accelerator,
            config,
            memory_budget_gb=config.prefix_cache_memory_gb,
        )

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
