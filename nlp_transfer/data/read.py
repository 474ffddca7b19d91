"""Step 1 of the data pipeline (:mod:`nlp_transfer.data.pipeline`): read the user's splits.

Files (CSV/TSV, JSON Lines or JSON arrays, Parquet) are read by ``datasets``' packaged builders
into its Arrow cache and memory-mapped from there; pandas DataFrames and ``datasets.Dataset``
objects are taken as they are; any other name is a Hugging Face Hub dataset (which fails fast
when the Hub cannot be reached). Nothing here looks at the columns: that is the checks' step.
"""

from __future__ import annotations

import codecs
import logging
import os
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
from datasets import Dataset

from ..hub import HUB_PROBE_TIMEOUT_S, hub_offline_requested, hub_reachable
from .builtin import BUILTIN_DATASETS

FILE_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
}
_VALIDATION_NAMES = ("validation", "valid", "dev")
_TEXT_FORMATS = ("csv", "json")

logger = logging.getLogger(__name__)

DataSource = str | os.PathLike | pd.DataFrame | Dataset


def is_dataset_name(data: object) -> bool:
    """A built-in or Hub dataset name rather than a file path (no such file, no data suffix)."""
    return (
        isinstance(data, str)
        and not Path(data).expanduser().exists()
        and Path(data).suffix.lower() not in {*FILE_FORMATS, ".txt"}
    )


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


def to_table(
    source: DataSource, what: str, encoding: str = "utf-8", cache_dir: str | None = None
) -> Dataset | pd.DataFrame:
    if isinstance(source, Dataset | pd.DataFrame):
        return source
    if isinstance(source, str | os.PathLike):
        return read_table(source, encoding, cache_dir)
    raise TypeError(
        f"{what}: expected a file path, pandas DataFrame or Dataset, got {type(source)}"
    )


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


def read_splits(
    data: DataSource,
    validation: DataSource | None,
    test: DataSource | None,
    cache_dir: str | os.PathLike | None,
    encoding: str,
) -> dict[str, Dataset | pd.DataFrame]:
    """Step 1 of the pipeline: the raw splits, as read.

    A Hub dataset's own splits (``train``, and ``validation``/``valid``/``dev`` and ``test`` when
    it has them), or ``data`` as ``train``; then ``validation`` and ``test`` when given. Files are
    read with :func:`read_table` (memory-mapped Arrow), DataFrames and Datasets are taken as they
    are.

    Raises:
        FileNotFoundError: A data file does not exist.
        ValueError: A file cannot be read or decoded, or a Hub dataset cannot be loaded.
        TypeError: A source that is neither a path, a DataFrame nor a Dataset.
    """
    cache = None if cache_dir is None else str(cache_dir)
    if is_dataset_name(data):
        tables: dict[str, Dataset | pd.DataFrame] = _load_hub(data, cache)
    else:
        tables = {"train": to_table(data, "train data", encoding, cache)}
    if validation is not None:
        tables["validation"] = to_table(validation, "validation data", encoding, cache)
    if test is not None:
        tables["test"] = to_table(test, "test data", encoding, cache)
    return tables
