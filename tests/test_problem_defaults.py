"""Defaults per problem type: regression learns whatever the targets' scale, and says how it does."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nlp_transfer.metrics import greater_is_better


@pytest.mark.parametrize(
    ("metric", "greater"),
    [("accuracy", True), ("f1_macro", True), ("pearson", True), ("eval_f1_spam", True),
     ("loss", False), ("eval_loss", False), ("rmse", False), ("mae", False), ("mse", False),
     ("hamming_loss", False)],
)  # fmt: skip
def test_greater_is_better(metric, greater):
    assert greater_is_better(metric) is greater


def test_regression_far_from_zero_learns_with_no_flags(tiny_bert_dir, tmp_path, capsys):
    """Targets in the thousands: standardised by default, so the training loss starts near 1
    (not millions), the epoch line shows Pearson, Spearman and MAE, the best epoch is chosen on
    RMSE, and the saved model predicts in the targets' units."""
    from nlp_transfer import TextClassifier
    from nlp_transfer.cli import main

    rng = np.random.default_rng(0)
    good = rng.integers(0, 6, 120)
    texts = [" ".join(["great"] * g + ["film"] * (6 - g)) for g in good]
    frame = pd.DataFrame({"text": texts, "price": 3000.0 + 200.0 * good})
    frame.to_csv(tmp_path / "prices.csv", index=False)
    out = tmp_path / "out"
    main(
        ["train", "--train_file", str(tmp_path / "prices.csv"), "--label_column", "price",
         "--problem_type", "regression", "--model_name_or_path", str(tiny_bert_dir),
         "--output_dir", str(out), "--num_train_epochs", "3", "--learning_rate", "1e-3",
         "--run_baseline", "false", "--save_strategy", "no"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert "Targets standardised: mean" in err
    assert "eval_pearson" in err and "eval_spearman" in err and "eval_mae" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metric_for_best_model"] == "rmse"
    assert metrics["validation"][0]["train_loss"] < 10  # standardised: not ~9e6
    predictions = TextClassifier.from_pretrained(out).predict(texts[:20], coverage=0.9)
    assert 2000 < np.mean([p["score"] for p in predictions]) < 5000  # the targets' units
    # conformal intervals, in the targets' units, around each prediction
    assert metrics["conformal"]["method"] == "absolute_residual"
    width = metrics["conformal"]["test"]["0.9"]["mean_interval_width"]
    for p in predictions:
        assert p["interval"][0] < p["score"] < p["interval"][1]
        assert p["interval"][1] - p["interval"][0] == pytest.approx(width)
    assert "standardize_targets: true" in (out / "config.yaml").read_text()


def test_standardize_targets_false_is_kept_and_other_types_refuse_true():
    from nlp_transfer import TextClassificationConfig
    from nlp_transfer.text.problem import check_problem_settings

    check_problem_settings(TextClassificationConfig(), "single_label_classification")  # unset
    with pytest.raises(ValueError, match="--standardize_targets"):
        check_problem_settings(
            TextClassificationConfig(standardize_targets=True), "single_label_classification"
        )


@pytest.mark.parametrize(
    ("problem", "given", "expected"),
    [
        ("multi_label_classification", {}, (True, "balanced", "average_precision")),
        ("multi_label_classification", {"tune_decision_threshold": False}, (False, "balanced", "f1_micro")),
        ("multi_label_classification", {"class_weights": "none"}, (True, "none", "average_precision")),
        ("multi_label_classification", {"metric_for_best_model": "f1_macro"}, (True, "balanced", "f1_macro")),
        ("single_label_classification", {}, (False, "none", "accuracy")),
        ("regression", {}, (False, "none", "rmse")),
    ],
)  # fmt: skip
def test_problem_defaults_fill_only_what_the_user_left_unset(problem, given, expected):
    from accelerate import PartialState

    from nlp_transfer import TextClassificationConfig
    from nlp_transfer.text.problem import check_problem_settings, problem_defaults

    PartialState()  # the logger of accelerate needs it
    config = TextClassificationConfig(**given)
    check_problem_settings(config, problem)
    resolved = problem_defaults(config, problem)
    got = (
        resolved.tune_decision_threshold,
        resolved.class_weights,
        resolved.metric_for_best_model,
    )
    assert got == expected
    assert resolved.standardize_targets is (problem == "regression")


def test_tfidf_multilabel_baseline_tunes_thresholds_on_validation_only():
    """Tuned on validation, the baseline's thresholds differ from 0.5 and recover labels that a
    0.5 threshold misses (a rare label whose probabilities stay under 0.5)."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

    from nlp_transfer.text.baseline import tfidf_problem_baseline

    rng = np.random.default_rng(0)

    def split(n):
        rows = []
        for _ in range(n):
            rare = rng.random() < 0.08
            common = rng.random() < 0.5
            zebra = rng.random() < (0.7 if rare else 0.03)  # a noisy cue of the rare label
            words = ["filler"] * 8 + ["zebra"] * zebra + ["apple"] * common
            rng.shuffle(words)
            rows.append({"text": " ".join(words), "label": [0] * common + [1] * rare})
        features = Features(
            {"text": Value("string"), "label": Sequence(ClassLabel(names=["common", "rare"]))}
        )
        return Dataset.from_list(rows, features=features)

    data = DatasetDict(train=split(200), validation=split(200), test=split(200))
    plain = tfidf_problem_baseline(data, "multi_label_classification")
    tuned = tfidf_problem_baseline(data, "multi_label_classification", tune_decision_threshold=True)
    assert plain["thresholds"] == [0.5, 0.5]
    assert tuned["thresholds"] != [0.5, 0.5]
    assert tuned["per_label"]["rare"]["f1"] > plain["per_label"]["rare"]["f1"]


def test_unset_booleans_take_a_bare_flag_and_false():
    from nlp_transfer import TextClassificationConfig
    from nlp_transfer.cli.config import parse_config

    assert parse_config(TextClassificationConfig, []).tune_decision_threshold is None
    bare = parse_config(
        TextClassificationConfig, ["--tune_decision_threshold", "--standardize_targets"]
    )
    assert bare.tune_decision_threshold is True and bare.standardize_targets is True
    off = parse_config(TextClassificationConfig, ["--tune_decision_threshold", "false"])
    assert off.tune_decision_threshold is False
