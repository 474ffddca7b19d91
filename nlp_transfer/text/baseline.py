"""Classical baselines, run on the same splits as the fine-tuned model.

Both baselines share one grid search (:func:`_grid_search`): the TF-IDF features are fitted on
the training rows once, the candidate regularisation strengths are fitted in parallel (one
process per CPU core, through joblib), and the winner is chosen on validation. Training rows
past :data:`BASELINE_MAX_TRAIN_SAMPLES` are left out (a seeded sample, drawn before any text
is read); the result says so. Validation and test are scored in full, in batches of
:data:`SCORE_BATCH_ROWS` rows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict
from joblib import Parallel, delayed
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline

from ..data.columns import arrow_column, multi_hot, numpy_column
from ..data.encode import MULTI_LABEL
from ..metrics.classification import classification_metrics, select_threshold
from ..metrics.multilabel import multilabel_metrics, select_label_thresholds
from ..metrics.regression import regression_metrics

# Rows of the training split the baseline is fitted on, at most: TF-IDF + logistic regression
# on 100,000 posts is already minutes on two cores, and gains little from more.
BASELINE_MAX_TRAIN_SAMPLES = 100_000
# Below this many training rows the grid is fitted in this process.
PARALLEL_MIN_ROWS = 5_000
# Rows of validation or test featurised and scored at once: every row is scored, one batch of
# texts and features in memory at a time.
SCORE_BATCH_ROWS = 20_000


def _inputs(split: Dataset | dict):
    """The texts of a split (or of a batch of one): a list, or a two-column DataFrame for
    sentence pairs."""
    columns = split.column_names if isinstance(split, Dataset) else list(split)
    if "text_pair" in columns:
        return pd.DataFrame({c: split[c][:] for c in ("text", "text_pair")})
    return split["text"][:]


class PairFeatures(TransformerMixin, BaseEstimator):
    """TF-IDF features of a sentence pair that can express a relation between the two texts.

    One ``TfidfVectorizer`` (word 1-2 grams) is fitted on both columns, so that the two texts
    share a vocabulary; a pair ``(a, b)`` becomes ``[a, b, a * b, cos(a, b)]``: each text's
    (L2-normalised) TF-IDF vector, their element-wise product (the terms they share, weighted)
    and their cosine similarity, as in the feature sets of sentence-pair models (e.g. Conneau et
    al. 2017, "Supervised Learning of Universal Sentence Representations from Natural Language
    Inference Data", which adds ``|a - b|``). Each side alone cannot say whether ``b`` belongs
    with ``a``: a linear model on side-by-side features stays at chance on such tasks.

    Args:
        ngram_range: The word n-grams of the vectorizer.
    """

    def __init__(self, ngram_range: tuple[int, int] = (1, 2)):
        self.ngram_range = ngram_range

    def fit(self, pairs: pd.DataFrame, y=None) -> PairFeatures:
        """Fit the shared vocabulary on both columns (``text``, ``text_pair``) of ``pairs``."""
        both = pd.concat([pairs["text"], pairs["text_pair"]], ignore_index=True)
        self.vectorizer_ = TfidfVectorizer(ngram_range=self.ngram_range).fit(both)
        return self

    def transform(self, pairs: pd.DataFrame) -> sparse.csr_matrix:
        """``(n, 3 * vocabulary + 1)`` sparse features of ``n`` pairs."""
        a = self.vectorizer_.transform(pairs["text"])
        b = self.vectorizer_.transform(pairs["text_pair"])
        product = a.multiply(b).tocsr()
        cosine = sparse.csr_matrix(np.asarray(product.sum(axis=1)))
        return sparse.hstack([a, b, product, cosine], format="csr")


def _vectorizer(dataset: DatasetDict):
    """TF-IDF of word 1-2 grams; for pairs, :class:`PairFeatures`."""
    if "text_pair" not in dataset["train"].column_names:
        return TfidfVectorizer(ngram_range=(1, 2))
    return PairFeatures(ngram_range=(1, 2))


def _capped(dataset: DatasetDict, max_train_samples: int | None, seed: int):
    """``(dataset, rows used)``: the training split cut to a seeded sample when it is larger.

    The sample is an index mapping over the same Arrow table: no text of the whole split is
    read before the cut.
    """
    rows = len(dataset["train"])
    if max_train_samples is None or rows <= max_train_samples:
        return dataset, rows
    capped = DatasetDict(dict(dataset))
    capped["train"] = dataset["train"].shuffle(seed=seed).select(range(max_train_samples))
    return capped, max_train_samples


def _in_batches(vectorizer, split: Dataset, functions: Sequence[Callable]) -> list[np.ndarray]:
    """Each ``function(features)`` over a split, :data:`SCORE_BATCH_ROWS` rows at a time.

    Only one batch's texts and TF-IDF features are in memory at once; the outputs (a
    prediction or a row of probabilities per example) are concatenated in row order.
    """
    outputs: list[list[np.ndarray]] = [[] for _ in functions]
    columns = [c for c in ("text", "text_pair") if c in split.column_names]
    for batch in split.select_columns(columns).iter(batch_size=SCORE_BATCH_ROWS):
        x = vectorizer.transform(_inputs(batch))
        for out, function in zip(outputs, functions, strict=True):
            out.append(np.asarray(function(x)))
    return [np.concatenate(out) for out in outputs]


def split_labels(dataset: DatasetDict, split: str) -> np.ndarray:
    """A split's labels as an array: ids ``(n,)``, targets ``(n,)`` or multi-hot ``(n, C)``."""
    feature = dataset[split].features["label"]
    if hasattr(feature, "feature"):  # lists of label ids
        return multi_hot(arrow_column(dataset[split], "label"), len(feature.feature.names))
    values = numpy_column(dataset[split], "label")
    return values.astype(np.float64) if values.dtype.kind == "f" else values


