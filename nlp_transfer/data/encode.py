"""Step 3 of the data pipeline (:mod:`nlp_transfer.data.pipeline`): the problem type, and the
labels of every split encoded in Arrow, column by column.

:func:`infer_problem_type` reads the label column's Arrow type (lists, or strings holding the
separator, are multi-label); :func:`encode_labels` encodes the labels of every split:
``ClassLabel`` ids (single-label), lists of ``ClassLabel`` ids (multi-label) or float targets
(regression), the names always the training split's. No split is turned into Python lists of its
rows; only a column Arrow could not type (``datasets.Json``: values of mixed types) is decoded,
batch by batch. The text columns are not copied: a split read from a file stays memory-mapped
from ``datasets``' Arrow cache, with the labels beside it as one Arrow column.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, Features, Value
from datasets import Sequence as SequenceFeature

from .checks import (
    check_known_labels,
    check_label_type,
    check_missing_labels,
    class_names_of,
    is_numeric,
    is_text_type,
    label_keys,
    names_from_keys,
)
from .columns import arrow_column, python_values

logger = logging.getLogger(__name__)

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL, REGRESSION)
# Tried in this order when multi-label strings come without --label_separator.
LIKELY_SEPARATORS = (",", ";", "|")


def _is_list_type(kind: pa.DataType) -> bool:
    return (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )


def infer_problem_type(
    dataset: Dataset, column: str, requested: str | None, label_separator: str | None
) -> str:
    """The problem type: ``requested`` when given, else read from the training labels.

    Lists (or strings holding ``label_separator``) mean multi-label; anything else is
    single-label (floats then get the single-label loader's message: regression is only ever
    asked for, with ``--problem_type regression``).

    Raises:
        ValueError: ``requested`` is not a known problem type.
    """
    if requested is not None:
        if requested not in PROBLEM_TYPES:
            raise ValueError(
                f"--problem_type must be one of {', '.join(PROBLEM_TYPES)}, got {requested!r}."
            )
        return requested
    values = arrow_column(dataset, column)
    if _is_list_type(values.type):
        return MULTI_LABEL
    if is_text_type(values.type):
        joined = label_separator and pc.any(pc.match_substring(values, label_separator)).as_py()
        return MULTI_LABEL if joined else SINGLE_LABEL
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        return SINGLE_LABEL
    for _, value in python_values(dataset, column):  # mixed types (datasets.Json)
        if isinstance(value, list | tuple):
            return MULTI_LABEL
        if label_separator and isinstance(value, str) and label_separator in value:
            return MULTI_LABEL
    return SINGLE_LABEL


def label_separator_for(
    dataset: Dataset, column: str, problem_type: str, label_separator: str | None
) -> str | None:
    """The separator of multi-label strings: ``label_separator`` when given, else inferred.

    With ``--problem_type multi_label_classification`` and string labels but no
    ``--label_separator``, the likely separator (:data:`LIKELY_SEPARATORS`) found in the most
    training labels is used and logged: without one, ``"a,b"`` would be a label of its own.
    Single-label string labels that hold one are only warned about (a label may contain a
    comma).

    Returns:
        The separator, or None (each string is one label).
    """
    values = arrow_column(dataset, column)
    if label_separator is not None or not is_text_type(values.type):
        return label_separator
    present = pc.drop_null(values)
    shares = {
        sep: pc.sum(pc.match_substring(present, sep)).as_py() or 0 for sep in LIKELY_SEPARATORS
    }
    separator, count = max(shares.items(), key=lambda item: item[1])
    if not count:
        return None
    share = f"{count:,} of {len(present):,} training labels hold {separator!r}"
    if problem_type == MULTI_LABEL:
        logger.info(f"--label_separator {separator!r} inferred for multi-label strings: {share}")
        return separator
    if problem_type == SINGLE_LABEL:
        logger.warning(
            f"{share}, so each such string is one class of its own; if they are several "
            f"labels, pass --label_separator {separator!r} (multi-label)."
        )
    return None


def _value_at(table: Dataset, column: str, row: int) -> Any:
    return table.select([row])[column][0]


def _regression_targets(table: Dataset, column: str, keep: np.ndarray, split: str) -> pa.Array:
    """``(n,)`` float64 targets; raises on a kept row whose target is not a finite number."""
    values = arrow_column(table, column)
    targets = None
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        targets = pc.cast(values, pa.float64())
    elif pa.types.is_null(values.type):
        targets = pa.nulls(len(values), pa.float64())
    elif is_text_type(values.type):
        try:
            targets = pc.cast(pc.utf8_trim_whitespace(values), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            targets = None
    if targets is None:  # strings that are not all numbers, booleans, mixed types
        numbers = np.full(len(values), np.nan)
        for row, value in python_values(table, column):
            if not isinstance(value, bool):
                with contextlib.suppress(TypeError, ValueError):
                    numbers[row] = float(value)
        targets = pa.array(numbers)
    finite = pc.fill_null(pc.is_finite(targets), False).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(~finite & keep)
    if len(bad):
        row = int(bad[0])
        raise ValueError(
            f"Row {row} of the {split} split holds {_value_at(table, column, row)!r} in label "
            f"column {column!r}, which is not a finite number; --problem_type regression needs a "
            "number in every row (fix or drop the row, or point --label_column at the target "
            "column)."
        )
    return targets.combine_chunks() if isinstance(targets, pa.ChunkedArray) else targets


def _label_set_error(table: Dataset, column: str, split: str, row: int) -> ValueError:
    value = _value_at(table, column, row)
    return ValueError(
        f"Row {row} of the {split} split holds {type(value).__name__} {value!r} in label column "
        f"{column!r}; multi-label rows must be lists of labels or strings joined by "
        "--label_separator (e.g. --label_separator ',')."
    )


def _python_label_lists(table: Dataset, column: str, separator: str | None, split: str):
    """Lists of label strings of a mixed-type column (lists, strings, empty cells), decoded."""
    lists = []
    for row, value in python_values(table, column):
        if isinstance(value, list | tuple):
            lists.append([str(v) for v in value])
        elif isinstance(value, str):
            lists.append(value.split(separator) if separator else [value])
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            lists.append([])
        else:
            raise _label_set_error(table, column, split, row)
    return pa.array(lists, pa.list_(pa.string()))


def _label_lists(table: Dataset, column: str, separator: str | None, split: str) -> pa.Array:
    """``(n,)`` lists of label strings, as given (not yet trimmed); empty for a missing cell."""
    values = arrow_column(table, column).combine_chunks()
    kind = values.type
    if _is_list_type(kind):
        return pc.cast(values, pa.list_(pa.string()))
    if is_text_type(kind) and separator:
        return pc.split_pattern(values, separator)
    if is_text_type(kind):
        offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, values.cast(pa.string()))
    if pa.types.is_null(kind):
        return pa.nulls(len(values), pa.list_(pa.string()))
    if is_numeric(kind):
        present = np.flatnonzero(~pc.is_null(values, nan_is_null=True).to_numpy(False))
        if len(present):
            raise _label_set_error(table, column, split, int(present[0]))
        return pa.nulls(len(values), pa.list_(pa.string()))
    return _python_label_lists(table, column, separator, split)


def _label_pairs(lists: pa.Array, keep: np.ndarray) -> tuple[np.ndarray, pa.Array]:
    """``(rows, names)``: one pair per label of a kept row, names trimmed, empty ones dropped."""
    rows = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    names = pc.utf8_trim_whitespace(pc.list_flatten(lists))
    present = pc.fill_null(pc.not_equal(names, ""), False).to_numpy(zero_copy_only=False)
    present &= keep[rows]
    return rows[present], pc.filter(names, pa.array(present))


def _multi_label_ids(n: int, rows: np.ndarray, names: pa.Array, labels: list[str]) -> pa.Array:
    """``(n,)`` lists of label ids, each sorted and without repeats."""
    ids = pc.index_in(names, value_set=pa.array(labels, pa.string()))
    ids = ids.to_numpy(zero_copy_only=False).astype(np.int64)
    keys = np.unique(rows.astype(np.int64) * len(labels) + ids)
    rows, ids = keys // len(labels), keys % len(labels)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids, pa.int64()))


def _encode_multi_label(tables, keeps, separator, column) -> tuple[dict, Any]:
    pairs = {
        s: _label_pairs(_label_lists(t, column, separator, s), keeps[s]) for s, t in tables.items()
    }
    labels = sorted(pc.unique(pairs["train"][1]).to_pylist())
    if len(labels) < 2:
        raise ValueError(
            f"The training split has {len(labels)} distinct label(s) in column {column!r}; "
            "a multi-label classifier needs at least two (check --label_separator)."
        )
    for split, (_, names) in pairs.items():
        unknown = sorted(set(pc.unique(names).to_pylist()) - set(labels))
        if unknown:
            raise ValueError(
                f"Label(s) {unknown[:5]} in column {column!r} of the {split} split are not in "
                "the training split, so the model cannot learn them; fix the label column "
                "(--label_column, --label_separator) or add training examples."
            )
    encoded = {s: _multi_label_ids(len(tables[s]), *pairs[s], labels) for s in tables}
    return encoded, SequenceFeature(ClassLabel(names=labels))


def _encode_single_label(tables, keeps, column) -> tuple[dict, ClassLabel]:
    """``ClassLabel`` ids; the names are the training split's (``train`` comes first): a
    ``ClassLabel`` column's own, integers in numeric order, or strings sorted."""
    names, encoded = None, {}
    for split, table in tables.items():
        feature = table.features.get(column)
        check_label_type(table, column, feature)
        values = arrow_column(table, column)
        keys = label_keys(values, class_names_of(feature))
        check_missing_labels(keys, keeps[split], split, column)
        if names is None:
            names = names_from_keys(
                keys, keeps[split], is_numeric(values.type), class_names_of(feature)
            )
            if len(names) < 2:
                raise ValueError(
                    f"The training split has a single label ({names[0]!r}) in column "
                    f"{column!r}; a classifier needs at least two."
                )
        check_known_labels(keys, keeps[split], names, split)
        encoded[split] = pc.index_in(keys, value_set=pa.array(names, pa.string()))
    return encoded, ClassLabel(names=names)


