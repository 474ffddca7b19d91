"""Classical baselines, run on the same splits as the fine-tuned model."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from datasets import DatasetDict
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from ..metrics import classification_metrics, select_threshold


def tfidf_logreg_baseline(
    dataset: DatasetDict,
    split: str = "test",
    c_grid: Sequence[float] = (0.25, 1.0, 4.0, 16.0),
    seed: int = 42,
    tune_decision_threshold: bool = False,
) -> dict:
    """TF-IDF (word 1-2 grams) + logistic regression, fitted on ``train``, scored on ``split``.

    The usual "is a neural model worth it here?" reference, built from scikit-learn's
    ``TfidfVectorizer`` and ``LogisticRegression`` (L2, lbfgs). The inverse regularisation
    strength ``C`` is chosen on the ``validation`` split from ``c_grid``, as one would tune any
    model fairly; the test split is never used for the choice.

    Args:
        dataset: Splits with ``text`` and ``label`` (``ClassLabel``) columns.
        split: Split to score.
        c_grid: Candidate values of ``C``.
        seed: Random state of the solver.
        tune_decision_threshold: Binary tasks: choose the positive-class threshold maximising
            F1 on validation, as the fine-tuned model does with the same flag.

    Returns:
        :func:`~nlp_transfer.metrics.classification_metrics` of ``split``, plus ``C`` (chosen),
        ``validation_accuracy`` and ``fit_runtime_s`` (seconds, grid included).
    """
    start = time.perf_counter()
    texts = {s: list(dataset[s]["text"]) for s in ("train", "validation", split)}
    labels = {s: list(dataset[s]["label"]) for s in ("train", "validation", split)}
    best = None
    for c in c_grid:
        pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2)),
            LogisticRegression(C=c, max_iter=2000, random_state=seed),
        )
        pipeline.fit(texts["train"], labels["train"])
        accuracy = pipeline.score(texts["validation"], labels["validation"])
        if best is None or accuracy > best[0]:
            best = (accuracy, c, pipeline)
    assert best is not None
    accuracy, c, pipeline = best
    names = dataset["train"].features["label"].names
    threshold = None
    if tune_decision_threshold and len(names) == 2:
        val_scores = pipeline.predict_proba(texts["validation"])[:, 1]
        threshold, _ = select_threshold(np.asarray(labels["validation"]), val_scores)
    scores = pipeline.predict_proba(texts[split])
    # log-probabilities as logits: softmax gives the probabilities back
    metrics = classification_metrics(
        labels[split], np.log(np.clip(scores, 1e-12, 1)), names, threshold
    )
    metrics.update(C=c, validation_accuracy=accuracy, fit_runtime_s=time.perf_counter() - start)
    return metrics
