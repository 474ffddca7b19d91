"""Batch prediction of a file: streamed in chunks, written as it goes, resumable.

``nlp-transfer predict --file big.csv --output preds.jsonl`` reads the input a chunk of rows at a
time (:mod:`nlp_transfer.text.stream`), predicts each chunk with length-sorted batches
(:meth:`TextClassifier.predict <nlp_transfer.text.classifier.TextClassifier.predict>`, results
in input order) and appends one JSON line per row to the output, flushed after every chunk:
memory does not grow with the number of rows. Line ``i`` of the output is row ``i`` of the input
(``{"text": ..., "label": ..., "score": ..., "scores": {...}}``, the form of ``predict``).

If the output already holds ``K`` complete lines of an earlier, interrupted run of the same
input, the first ``K`` rows are skipped and the rest appended; a last line cut short is dropped
first. An output that is complete, or does not look like one of ours for this input, is refused
unless ``overwrite_output``: an existing file is never overwritten silently.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TextIO

from tqdm.auto import tqdm

from ..training.progress import format_duration, stderr_is_terminal
from .classifier import TextClassifier
from .stream import Row, chunks, open_text_rows

logger = logging.getLogger(__name__)

LINE_START = b'{"text": '  # every line of ours starts so (json.dumps keeps the key order)
RESULT_KEYS = {
    "single_label_classification": {"text", "label", "score", "scores"},
    "multi_label_classification": {"text", "labels", "scores"},
    "regression": {"text", "score"},
}
OVERWRITE_HINT = "pass --overwrite_output to replace it, or choose another --output"


def prediction_lines(rows: Sequence[Row], results: Sequence[dict]) -> list[str]:
    """One JSON line per row: ``{"text": row, **result}`` (a pair's text is a 2-item list)."""
    return [
        json.dumps({"text": row, **result}, ensure_ascii=False) + "\n"
        for row, result in zip(rows, results, strict=True)
    ]


@dataclass
class Resume:
    """What an earlier run left in the output.

    Attributes:
        lines: Complete lines (rows done).
        keep_bytes: Where the complete lines end; anything after is a cut-short line.
        first: The first complete line, parsed (None when there is none).
        last: The last complete line, parsed.
    """

    lines: int
    keep_bytes: int
    first: dict | None = None
    last: dict | None = None


def read_resume_point(output: Path, classifier: TextClassifier) -> Resume:
    """Count the complete lines of an earlier run's output and check they look like ours.

    Raises:
        FileExistsError: The file does not look like predictions of this model (the message
            says how to go on).
    """
    lines = keep = offset = last_start = 0
    with output.open("rb") as file:
        while block := file.read(1 << 20):
            end = block.rfind(b"\n")
            if end >= 0:
                lines += block.count(b"\n")
                before = block.rfind(b"\n", 0, end)
                last_start = offset + before + 1 if before >= 0 else keep
                keep = offset + end + 1
            offset += len(block)
        file.seek(0)
        head = file.read(len(LINE_START))
        first_line = file.readline() if lines else b""
        file.seek(last_start)
        last_line = file.read(keep - last_start)
    if not head or not LINE_START.startswith(head):  # a line of ours, or its beginning
        raise FileExistsError(f"--output {output} exists and is not predictions; {OVERWRITE_HINT}.")
    resume = Resume(lines, keep)
    if lines:
        resume.first = _parse_line(head + first_line, output, 1, classifier)
        resume.last = _parse_line(last_line, output, lines, classifier)
    return resume


def _parse_line(line: bytes, output: Path, number: int, classifier: TextClassifier) -> dict:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    expected = RESULT_KEYS[classifier.problem_type]
    scores = record.get("scores") if isinstance(record, dict) else None
    if (
        not isinstance(record, dict)
        or set(record) != expected
        or (scores is not None and list(scores) != classifier.labels)
    ):
        raise FileExistsError(
            f"--output {output} exists, but its line {number} is not a prediction of this model "
            f"(keys {sorted(expected)}, labels {classifier.labels}); {OVERWRITE_HINT}."
        )
    return record


def skip_done(rows: Iterator[Row], resume: Resume, output: Path, source: Path) -> Iterator[Row]:
    """The rows left after the ``resume.lines`` already predicted, checked against the output.

    Raises:
        FileExistsError: The output is complete, or is not of this input (a text differs, or
            it has more lines than the input has rows).
    """
    for number in range(1, resume.lines + 1):
        row = next(rows, None)
        if row is None:
            raise FileExistsError(
                f"--output {output} has {resume.lines:,} lines but --file {source} only "
                f"{number - 1:,} rows: it is not the output of this input; {OVERWRITE_HINT}."
            )
        record = resume.first if number == 1 else resume.last if number == resume.lines else None
        text = list(row) if isinstance(row, tuple) else row
        if record is not None and record["text"] != text:
            raise FileExistsError(
                f"--output {output}: line {number} is the prediction of another text than row "
                f"{number} of --file {source}; it is not the output of this input; "
                f"{OVERWRITE_HINT}."
            )
    following = next(rows, None)
    if following is None and resume.lines:
        raise FileExistsError(
            f"--output {output} is complete: it holds the predictions of all {resume.lines:,} "
            f"rows of --file {source}; {OVERWRITE_HINT}."
        )
    return chain([following], rows) if following is not None else rows


class RowProgress:
    """Rows predicted: a tqdm bar on a terminal, a log line every ``every_s`` seconds elsewhere.

    Args:
        total: Rows of the input, when known (Parquet), else None.
        initial: Rows done by an earlier run.
        every_s: Seconds between log lines without a terminal.
        interactive: Bar (True) or log lines (False); None: :func:`stderr_is_terminal`.
    """

    def __init__(
        self,
        total: int | None,
        initial: int = 0,
        every_s: float = 30.0,
        interactive: bool | None = None,
    ):
        interactive = stderr_is_terminal() if interactive is None else interactive
        self.total, self.done, self.new, self.every_s = total, initial, 0, every_s
        self.lines = not interactive
        self.bar = tqdm(
            total=total, initial=initial, desc="Predicting", unit="rows", disable=not interactive
        )
        self.start = self._logged = time.perf_counter()

    def update(self, rows: int) -> None:
        """Count ``rows`` more rows written; log a line when ``every_s`` has passed."""
        self.done += rows
        self.new += rows
        self.bar.update(rows)
        now = time.perf_counter()
        if self.lines and now - self._logged >= self.every_s:
            self._logged = now
            logger.info(self.line())

    def line(self) -> str:
        """``"predicted 12,288 of 50,000 rows (24.6%) | 204.1 rows/s | 3m05s left"``."""
        rate = self.new / max(time.perf_counter() - self.start, 1e-9)
        if not self.total:
            return f"predicted {self.done:,} rows | {rate:.1f} rows/s"
        left = format_duration((self.total - self.done) / rate) if rate > 0 else "?"
        return (
            f"predicted {self.done:,} of {self.total:,} rows ({100 * self.done / self.total:.1f}%)"
            f" | {rate:.1f} rows/s | {left} left"
        )

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


def predict_file(
    classifier: TextClassifier,
    file: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    batch_size: int = 64,
    chunk_size: int = 1024,
    overwrite_output: bool = False,
    coverage: float | None = None,
) -> dict:
    """Predict every row of a file in chunks, appending JSON lines as it goes (resumable).

    Args:
        classifier: A loaded classifier (any backend).
        file: ``.txt`` (one text per line), ``.csv``, ``.tsv``, ``.jsonl``, ``.json`` or
            ``.parquet``.
        output: The JSON Lines file; None writes to standard output (no resume).
        text_column: The column holding the text (``--text_column``).
        text_pair_column: Sentence-pair models: the second text's column.
        batch_size: Texts per forward pass, in order of length within a chunk.
        chunk_size: Rows read, predicted and written at a time (memory, and the work an
            interruption can lose).
        overwrite_output: Replace an existing ``output`` instead of resuming it.
        coverage: Add conformal prediction sets (intervals) at this coverage to each line.

    Returns:
        ``{"rows", "predicted", "skipped", "seconds", "rows_per_s"}``: rows in the output,
        rows predicted by this call, rows an earlier run had done, and this call's time.

    Raises:
        FileExistsError: ``output`` is complete or not ours (without ``overwrite_output``).
        FileNotFoundError: No such ``file``.
        ValueError: A missing column (the message names the flag), a row without text, an
            unreadable file, ``output`` being ``file``, or a ``chunk_size``/``batch_size``
            below 1.
    """
    if chunk_size < 1 or batch_size < 1:
        raise ValueError("--chunk_size and --batch_size must be positive.")
    path = Path(output) if output is not None else None
    if path is not None and path.exists() and Path(file).exists() and os.path.samefile(path, file):
        raise ValueError(f"--output {path} is the --file itself: choose another --output.")
    source = open_text_rows(file, text_column, text_pair_column)
    rows, resume = source.rows, Resume(0, 0)
    if path is not None and path.exists() and path.stat().st_size and not overwrite_output:
        resume = read_resume_point(path, classifier)
        rows = skip_done(rows, resume, path, Path(file))
        if resume.lines:
            logger.info(f"Resuming {path}: {resume.lines:,} rows done, skipped; appending.")
    stream = _open_output(path, resume)
    progress = RowProgress(source.total, resume.lines)
    try:
        for chunk in chunks(rows, chunk_size):
            stream.writelines(
                prediction_lines(chunk, classifier.predict(chunk, batch_size, coverage))
            )
            stream.flush()
            progress.update(len(chunk))
    except KeyboardInterrupt:
        if path is not None:
            logger.warning(
                f"Interrupted: {progress.done:,} rows in {path}; the same command goes on."
            )
        raise
    finally:
        progress.close()
        if path is not None:
            stream.close()
    seconds = time.perf_counter() - progress.start
    report = {"rows": progress.done, "predicted": progress.new, "skipped": resume.lines}
    report |= {"seconds": seconds, "rows_per_s": progress.new / max(seconds, 1e-9)}
    logger.info(  # benchmarks/inference.py reads this line
        f"Predicted {report['predicted']:,} rows in {seconds:.2f} s "
        f"({report['rows_per_s']:.1f} rows/s, {classifier.backend})"
        + (f" -> {path}" if path is not None else "")
    )
    return report


def _open_output(path: Path | None, resume: Resume) -> TextIO:
    """Standard output, or ``path`` cut to its complete lines and opened to append."""
    if path is None:
        return sys.stdout
    path.parent.mkdir(parents=True, exist_ok=True)
    if resume.lines:
        os.truncate(path, resume.keep_bytes)  # drop a line cut short by the interruption
        return path.open("a", encoding="utf-8", newline="\n")
    return path.open("w", encoding="utf-8", newline="\n")
