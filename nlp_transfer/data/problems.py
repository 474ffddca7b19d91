"""A user's data for every problem type: multi-label lists, regression targets, sentence pairs.

:func:`load_problem_dataset` reads files, DataFrames or Datasets as
:func:`~nlp_transfer.data.custom.load_text_classification_dataset` does, and returns the same
``train``/``validation``/``test`` splits, with

- ``label`` as ``ClassLabel`` ids (``single_label_classification``), a list of ``ClassLabel``
  ids (``multi_label_classification``) or a float (``regression``),
- ``text_pair`` beside ``text`` when a second text column is named (``--text_pair_column``).

Single-label data without a pair column goes to the original loader unchanged (same splits,
same ids). Multi-label splits are made by iterative stratification (Sechidis, Tsoumakas and
Vlahavas 2011, "On the Stratification of Multi-Label Data"; the ``iterative-stratification``
package's ``MultilabelStratifiedShuffleSplit``), which keeps each label's share similar in
every split; regression splits are random (seeded).

Files are read once into Arrow (``datasets``' cache, memory-mapped); the labels are checked and
encoded column by column (:mod:`nlp_transfer.data.problem_labels`), and the splits select rows
by index: no split is turned into Python lists of its rows.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict

from .builtin import BUILTIN_DATASETS
from .columns import arrow_column, checked_dataset, multi_hot, numpy_column
from .custom import _to_table, load_text_classification_dataset
from .problem_labels import (
    MULTI_LABEL,
    PROBLEM_TYPES,
    REGRESSION,
    SINGLE_LABEL,
    encode_problem_splits,
    infer_problem_type,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MULTI_LABEL",
    "PROBLEM_TYPES",
    "REGRESSION",
    "SINGLE_LABEL",
    "infer_problem_type",
    "load_problem_dataset",
]

_FILE_SUFFIXES = {".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt"}


def _is_dataset_name(data) -> bool:
    """A built-in or Hub dataset name rather than a file path."""
    return (
        isinstance(data, str)
        and not Path(data).expanduser().exists()
        and Path(data).suffix.lower() not in _FILE_SUFFIXES
    )


def _read_splits(given: dict, columns: dict[str, str], encoding: str, cache_dir) -> dict:
    """``{split: Dataset}`` of the splits given, with only ``columns`` (``{column: flag}``)."""
    return {
        s: checked_dataset(_to_table(v, f"{s} data", encoding, cache_dir), s, columns)
        for s, v in given.items()
        if v is not None
    }


def _splits(
    dataset: Dataset,
    problem_type: str,
    validation_size: float,
    test_size: float,
    seed: int,
    need_validation: bool = True,
    need_test: bool = True,
) -> dict[str, Dataset]:
    """Split off validation and test: iterative stratification (multi-label), stratified
    (single-label) or at random (regression); the splits select rows by index."""
    n = len(dataset)
    for flag, value in (("test", test_size), ("validation", validation_size)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"--{flag}_size must be a fraction in (0, 1), got {value}.")
    if validation_size + test_size >= 1.0:
        raise ValueError("--validation_size + --test_size must leave rows for training.")
    y = _split_targets(dataset, problem_type)
    rest = np.arange(n)
    out = {}
    shares = {"test": test_size} if need_test else {}
    if need_validation:
        shares["validation"] = validation_size / (1 - (test_size if need_test else 0.0))
    for split, share in shares.items():
        keep, held = _one_split(y[rest] if y is not None else None, len(rest), share, seed)
        out[split] = rest[held]
        rest = rest[keep]
    if problem_type == MULTI_LABEL:
        rest, out = _keep_labels_in_train(y, rest, out)
    return {"train": dataset.select(rest)} | {s: dataset.select(i) for s, i in out.items()}


def _split_targets(dataset: Dataset, problem_type: str) -> np.ndarray | None:
    """What a split is stratified by: label ids ``(n,)``, a multi-hot matrix ``(n, C)``, or
    None (regression: at random)."""
    if problem_type == MULTI_LABEL:
        num = len(dataset.features["label"].feature.names)
        return multi_hot(arrow_column(dataset, "label"), num)
    if problem_type == SINGLE_LABEL:
        return numpy_column(dataset, "label")
    return None


def _keep_labels_in_train(y: np.ndarray, train: np.ndarray, held: dict) -> tuple:
    """Move one held-out row back to training for each label that training would lack (a
    label seen once or twice can otherwise land only in validation or test).

    Args:
        y: ``(n, C)`` multi-hot labels of every row.
        train: Training row numbers.
        held: ``{split: row numbers}``, visited in order, each split's rows in order.
    """
    seen = y[train].any(axis=0)
    for split in list(held):
        # only a row holding a label unseen now can move; later moves only shrink that set
        candidates = held[split][y[held[split]][:, ~seen].any(axis=1)]
        for row in candidates:
            if (y[row].astype(bool) & ~seen).any():
                seen |= y[row].astype(bool)
                train = np.sort(np.append(train, row))
                held[split] = held[split][held[split] != row]
    return train, held


def _one_split(y: np.ndarray | None, n: int, share: float, seed: int):
    """``(kept, held)`` positions ``0..n-1``, each sorted."""
    if y is not None and y.ndim == 2:
        from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=share, random_state=seed)
        return next(splitter.split(np.zeros(n), y))
    if y is not None:
        from sklearn.model_selection import train_test_split

        keep, held = train_test_split(np.arange(n), test_size=share, random_state=seed, stratify=y)
        return np.sort(keep), np.sort(held)
    order = np.random.default_rng(seed).permutation(n)
    held = max(1, round(n * share))
    return np.sort(order[held:]), np.sort(order[:held])


def _check_named_problem_type(name: str, problem_type: str | None) -> None:
    """A built-in knows its problem type (the ``*_scores`` sets are regression); Hub datasets
    load as single-label. Raise when ``--problem_type`` asks for another."""
    native = BUILTIN_DATASETS[name].problem_type if name in BUILTIN_DATASETS else SINGLE_LABEL
    if problem_type not in (None, native):
        kind = "the built-in" if name in BUILTIN_DATASETS else "a Hub dataset, loaded as"
        raise ValueError(
            f"--dataset_name {name!r} is {kind} {native} data, not {problem_type}: drop "
            f"--problem_type, or give {problem_type} data as files (--train_file)."
        )


def load_problem_dataset(
    data,
    *,
    problem_type: str | None = None,
    validation=None,
    test=None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    label_separator: str | None = None,
    validation_size: float = 0.1,
    test_size: float = 0.1,
    seed: int = 42,
    encoding: str = "utf-8",
    empty_texts: str = "drop",
    **single_label_kwargs,
) -> DatasetDict:
    """Load labelled text of any problem type into ``train``/``validation``/``test``.

    Args:
        data: Training data: a file, DataFrame or Dataset, or a built-in (of its own problem
            type, e.g. regression for the ``*_scores`` sets) or Hub (single-label) dataset name.
        problem_type: ``single_label_classification``, ``multi_label_classification``,
            ``regression``, or None to infer it from the training labels.
        validation: Optional validation data; split off ``data`` when None.
        test: Optional test data; split off ``data`` when None.
        text_column: Column holding the (first) text.
        text_pair_column: Column holding the second text of a pair, or None.
        label_column: Column holding the label(s) or the regression target.
        label_separator: Splits multi-label strings (``"sports,politics"`` with ``","``).
        validation_size: Fraction of all rows split off for validation when not given.
        test_size: Fraction of all rows split off for test when not given.
        seed: Seed of the splits.
        encoding: Text encoding of CSV/TSV/JSON files.
        empty_texts: ``drop`` or ``error`` on rows with a missing or empty text.
        **single_label_kwargs: Passed on to the original loader (e.g. ``cache_dir``).

    Returns:
        Splits with ``text`` (+ ``text_pair``) and ``label`` (see the module docstring).

    Raises:
        ValueError: A missing column (the message names the flag), an unknown label outside
            training, a regression target that is not a finite number, too few labels.
    """
    common = dict(text_column=text_column, label_column=label_column, seed=seed)
    common |= dict(validation_size=validation_size, test_size=test_size, empty_texts=empty_texts)
    common |= dict(validation=validation, test=test, encoding=encoding)
    if _is_dataset_name(data) and text_pair_column is None:
        _check_named_problem_type(data, problem_type)
        return load_text_classification_dataset(data, **common, **single_label_kwargs)
    pair = {text_pair_column: "--text_pair_column"} if text_pair_column is not None else {}
    columns = {text_column: "--text_column"} | pair | {label_column: "--label_column"}
    given = {"train": data, "validation": validation, "test": test}
    tables = _read_splits(given, columns, encoding, single_label_kwargs.get("cache_dir"))
    problem_type = infer_problem_type(tables["train"], label_column, problem_type, label_separator)
    if problem_type == SINGLE_LABEL and text_pair_column is None:
        common |= {"validation": tables.get("validation"), "test": tables.get("test")}
        return load_text_classification_dataset(tables["train"], **common, **single_label_kwargs)
    texts = {"text": (text_column, "--text_column")}
    if text_pair_column is not None:
        texts["text_pair"] = (text_pair_column, "--text_pair_column")
    built = encode_problem_splits(
        tables, problem_type, texts, label_column, label_separator, empty_texts
    )
    parts = _splits(
        built["train"],
        problem_type,
        validation_size,
        test_size,
        seed,
        need_validation="validation" not in built,
        need_test="test" not in built,
    )
    return DatasetDict(
        {
            s: built[s] if s in built and s != "train" else parts[s]
            for s in ("train", "validation", "test")
        }
    )
