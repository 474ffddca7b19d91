"""A user's labelled text as ``train``/``validation``/``test`` splits, in one pipeline:

1. **read** (:mod:`.read`): files into ``datasets``' Arrow cache (memory-mapped), DataFrames,
   Datasets, Hub datasets;
2. **check** (:mod:`.checks`): the named columns are there, texts are strings (empty ones
   dropped, or an error), labels present, of one type, known to training;
3. **encode labels** (:mod:`.encode`): the problem type (inferred from the training labels
   unless given), then ``ClassLabel`` ids, lists of them (multi-label) or float targets;
4. **split** (:mod:`.splits`): validation and test split off training where not given.

Tokenizing is the text task's (:mod:`nlp_transfer.text.tokenize`). Built-in datasets
(:mod:`.builtin`) come checked, encoded and split the same way. Problems are reported by what
the user can fix: the file, the column and the flag. No split is ever turned into Python lists of
its rows, so a file of millions of rows stays memory-mapped.

Every split has ``text`` (and ``text_pair`` for sentence pairs) and ``label``; for single-label
data ``dataset["train"].features["label"].names`` is the model's ``id2label``.
"""

from __future__ import annotations

import os

import numpy as np
from datasets import Dataset, DatasetDict

from .builtin import BUILTIN_DATASETS, load_builtin_dataset
from .checks import checked_dataset, kept_rows
from .encode import (
    PROBLEM_TYPES,
    SINGLE_LABEL,
    encode_labels,
    infer_problem_type,
    label_separator_for,
)
from .read import DataSource, read_splits
from .splits import split_missing

__all__ = [
    "EMPTY_TEXT_CHOICES",
    "PROBLEM_TYPES",
    "load_problem_dataset",
    "load_text_classification_dataset",
    "read_labelled_splits",
    "reading_options",
]

EMPTY_TEXT_CHOICES = ("drop", "error")


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
    cache_dir: str | os.PathLike | None = None,
) -> DatasetDict:
    """Load labelled text of any problem type into ``train``/``validation``/``test``: the
    pipeline of this module, read -> check -> encode labels -> split.

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
        cache_dir: Cache directory for built-in and Hub downloads, and for ``datasets``' Arrow
            cache of data files (None: ``datasets``' default for those).

    Returns:
        Splits with ``text`` (+ ``text_pair``) and ``label`` (see the module docstring).

    Raises:
        FileNotFoundError: A data file does not exist.
        ValueError: A missing column (the message names the flag), an empty split, a text that
            is not a string (or empty, under ``empty_texts="error"``), a label missing, of
            mixed types, unknown outside training, not a finite number (regression), too few
            labels, or a source that cannot be read or decoded.
    """
    check_empty_texts_choice(empty_texts)
    if isinstance(data, str) and data in BUILTIN_DATASETS and validation is None and test is None:
        # a built-in comes checked, encoded and split the same way (data/builtin.py)
        if text_pair_column is not None:
            raise ValueError(
                f"--dataset_name {data!r} has no second text: drop --text_pair_column."
            )
        _check_builtin_problem_type(data, problem_type)
        sizes = dict(validation_size=validation_size, test_size=test_size, seed=seed)
        return load_builtin_dataset(data, cache_dir=cache_dir, **sizes)
    encoded, _, problem_type = read_labelled_splits(
        data,
        problem_type=problem_type,
        validation=validation,
        test=test,
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        label_separator=label_separator,
        encoding=encoding,
        empty_texts=empty_texts,
        cache_dir=cache_dir,
    )
    # 4. split off what was not given
    sizes = dict(validation_size=validation_size, test_size=test_size, seed=seed)
    return split_missing(encoded, problem_type, **sizes)


def read_labelled_splits(
    data,
    *,
    problem_type: str | None = None,
    validation=None,
    test=None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    label_separator: str | None = None,
    encoding: str = "utf-8",
    empty_texts: str = "drop",
    cache_dir: str | os.PathLike | None = None,
) -> tuple[dict[str, Dataset], dict[str, np.ndarray], str]:
    """Steps 1 to 3 of the pipeline (read, check, encode labels) on the splits as given, none
    split off: what ``nlp-transfer audit`` reads, every row of the user's file kept in order.

    Args:
        data: Training data: a file, DataFrame, Dataset or Hub dataset name (not a built-in).
        The rest: as :func:`load_problem_dataset`.

    Returns:
        ``({split: Dataset with text (+ text_pair) and label}, {split: (n_read,) bool, the
        rows kept}, problem_type)``; ``np.flatnonzero(keep)`` maps a kept row to its row in
        the source (0-based, the header not counted).

    Raises:
        As :func:`load_problem_dataset`.
    """
    check_empty_texts_choice(empty_texts)
    # 1. read
    tables = read_splits(data, validation, test, cache_dir, encoding)
    # 2. check: the named columns, then the texts (empty ones dropped or an error)
    texts, names = {text_column: "--text_column"}, {text_column: "text"}
    if text_pair_column is not None:
        texts[text_pair_column], names[text_pair_column] = "--text_pair_column", "text_pair"
    columns = texts | {label_column: "--label_column"}
    tables = {s: checked_dataset(t, s, columns) for s, t in tables.items()}
    keeps = {s: kept_rows(t, texts, s, empty_texts) for s, t in tables.items()}
    # 3. encode the labels (the problem type from the training labels unless given)
    problem_type = infer_problem_type(tables["train"], label_column, problem_type, label_separator)
    label_separator = label_separator_for(
        tables["train"], label_column, problem_type, label_separator
    )
    encoded = encode_labels(tables, keeps, problem_type, names, label_column, label_separator)
    return encoded, keeps, problem_type