def _grid_search(
    dataset: DatasetDict,
    model: Callable[[float], object],
    grid: Sequence[float],
    output: Callable[[object, object], np.ndarray],
    validation_score: Callable[[np.ndarray], float],
) -> tuple[float, float, object, object, np.ndarray]:
    """Fit TF-IDF once, then one model per grid value in parallel; keep the best on validation.

    The training split is already capped (:func:`_capped`); validation is scored in batches
    (:func:`_in_batches`), every grid value on each batch's features.

    Args:
        dataset: The splits.
        model: Grid value -> unfitted estimator.
        grid: The values tried.
        output: ``(fitted, features) -> validation outputs`` (predictions or probabilities).
        validation_score: Outputs on the whole validation split -> score (higher is better).

    Returns:
        ``(validation score, grid value, fitted model, fitted vectorizer, its validation
        outputs)`` of the best.
    """
    vectorizer = _vectorizer(dataset)
    x_train = vectorizer.fit_transform(_inputs(dataset["train"]))
    y_train = split_labels(dataset, "train")
    # process start-up (~1 s) outweighs the fits on small data: one process there
    parallel = x_train.shape[0] >= PARALLEL_MIN_ROWS
    jobs = max(1, min(len(grid), os.cpu_count() or 1)) if parallel else 1
    fitted = Parallel(n_jobs=jobs)(
        delayed(clone(model(value)).fit)(x_train, y_train) for value in grid
    )
    del x_train
    outputs = _in_batches(vectorizer, dataset["validation"], [partial(output, f) for f in fitted])
    scores = [validation_score(out) for out in outputs]
    best = int(np.argmax(scores))  # the first of equal scores, as the loop before did
    return scores[best], grid[best], fitted[best], vectorizer, outputs[best]


