"""Domain data: a labelled source, an unlabelled target, and batches that hold both.

A training batch of a domain-adaptation method is *joint*: ``per_device_train_batch_size``
labelled source examples (``input_ids``, ``attention_mask``, ``labels``...) and as many
unlabelled target texts under the same names prefixed ``target_``. The target part never
carries labels: they are removed from the target split before it is paired
(:func:`unlabelled`).

Under several processes every process builds the same :class:`PairedDomainSampler` (its order
is a function of the seed and the epoch only); Accelerate's batch sharding then gives each
process whole batches of (source, target) pairs, so the processes see disjoint pairs, and the
1-process and N-process runs walk the same sequence of pairs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from torch.utils.data import DataLoader, Sampler

from ..data.labels import check_labels, check_texts, empty_text_rows, label_key
from ..data.pipeline import load_text_classification_dataset, reading_options
from ..data.read import read_table
from ..data.samplers import EpochShuffleSampler, LengthGroupedSampler
from .model import TARGET_PREFIX


class PairedDomainSampler(Sampler[tuple[int, int]]):
    """Yields ``(source index, target index)`` pairs: every source example once per epoch.

    The source order comes from ``source`` (e.g. a :class:`LengthGroupedSampler`); the target
    indices come from successive passes of ``target`` (reshuffled each pass), as many as
    needed to give every source example a partner. When the target set is the smaller one
    its texts are reused, each once per pass; when it is the larger one, each epoch uses a new
    slice of it. Both orders are functions of the epoch (and the samplers' seeds) only.

    Args:
        source: Sampler over the source examples, with ``set_epoch``.
        target: Sampler over the target texts, with ``set_epoch``.
    """

    def __init__(self, source: Sampler[int], target: Sampler[int]) -> None:
        self.source = source
        self.target = target
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch (the pairs are a function of it)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch += 1
        self.source.set_epoch(epoch)
        source = list(self.source)
        passes = math.ceil(len(source) / max(len(self.target), 1))
        target: list[int] = []
        for p in range(passes):
            self.target.set_epoch(epoch * passes + p)
            target += list(self.target)
        return iter(zip(source, target[: len(source)], strict=True))


class PairedDomainDataset(torch.utils.data.Dataset):
    """Item ``(i, j)`` is ``{"source": source[i], "target": target[j]}``; length ``len(source)``."""

    def __init__(self, source: Dataset, target: Dataset) -> None:
        self.source = source
        self.target = target

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, pair: tuple[int, int]) -> dict:
        i, j = pair
        return {"source": self.source[int(i)], "target": self.target[int(j)]}


class PairedDomainCollator:
    """Pads the source and the target part of a joint batch, each with its own collator.

    The target part's tensors are named ``target_<name>``; a ``labels`` entry in it is an error
    (target labels must never reach training).
    """

    def __init__(self, source: Callable[[list[dict]], dict], target: Callable[[list[dict]], dict]):
        self.source = source
        self.target = target

    def __call__(self, features: list[dict]) -> dict:
        batch = dict(self.source([f["source"] for f in features]))
        target = self.target([f["target"] for f in features])
        if "labels" in target:
            raise ValueError("Target batches must not carry labels; drop them (unlabelled()).")
        return batch | {TARGET_PREFIX + k: v for k, v in target.items()}


def unlabelled(dataset: Dataset) -> Dataset:
    """The split without its label column (``labels`` or ``label``), if it has one."""
    return dataset.remove_columns([c for c in ("labels", "label") if c in dataset.column_names])


def training_sampler(
    dataset: Dataset, batch_size: int, seed: int, group_by_length: bool
) -> Sampler[int]:
    """The training order of a tokenized split: length-grouped batches or a plain shuffle,
    either a function of ``seed`` and the epoch."""
    if group_by_length:
        return LengthGroupedSampler([len(x) for x in dataset["input_ids"]], batch_size, seed=seed)
    return EpochShuffleSampler(len(dataset), seed=seed)


def paired_dataloader(
    source: Dataset,
    target: Dataset,
    source_collator: Callable[[list[dict]], dict],
    target_collator: Callable[[list[dict]], dict],
    *,
    batch_size: int,
    seed: int,
    group_by_length: bool = True,
    num_workers: int = 0,
) -> DataLoader:
    """The training DataLoader of an adaptation method: joint source + target batches.

    Args:
        source: Tokenized labelled source split (``input_ids``..., ``labels``).
        target: Tokenized target split; its labels, if any, are dropped here.
        source_collator: Pads source examples (e.g. ``DataCollatorWithPadding``, or a
            :class:`~nlp_transfer.transfer.cache.CachingCollator`).
        target_collator: The same for target texts.
        batch_size: Source examples per batch (and as many target texts), per process.
        seed: Seed of both orders (the target's is offset, so the two differ).
        group_by_length: Similar lengths within each part of a batch (less padding).
        num_workers: DataLoader worker processes.

    Returns:
        A DataLoader of dicts: the source batch plus ``target_input_ids``,
        ``target_attention_mask`` (and ``target_prefix_hidden``...) of shape
        ``(batch, target_seq_len[, hidden])``.
    """
    target = unlabelled(target)
    sampler = PairedDomainSampler(
        training_sampler(source, batch_size, seed, group_by_length),
        training_sampler(target, batch_size, seed + 10_007, group_by_length),
    )
    return DataLoader(
        PairedDomainDataset(source, target),
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=PairedDomainCollator(source_collator, target_collator),
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )


@dataclass
class DomainSplits:
    """The data of a run, raw text.

    Attributes:
        source: Labelled ``train``/``validation``/``test`` of the source domain.
        target_train: Target training texts; labelled only for built-in domains (the labels
            serve the oracle alone).
        target_validation: Labelled target validation split (oracle's model selection), or None.
        target_test: Labelled target test split: the result.
        source_name: How reports name the source domain.
        target_name: How reports name the target domain.
    """

    source: DatasetDict
    target_train: Dataset
    target_validation: Dataset | None
    target_test: Dataset
    source_name: str = "source"
    target_name: str = "target"

    @property
    def label_names(self) -> list[str]:
        return list(self.source["train"].features["label"].names)

    @property
    def target_has_labels(self) -> bool:
        return "label" in self.target_train.column_names and self.target_validation is not None


def load_unlabelled_texts(
    path: str | os.PathLike, text_column: str = "text", encoding: str = "utf-8", empty_texts="drop"
) -> Dataset:
    """A ``text``-only Dataset from a file's ``text_column`` (other columns are ignored).

    Raises:
        FileNotFoundError, ValueError: As :func:`~nlp_transfer.data.read_table`; the column is
            missing (the message names ``--text_column``); texts are not strings.
    """
    table = read_table(path, encoding)
    if text_column not in table.column_names:
        raise ValueError(
            f"{path} has no column {text_column!r} (its columns: {', '.join(table.column_names)}); "
            "pass --text_column."
        )
    texts = list(table[text_column])
    empty = set(empty_text_rows(texts, "target training", text_column, empty_texts))
    texts = check_texts([t for i, t in enumerate(texts) if i not in empty], "target", text_column)
    return Dataset.from_dict({"text": texts}, features=Features({"text": Value("string")}))


def load_labelled_file(
    path: str | os.PathLike,
    label_names: list[str],
    text_column: str = "text",
    label_column: str = "label",
    encoding: str = "utf-8",
    empty_texts: str = "drop",
) -> Dataset:
    """A labelled file whose labels must be among ``label_names`` (the source's).

    Labels may be the names (``negative``/``positive``) or the ids (0, 1).

    Raises:
        ValueError: A column is missing, a label is missing or not one of ``label_names``.
    """
    table = read_table(path, encoding)
    for column, flag in ((text_column, "--text_column"), (label_column, "--label_column")):
        if column not in table.column_names:
            raise ValueError(
                f"{path} has no column {column!r} (its columns: "
                f"{', '.join(table.column_names)}); pass {flag}."
            )
    texts, labels = list(table[text_column]), list(table[label_column])
    empty = set(empty_text_rows(texts, "target test", text_column, empty_texts))
    texts = check_texts([t for i, t in enumerate(texts) if i not in empty], "target", text_column)
    labels = check_labels(
        [y for i, y in enumerate(labels) if i not in empty],
        "target test",
        label_column,
        table.features.get(label_column),
    )
    keys = [label_key(y, table.features.get(label_column)) for y in labels]
    by_id = {str(i): i for i in range(len(label_names))}
    index = {name: i for i, name in enumerate(label_names)} | by_id
    unknown = sorted(set(keys) - set(index))
    if unknown:
        raise ValueError(
            f"{path}: label(s) {', '.join(map(repr, unknown[:5]))} in column {label_column!r} are "
            f"not labels of the source domain ({', '.join(label_names)}) nor their ids."
        )
    features = Features({"text": Value("string"), "label": ClassLabel(names=label_names)})
    return Dataset.from_dict({"text": texts, "label": [index[k] for k in keys]}, features=features)


def _cap(dataset: Dataset, cap: int | None) -> Dataset:
    return dataset.select(range(cap)) if cap is not None and cap < len(dataset) else dataset


def load_domains(config) -> DomainSplits:
    """Load the source and target data a :class:`DomainAdaptationConfig` names.

    Raises:
        ValueError: The target's label names differ from the source's, or see the loaders.
    """
    source = load_text_classification_dataset(
        config.source_file or config.source_dataset,
        validation_size=config.source_validation_size,
        test_size=config.source_validation_size,
        **reading_options(config),
    )
    source["train"] = _cap(source["train"], config.max_source_samples)
    names = list(source["train"].features["label"].names)
    if config.target_train_file is not None:
        train = load_unlabelled_texts(
            config.target_train_file, config.text_column, config.file_encoding, config.empty_texts
        )
        test = load_labelled_file(
            config.target_test_file,
            names,
            config.text_column,
            config.label_column,
            config.file_encoding,
            config.empty_texts,
        )
        return check_target(
            DomainSplits(
                source,
                _cap(train, config.max_target_samples),
                None,
                test,
                source_name=config.source_file or config.source_dataset,
                target_name=config.target_train_file,
            )
        )
    target = load_text_classification_dataset(
        config.target_domain,
        validation_size=config.target_validation_size,
        test_size=config.target_test_size,
        seed=config.seed,
        cache_dir=config.cache_dir,
    )
    return check_target(
        DomainSplits(
            source,
            _cap(target["train"], config.max_target_samples),
            target["validation"],
            target["test"],
            source_name=config.source_file or config.source_dataset,
            target_name=config.target_domain,
        )
    )


def check_target(splits: DomainSplits) -> DomainSplits:
    """Check that the target's labels are the source's.

    Raises:
        ValueError: They differ.
    """
    for name, ds in (("target test", splits.target_test), ("target training", splits.target_train)):
        feature = ds.features.get("label")
        if feature is not None and list(feature.names) != splits.label_names:
            raise ValueError(
                f"The {name} labels {feature.names} differ from the source's "
                f"{splits.label_names}; the adapted classifier predicts the source's labels."
            )
    return splits
