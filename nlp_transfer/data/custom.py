"""Load a user's labelled text data (files, DataFrames, hub datasets, built-ins) and check it.

Everything ends up as the same thing: a ``DatasetDict`` with ``train``/``validation``/``test``
splits, a ``text`` string column and a ``label`` ``ClassLabel`` column whose names become the
model's ``id2label``. Problems are reported by what the user can fix: the file, the column and
the flag. The checks (empty texts, missing labels, label names) run on whole Arrow columns
(:mod:`nlp_transfer.data.standardize`); no split is ever turned into Python lists of its rows, so
a file of millions of rows is read memory-mapped from ``datasets``' Arrow cache.
"""

from __future__ import annotations

import codecs
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
from datasets import Dataset, DatasetDict

from ..hub import HUB_PROBE_TIMEOUT_S, hub_offline_requested, hub_reachable
from .builtin import BUILTIN_DATASETS, load_builtin_dataset
from .splits import stratified_split
from .standardize import standardize_split

FILE_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
}
_VALIDATION_NAMES = ("validation", "valid", "dev")
EMPTY_TEXT_CHOICES = ("drop", "error")
_TEXT_FORMATS = ("csv", "json")

logger = logging.getLogger(__name__)

DataSource = str | os.PathLike | pd.DataFrame | Dataset


def _is_file_like(source: str | os.PathLike) -> bool:
    path = Path(source)
    return path.suffix.lower() in FILE_FORMATS or path.exists()


def check_encoding(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """Check that a text file decodes with ``encoding``; return the codec name to read it with.

    Reads the file once in 1 MiB chunks (incremental decoder). A UTF-8 file that starts with a
    byte-order mark gets ``"utf-8-sig"``, so the mark does not end up in the first column name.

    Args:
        path: The file.
        encoding: Any Python codec name (``--file_encoding``).

    Returns:
        The codec name to pass to the reader.

    Raises:
        ValueError: Unknown codec, or a byte sequence that does not decode (the message gives
            the line and the flag to fix it).
    """
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise ValueError(f"--file_encoding {encoding!r} is not a known text encoding.") from None
    decoder = codecs.getincrementaldecoder(codec)()
    line, first = 1, True
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            if first and codec == "utf-8" and chunk.startswith(codecs.BOM_UTF8):
                codec = "utf-8-sig"
            first = False
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                start = max(err.start - len(err.object) + len(chunk), 0)
                line += chunk[:start].count(b"\n")
                bad = err.object[err.start : err.start + 1].hex()
                raise ValueError(
                    f"{path} is not valid {encoding} text: byte 0x{bad} on line {line} cannot be "
                    f"decoded ({err.reason}). Files saved by Excel or older Windows tools are "
                    "often Windows-1252/latin-1: pass --file_encoding cp1252 (or latin-1), or "
                    "re-save the file as UTF-8."
                ) from None
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{path} is not valid {encoding} text: it ends inside a multi-byte character "
                f"({err.reason}); the file may be truncated."
            ) from None
    return codec


def read_table(
    path: str | os.PathLike, encoding: str = "utf-8", cache_dir: str | os.PathLike | None = None
) -> Dataset:
    """Read a CSV/TSV, JSON Lines (or JSON array) or Parquet file into a ``Dataset``.

    Uses ``datasets.load_dataset`` with the matching packaged builder: the file is converted
    once to an Arrow file in ``datasets``' cache and memory-mapped from there (a later call on
    the unchanged file reuses it), so the rows are not held in Python. Text formats are first
    checked to decode with ``encoding`` (:func:`check_encoding`), so a wrongly encoded file gets
    a message naming the line and ``--file_encoding`` rather than a parser's stack trace.

    Args:
        path: The file.
        encoding: Text encoding of CSV/TSV/JSON files (``--file_encoding``); ignored for Parquet.
        cache_dir: Where ``datasets`` keeps its Arrow cache of the file (and of what is computed
            from it: encoded labels, splits, tokens); None: its default (``HF_DATASETS_CACHE``,
            ``~/.cache/huggingface/datasets``).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the extension is unknown, the encoding is wrong, or the file cannot be
            parsed.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"Data file not found: {path}")
    builder = FILE_FORMATS.get(path.suffix.lower())
    if builder is None:
        raise ValueError(
            f"Cannot read {path}: unknown extension {path.suffix!r}; use one of "
            f"{', '.join(sorted(FILE_FORMATS))}."
        )
    kwargs: dict[str, Any] = {"sep": "\t"} if path.suffix.lower() == ".tsv" else {}
    if builder in _TEXT_FORMATS:
        codec = check_encoding(path, encoding)
        if codec != "utf-8":
            kwargs["encoding"] = codec
    try:
        return datasets.load_dataset(
            builder,
            data_files=str(path),
            split="train",
            cache_dir=None if cache_dir is None else str(cache_dir),
            **kwargs,
        )
    except Exception as err:  # datasets/pyarrow raise many types; the user needs the file name
        raise ValueError(
            f"Could not read {path} as {builder.upper()}: {type(err).__name__}: {err}. "
            "Check the file's format (one type per column: a column mixing numbers and words "
            "must be quoted strings throughout)."
        ) from err


def _to_table(
    source: DataSource, what: str, encoding: str = "utf-8", cache_dir: str | None = None
) -> Dataset | pd.DataFrame:
    if isinstance(source, Dataset | pd.DataFrame):
        return source
    if isinstance(source, str | os.PathLike):
        return read_table(source, encoding, cache_dir)
    raise TypeError(
        f"{what}: expected a file path, pandas DataFrame or Dataset, got {type(source)}"
    )


def _standardize(
    tables: Mapping[str, Dataset | pd.DataFrame],
    text_column: str,
    label_column: str,
    empty_texts: str = "drop",
) -> DatasetDict:
    """Every split checked and encoded in Arrow (:func:`~.standardize.standardize_split`); the
    label names are the training split's (``train`` comes first)."""
    out, names = {}, None
    for split, table in tables.items():
        out[split], names = standardize_split(
            table, split, text_column, label_column, empty_texts, names
        )
    return DatasetDict(out)