def encode_labels(
    tables: dict[str, Dataset],
    keeps: dict[str, np.ndarray],
    problem_type: str,
    texts: dict[str, str],
    label_column: str,
    separator: str | None = None,
) -> dict[str, Dataset]:
    """Step 3 of the pipeline: ``{split: Dataset}`` with the text columns and the encoded
    ``label``, the rows not kept (empty texts) dropped.

    Args:
        tables: The checked splits (``train`` first: its labels name the classes).
        keeps: ``{split: (n,) bool}``, the rows to keep (:func:`~.checks.kept_rows`).
        problem_type: One of :data:`PROBLEM_TYPES`.
        texts: ``{column: new name}``: the text column as ``text`` and, for pairs, the second
            as ``text_pair``.
        label_column: The label column (``--label_column``).
        separator: Splits multi-label strings (``--label_separator``).

    Returns:
        ``label`` as ``ClassLabel`` ids (single-label), lists of ``ClassLabel`` ids
        (multi-label) or float32 targets (regression).

    Raises:
        ValueError: A label missing, of mixed types, unknown outside training, not a finite
            number (regression), or fewer than two labels in training.
    """
    if problem_type == REGRESSION:
        labels = {s: _regression_targets(t, label_column, keeps[s], s) for s, t in tables.items()}
        feature: Any = Value("float32")
    elif problem_type == MULTI_LABEL:
        labels, feature = _encode_multi_label(tables, keeps, separator, label_column)
    else:
        labels, feature = _encode_single_label(tables, keeps, label_column)
    return {s: assemble_split(t, texts, keeps[s], labels[s], feature) for s, t in tables.items()}


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
