"""Reading the texts of a file row by row, in constant memory, for batch prediction.

Each format is read by its library's streaming reader, a block or a batch at a time:
``pyarrow.csv.open_csv`` (``.csv``/``.tsv``; the text columns read as strings, quoted newlines
allowed), ``pyarrow.parquet.ParquetFile.iter_batches`` (``.parquet``; its row count, from the
metadata, is known before reading), ``json.loads`` line by line (``.jsonl``), and the lines of a
``.txt`` file (one text per line, blank lines skipped). A ``.json`` file holding one JSON array is
read whole (it cannot be streamed: use JSON Lines for big inputs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
Row = str | tuple[str, str]  # a text, or (text, text_pair) for a sentence-pair model


@dataclass
class TextRows:
    """The rows of one input file, ready to iterate once.

    Attributes:
        rows: The texts (or ``(text, text_pair)`` tuples), in file order.
        total: How many rows there are, when known without reading them (Parquet), else None.
    """

    rows: Iterator[Row]
    total: int | None = None


def open_text_rows(
    path: str | os.PathLike, text_column: str = "text", text_pair_column: str | None = None
) -> TextRows:
    """Open a file of texts for streaming; its columns are checked now, its rows read lazily.

    Args:
        path: ``.txt`` (one text per line), ``.csv``, ``.tsv``, ``.jsonl``, ``.json`` or
            ``.parquet``.
        text_column: The column holding the text (``--text_column``; tables only).
        text_pair_column: Sentence-pair models: the second text's column (``--text_pair_column``).

    Returns:
        The rows and, for Parquet, their number.

    Raises:
        FileNotFoundError: No such file.
        ValueError: An unknown extension, a missing column (the message names the flag), a
            row without text, or a file its format's reader cannot parse.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--file {path}: no such file.")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        if text_pair_column:
            raise ValueError("--text_pair_column needs a table (.csv/.tsv/.jsonl/.parquet).")
        return TextRows(_txt_rows(path))
    columns = [(text_column, "--text_column")]
    columns += [(text_pair_column, "--text_pair_column")] if text_pair_column else []
    if suffix in (".csv", ".tsv"):
        return _csv_rows(path, columns)
    if suffix == ".parquet":
        return _parquet_rows(path, columns)
    if suffix in (".jsonl", ".json"):
        return _json_rows(path, columns)
    raise ValueError(
        f"--file {path}: unknown extension {path.suffix!r}; use .txt or one of "
        f"{', '.join(TABLE_SUFFIXES)}."
    )


def chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    """Consecutive lists of ``size`` rows (the last one shorter)."""
    rows = iter(rows)
    while chunk := list(islice(rows, size)):
        yield chunk


def _check_columns(path: Path, names: list[str], columns: list[tuple[str, str]]) -> None:
    for column, flag in columns:
        if column not in names:
            raise ValueError(
                f"{path} has no column {column!r} (columns: {', '.join(names)}); pass {flag}."
            )


def _row(path: Path, number: int, values: list, columns: list[tuple[str, str]]) -> Row:
    """One row's text(s) as strings; a missing (null) text is an error naming row and column."""
    texts = []
    for value, (column, _) in zip(values, columns, strict=True):
        if value is None:
            raise ValueError(
                f"{path}: row {number} has no text in column {column!r} (null or missing); every "
                "input row gets one output line, so fill it or drop the row."
            )
        texts.append(value if isinstance(value, str) else str(value))
    return texts[0] if len(texts) == 1 else (texts[0], texts[1])


def _txt_rows(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8-sig") as lines:
        for line in lines:
            line = line.rstrip("\r\n")
            if line.strip():
                yield line


def _arrow_rows(path: Path, batches: Iterable, columns: list[tuple[str, str]]) -> Iterator[Row]:
    number = 0
    for batch in batches:
        values = [batch.column(column).to_pylist() for column, _ in columns]
        for row in zip(*values, strict=True):
            number += 1
            yield _row(path, number, list(row), columns)


def _csv_rows(path: Path, columns: list[tuple[str, str]]) -> TextRows:
    import pyarrow as pa
    import pyarrow.csv as pv

    parse = pv.ParseOptions(
        delimiter="\t" if path.suffix.lower() == ".tsv" else ",", newlines_in_values=True
    )
    try:
        names = pv.open_csv(path, parse_options=parse).schema.names
        _check_columns(path, names, columns)
        convert = pv.ConvertOptions(
            include_columns=[c for c, _ in columns],
            column_types={c: pa.string() for c, _ in columns},
        )
        reader = pv.open_csv(path, parse_options=parse, convert_options=convert)
    except pa.ArrowException as err:
        raise ValueError(f"Could not read {path} as CSV: {err}") from err
    return TextRows(_arrow_rows(path, _reading(path, "CSV", reader), columns))


def _parquet_rows(path: Path, columns: list[tuple[str, str]]) -> TextRows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except pa.ArrowException as err:
        raise ValueError(f"Could not read {path} as Parquet: {err}") from err
    _check_columns(path, file.schema_arrow.names, columns)
    batches = file.iter_batches(batch_size=4096, columns=[c for c, _ in columns])
    rows = _arrow_rows(path, _reading(path, "Parquet", batches), columns)
    return TextRows(rows, total=file.metadata.num_rows)


def _reading(path: Path, what: str, batches: Iterable) -> Iterator:
    """``batches``, with a reader's error mid-file turned into one naming the file."""
    import pyarrow as pa

    try:
        yield from batches
    except pa.ArrowException as err:
        raise ValueError(f"Could not read {path} as {what}: {err}") from err


def _json_rows(path: Path, columns: list[tuple[str, str]]) -> TextRows:
    records = _json_records(path)
    first = next(records, None)
    if first is not None:  # the first row names the columns of the file: check them now
        _check_columns(path, list(first) if isinstance(first, dict) else [], columns)
    return TextRows(
        _json_texts(path, chain([first], records) if first is not None else records, columns)
    )


def _json_texts(path: Path, records: Iterable, columns: list[tuple[str, str]]) -> Iterator[Row]:
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: row {number} is not a JSON object.")
        yield _row(path, number, [record.get(c) for c, _ in columns], columns)


def _json_records(path: Path) -> Iterator:
    with path.open(encoding="utf-8-sig") as lines:
        first = lines.read(1)
        while first.isspace():
            first = lines.read(1)
        if first == "[":  # a JSON array: read whole
            lines.seek(0)
            yield from json.load(lines)
            return
        lines.seek(0)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {number}: not JSON ({err}).") from err
