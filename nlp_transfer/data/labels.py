"""Row checks of labelled text: empty texts, non-string texts, missing labels, label names.

These take Python lists (:mod:`nlp_transfer.adaptation.data` reads a target domain's files
this way); a user's train/validation/test data is checked column by column in Arrow by
:mod:`nlp_transfer.data.checks`, with the same messages (the ``*_error`` and ``report_*``
functions here). Every error names the split, the column and the flag that fixes it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from datasets import ClassLabel

logger = logging.getLogger(__name__)


def is_missing(value: Any) -> bool:
    """Whether a cell is missing: ``None`` or a float NaN (pandas' empty cell)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _rows(indices: Sequence[int]) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:5])
    return shown + (" ..." if len(indices) > 5 else "")


def empty_text_rows(texts: list, split: str, column: str, empty_texts: str) -> list[int]:
    """Rows whose text is missing, empty or whitespace only; an error under ``"error"``.

    Args:
        texts: The column's values, one per row.
        split: The split's name, for messages (``train``, ``target test``).
        column: The text column's name (``--text_column``).
        empty_texts: ``"drop"`` (log how many; the caller drops them) or ``"error"``.

    Returns:
        The indices of the empty rows (to drop).

    Raises:
        ValueError: Under ``"error"`` when a text is empty, and whenever every text is.
    """
    empty = [
        i
        for i, value in enumerate(texts)
        if is_missing(value) or (isinstance(value, str) and not value.strip())
    ]
    report_empty_texts(empty, len(texts), split, column, empty_texts)
    return empty


def report_empty_texts(
    empty: Sequence[int],
    total: int,
    split: str,
    column: str | Sequence[str],
    empty_texts: str,
    flag: str = "--text_column",
) -> None:
    """Raise or warn about the rows ``empty`` (row numbers) of a split of ``total`` rows.

    Args:
        empty: Row numbers whose text is missing, empty or whitespace only.
        total: Rows of the split.
        split: The split's name.
        column: The text column, or the text columns of a pair (a row is empty when any is).
        empty_texts: ``"drop"`` or ``"error"``.
        flag: The flag(s) naming the column(s), for messages.

    Raises:
        ValueError: Under ``"error"`` when a text is empty, and whenever every text is.
    """
    columns = [column] if isinstance(column, str) else list(column)
    where = ("column " if len(columns) == 1 else "columns ") + " / ".join(map(repr, columns))
    if len(empty) and empty_texts == "error":
        raise ValueError(
            f"The {split} split has {len(empty)} row(s) with a missing, empty or whitespace-only "
            f"text in {where} (rows {_rows(empty)}, counted from 0 after the header). "
            f"Fill or remove them, pass --empty_texts drop to drop them, or point {flag} "
            "at the right column."
        )
    if len(empty):
        logger.warning(
            f"Dropped {len(empty)} of {total:,} row(s) of the {split} split whose text in "
            f"{where} is missing, empty or whitespace only (rows {_rows(empty)}); "
            "pass --empty_texts error to stop on them instead."
        )
    if len(empty) == total:
        raise ValueError(
            f"Every text of the {split} split in {where} is missing or empty; point "
            f"{flag} at the column that holds the text."
        )


def check_texts(texts: list, split: str, column: str) -> list[str]:
    """Return ``texts`` unchanged if every value is a string.

    Raises:
        ValueError: A value is not a string (the message names the row and ``--text_column``).
    """
    for i, value in enumerate(texts):
        if not isinstance(value, str):
            raise ValueError(
                f"Column {column!r} of the {split} split must hold strings, but row {i} holds "
                f"{type(value).__name__} {value!r}. Point --text_column at the text column."
            )
    return texts


def check_labels(labels: list, split: str, column: str, label_feature: Any) -> list:
    """Return ``labels`` unchanged if none is missing (``None``, NaN, or ``-1`` of a ClassLabel).

    Args:
        labels: The label column's values, one per row.
        split: The split's name, for messages.
        column: The label column's name (``--label_column``).
        label_feature: The column's ``datasets`` feature (a ``ClassLabel`` or other), or None.

    Raises:
        ValueError: A label is missing (the message names the rows and ``--label_column``).
    """
    missing = [i for i, v in enumerate(labels) if is_missing(v)]
    if isinstance(label_feature, ClassLabel):
        missing += [i for i, v in enumerate(labels) if v == -1]
    if missing:
        raise missing_labels_error(missing, split, column)
    return labels


def missing_labels_error(rows: Sequence[int], split: str, column: str) -> ValueError:
    """The error for rows (row numbers) without a label."""
    return ValueError(
        f"The {split} split has {len(rows)} row(s) with a missing label in column "
        f"{column!r} (rows {_rows(rows)}). Label them or drop them, or point --label_column at "
        "the right column."
    )


def regression_target_error(column: str, example: Any) -> ValueError:
    """The error for a label column of non-integer numbers (``example`` is one of them)."""
    return ValueError(
        f"Label column {column!r} holds non-integer numbers (e.g. {example}); this looks like "
        "a regression target: pass --problem_type regression, or bin the scores into "
        "classes first."
    )


def mixed_types_error(column: str, kinds: set[type]) -> ValueError:
    """The error for a label column whose values are of several (or unsupported) types."""
    names = ", ".join(sorted(k.__name__ for k in kinds))
    return ValueError(
        f"Label column {column!r} mixes value types ({names}); make every label a string or "
        "every label an integer (lists of labels: --problem_type multi_label_classification)."
    )


def label_names(train_labels: list, column: str, label_feature: Any) -> list[str]:
    """Label names in id order: ClassLabel names, else sorted unique values as strings.

    Raises:
        ValueError: The labels are non-integer numbers (a regression target) or mix types.
    """
    if isinstance(label_feature, ClassLabel):
        return list(label_feature.names)
    kinds = {type(v) for v in train_labels}
    if kinds <= {bool}:
        kinds = {int}
    if kinds <= {int, float}:
        if any(not float(v).is_integer() for v in train_labels):
            example = next(v for v in train_labels if not float(v).is_integer())
            raise regression_target_error(column, example)
        return [str(v) for v in sorted({int(v) for v in train_labels})]
    if kinds == {str}:
        return sorted(set(train_labels))
    raise mixed_types_error(column, kinds)


def label_key(value: Any, label_feature: Any) -> str:
    """A label value as the name it is looked up by (ClassLabel name, or ``str`` of an integer)."""
    if isinstance(label_feature, ClassLabel):
        return label_feature.int2str(int(value))
    if isinstance(value, bool | float):
        return str(int(value))
    return str(value)
