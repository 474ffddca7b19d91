"""Step 2 of the data pipeline (:mod:`nlp_transfer.data.pipeline`): check each split, column by
column in Arrow (no Python list of rows): the named columns are there, the texts are strings
(empty ones dropped or an error), the labels are present, of one type and known to training.

The messages are those of :mod:`nlp_transfer.data.labels` (rows counted from 0 after the
header); this module finds the rows with ``pyarrow.compute``. A column Arrow could not type
(``datasets.Json``: values of mixed types) is decoded batch by batch, only to say what is in it.

Label keys: every label is looked up by a string key, its ``ClassLabel`` name or the ``str`` of
an integer (``True``, ``1`` and ``1.0`` are all ``"1"``), so that a validation file may give the
ids as numbers and the training file as strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset

from .columns import arrow_column, dataframe_to_dataset, first_value, missing_mask, value_kinds
from .labels import (
    missing_labels_error,
    mixed_types_error,
    regression_target_error,
    report_empty_texts,
)


def is_text_type(kind: pa.DataType) -> bool:
    """Whether an Arrow type holds strings."""
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def text_values(dataset: Dataset, column: str, split: str, flag: str = "--text_column"):
    """The text column as an Arrow string column (nulls where a cell is empty).

    Raises:
        ValueError: The column holds something other than strings (the message names the first
            such row and ``flag``).
    """
    values = arrow_column(dataset, column)
    if is_text_type(values.type):
        return values
    if pa.types.is_null(values.type):
        return values.cast(pa.string())
    bad = first_value(dataset, column, lambda value: isinstance(value, str))
    held = "values of mixed types" if bad is None else f"{type(bad[1]).__name__} {bad[1]!r}"
    raise ValueError(
        f"Column {column!r} of the {split} split must hold strings, but "
        + (f"row {bad[0]} holds {held}" if bad else f"it holds {held}")
        + f". Point {flag} at the text column."
    )


def empty_text_mask(texts: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """``(n,)`` bool: the text is missing, empty or whitespace only."""
    blank = pc.equal(pc.utf8_trim_whitespace(texts), "")
    return pc.or_kleene(pc.is_null(texts), blank).to_numpy(zero_copy_only=False)


def kept_rows(table: Dataset, texts: dict[str, str], split: str, empty_texts: str) -> np.ndarray:
    """``(n,)`` bool: the rows whose every text is a non-empty string; warns about the others
    (they are dropped), or raises.

    Args:
        table: The split.
        texts: ``{column: flag}`` of the text columns (``text``, and ``text_pair`` for pairs).
        split: Its name, for messages.
        empty_texts: ``drop`` or ``error`` (``--empty_texts``).

    Raises:
        ValueError: A text column holds something other than strings; under ``error`` a text is
            missing or empty; every row is.
    """
    empty = np.zeros(len(table), dtype=bool)
    for column, flag in texts.items():
        empty |= empty_text_mask(text_values(table, column, split, flag))
    flags = " / ".join(texts.values())
    report_empty_texts(np.flatnonzero(empty), len(empty), split, list(texts), empty_texts, flags)
    return ~empty


def check_label_type(dataset: Dataset, column: str, feature: Any) -> None:
    """Raise if a single-label column holds non-integer numbers or values of mixed types.

    Raises:
        ValueError: A regression-like target (the message suggests ``--problem_type
            regression``) or mixed value types.
    """
    if isinstance(feature, ClassLabel):
        return
    values = arrow_column(dataset, column)
    kind = values.type
    if pa.types.is_floating(kind):
        finite = pc.is_finite(values)
        whole = pc.equal(pc.floor(values), values)
        bad = pc.and_kleene(pc.invert(pc.is_nan(values)), pc.invert(pc.and_(finite, whole)))
        rows = np.flatnonzero(bad.to_numpy(zero_copy_only=False) & ~missing_mask(values))
        if len(rows):
            raise regression_target_error(column, values[int(rows[0])].as_py())
        return
    simple = pa.types.is_integer(kind) or pa.types.is_boolean(kind) or is_text_type(kind)
    if not (simple or pa.types.is_null(kind)):
        raise mixed_types_error(column, value_kinds(dataset, column))


def label_keys(values: pa.ChunkedArray | pa.Array, class_names: list[str] | None):
    """Each label's string key (null where the label is missing); see the module docstring.

    Args:
        values: The label column, of a type :func:`check_label_type` accepts.
        class_names: The column's ``ClassLabel`` names, or None when it is no ``ClassLabel``.
    """
    kind = values.type
    if class_names is not None:
        ids = pc.if_else(pc.equal(values, -1), pa.scalar(None, kind), values)
        return pc.take(pa.array(class_names, pa.string()), ids)
    if pa.types.is_null(kind):
        return values.cast(pa.string())
    if pa.types.is_floating(kind):
        values = pc.if_else(pc.is_nan(values), pa.scalar(None, kind), values)
    if not is_text_type(kind):
        values = pc.cast(values, pa.int64())
    return pc.cast(values, pa.string())


def class_names_of(feature: Any) -> list[str] | None:
    """A ``ClassLabel`` feature's names; None for any other feature."""
    return list(feature.names) if isinstance(feature, ClassLabel) else None


