"""Classical baselines, run on the same splits as the fine-tuned model."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
from datasets import DatasetDict
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline

from ..data.problems import MULTI_LABEL
from ..metrics import classification_metrics, select_threshold
from ..metrics_multilabel import multilabel_metrics
from ..metrics_regression import regression_metrics


def _inputs(dataset: DatasetDict, split: str):
    """The texts of ``split``: a list, or a two-column DataFrame for sentence pairs."""
    if "text_pair" in dataset[split].column_names:
        return pd.DataFrame({c: dataset[split][c] for c in ("text", "text_pair")})
    return list(dataset[split]["text"])


def _vectorizer(dataset: DatasetDict):
    """TF-IDF of word 1-2 grams; for pairs, each text's features side by side."""
    if "text_pair" not in dataset["train"].column_names:
        return TfidfVectorizer(ngram_range=(1, 2))
    return ColumnTransformer(
        [(c, TfidfVectorizer(ngram_range=(1, 2)), c) for c in ("text", "text_pair")]
    )


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
    texts = {s: _inputs(dataset, s) for s in ("train", "validation", split)}
    labels = {s: list(dataset[s]["label"]) for s in ("train", "validation", split)}
    best = None
    for c in c_grid:
        pipeline = make_pipeline(
            _vectorizer(dataset),
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


def tfidf_problem_baseline(
    dataset: DatasetDict, problem_type: str, split: str = "test", seed: int = 42
) -> dict:
    """TF-IDF baseline of a multi-label or regression task, fitted on ``train``.

    Multi-label: one-vs-rest logistic regression (``C`` chosen by validation micro-F1), scored
    with :func:`~nlp_transfer.metrics_multilabel.multilabel_metrics` at 0.5. Regression: ridge
    regression (``alpha`` chosen by validation MSE), scored with
    :func:`~nlp_transfer.metrics_regression.regression_metrics`. Pairs: each text's features
    side by side.

    Args:
        dataset: Splits as loaded (multi-label ``label``: lists of ids; regression: floats).
        problem_type: ``multi_label_classification`` or ``regression``.
        split: Split to score.
        seed: Random state of the solver.

    Returns:
        The split's metrics plus ``C`` or ``alpha``, ``validation_score`` and ``fit_runtime_s``.
    """
    start = time.perf_counter()
    x = {s: _inputs(dataset, s) for s in ("train", "validation", split)}
    if problem_type == MULTI_LABEL:
        names = dataset["train"].features["label"].feature.names
        y = {s: _multi_hot(dataset[s]["label"], len(names)) for s in x}
        grid, param = (0.25, 1.0, 4.0, 16.0), "C"

        def model(c):
            logreg = LogisticRegression(C=c, max_iter=2000, random_state=seed)
            return OneVsRestClassifier(logreg)

        def score(fitted, s):
            probs = np.clip(fitted.predict_proba(x[s]), 1e-12, 1 - 1e-12)
            return multilabel_metrics(y[s], np.log(probs / (1 - probs)), names)

        key, sign = "f1_micro", 1
    else:
        y = {s: np.asarray(dataset[s]["label"], dtype=np.float64) for s in x}
        grid, param = (0.1, 1.0, 10.0), "alpha"

        def model(alpha):
            return Ridge(alpha=alpha)

        def score(fitted, s):
            return regression_metrics(y[s], fitted.predict(x[s]))

        key, sign = "mse", -1
    best = None
    for value in grid:
        fitted = make_pipeline(_vectorizer(dataset), model(value)).fit(x["train"], y["train"])
        validation = score(fitted, "validation")[key]
        if best is None or sign * validation > sign * best[0]:
            best = (validation, value, fitted)
    validation, value, fitted = best
    metrics = score(fitted, split)
    metrics.update(
        {param: value, "validation_score": validation},
        fit_runtime_s=time.perf_counter() - start,
    )
    return metrics


def _multi_hot(rows, num: int) -> np.ndarray:
    y = np.zeros((len(rows), num), dtype=np.int64)
    for i, ids in enumerate(rows):
        y[i, ids] = 1
    return y
