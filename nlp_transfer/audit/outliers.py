"""Outliers: empty texts, texts longer than the model reads, and out-of-distribution texts.

The out-of-distribution score is cleanlab's ``OutOfDistribution`` on the sentence features
(the mean cosine distance to the k = 10 nearest training texts, mapped to [0, 1]; low is
atypical; Kuan & Mueller 2022, "Back to the Basics: Revisiting Out-of-Distribution Detection
Baselines"). It is fitted on the training rows; other splits are scored against them. A row is
flagged when its distance is a far-out value of the training rows' (Tukey's fence: above
``Q3 + 3 IQR``), so a clean set flags few or none, rather than a fixed share.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

FAR_OUT = 3.0  # Tukey's "far out" fence, in interquartile ranges


def ood_scores(train: np.ndarray, others: np.ndarray | None = None, k: int = 10) -> tuple:
    """cleanlab's out-of-distribution scores of the training rows (each against the others)
    and of ``others`` (against the training rows).

    Args:
        train: ``(n, d)`` training features.
        others: ``(m, d)`` features of other splits, or None.
        k: Neighbours averaged (fewer when training has fewer rows).

    Returns:
        ``((n,) train scores, (m,) other scores or None)``, in [0, 1], low is atypical.
    """
    from cleanlab.outlier import OutOfDistribution

    k = max(1, min(k, len(train) - 1))
    ood = OutOfDistribution(params={"k": k})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_scores = ood.fit_score(features=train, verbose=False)
        other_scores = None if others is None or not len(others) else ood.score(features=others)
    return np.asarray(train_scores), other_scores


def far_out_threshold(train_scores: np.ndarray) -> float:
    """Scores below this are flagged.

    cleanlab's score is ``exp(-t * d)`` for the mean distance ``d`` to the nearest neighbours,
    so the fence is set on ``-log(score)`` (proportional to ``d``): Tukey's far-out fence
    ``Q3 + 3 IQR`` of the training rows' values, mapped back to a score.
    """
    distance = -np.log(np.clip(train_scores, 1e-300, None))
    q1, q3 = np.percentile(distance, [25, 75])
    return float(np.exp(-(q3 + FAR_OUT * (q3 - q1))))


def token_lengths(texts: Sequence[str], tokenizer) -> np.ndarray:
    """``(n,)`` tokens of each text, special tokens included (no truncation)."""
    if not len(texts):
        return np.zeros(0, dtype=np.int64)
    ids = tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]
    return np.asarray([len(i) for i in ids], dtype=np.int64)


def length_report(lengths: np.ndarray, max_seq_length: int) -> dict:
    """How many texts a model reading ``max_seq_length`` tokens would cut, and the length
    percentiles (tokens)."""
    if not len(lengths):
        return {"texts": 0}
    return {
        "texts": len(lengths),
        "max_seq_length": max_seq_length,
        "longer_than_max_seq_length": int((lengths > max_seq_length).sum()),
        "share_longer": float((lengths > max_seq_length).mean()),
        "tokens_p50": float(np.percentile(lengths, 50)),
        "tokens_p95": float(np.percentile(lengths, 95)),
        "tokens_max": int(lengths.max()),
    }