def tfidf_logreg_baseline(
    dataset: DatasetDict,
    split: str = "test",
    c_grid: Sequence[float] = (0.25, 1.0, 4.0, 16.0),
    seed: int = 42,
    tune_decision_threshold: bool = False,
    max_train_samples: int | None = BASELINE_MAX_TRAIN_SAMPLES,
    keep_model: bool = False,
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
        seed: Random state of the solver and of the training sample.
        tune_decision_threshold: Binary tasks: choose the positive-class threshold maximising
            F1 on validation, as the fine-tuned model does with the same flag.
        max_train_samples: Fit on at most this many training rows (a seeded sample); None for
            all.
        keep_model: Also return the fitted scikit-learn ``Pipeline`` (vectorizer, classifier)
            as ``model`` (what :mod:`~nlp_transfer.text.tfidf_model` saves).

    Returns:
        :func:`~nlp_transfer.metrics.classification.classification_metrics` of ``split``, plus ``C`` (chosen),
        ``validation_accuracy``, ``train_samples`` (rows fitted on), ``train_rows`` (rows in
        the split), ``fit_runtime_s`` (seconds, features and grid included) and, with
        ``keep_model``, ``model`` and ``decision_threshold`` (binary: tuned or None).
    """
    start = time.perf_counter()
    total_rows = len(dataset["train"])
    dataset, rows = _capped(dataset, max_train_samples, seed)
    y_validation = split_labels(dataset, "validation")
    accuracy, c, pipeline, vectorizer, _ = _grid_search(
        dataset,
        lambda c: LogisticRegression(C=c, max_iter=2000, random_state=seed),
        c_grid,
        lambda fitted, x: fitted.predict(x),
        lambda predicted: float(np.mean(predicted == y_validation)),
    )
    names = dataset["train"].features["label"].names
    threshold = None
    if tune_decision_threshold and len(names) == 2:
        (val_scores,) = _in_batches(
            vectorizer, dataset["validation"], [lambda x: pipeline.predict_proba(x)[:, 1]]
        )
        threshold, _ = select_threshold(y_validation, val_scores)
    (scores,) = _in_batches(vectorizer, dataset[split], [pipeline.predict_proba])
    # log-probabilities as logits: softmax gives the probabilities back
    metrics = classification_metrics(
        split_labels(dataset, split), np.log(np.clip(scores, 1e-12, 1)), names, threshold
    )
    metrics.update(
        C=c,
        validation_accuracy=accuracy,
        train_samples=rows,
        train_rows=total_rows,
        fit_runtime_s=time.perf_counter() - start,
    )
    if keep_model:
        metrics.update(model=make_pipeline(vectorizer, pipeline), decision_threshold=threshold)
    return metrics


def tfidf_problem_baseline(
    dataset: DatasetDict,
    problem_type: str,
    split: str = "test",
    seed: int = 42,
    max_train_samples: int | None = BASELINE_MAX_TRAIN_SAMPLES,
    tune_decision_threshold: bool = False,
    keep_model: bool = False,
) -> dict:
    """TF-IDF baseline of a multi-label or regression task, fitted on ``train``.

    Multi-label: one-vs-rest logistic regression (``C`` chosen by validation micro-F1), scored
    with :func:`~nlp_transfer.metrics.multilabel.multilabel_metrics` at 0.5, or, with
    ``tune_decision_threshold``, at each label's threshold tuned on validation (as the
    fine-tuned model's; ``C`` is then chosen by validation micro-F1 at tuned thresholds). Regression: ridge
    regression (``alpha`` chosen by validation MSE), scored with
    :func:`~nlp_transfer.metrics.regression.regression_metrics`. Pairs: :class:`PairFeatures`
    (each text, their element-wise product and cosine similarity).

    Args:
        dataset: Splits as loaded (multi-label ``label``: lists of ids; regression: floats).
        problem_type: ``multi_label_classification`` or ``regression``.
        split: Split to score.
        seed: Random state of the solver and of the training sample.
        max_train_samples: Fit on at most this many training rows (a seeded sample); None for
            all.
        tune_decision_threshold: Multi-label: per-label thresholds tuned on validation.
        keep_model: Also return the fitted ``Pipeline`` (vectorizer, estimator) as ``model``.

    Returns:
        The split's metrics (``thresholds`` among them) plus ``C`` or ``alpha``, ``validation_score``, ``train_samples``
        (rows fitted on), ``train_rows`` (rows in the split) and ``fit_runtime_s``.
    """
    start = time.perf_counter()
    total_rows = len(dataset["train"])
    dataset, rows = _capped(dataset, max_train_samples, seed)
    y_validation, y_test = split_labels(dataset, "validation"), split_labels(dataset, split)
    if problem_type == MULTI_LABEL:
        names = dataset["train"].features["label"].feature.names
        spec = _multilabel_spec(names, y_validation, seed, tune_decision_threshold)
    else:
        spec = _RidgeSpec()
    grid, param, key, sign = spec.grid, spec.param, spec.key, spec.sign
    model, output, score, validation_thresholds = (
        spec.model,
        spec.output,
        spec.score,
        spec.thresholds,
    )

    validation, value, fitted, vectorizer, val_outputs = _grid_search(
        dataset,
        model,
        grid,
        output,
        lambda out: sign * score(y_validation, out, validation_thresholds(out))[key],
    )
    (test_outputs,) = _in_batches(vectorizer, dataset[split], [partial(output, fitted)])
    metrics = score(y_test, test_outputs, validation_thresholds(val_outputs))
    metrics.update(
        {param: value, "validation_score": sign * validation},
        train_samples=rows,
        train_rows=total_rows,
        fit_runtime_s=time.perf_counter() - start,
    )
    if keep_model:
        metrics["model"] = make_pipeline(vectorizer, fitted)
    return metrics


class _RidgeSpec:
    """Regression's TF-IDF baseline: ridge, ``alpha`` chosen by validation MSE."""

    grid, param, key, sign = (0.1, 1.0, 10.0), "alpha", "mse", -1

    @staticmethod
    def model(alpha):
        return Ridge(alpha=alpha)

    @staticmethod
    def output(fitted, x):
        return fitted.predict(x)

    @staticmethod
    def score(y_true, predicted, thresholds=None):
        return regression_metrics(y_true, predicted)

    @staticmethod
    def thresholds(predicted):
        return None


def _multilabel_spec(names, y_validation, seed: int, tune: bool):
    """Multi-label's TF-IDF baseline: one-vs-rest logistic regression, ``C`` chosen by validation
    micro-F1 (at per-label thresholds tuned on validation when ``tune``)."""

    def as_logits(probs):
        probs = np.clip(probs, 1e-12, 1 - 1e-12)
        return np.log(probs / (1 - probs))

    class Spec:
        grid, param, key, sign = (0.25, 1.0, 4.0, 16.0), "C", "f1_micro", 1

        @staticmethod
        def model(c):
            return OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000, random_state=seed))

        @staticmethod
        def output(fitted, x):
            return fitted.predict_proba(x)

        @staticmethod
        def score(y_true, probs, thresholds=0.5):
            return multilabel_metrics(y_true, as_logits(probs), names, thresholds)

        @staticmethod
        def thresholds(probs):
            return select_label_thresholds(y_validation, as_logits(probs)) if tune else 0.5

    return Spec
