"""One prediction per document from the predictions of its windows.

A text longer than the model reads becomes several overlapping windows
(``--long_text_strategy chunks``, :mod:`nlp_transfer.text.windows`); evaluation and prediction
pool the windows' logits back into one row per document, so metrics are per document, never
per window.
"""

from __future__ import annotations

import numpy as np

CHUNK_POOLINGS = ("mean", "max")
# Each window's document: its row number in the split (training data) or the input (prediction).
DOCUMENT_COLUMN = "document"


def pool_windows(
    logits: np.ndarray, document: np.ndarray, num_documents: int, pooling: str = "mean"
) -> np.ndarray:
    """One row of logits per document from its windows' rows.

    Args:
        logits: ``(m, C)`` logits of ``m`` windows.
        document: ``(m,)`` each window's document index in ``[0, num_documents)``.
        num_documents: ``n``.
        pooling: ``mean`` (the average of the windows' logits) or ``max`` (per column).

    Returns:
        ``(n, C)`` float32.

    Raises:
        ValueError: A document has no window, or an unknown ``pooling``.
    """
    logits = np.asarray(logits, dtype=np.float32).reshape(len(logits), -1)
    document = np.asarray(document, dtype=np.int64)
    counts = np.bincount(document, minlength=num_documents)
    if len(counts) > num_documents or (counts == 0).any():
        raise ValueError("Every document needs at least one window, and no window another's.")
    if pooling == "mean":
        sums = np.zeros((num_documents, logits.shape[1]), dtype=np.float64)
        np.add.at(sums, document, logits)
        return (sums / counts[:, None]).astype(np.float32)
    if pooling == "max":
        out = np.full((num_documents, logits.shape[1]), -np.inf, dtype=np.float32)
        np.maximum.at(out, document, logits)
        return out
    raise ValueError(
        f"--chunk_pooling must be one of {', '.join(CHUNK_POOLINGS)}; got {pooling!r}."
    )


def first_of_each(values: np.ndarray, document: np.ndarray, num_documents: int) -> np.ndarray:
    """Per document, the value of its first window (its label: every window carries it)."""
    values = np.asarray(values)
    first = np.full(num_documents, -1, dtype=np.int64)
    rows = np.arange(len(document))[::-1]  # reversed, so the first row's index is written last
    first[np.asarray(document)[::-1]] = rows
    return values[first]