def _load_hub(name: str, cache_dir: str | None) -> dict[str, Dataset]:
    builtin = ", ".join(sorted(BUILTIN_DATASETS))
    if not hub_offline_requested() and not hub_reachable():
        raise ValueError(
            f"--dataset_name {name!r} is not a built-in dataset ({builtin}), and the Hugging Face "
            f"Hub cannot be reached (no connection within {HUB_PROBE_TIMEOUT_S:.0f} s). Use a "
            "built-in name, pass local files with --train_file, or set HF_HUB_OFFLINE=1 to use "
            "a copy in the local Hugging Face cache."
        )
    try:
        loaded = datasets.load_dataset(name, cache_dir=cache_dir)
    except Exception as err:
        hint = " (offline mode is set)" if hub_offline_requested() else ""
        raise ValueError(
            f"--dataset_name {name!r} is not a built-in dataset ({builtin}) and could not be "
            f"loaded from the Hugging Face Hub{hint}: {type(err).__name__}: {err}. Use a "
            "built-in name, or pass local files with --train_file."
        ) from err
    splits: dict[str, Dataset] = {"train": loaded["train"]} if "train" in loaded else {}
    for key in _VALIDATION_NAMES:
        if key in loaded:
            splits["validation"] = loaded[key]
            break
    if "test" in loaded:
        splits["test"] = loaded["test"]
    if "train" not in splits:
        raise ValueError(f"Hub dataset {name!r} has no 'train' split (it has {list(loaded)}).")
    return splits


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
    """Load labelled text from any supported source into train/validation/test splits.

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
    _check_empty_texts_choice(empty_texts)
    if isinstance(data, str) and data in BUILTIN_DATASETS and validation is None and test is None:
        return load_builtin_dataset(
            data,
            cache_dir=cache_dir,
            validation_size=validation_size,
            test_size=test_size,
            seed=seed,
        )
    tables = _read_tables(data, validation, test, cache_dir, encoding)
    dataset = _standardize(tables, text_column, label_column, empty_texts)
    return _split_missing(dataset, validation_size, test_size, seed)


def _check_empty_texts_choice(empty_texts: str) -> None:
    """Raise if ``--empty_texts`` is not one of :data:`EMPTY_TEXT_CHOICES`."""
    if empty_texts not in EMPTY_TEXT_CHOICES:
        raise ValueError(
            f"--empty_texts must be one of {', '.join(EMPTY_TEXT_CHOICES)}, got {empty_texts!r}."
        )


def _read_tables(
    data: DataSource,
    validation: DataSource | None,
    test: DataSource | None,
    cache_dir: str | os.PathLike | None,
    encoding: str,
) -> dict[str, Dataset | pd.DataFrame]:
    """The raw splits: a hub dataset's own, or ``data`` as ``train`` plus the ones given."""
    cache = None if cache_dir is None else str(cache_dir)
    if isinstance(data, str) and not _is_file_like(data):
        tables: dict[str, Dataset | pd.DataFrame] = _load_hub(data, cache)
    else:
        tables = {"train": _to_table(data, "train data", encoding, cache)}
    if validation is not None:
        tables["validation"] = _to_table(validation, "validation data", encoding, cache)
    if test is not None:
        tables["test"] = _to_table(test, "test data", encoding, cache)
    return tables


def _split_missing(
    dataset: DatasetDict, validation_size: float, test_size: float, seed: int
) -> DatasetDict:
    """Split the validation and/or test split off ``train`` where not given (stratified)."""
    if "validation" in dataset and "test" in dataset:
        return dataset
    split = stratified_split(
        dataset["train"],
        validation_size=validation_size,
        test_size=test_size,
        seed=seed,
        need_validation="validation" not in dataset,
        need_test="test" not in dataset,
    )
    return DatasetDict(
        {s: dataset[s] if s in dataset else split[s] for s in ("train", "validation", "test")}
        | {"train": split["train"]}
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