def load_text_classification_dataset(
    data: DataSource,
    *,
    validation: DataSource | None = None,
    test: DataSource | None = None,
    text_column: str = "text",
    label_column: str = "label",
    validation_size: float = 0.1,
    test_size: float = 0.1,
    seed: int = 42,
    cache_dir: str | os.PathLike | None = None,
    encoding: str = "utf-8",
    empty_texts: str = "drop",
) -> DatasetDict:
    """Load single-label text from any supported source into train/validation/test splits
    (:func:`load_problem_dataset` for single-label data).

    ``data`` may be a built-in dataset name (see ``list_builtin_datasets()``), a local file
    (``.csv``, ``.tsv``, ``.jsonl``/``.json``, ``.parquet``), a pandas ``DataFrame``, a
    ``datasets.Dataset``, or a Hugging Face Hub dataset name (needs the Hub; fails fast offline).
    Splits not given are split off the training data, stratified by label and seeded.

    String labels are mapped to ids in sorted order (``"neg"``, ``"pos"`` -> 0, 1); integer
    labels keep their order with names ``"0"``, ``"1"``, ...; ``ClassLabel`` columns keep their
    names. ``dataset["train"].features["label"].names`` is the ``id2label`` for the model.

    Example:
        >>> ds = load_text_classification_dataset("reviews.csv", text_column="review",
        ...                                       label_column="sentiment")

    Args:
        data: Training data (or a built-in/hub dataset with its own splits).
        validation: Optional validation data (file, DataFrame or Dataset).
        test: Optional test data.
        text_column: Column holding the text.
        label_column: Column holding the label.
        validation_size: Fraction of all rows split off for validation when not given.
        test_size: Fraction of all rows split off for test when not given.
        seed: Seed for the splits.
        cache_dir: Cache directory for built-in and hub downloads, and for ``datasets``' Arrow
            cache of data files (None: ``datasets``' default for those).
        encoding: Text encoding of CSV/TSV/JSON files (``--file_encoding``).
        empty_texts: Rows whose text is missing, empty or whitespace only: ``"drop"`` them
            (the count is logged) or raise an ``"error"``.

    Returns:
        ``DatasetDict`` with ``train``, ``validation``, ``test``; columns ``text``, ``label``.

    Raises:
        FileNotFoundError: A data file does not exist.
        ValueError: A column is missing, a split is empty, a text is not a string (or is
            empty under ``empty_texts="error"``), a label is missing, labels mix types, the
            training split has one class, a label appears only outside training, or the source
            cannot be read or decoded.
    """
    return load_problem_dataset(
        data,
        problem_type=SINGLE_LABEL,
        validation=validation,
        test=test,
        text_column=text_column,
        label_column=label_column,
        validation_size=validation_size,
        test_size=test_size,
        seed=seed,
        encoding=encoding,
        empty_texts=empty_texts,
        cache_dir=cache_dir,
    )


def _check_builtin_problem_type(name: str, problem_type: str | None) -> None:
    """A built-in knows its problem type (the ``*_scores`` sets are regression): raise when
    ``--problem_type`` asks for another."""
    native = BUILTIN_DATASETS[name].problem_type
    if problem_type not in (None, native):
        raise ValueError(
            f"--dataset_name {name!r} is the built-in {native} data, not {problem_type}: drop "
            f"--problem_type, or give {problem_type} data as files (--train_file)."
        )


def check_empty_texts_choice(empty_texts: str) -> None:
    """Raise if ``--empty_texts`` is not one of :data:`EMPTY_TEXT_CHOICES`."""
    if empty_texts not in EMPTY_TEXT_CHOICES:
        raise ValueError(
            f"--empty_texts must be one of {', '.join(EMPTY_TEXT_CHOICES)}, got {empty_texts!r}."
        )


def reading_options(config) -> dict:
    """The keyword arguments of :func:`load_text_classification_dataset` that a run's config
    names the same way in every text task: columns, seed, download cache, encoding and
    empty-text policy (``--text_column``, ``--label_column``, ``--seed``, ``--cache_dir``,
    ``--file_encoding``, ``--empty_texts``)."""
    return {
        "text_column": config.text_column,
        "label_column": config.label_column,
        "seed": config.seed,
        "cache_dir": config.cache_dir,
        "encoding": config.file_encoding,
        "empty_texts": config.empty_texts,
    }
