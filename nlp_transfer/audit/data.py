"""The rows an audit reads: every row of the user's files (nothing split off), or a built-in
set's splits, each row keeping where it came from."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from datasets import DatasetDict

from ..data.builtin import BUILTIN_DATASETS, load_builtin_dataset
from ..data.encode import MULTI_LABEL, REGRESSION
from ..data.pipeline import read_labelled_splits
from ..text.problem import label_names_of, problem_type_of


@dataclass
class AuditData:
    """Rows of every split, concatenated in split order.

    Attributes:
        texts: ``n`` texts, or ``(text, text_pair)`` tuples for sentence pairs.
        splits: ``(n,)`` split of each row (``train``, ``validation``, ``test``).
        rows: ``(n,)`` the row's 0-based position in its source (a file's data rows, the
            header not counted; a built-in set's split).
        labels: ``n`` labels: class ids (single-label), tuples of class ids (multi-label) or
            floats (regression).
        label_names: Class names in id order (``["score"]`` for regression).
        problem_type: ``single_label_classification``, ``multi_label_classification`` or
            ``regression``.
        sources: ``{split: file name or built-in set}``.
        dropped_empty: ``{split: rows dropped for an empty or missing text}``.
    """

    texts: list
    splits: np.ndarray
    rows: np.ndarray
    labels: list
    label_names: list[str]
    problem_type: str
    sources: dict[str, str] = field(default_factory=dict)
    dropped_empty: dict[str, int] = field(default_factory=dict)

    def mask(self, split: str) -> np.ndarray:
        """``(n,)`` bool: the rows of ``split``."""
        return self.splits == split

    def split_names(self) -> list[str]:
        return list(dict.fromkeys(self.splits.tolist()))

    def flat_texts(self) -> list[str]:
        """Texts as one string each (a pair joined by a tab), for hashing and display."""
        return [t if isinstance(t, str) else f"{t[0]}\t{t[1]}" for t in self.texts]

    def class_ids(self, split: str = "train") -> np.ndarray:
        """``(n_split,)`` single-label class ids of ``split``."""
        return np.asarray([y for y, s in zip(self.labels, self.splits, strict=True) if s == split])

    def multi_hot(self, split: str = "train") -> np.ndarray:
        """``(n_split, C)`` multi-label targets of ``split``."""
        rows = [y for y, s in zip(self.labels, self.splits, strict=True) if s == split]
        out = np.zeros((len(rows), len(self.label_names)), dtype=np.int64)
        for i, ids in enumerate(rows):
            out[i, list(ids)] = 1
        return out


def from_splits(
    splits: dict, keeps: dict | None, sources: dict[str, str], problem: str, names: list[str]
) -> AuditData:
    """:class:`AuditData` of loaded splits (``text``, ``text_pair``, ``label``).

    Args:
        splits: ``{split: Dataset}``.
        keeps: ``{split: (n_read,) bool}``, the rows of each source kept (None: all).
        sources: ``{split: where it came from}``.
        problem: The problem type.
        names: Label names in id order.
    """
    texts, split_of, rows, labels, dropped = [], [], [], [], {}
    for split, dataset in splits.items():
        columns = dataset.column_names
        first = dataset["text"]
        pieces = first
        if "text_pair" in columns:
            pieces = list(zip(first, dataset["text_pair"], strict=True))
        texts.extend(pieces)
        split_of.extend([split] * len(pieces))
        keep = None if keeps is None else keeps[split]
        rows.extend(np.arange(len(pieces)) if keep is None else np.flatnonzero(keep))
        dropped[split] = 0 if keep is None else int((~keep).sum())
        values = dataset["label"]
        if problem == MULTI_LABEL:
            values = [tuple(v) for v in values]
        labels.extend(values)
    return AuditData(
        texts=texts,
        splits=np.asarray(split_of),
        rows=np.asarray(rows, dtype=np.int64),
        labels=labels,
        label_names=names,
        problem_type=problem,
        sources=sources,
        dropped_empty=dropped,
    )


def load_audit_data(
    data,
    *,
    validation=None,
    test=None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    label_separator: str | None = None,
    problem_type: str | None = None,
    encoding: str = "utf-8",
    cache_dir: str | os.PathLike | None = None,
) -> AuditData:
    """Read what to audit: a built-in set's splits, or a file (DataFrame, Dataset) with every
    row kept (empty texts are counted and left out) and optional validation and test files.

    Args:
        data: A built-in set name, a file, a DataFrame or a Dataset.
        validation, test: Optional other splits (files, DataFrames, Datasets).
        text_column, text_pair_column, label_column, label_separator, problem_type, encoding:
            As ``nlp-transfer train``'s flags of the same names.
        cache_dir: Where built-in sets are downloaded.

    Returns:
        The rows of every split.

    Raises:
        FileNotFoundError: A file does not exist.
        ValueError: What the data pipeline raises for a missing column, a missing or mixed
            label (the message names the flag or the row).
    """
    if isinstance(data, str) and data in BUILTIN_DATASETS and validation is None and test is None:
        dataset = load_builtin_dataset(data, cache_dir=cache_dir)
        return from_splits(
            dict(dataset),
            None,
            {s: f"{data} ({s})" for s in dataset},
            problem_type_of(dataset),
            label_names_of(dataset),
        )
    splits, keeps, problem = read_labelled_splits(
        data,
        problem_type=problem_type,
        validation=validation,
        test=test,
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        label_separator=label_separator,
        encoding=encoding,
        cache_dir=cache_dir,
    )
    given = {"train": data, "validation": validation, "test": test}
    sources = {s: str(given[s]) if isinstance(given[s], str | os.PathLike) else s for s in splits}
    names = label_names_of(DatasetDict(splits))
    if problem == REGRESSION:
        names = ["score"]
    return from_splits(splits, keeps, sources, problem, names)
