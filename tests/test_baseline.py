"""The TF-IDF baselines: the parallel grid equals the serial one, and the training cap holds."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from nlp_transfer.text import baseline

from conftest import toy_sentiment_frame


def _splits(n_train: int = 300) -> DatasetDict:
    frames = {"train": n_train, "validation": 80, "test": 80}
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    return DatasetDict(
        {
            name: Dataset.from_pandas(
                toy_sentiment_frame(n, seed=i).set_axis(["text", "label"], axis=1),
                features=features,
            )
            for i, (name, n) in enumerate(frames.items())
        }
    )


def test_parallel_grid_equals_serial(monkeypatch):
    dataset = _splits()
    serial = baseline.tfidf_logreg_baseline(dataset)
    monkeypatch.setattr(baseline, "PARALLEL_MIN_ROWS", 0)  # tiny data through the processes
    parallel = baseline.tfidf_logreg_baseline(dataset)
    for key in ("accuracy", "f1_macro", "C", "validation_accuracy"):
        assert parallel[key] == pytest.approx(serial[key], abs=1e-12)
    assert serial["accuracy"] > 0.7  # the toy task is learnable: the baseline learns it


def test_training_rows_are_capped():
    dataset = _splits(n_train=300)
    capped = baseline.tfidf_logreg_baseline(dataset, max_train_samples=120)
    full = baseline.tfidf_logreg_baseline(dataset, max_train_samples=None)
    assert capped["train_samples"] == 120 and full["train_samples"] == 300
    assert capped["train_rows"] == full["train_rows"] == 300
    regression = _splits(n_train=300)
    regression = regression.map(
        lambda row: {"score": float(row["label"])}, remove_columns="label"
    ).rename_column("score", "label")
    result = baseline.tfidf_problem_baseline(regression, "regression", max_train_samples=50)
    assert result["train_samples"] == 50 and np.isfinite(result["mse"])


def test_summary_says_when_the_baseline_was_capped():
    from nlp_transfer.reporting.outputs import format_summary

    test = {"num_examples": 4, "accuracy": 0.5, "f1_macro": 0.5, "per_class": {"a": {}, "b": {}}}
    test |= {f"{m}_b": 0.5 for m in ("precision", "recall", "f1")}
    metrics = {
        "test": test,
        "baseline": test | {"train_samples": 100, "train_rows": 250},
        "timings": {"train_runtime_s": 1.0, "train_samples_per_second": 1.0},
        "best_epoch": 1,
        "parameters": {"trainable": 1, "total": 1},
        "output_dir": "out",
    }
    metrics["timings"]["total_runtime_s"] = 2.0
    assert "a sample of 100 of the 250 training rows" in format_summary(metrics, "toy")
    metrics["baseline"]["train_samples"] = 250
    assert "sample of" not in format_summary(metrics, "toy")


def test_pair_baseline_can_relate_the_two_texts():
    """Same topic word on both sides or not: each side alone says nothing (every topic is as
    likely on either side), so side-by-side features stay near chance; the product features
    carry the shared word."""
    import random

    from datasets import ClassLabel, Dataset, DatasetDict

    from nlp_transfer.text.baseline import PairFeatures, tfidf_logreg_baseline

    rng = random.Random(0)
    topics = [f"topic{i}" for i in range(12)]

    def split(n):
        rows = {"text": [], "text_pair": [], "label": []}
        for k in range(n):
            a = rng.choice(topics)
            b = a if k % 2 == 0 else rng.choice([t for t in topics if t != a])
            rows["text"].append(f"{a} filler words here")
            rows["text_pair"].append(f"other filler {b}")
            rows["label"].append(k % 2)
        return Dataset.from_dict(rows).cast_column("label", ClassLabel(names=["same", "other"]))

    data = DatasetDict({"train": split(600), "validation": split(100), "test": split(200)})
    assert tfidf_logreg_baseline(data)["accuracy"] > 0.9
    features = PairFeatures().fit(data["train"].to_pandas())
    x = features.transform(data["test"].select(range(4)).to_pandas())
    vocabulary = len(features.vectorizer_.vocabulary_)
    assert x.shape == (4, 3 * vocabulary + 1)
    assert x[0, -1] > 0 and x[1, -1] < x[0, -1]  # cosine: shared topic, then none
