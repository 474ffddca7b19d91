"""Parsers of built-in dataset files: the member's bytes in, texts and labels out."""

from __future__ import annotations


def _hutto_rows(raw: bytes) -> list[tuple[float, str]]:
    """``(score, text)`` rows of a Hutto & Gilbert (2014) ``*_GroundTruth.txt`` file."""
    rows = []
    for lineno, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise ValueError(f"Malformed ground-truth line {lineno}: {line[:80]!r}")
        rows.append((float(parts[1]), parts[2].strip()))
    return rows


def parse_hutto_ground_truth(raw: bytes, min_abs_score: float = 0.5) -> tuple[list[str], list[int]]:
    """Parse a Hutto & Gilbert (2014) ``*_GroundTruth.txt`` file: ``id<TAB>score<TAB>text``.

    The score is the mean of ~20 human ratings in [-4, 4]. Label 1 (positive) if score > 0,
    0 (negative) if score < 0; rows with ``abs(score) < min_abs_score`` are dropped as neutral.
    """
    texts, labels = [], []
    for score, text in _hutto_rows(raw):
        if abs(score) < min_abs_score:
            continue
        texts.append(text)
        labels.append(int(score > 0))
    return texts, labels


def parse_hutto_scores(raw: bytes) -> dict[str, list]:
    """The same file as a regression set: every row, ``label`` the mean rating in [-4, 4]."""
    rows = _hutto_rows(raw)
    return {"text": [text for _, text in rows], "label": [score for score, _ in rows]}


def parse_sms_spam(raw: bytes) -> tuple[list[str], list[int]]:
    """Parse the SMS Spam Collection TSV: ``label<TAB>text``, no header; ham -> 0, spam -> 1."""
    texts, labels = [], []
    ids = {"ham": 0, "spam": 1}
    for lineno, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        label, sep, text = line.partition("\t")
        if not sep or label not in ids:
            raise ValueError(f"Malformed SMS Spam Collection line {lineno}: {line[:80]!r}")
        texts.append(text.strip())
        labels.append(ids[label])
    return texts, labels
