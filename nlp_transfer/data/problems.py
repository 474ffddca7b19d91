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
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets import Sequence as SequenceFeature

from .builtin import BUILTIN_DATASETS
from .custom import load_text_classification_dataset, read_table

logger = logging.getLogger(__name__)

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL, REGRESSION)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _table(source, what: str, encoding: str) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True)
    if isinstance(source, Dataset):
        return source.to_pandas()
    return read_table(source, encoding).to_pandas()


_FILE_SUFFIXES = {".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt"}


def _is_dataset_name(data) -> bool:
    """A built-in or Hub dataset name rather than a file path."""
    return (
        isinstance(data, str)
        and not Path(data).expanduser().exists()
        and Path(data).suffix.lower() not in _FILE_SUFFIXES
    )


def infer_problem_type(
    labels: list, requested: str | None, label_separator: str | None, column: str
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
    if any(isinstance(v, list | tuple | np.ndarray) for v in labels):
        return MULTI_LABEL
    if label_separator and any(isinstance(v, str) and label_separator in v for v in labels):
        return MULTI_LABEL
    return SINGLE_LABEL


def _label_set(value: Any, separator: str | None, split: str, row: int, column: str) -> list[str]:
    if isinstance(value, list | tuple | np.ndarray):
        return sorted({str(v).strip() for v in value if str(v).strip()})
    if isinstance(value, str):
        parts = value.split(separator) if separator else [value]
        return sorted({p.strip() for p in parts if p.strip()})
    if _is_missing(value):
        return []
    raise ValueError(
        f"Row {row} of the {split} split holds {type(value).__name__} {value!r} in label column "
        f"{column!r}; multi-label rows must be lists of labels or strings joined by "
        "--label_separator (e.g. --label_separator ',')."
    )


def _target(value: Any, split: str, row: int, column: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or math.isnan(number) or math.isinf(number):
        raise ValueError(
            f"Row {row} of the {split} split holds {value!r} in label column {column!r}, which "
            "is not a finite number; --problem_type regression needs a number in every row "
            "(fix or drop the row, or point --label_column at the target column)."
        )
    return number


def _encode_labels(
    raw: dict[str, list], problem_type: str, separator: str | None, column: str
) -> tuple[dict[str, list], Any]:
    """``({split: encoded labels}, label feature)`` for multi-label or regression data."""
    if problem_type == REGRESSION:
        encoded = {s: [_target(v, s, i, column) for i, v in enumerate(r)] for s, r in raw.items()}
        return encoded, Value("float32")
    if problem_type == SINGLE_LABEL:  # with a pair column: the same ids as the original loader
        return _single_labels(raw, column)
    sets = {
        s: [_label_set(v, separator, s, i, column) for i, v in enumerate(r)] for s, r in raw.items()
    }
    names = sorted({name for labels in sets["train"] for name in labels})
    if len(names) < 2:
        raise ValueError(
            f"The training split has {len(names)} distinct label(s) in column {column!r}; "
            "a multi-label classifier needs at least two (check --label_separator)."
        )
    for split, rows in sets.items():
        unknown = sorted({n for labels in rows for n in labels} - set(names))
        if unknown:
            raise ValueError(
                f"Label(s) {unknown[:5]} in column {column!r} of the {split} split are not in "
                "the training split, so the model cannot learn them; fix the label column "
                "(--label_column, --label_separator) or add training examples."
            )
    ids = {name: i for i, name in enumerate(names)}
    encoded = {s: [[ids[n] for n in labels] for labels in rows] for s, rows in sets.items()}
    return encoded, SequenceFeature(ClassLabel(names=names))


def _single_labels(raw: dict[str, list], column: str) -> tuple[dict[str, list], ClassLabel]:
    missing = [(s, i) for s, r in raw.items() for i, v in enumerate(r) if _is_missing(v)]
    if missing:
        raise ValueError(
            f"Row {missing[0][1]} of the {missing[0][0]} split has no label in column {column!r}; "
            "label or drop it, or point --label_column at the right column."
        )
    integers = all(isinstance(v, int | np.integer) for r in raw.values() for v in r)
    keys = {s: [str(int(v)) if integers else str(v) for v in r] for s, r in raw.items()}
    names = sorted(set(keys["train"]), key=int if integers else None)
    unknown = sorted({k for r in keys.values() for k in r} - set(names))
    if unknown:
        raise ValueError(
            f"Label(s) {unknown[:5]} in column {column!r} are not in the training split; fix "
            "--label_column or add training examples."
        )
    ids = {name: i for i, name in enumerate(names)}
    return {s: [ids[k] for k in r] for s, r in keys.items()}, ClassLabel(names=names)


def _texts(frame: pd.DataFrame, column: str, flag: str, split: str) -> list:
    if column not in frame.columns:
        raise ValueError(
            f"The {split} data has no column {column!r} (columns: {', '.join(map(str, frame.columns))}); "
            f"pass {flag}."
        )
    return frame[column].tolist()


def _keep_rows(texts: dict[str, list], split: str, empty_texts: str) -> list[int]:
    """Rows whose every text (``{flag: values}``) is a non-empty string; error or drop others."""
    n = len(next(iter(texts.values())))
    bad = {
        i
        for values in texts.values()
        for i, v in enumerate(values)
        if not isinstance(v, str) or not v.strip()
    }
    if bad and empty_texts == "error":
        flags = " / ".join(texts)
        raise ValueError(
            f"The {split} split has {len(bad)} row(s) with a missing or empty text ({flags}), "
            f"rows {sorted(bad)[:5]}; fill or drop them, or pass --empty_texts drop."
        )
    if bad:
        logger.warning(f"Dropped {len(bad)} of {n:,} {split} row(s) with a missing or empty text.")
    if len(bad) == n:
        raise ValueError(
            f"Every text of the {split} split is missing or empty; check {', '.join(texts)}."
        )
    return [i for i in range(n) if i not in bad]


def _splits(
    dataset: Dataset,
    problem_type: str,
    validation_size: float,
    test_size: float,
    seed: int,
    need_validation: bool = True,
    need_test: bool = True,
) -> dict[str, Dataset]:
    """Split off validation and test: iterative stratification (multi-label) or at random."""
    n = len(dataset)
    for flag, value in (("test", test_size), ("validation", validation_size)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"--{flag}_size must be a fraction in (0, 1), got {value}.")
    if validation_size + test_size >= 1.0:
        raise ValueError("--validation_size + --test_size must leave rows for training.")
    rest = np.arange(n)
    out = {}
    shares = {"test": test_size} if need_test else {}
    if need_validation:
        shares["validation"] = validation_size / (1 - (test_size if need_test else 0.0))
    for split, share in shares.items():
        keep, held = _one_split(dataset.select(rest), problem_type, share, seed)
        out[split] = rest[held]
        rest = rest[keep]
    if problem_type == MULTI_LABEL:
        rest, out = _keep_labels_in_train(list(dataset["label"]), rest, out)
    return {"train": dataset.select(rest)} | {s: dataset.select(i) for s, i in out.items()}


def _keep_labels_in_train(labels: list[list[int]], train: np.ndarray, held: dict) -> tuple:
    """Move one held-out row back to training for each label that training would lack (a
    label seen once or twice can otherwise land only in validation or test)."""
    seen = {i for row in train for i in labels[row]}
    for split in list(held):
        for row in list(held[split]):
            if set(labels[row]) - seen:
                seen |= set(labels[row])
                train = np.sort(np.append(train, row))
                held[split] = held[split][held[split] != row]
    return train, held


def _one_split(dataset: Dataset, problem_type: str, share: float, seed: int):
    n = len(dataset)
    if problem_type == MULTI_LABEL:
        from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

        num = len(dataset.features["label"].feature.names)
        y = np.zeros((n, num), dtype=np.int64)
        for i, ids in enumerate(dataset["label"]):
            y[i, ids] = 1
        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=share, random_state=seed)
        return next(splitter.split(np.zeros(n), y))
    if problem_type == SINGLE_LABEL:
        from sklearn.model_selection import train_test_split

        keep, held = train_test_split(
            np.arange(n), test_size=share, random_state=seed, stratify=dataset["label"]
        )
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
    given = {"train": data, "validation": validation, "test": test}
    tables = {s: _table(v, s, encoding) for s, v in given.items() if v is not None}
    raw = {s: _texts(t, label_column, "--label_column", s) for s, t in tables.items()}
    problem_type = infer_problem_type(raw["train"], problem_type, label_separator, label_column)
    if problem_type == SINGLE_LABEL and text_pair_column is None:
        return load_text_classification_dataset(data, **common, **single_label_kwargs)
    columns = {"text": (text_column, "--text_column")}
    if text_pair_column is not None:
        columns["text_pair"] = (text_pair_column, "--text_pair_column")
    kept = _kept_rows(tables, columns, raw, empty_texts)
    built = _build(kept, problem_type, label_separator, label_column)
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


def _build(kept: dict, problem_type: str, separator: str | None, column: str) -> dict:
    """``{split: Dataset}`` with the texts and the encoded labels."""
    labels, feature = _encode_labels(
        {s: v["label"] for s, v in kept.items()}, problem_type, separator, column
    )
    texts = [key for key in next(iter(kept.values())) if key != "label"]
    features = Features({key: Value("string") for key in texts} | {"label": feature})
    return {
        s: Dataset.from_dict(v | {"label": labels[s]}, features=features) for s, v in kept.items()
    }


def _kept_rows(tables: dict, columns: dict, raw: dict, empty_texts: str) -> dict[str, dict]:
    """``{split: {"text": [...], ["text_pair": [...],] "label": [...]}}`` without empty texts."""
    kept = {}
    for split, table in tables.items():
        texts = {flag: _texts(table, col, flag, split) for col, flag in columns.values()}
        rows = _keep_rows(texts, split, empty_texts)
        kept[split] = {
            key: [texts[flag][i] for i in rows] for key, (_, flag) in columns.items()
        } | {"label": [raw[split][i] for i in rows]}
    return kept
