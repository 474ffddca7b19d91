"""Columns of a ``datasets.Dataset`` read as Arrow or NumPy arrays, never as Python lists of rows.

Everything on the way from a data file to the tokenized splits stays Arrow-backed (memory-mapped
when the dataset came from a file): checks and encodings run on whole columns with
``pyarrow.compute``, and what a sampler or a metric needs (labels, sequence lengths) comes out as
a NumPy array. A user's DataFrame is converted once (:func:`dataframe_to_dataset`); a column that
mixes value types becomes a ``datasets.Json`` column, whose values are only decoded, batch by
batch, to say what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, concatenate_datasets

# Rows per batch when a column's values must be seen as Python objects (error messages only).
SCAN_BATCH_ROWS = 10_000


def arrow_column(dataset: Dataset, column: str) -> pa.ChunkedArray:
    """The column as Arrow, in the dataset's row order (its indices mapping applied).

    A split made by ``select`` is the whole table plus an indices mapping; its column is
    gathered here with one Arrow ``take`` of that column. ``datasets``' own way,
    ``with_format("arrow")[column]``, costs far more memory on such a split (measured on a
    million sentences: about 475 MB for a label column that takes 7 MB).
    """
    indices = getattr(dataset, "_indices", None)  # datasets' indices mapping (None: no mapping)
    indices = getattr(indices, "table", indices)  # datasets wraps Arrow tables
    table = getattr(getattr(dataset, "data", None), "table", None)
    if (
        isinstance(table, pa.Table)
        and column in table.column_names
        and (indices is None or isinstance(indices, pa.Table))
    ):
        values = table.column(column)
        return values if indices is None else values.take(indices.column(0))
    values = dataset.with_format("arrow")[column]
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])


def numpy_column(dataset: Dataset, column: str) -> np.ndarray:
    """A numeric column as ``(n,)``, or a list column of equal lengths as ``(n, k)``."""
    values = arrow_column(dataset, column).combine_chunks()
    if pa.types.is_list(values.type) or pa.types.is_fixed_size_list(values.type):
        flat = values.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(values), -1) if len(values) else flat.reshape(0, 0)
    return values.to_numpy(zero_copy_only=False)


def sequence_lengths(dataset: Dataset, column: str = "input_ids") -> np.ndarray:
    """Tokens per example ``(n,)`` int64, from the list column's offsets (no row is decoded)."""
    lengths = pc.list_value_length(arrow_column(dataset, column))
    return lengths.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def multi_hot(labels: pa.ChunkedArray | pa.Array, num: int) -> np.ndarray:
    """Lists of label ids ``(n,)`` as a 0/1 matrix ``(n, num)`` int64 (null rows: all zero)."""
    labels = labels.combine_chunks() if isinstance(labels, pa.ChunkedArray) else labels
    y = np.zeros((len(labels), num), dtype=np.int64)
    rows = pc.list_parent_indices(labels).to_numpy(zero_copy_only=False)
    ids = pc.list_flatten(labels).to_numpy(zero_copy_only=False).astype(np.int64)
    y[rows, ids] = 1
    return y


def python_values(dataset: Dataset, column: str) -> Iterator[tuple[int, Any]]:
    """``(row, value)`` of one column, decoded batch by batch (memory: one batch).

    For messages about a column Arrow cannot type (mixed values); never for the data itself.
    """
    row = 0
    for batch in dataset.select_columns([column]).iter(batch_size=SCAN_BATCH_ROWS):
        for value in batch[column]:
            yield row, value
            row += 1


def value_kinds(dataset: Dataset, column: str) -> set[type]:
    """The Python types of a column's non-missing values (decoded batch by batch)."""
    kinds = set()
    for _, value in python_values(dataset, column):
        if not (value is None or (isinstance(value, float) and np.isnan(value))):
            kinds.add(type(value))
    return kinds


def first_value(dataset: Dataset, column: str, accept) -> tuple[int, Any] | None:
    """``(row, value)`` of the first non-missing value that ``accept(value)`` refuses, or None."""
    for row, value in python_values(dataset, column):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        if not accept(value):
            return row, value
    return None


def missing_mask(values: pa.ChunkedArray) -> np.ndarray:
    """``(n,)`` bool: null, or a float NaN (pandas' empty cell)."""
    missing = pc.is_null(values, nan_is_null=pa.types.is_floating(values.type))
    return missing.to_numpy(zero_copy_only=False)


def dataframe_to_dataset(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> Dataset:
    """A DataFrame (or the named columns of it) as an in-memory ``Dataset``.

    Columns that Arrow cannot type because they mix value types (strings and numbers, lists and
    strings) become ``datasets.Json`` columns instead of failing, so that the checks can say
    which row holds what. Missing cells (None, NaN) become nulls.
    """
    frame = frame.reset_index(drop=True)
    if columns is not None:
        frame = frame[list(dict.fromkeys(columns))]
    try:
        return Dataset.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    parts = []
    for column in frame.columns:
        try:
            parts.append(Dataset.from_pandas(frame[[column]], preserve_index=False))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            values = frame[column].astype(object).where(frame[column].notna(), None)
            parts.append(Dataset.from_dict({column: values.tolist()}, on_mixed_types="use_json"))
    return concatenate_datasets(parts, axis=1)
