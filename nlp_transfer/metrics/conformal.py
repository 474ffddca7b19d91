"""Split conformal prediction: label sets and intervals with a coverage guarantee.

Given nonconformity scores of ``n`` held-out labelled examples (the run's validation split,
scored by the final, calibrated model), a new example's set (or interval) contains its true
label (value) with probability at least ``coverage`` when the examples are exchangeable
(Vovk, Gammerman and Shafer 2005; Angelopoulos and Bates 2021, "A Gentle Introduction to
Conformal Prediction", section 1). The threshold is the ``ceil((n + 1) * coverage) / n``
empirical quantile of the held-out scores.

- Single-label classification: **adaptive prediction sets** (APS; Romano, Sesia and Candès
  2020, "Classification with Valid and Adaptive Coverage"), randomised as in the paper
  (``aps_randomized``, the default): a label's score is the probability of the labels ranked
  above it plus ``u`` times its own, ``u`` uniform in [0, 1), and a set takes the labels whose
  score is at most the threshold. Sets grow where the model is unsure. Randomising makes the
  coverage tight (between the target and the target plus ``1 / (n + 1)``); without it (``aps``,
  what models saved before it use) a true label ranked second always scores 1, so with few
  labels (binary tasks) the threshold is often 1 and every set holds every label (coverage 1.0
  for a 0.9 target). The price: a set can be empty, which happens only where the target is below
  what the top label alone already covers (a 99%-accurate spam filter asked for 80% coverage).
  ``u`` comes from a hash of the text (:func:`example_uniforms`), so a text gets the same set in
  every backend and every call.
- Regression: **conformalized absolute residuals** (split conformal regression, Lei et al.
  2018): ``prediction +- q``, ``q`` the quantile of ``|y - prediction|``.

A small implementation rather than a library: prediction needs only the sorted scores (saved as
``conformal.json`` beside the model), so every backend computes sets from its own
probabilities, with no fitted estimator object to carry (MAPIE's and crepes' classifiers wrap
one). The validation split also selected the epoch and fitted the temperature, a mild departure
from exchangeability; ``benchmarks/calibration.py`` measures the coverage reached on test.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CONFORMAL_FILE = "conformal.json"
MIN_CONFORMAL_ROWS = 20  # the fewest held-out scores a model keeps (0.95 needs 19)
APS, APS_RANDOMIZED, ABSOLUTE_RESIDUAL = "aps", "aps_randomized", "absolute_residual"


def example_uniforms(texts: Sequence[str | tuple[str, str]]) -> np.ndarray:
    """A number in [0, 1) per text from its BLAKE2b hash: the ``u`` of randomised APS, the same
    for a text (or ``(text, text_pair)``) whatever the backend, process or call.

    Returns:
        ``(n,)`` float64.
    """
    out = np.empty(len(texts), dtype=np.float64)
    for i, text in enumerate(texts):
        key = text if isinstance(text, str) else "\x1f".join(text)
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") / 2.0**64
    return out


def aps_scores(
    probs: np.ndarray, labels: np.ndarray, uniforms: np.ndarray | None = None
) -> np.ndarray:
    """APS nonconformity of each example's true label.

    Args:
        probs: ``(n, C)`` probabilities (rows sum to 1).
        labels: ``(n,)`` true label ids.
        uniforms: ``(n,)`` values in [0, 1) (:func:`example_uniforms`): randomised APS, the
            probability of the labels ranked above the true one (by :func:`aps_sets`' order)
            plus ``u`` times its own. None: non-randomised, the mass of the labels ranked at or
            above it (ties: the true label counts its equals ranked above it).

    Returns:
        ``(n,)`` scores in [0, 1].
    """
    probs = np.asarray(probs, dtype=np.float64)
    rows, labels = np.arange(len(probs)), np.asarray(labels, dtype=np.int64)
    true = probs[rows, labels]
    if uniforms is None:
        return np.sum(np.where(probs >= true[:, None], probs, 0.0), axis=1)
    order = np.argsort(-probs, axis=1, kind="stable")
    ranked = np.take_along_axis(probs, order, axis=1)
    above = np.cumsum(ranked, axis=1) - ranked  # mass ranked strictly above each position
    rank = np.argmax(order == labels[:, None], axis=1)
    return above[rows, rank] + np.asarray(uniforms, dtype=np.float64) * true


def conformal_quantile(scores: Sequence[float], coverage: float) -> float:
    """The split-conformal threshold: the ``ceil((n + 1) * coverage)``-th smallest score.

    Returns:
        The threshold; ``inf`` when ``n`` is too small for ``coverage`` (then every label, or
        an unbounded interval, is needed for the guarantee).

    Raises:
        ValueError: ``coverage`` outside (0, 1) or no scores.
    """
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"--coverage must be in (0, 1), got {coverage}.")
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    if ordered.size == 0:
        raise ValueError("Conformal prediction needs held-out scores; none were saved.")
    rank = math.ceil((ordered.size + 1) * coverage)
    return float("inf") if rank > ordered.size else float(ordered[rank - 1])


def aps_sets(
    probs: np.ndarray, threshold: float, uniforms: np.ndarray | None = None
) -> list[list[int]]:
    """Label ids of each example's prediction set, most probable first:
    ``{y : score(x, y) <= threshold}``, the set the guarantee is about, with the scores of
    :func:`aps_scores` (the same ``uniforms``). Randomised sets can be empty; non-randomised ones
    hold at least the most probable label."""
    probs = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-probs, axis=1, kind="stable")
    ranked = np.take_along_axis(probs, order, axis=1)
    cumulative = np.cumsum(ranked, axis=1)
    if uniforms is None:
        sizes = np.maximum(np.sum(cumulative <= threshold + 1e-12, axis=1), 1)
    else:  # the scores grow with rank, so the set is a prefix of the ranking
        scores = cumulative - ranked + np.asarray(uniforms, dtype=np.float64)[:, None] * ranked
        sizes = np.sum(scores <= threshold + 1e-12, axis=1)
    return [order[i, : sizes[i]].tolist() for i in range(len(probs))]


def residual_scores(targets: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """``|y - prediction|`` per example (regression nonconformity)."""
    return np.abs(np.ravel(targets).astype(np.float64) - np.ravel(predictions).astype(np.float64))


def coverage_report(
    scores: np.ndarray,
    test_probs_or_predictions: np.ndarray,
    test_targets: np.ndarray,
    coverages: Sequence[float] = (0.8, 0.9, 0.95),
    regression: bool = False,
    uniforms: np.ndarray | None = None,
) -> dict:
    """Empirical coverage and mean set size (or interval width) on test, per target coverage.

    Args:
        scores: The held-out (validation) nonconformity scores.
        test_probs_or_predictions: ``(n, C)`` test probabilities, or ``(n,)`` predictions.
        test_targets: ``(n,)`` true label ids or values.
        coverages: Target coverages.
        regression: Intervals instead of label sets.
        uniforms: The test texts' ``u`` for randomised APS (None: non-randomised).

    Returns:
        ``{"0.9": {"coverage": ..., "mean_set_size" and "empty_sets" (share), or
        "mean_interval_width": ...}, ...}``.
    """
    out = {}
    for target in coverages:
        q = conformal_quantile(scores, target)
        if regression:
            predictions = np.ravel(test_probs_or_predictions).astype(np.float64)
            inside = np.abs(np.ravel(test_targets) - predictions) <= q
            out[str(target)] = {"coverage": float(np.mean(inside)), "mean_interval_width": 2 * q}
        else:
            sets = aps_sets(test_probs_or_predictions, q, uniforms)
            hits = [int(y) in s for y, s in zip(test_targets, sets, strict=True)]
            out[str(target)] = {
                "coverage": float(np.mean(hits)),
                "mean_set_size": float(np.mean([len(s) for s in sets])),
                "empty_sets": float(np.mean([not s for s in sets])),
            }
    return out


def save_conformal_scores(
    directory: str | os.PathLike, scores: np.ndarray, method: str, split: str = "validation"
) -> Path:
    """Write ``conformal.json``: the method, the split and its sorted scores (what prediction
    needs)."""
    path = Path(directory) / CONFORMAL_FILE
    record = {
        "method": method,
        "split": split,
        "num_examples": len(scores),
        "scores": [round(float(v), 7) for v in np.sort(np.asarray(scores, dtype=np.float64))],
    }
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    return path


def load_conformal_scores(directory: str | os.PathLike) -> dict | None:
    """``{"method", "scores" (n,)}`` of ``directory/conformal.json``, or None when the model
    has none."""
    path = Path(directory).expanduser() / CONFORMAL_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return {"method": record["method"], "scores": np.asarray(record["scores"], dtype=np.float64)}


def add_conformal(
    results: list[dict],
    conformal: dict,
    coverage: float,
    label_names: Sequence[str],
    texts: Sequence[str | tuple[str, str]],
) -> list[dict]:
    """Add ``prediction_set`` (label names) or ``interval`` to decoded predictions, in place.

    Args:
        results: What ``TextClassifier.decode`` returned (``scores`` dicts, or ``score``
            values for regression).
        conformal: What :func:`load_conformal_scores` returned.
        coverage: The target coverage.
        label_names: Label names in id order.
        texts: The texts predicted (randomised APS draws each one's ``u`` from it).
    """
    q = conformal_quantile(conformal["scores"], coverage)
    if results and "scores" not in results[0]:  # regression
        for r in results:
            r["interval"] = [r["score"] - q, r["score"] + q]
        return results
    probs = np.array([[r["scores"][n] for n in label_names] for r in results])
    uniforms = example_uniforms(texts) if conformal["method"] == APS_RANDOMIZED else None
    for r, ids in zip(results, aps_sets(probs, q, uniforms), strict=True):
        r["prediction_set"] = [label_names[i] for i in ids]
    return results
