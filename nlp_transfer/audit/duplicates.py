"""Exact and near duplicates, within and across splits.

Two texts are **exact** duplicates when they are equal after :func:`normalize_text` (Unicode
NFKC, case folded, punctuation and runs of whitespace made one space), and **near** duplicates
when the cosine similarity of their sentence features (:mod:`.embed`, unit vectors) is at least
a threshold (0.95), or when it is at least :data:`WORDING_MIN_COSINE` (0.85) and their normalised
texts are nearly the same characters (:func:`text_similarity` at least
:data:`WORDING_MIN_SIMILARITY`, 0.8): the sentence features find the candidates, the wording
confirms them (the two stages of near-duplicate search in the deduplication literature, e.g. Lee
et al. 2022, "Deduplicating Training Data Makes Language Models Better", with a cheap candidate
filter before an exact comparison). Why: a copy with one word dropped or repeated can move the
features below 0.95 (91% of such planted copies of sentiment sentences reached it, 99% reached
0.85), while below 0.95 the features alone also pair paraphrases ("A less than thrilling
thriller." / "A thriller without a lot of thrills.", 0.88). With the rule, 99% of those copies
are found, and the shipped Rotten Tomatoes sentences gain 4 near pairs to the 1 at 0.95
(``benchmarks/audit.py --parts leakage``).

Pairs are joined into groups (connected components, ``scipy.sparse.csgraph``); a
group whose rows carry different labels is a conflict, and a validation or test row with a
duplicate in training is leakage (its test score measures memory, not transfer).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from difflib import SequenceMatcher

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm.auto import tqdm

from ..console import stderr_is_terminal

_NOT_WORD = re.compile(r"[\W_]+")
WORDING_MIN_COSINE = 0.85  # below the threshold, a pair this close is checked for its wording
WORDING_MIN_SIMILARITY = 0.8  # text_similarity at or above which the wording is the same
_COMPARED_CHARS = 5_000  # the start of long texts only: difflib is quadratic in the worst case


def normalize_text(text: str) -> str:
    """``text`` as exact-duplicate detection compares it: NFKC, case folded, every run of
    punctuation, symbols and whitespace one space, stripped (``"Great  movie!!"`` ->
    ``"great movie"``)."""
    return _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def exact_pairs(texts: Sequence[str]) -> np.ndarray:
    """``(m, 2)`` index pairs ``(first, other)`` of texts equal after :func:`normalize_text`:
    each later copy paired with the first; texts that normalise to nothing are left out."""
    first: dict[str, int] = {}
    pairs = []
    for i, text in enumerate(texts):
        key = normalize_text(text)
        if not key:
            continue
        if key in first:
            pairs.append((first[key], i))
        else:
            first[key] = i
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def text_similarity(a: str, b: str) -> float:
    """How much of two texts' normalised characters match, in [0, 1]: difflib's
    ``SequenceMatcher.ratio`` (``2 * matches / total length``) of :func:`normalize_text` of each
    (their first 5,000 characters)."""
    a, b = normalize_text(a)[:_COMPARED_CHARS], normalize_text(b)[:_COMPARED_CHARS]
    return SequenceMatcher(None, a, b, autojunk=False).ratio() if a or b else 1.0


def near_pairs(
    features: np.ndarray, threshold: float = 0.95, block_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows whose cosine similarity is at least ``threshold``.

    Blocks of rows are multiplied against all later rows (``O(n^2 d)`` work, ``block_size * n``
    memory), so every pair is visited once.

    Args:
        features: ``(n, d)`` unit vectors.
        threshold: Cosine similarity in (0, 1].
        block_size: Rows per block.

    Returns:
        ``((m, 2) index pairs i < j, (m,) their cosines)``.

    Raises:
        ValueError: ``threshold`` outside (0, 1].
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"--near_duplicate_threshold must be in (0, 1], got {threshold}.")
    n = len(features)
    found, cosines = [], []
    starts = range(0, n, block_size)
    bar = tqdm(starts, desc="Near duplicates", leave=False, disable=not stderr_is_terminal())
    for start in bar:
        block = features[start : start + block_size]
        sims = block @ features[start:].T  # (b, n - start)
        rows, cols = np.nonzero(sims >= threshold - 1e-6)
        keep = cols > rows  # later rows only; the diagonal is each row with itself
        rows, cols = rows[keep], cols[keep]
        found.append(np.stack([rows + start, cols + start], axis=1))
        cosines.append(sims[rows, cols])
    if not found:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    return np.concatenate(found).astype(np.int64), np.concatenate(cosines).astype(np.float64)


def duplicate_groups(n: int, pairs: np.ndarray) -> np.ndarray:
    """``(n,)`` group id of every row: rows joined by ``pairs`` share one (connected
    components); a row without a duplicate is a group of its own."""
    if len(pairs) == 0:
        return np.arange(n)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def find_duplicates(
    texts: Sequence[str],
    splits: Sequence[str],
    labels: Sequence,
    features: np.ndarray | None,
    threshold: float = 0.95,
    wording_min_cosine: float = WORDING_MIN_COSINE,
) -> dict:
    """Exact and near duplicates of rows pooled from every split.

    Args:
        texts: ``n`` texts (every split, concatenated).
        splits: ``n`` split names (``train``, ``validation``, ``test``).
        labels: ``n`` labels, comparable with ``==`` (class ids, or tuples for multi-label).
        features: ``(n, d)`` unit vectors, or None for exact duplicates only.
        threshold: Cosine at or above which two texts are near duplicates.
        wording_min_cosine: Cosine at or above which (and below ``threshold``) two texts are
            near duplicates when their :func:`text_similarity` is at least 0.8; at
            ``threshold`` or above, wording is not checked.

    Returns:
        ``{"pairs": list of {"a", "b", "kind" ("exact"|"near"), "cosine"}; "group": (n,) group
        ids; "in_group": (n,) bool, rows with a duplicate; "conflicting": (n,) bool, rows in a
        group whose labels differ; "leaked": (n,) bool, non-training rows with a duplicate in
        training; "members": {group id: its rows} of groups of two or more; "counts": the
        numbers the report prints}``.
    """
    n = len(texts)
    exact = exact_pairs(texts)
    kinds = {(int(a), int(b)): ("exact", 1.0) for a, b in exact}
    if features is not None and n:
        near, cosines = near_pairs(features, min(threshold, wording_min_cosine))
        for (a, b), cosine in zip(near, cosines, strict=True):
            key = (int(a), int(b))
            if key in kinds:
                continue
            if cosine >= threshold - 1e-6 or (
                text_similarity(texts[key[0]], texts[key[1]]) >= WORDING_MIN_SIMILARITY
            ):
                kinds[key] = ("near", float(cosine))
    pairs = np.asarray(sorted(kinds), dtype=np.int64).reshape(-1, 2)
    group = duplicate_groups(n, pairs)
    sizes = np.bincount(group, minlength=n)
    in_group = sizes[group] > 1
    splits, labels = np.asarray(splits), list(labels)
    conflicting = np.zeros(n, dtype=bool)
    train_groups = set(group[splits == "train"].tolist())
    members: dict[int, list[int]] = {}
    for i in np.flatnonzero(in_group):
        members.setdefault(int(group[i]), []).append(int(i))
    for rows in members.values():
        if len({_hashable(labels[i]) for i in rows}) > 1:
            conflicting[rows] = True
    leaked = (splits != "train") & in_group & np.isin(group, list(train_groups))
    records = [
        {"a": int(a), "b": int(b), "kind": kinds[(a, b)][0], "cosine": kinds[(a, b)][1]}
        for a, b in (tuple(map(int, p)) for p in pairs)
    ]
    counts = {
        "exact_pairs": sum(r["kind"] == "exact" for r in records),
        "near_pairs": sum(r["kind"] == "near" for r in records),
        "rows_with_a_duplicate": int(in_group.sum()),
        "groups": len(members),
        "conflicting_rows": int(conflicting.sum()),
        "leaked_rows": {
            str(s): int((leaked & (splits == s)).sum()) for s in sorted(set(splits)) if s != "train"
        },
        "near_duplicate_threshold": threshold,
        "wording_min_cosine": wording_min_cosine,
    }
    return {
        "pairs": records,
        "group": group,
        "in_group": in_group,
        "conflicting": conflicting,
        "leaked": leaked,
        "members": members,
        "counts": counts,
    }


def _hashable(label):
    return tuple(label) if isinstance(label, list | np.ndarray) else label