def check_missing_labels(keys, keep: np.ndarray, split: str, column: str) -> None:
    """Raise if a kept row (``keep``) has no label (``keys`` from :func:`label_keys`).

    Raises:
        ValueError: The message names the rows and ``--label_column``.
    """
    missing = np.flatnonzero(pc.is_null(keys).to_numpy(zero_copy_only=False) & keep)
    if len(missing):
        raise missing_labels_error(missing, split, column)


def names_from_keys(keys, keep: np.ndarray, numeric: bool, class_names: list[str] | None):
    """The label names in id order: ``ClassLabel`` names, integers in numeric order, or strings
    sorted."""
    if class_names is not None:
        return class_names
    present = pc.unique(pc.drop_null(pc.filter(keys, pa.array(keep)))).to_pylist()
    return [str(v) for v in sorted(map(int, present))] if numeric else sorted(present)


def check_known_labels(keys, keep: np.ndarray, names: list[str], split: str) -> None:
    """Raise if a kept row's label is not among the training split's ``names``.

    Raises:
        ValueError: The message lists the unknown labels and the training split's labels.
    """
    unknown_mask = pc.invert(pc.is_in(keys, value_set=pa.array(names, pa.string())))
    unknown_mask = pc.and_(unknown_mask, pa.array(keep))
    unknown = sorted(pc.unique(pc.drop_null(pc.filter(keys, unknown_mask))).to_pylist())
    if unknown:
        raise ValueError(
            f"Label(s) {', '.join(map(repr, unknown))} appear in the {split} split but "
            f"not in the training split (labels there: {', '.join(map(repr, names))}); "
            "the model cannot learn them. Fix the label column or add training examples."
        )


def is_numeric(kind: pa.DataType) -> bool:
    """Whether labels of this Arrow type are numbers (their names sort numerically)."""
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def check_columns(present: Sequence[str], rows: int, split: str, columns: dict[str, str]) -> None:
    """Raise if a named column is not ``present`` (``columns``: ``{column: flag}``) or there are
    no ``rows``.

    Raises:
        ValueError: The message names the split, the column, the columns there are and the flag.
    """
    present = [str(c) for c in present]
    for column, flag in columns.items():
        if column not in present:
            raise ValueError(
                f"The {split} split has no column {column!r} (its columns: "
                f"{', '.join(map(repr, present))}). Pass {flag} to name the right one."
            )
    if rows == 0:
        raise ValueError(f"The {split} split is empty: it has columns but no rows.")


def checked_dataset(source: Dataset | pd.DataFrame, split: str, columns: dict[str, str]) -> Dataset:
    """The named columns of a split as a ``Dataset`` (a DataFrame converted, only those columns).

    Args:
        source: The split, as read.
        split: Its name, for messages.
        columns: ``{column: flag}``: the columns to keep and the flags that name them.

    Raises:
        ValueError: A column is missing or the split has no rows (see :func:`check_columns`).
    """
    if isinstance(source, pd.DataFrame):
        check_columns(list(source.columns), len(source), split, columns)
        return dataframe_to_dataset(source, list(columns))
    check_columns(source.column_names, len(source), split, columns)
    return source.select_columns(list(dict.fromkeys(columns)))
