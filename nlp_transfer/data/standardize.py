"""One split of single-label data checked and encoded in Arrow: ``text`` + ``label`` (ClassLabel).

The checks (:mod:`nlp_transfer.data.checks`) run on whole columns with ``pyarrow.compute``, and
so does the encoding: each label's id comes from ``pyarrow.compute.index_in`` over the label
names. The text column is not copied: a split read from a file stays memory-mapped from
``datasets``' Arrow cache, with the label ids beside it as one Arrow column (8 bytes a row).
Dropping empty texts selects rows (an index mapping, written out once to a cache file beside
the file's own). An in-memory split (a DataFrame, a built-in dataset) stays in memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, Features

from .checks import (
    check_empty_texts,
    check_known_labels,
    check_label_type,
    check_missing_labels,
    class_names_of,
    is_numeric,
    label_keys,
    names_from_keys,
    text_values,
)
from .columns import arrow_column, checked_dataset


def assemble_split(
    table: Dataset, texts: dict[str, str], keep: np.ndarray, label: pa.Array, feature: Any
) -> Dataset:
    """The split's kept rows as its text columns plus ``label``.

    The text columns stay where they are (memory-mapped for a file; selecting rows makes an
    index mapping, which ``add_column`` writes out once); ``label`` is added as an Arrow column.
    Every step is a ``datasets`` transform, so the result's fingerprint follows from the input's
    and the labels' values, and what is computed from it later (tokens) is cached by it.

    Args:
        table: The split as read.
        texts: ``{column: new name}`` of the text columns, in order.
        keep: ``(n,)`` bool, the rows to keep.
        label: ``(n,)`` the encoded label of every row (those not kept are dropped here).
        feature: The ``datasets`` feature of ``label`` (the column is cast to its Arrow type).
    """
    dataset = table.select_columns(list(texts))
    dataset = dataset.rename_columns({old: new for old, new in texts.items() if old != new})
    if not keep.all():
        dataset = dataset.select(np.flatnonzero(keep))
        label = pc.filter(label, pa.array(keep))
    if isinstance(label, pa.ChunkedArray):
        label = label.combine_chunks()
    arrow_type = Features({"label": feature}).arrow_schema.field("label").type
    return dataset.add_column("label", label.cast(arrow_type), feature=feature)


def standardize_split(
    table: Dataset | pd.DataFrame,
    split: str,
    text_column: str,
    label_column: str,
    empty_texts: str = "drop",
    names: list[str] | None = None,
) -> tuple[Dataset, list[str]]:
    """Check one split and encode it as ``text`` + ``label`` (``ClassLabel``).

    Args:
        table: The split as read (a ``Dataset``, or a DataFrame converted here).
        split: Its name, for messages.
        text_column: The text column (``--text_column``).
        label_column: The label column (``--label_column``).
        empty_texts: ``drop`` or ``error`` on missing, empty or whitespace-only texts.
        names: The training split's label names; None for the training split itself.

    Returns:
        ``(the split, the label names)``; the names are the training split's.

    Raises:
        ValueError: A column is missing, the split is empty, a text is not a string (or is
            empty under ``error``), a label is missing, the labels mix types or look like a
            regression target, the training split has one label, or a label is not one of the
            training split's.
    """
    flags = {text_column: "--text_column", label_column: "--label_column"}
    table = checked_dataset(table, split, flags)
    keep = check_empty_texts(
        text_values(table, text_column, split), split, text_column, empty_texts
    )
    feature = table.features.get(label_column)
    check_label_type(table, label_column, feature)
    class_names = class_names_of(feature)
    values = arrow_column(table, label_column)
    keys = label_keys(values, class_names)
    check_missing_labels(keys, keep, split, label_column)
    if names is None:
        names = names_from_keys(keys, keep, is_numeric(values.type), class_names)
        if len(names) < 2:
            raise ValueError(
                f"The training split has a single label ({names[0]!r}) in column "
                f"{label_column!r}; a classifier needs at least two."
            )
    check_known_labels(keys, keep, names, split)
    ids = pc.index_in(keys, value_set=pa.array(names, pa.string()))
    return assemble_split(table, {text_column: "text"}, keep, ids, ClassLabel(names=names)), names
