"""The race's TF-IDF candidate: the toolkit's TF-IDF baseline, kept as a model this time
(:mod:`nlp_transfer.text.tfidf_model`), scored on validation with the metric the other
candidates are selected on."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..data.encode import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from ..metrics.classification import classification_metrics
from ..metrics.multilabel import multilabel_metrics
from ..metrics.regression import regression_metrics
from ..reporting.config_file import save_config
from ..text.baseline import split_labels, tfidf_logreg_baseline, tfidf_problem_baseline
from ..text.problem import label_names_of, problem_type_of
from ..text.tfidf_model import TfidfModel, load_tfidf_model, save_tfidf_model


def _texts(split) -> list:
    if "text_pair" in split.column_names:
        return list(zip(split["text"], split["text_pair"], strict=True))
    return list(split["text"])


def split_metrics(model: TfidfModel, dataset, split: str, problem: str, names: list[str]) -> dict:
    """The metrics of ``split`` from the saved model's logits, as a training run computes them."""
    logits = model.predict_logits(_texts(dataset[split]))
    y = split_labels(dataset, split)
    if problem == SINGLE_LABEL:
        threshold = getattr(model.config, "decision_threshold", None) if len(names) == 2 else None
        return classification_metrics(y, logits, names, threshold)
    if problem == MULTI_LABEL:
        thresholds = getattr(model.config, "label_thresholds", None) or 0.5
        return multilabel_metrics(y, logits, names, thresholds)
    return regression_metrics(y, logits[:, 0])


def run_tfidf_candidate(config, dataset, out: Path, metric: str) -> dict:
    """Fit TF-IDF on ``train`` (its strength chosen on validation), save it into ``out`` as a
    run directory (``tfidf.skops``, ``config.json``, ``config.yaml``, ``metrics.json``).

    Returns:
        ``{"value": validation metric}``; None when the metric does not apply to TF-IDF.
    """
    start = time.perf_counter()
    problem, names = problem_type_of(dataset), label_names_of(dataset)
    split = "test" if "test" in dataset else "validation"
    tune = getattr(config, "tune_decision_threshold", None)  # None: multi-label only
    if problem == SINGLE_LABEL:
        binary = len(names) == 2
        fitted = tfidf_logreg_baseline(
            dataset, split, seed=config.seed, tune_decision_threshold=bool(tune) and binary,
            keep_model=True,
        )  # fmt: skip
        threshold = fitted.get("decision_threshold") or config.decision_threshold
        extra = {"decision_threshold": threshold if binary else None}
    else:
        fitted = tfidf_problem_baseline(
            dataset, problem, split, seed=config.seed, keep_model=True,
            tune_decision_threshold=problem == MULTI_LABEL and tune is not False,
        )  # fmt: skip
        thresholds = fitted.get("thresholds")
        tuned = problem == MULTI_LABEL and thresholds is not None and np.ndim(thresholds) > 0
        extra = {"label_thresholds": thresholds if tuned else None}
    pipeline = fitted.pop("model")
    save_tfidf_model(pipeline, out, names, problem, **extra)
    model = load_tfidf_model(out)
    validation = split_metrics(model, dataset, "validation", problem, names)
    test = split_metrics(model, dataset, "test", problem, names) if "test" in dataset else {}
    value = validation.get(metric.removeprefix("eval_"))
    metrics = {
        "model_name": "TF-IDF + " + ("ridge" if problem == REGRESSION else "logistic regression"),
        "metric_for_best_model": metric,
        "best_metric": value,
        "validation": [validation],
        "test": test,
        "parameters": {"trainable": _coefficients(pipeline), "total": _coefficients(pipeline)},
        "timings": {"total_runtime_s": time.perf_counter() - start},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    save_config(config, out / "config.yaml")
    return {"value": None if value is None else float(value)}


def _coefficients(pipeline) -> int:
    """Fitted weights of the pipeline's last step (its coefficients and intercepts)."""
    last = pipeline.steps[-1][1]
    estimators = getattr(last, "estimators_", [last])
    return int(
        sum(
            np.size(getattr(e, "coef_", 0)) + np.size(getattr(e, "intercept_", 0))
            for e in estimators
        )
    )
