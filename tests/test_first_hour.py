"""A user's first hour (issue 20): train() on own data, TextClassifier, data-sized defaults, advice."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

import nlp_transfer
from nlp_transfer import TextClassificationConfig, TextClassifier, TrainResult
from nlp_transfer.api import make_config, new_run_dir
from nlp_transfer.text.defaults import (
    MAX_EPOCHS,
    MIN_EPOCHS,
    auto_learning_rate,
    auto_num_train_epochs,
    target_optimizer_steps,
)
from nlp_transfer.text.tasks import SentimentConfig, SpamConfig
from nlp_transfer.training.advice import advice, still_rising

from conftest import toy_sentiment_frame

# --- advice on synthetic histories --------------------------------------------------------------


def _history(train_acc, eval_acc):
    return [
        {"epoch": i + 1, "train_accuracy": t, "eval_accuracy": e}
        for i, (t, e) in enumerate(zip(train_acc, eval_acc, strict=True))
    ]


def _metrics(train_acc, eval_acc, baseline_val=None, stopped_early=False):
    history = _history(train_acc, eval_acc)
    best = max(history, key=lambda h: h["eval_accuracy"])["epoch"]
    return {
        "validation": history,
        "best_epoch": best,
        "stopped_early": stopped_early,
        "baseline": None if baseline_val is None else {"validation_accuracy": baseline_val},
    }


def test_issue_20_run_is_told_it_is_below_the_baseline_and_still_fitting():
    # issue 20: 2 epochs at 5e-5, training accuracy 0.59 and rising, 11 points below TF-IDF
    lines = advice(_metrics([0.41, 0.59], [0.50, 0.55], baseline_val=0.66))
    text = "\n".join(lines)
    assert "below the TF-IDF baseline on validation (accuracy 0.5500 vs 0.6600)" in text
    assert (
        "validation accuracy was still improving at the last epoch (0.5000 -> 0.5500, epoch 2)"
        in text
    )
    assert lines[-1].startswith("try: more epochs (--num_train_epochs); another learning rate")
    assert lines[-1].endswith("nlp-transfer search.")
    assert text.count("more epochs") == 1


def test_a_fitted_run_gets_no_advice():
    # above the baseline, validation flat at the end
    assert advice(_metrics([0.80, 0.95, 0.952], [0.80, 0.85, 0.855], baseline_val=0.80)) == []
    # the main job at 3 epochs: training accuracy still rising, validation has stopped moving
    assert advice(_metrics([0.84, 0.91, 0.95], [0.8581, 0.8790, 0.8800], baseline_val=0.79)) == []
    # no baseline, no history: nothing to say
    assert advice({"validation": [], "best_epoch": 0, "baseline": None}) == []


def test_below_baseline_alone_suggests_epochs_and_learning_rate():
    lines = advice(_metrics([0.9, 0.9], [0.70, 0.72], baseline_val=0.75, stopped_early=True))
    assert len(lines) == 2
    assert "below the TF-IDF baseline" in lines[0]
    assert "--learning_rate" in lines[1]


def test_still_rising_reads_validation_needs_two_epochs_a_real_gain_and_no_early_stop():
    assert still_rising(_history([0.5, 0.6], [0.5, 0.6]), stopped_early=False)
    assert not still_rising(_history([0.5, 0.6], [0.5, 0.6]), stopped_early=True)
    assert not still_rising(_history([0.6], [0.6]), stopped_early=False)
    assert not still_rising(_history([0.5, 0.5], [0.600, 0.605]), stopped_early=False)
    assert not still_rising(_history([0.5, 0.5], [0.7, 0.6]), stopped_early=False)
    assert not still_rising(_history([0.5, 0.9], [0.7, 0.7]), stopped_early=False)  # train only
    loss = [{"epoch": 1, "eval_loss": 0.50}, {"epoch": 2, "eval_loss": 0.45}]
    assert still_rising(loss, False, "eval_loss", greater=False)  # 10% lower
    loss[1]["eval_loss"] = 0.498
    assert not still_rising(loss, False, "eval_loss", greater=False)


def test_advice_reads_the_selection_metric():
    metrics = _metrics([0.5, 0.6], [0.5, 0.5])
    metrics["validation"][0]["eval_f1_macro"], metrics["validation"][1]["eval_f1_macro"] = 0.4, 0.5
    assert advice(metrics) == []  # accuracy flat
    lines = advice(metrics | {"metric_for_best_model": "f1_macro"})
    assert "validation f1_macro was still improving" in lines[0]


def test_format_summary_prints_the_advice():
    from nlp_transfer.reporting.outputs import format_summary

    metrics = _metrics([0.41, 0.59], [0.50, 0.55], baseline_val=0.66)
    per_class = {c: {} for c in "abcde"}
    test = {"accuracy": 0.55, "f1_macro": 0.5, "num_examples": 400, "per_class": per_class}
    metrics |= {
        "test": test,
        "baseline": metrics["baseline"] | {"accuracy": 0.66, "f1_macro": 0.65},
        "timings": {
            "train_runtime_s": 10.0,
            "train_samples_per_second": 5.0,
            "total_runtime_s": 12,
        },
        "parameters": {"trainable": 10, "total": 10},
        "output_dir": "out",
    }
    summary = format_summary(metrics, "text classification")
    assert "below the TF-IDF baseline on validation" in summary
    assert summary.splitlines()[-1].startswith("try: ")


# --- data-sized defaults ------------------------------------------------------------------------


def test_epochs_are_sized_to_about_1000_steps_within_bounds():
    # issue 20's 5-class set: 3,200 training passages at batch 32 = 100 steps/epoch -> 10
    assert auto_num_train_epochs(3200, 32) == 10
    # the sentiment sentences: 8,057 at batch 32 = 252 steps/epoch -> 4 epochs
    assert auto_num_train_epochs(8057, 32) == math.ceil(1000 / 252) == 4
    assert auto_num_train_epochs(50, 32) == MAX_EPOCHS
    assert auto_num_train_epochs(1_000_000, 32) == MIN_EPOCHS


def test_many_classes_get_more_steps():
    assert target_optimizer_steps(None) == target_optimizer_steps(2) == 1000
    assert target_optimizer_steps(5) == 1000
    assert target_optimizer_steps(10) == 1414
    assert target_optimizer_steps(20) == 2000
    # 20 Newsgroups, 4,000 posts at batch 32 = 125 steps/epoch: 8 epochs ended still rising;
    # 20 classes now ask for 2,000 steps -> 16, capped at MAX_EPOCHS
    assert auto_num_train_epochs(4000, 32) == 8
    assert auto_num_train_epochs(4000, 32, target_optimizer_steps(20)) == MAX_EPOCHS


def test_learning_rate_rule():
    assert auto_learning_rate(8000, 2, 384) == (5e-5, "base rate")
    # issue 20: 1e-4 beat 5e-5 on a 5-class set of 4,000 passages
    rate, reason = auto_learning_rate(3200, 5, 384)
    assert rate == pytest.approx(1e-4)
    assert "3,200 < 5,000" in reason and "5 >= 5 classes" in reason
    assert auto_learning_rate(20000, 20, 384)[0] == pytest.approx(1e-4)
    assert auto_learning_rate(20000, 2, 1024)[0] == pytest.approx(2.5e-5)
    assert auto_learning_rate(100, 2, 384, head_only=True)[0] == pytest.approx(1e-3)


def test_text_config_leaves_epochs_and_rate_auto_but_recipes_keep_theirs():
    config = TextClassificationConfig()
    assert (config.num_train_epochs, config.learning_rate) == (None, None)
    assert config.early_stopping_patience == 2
    sentiment, spam = SentimentConfig(), SpamConfig()
    assert (sentiment.num_train_epochs, sentiment.learning_rate) == (3, 5e-5)
    assert (spam.num_train_epochs, spam.learning_rate) == (3, 1e-4)
    assert sentiment.early_stopping_patience is None and spam.early_stopping_patience is None
    with pytest.raises(ValueError, match="--num_train_epochs must be positive"):
        TextClassificationConfig(num_train_epochs=0)


# --- train(): the Python API --------------------------------------------------------------------


def test_unknown_setting_is_an_error_listing_the_valid_ones(tmp_path):
    with pytest.raises(TypeError, match=r"unknown setting.*num_epochs.*valid settings.*num_train"):
        make_config(tmp_path / "run", num_epochs=3)


def test_default_output_dirs_are_new_and_timestamped(tmp_path):
    first = new_run_dir(tmp_path)
    first.mkdir()
    second = new_run_dir(tmp_path)
    assert first.name.startswith("run-") and len(first.name) == len("run-20261129-101500")
    assert second != first and not second.exists()


def _train(tiny_bert_dir, data, output_dir, **kwargs):
    settings = {
        "model_name_or_path": str(tiny_bert_dir),
        "per_device_train_batch_size": 16,
        "save_strategy": "no",
        "max_seq_length": 12,
    }
    return nlp_transfer.train(data, output_dir=output_dir, **(settings | kwargs))


@pytest.fixture(scope="module")
def trained(tiny_bert_dir, tmp_path_factory):
    """train() on a DataFrame with its own column names; epochs and learning rate left auto."""
    frame = toy_sentiment_frame(160)
    out = tmp_path_factory.mktemp("runs") / "df"
    result = _train(
        tiny_bert_dir,
        frame,
        out,
        text_column="sentence",
        label_column="sentiment",
        validation_size=0.25,
        # 52 examples per class would get the few-shot default (contrastive tuning and a
        # logistic-regression head, tests/test_contrastive.py); these tests are of fine-tuning's
        # auto epochs and learning rate
        contrastive="none",
    )
    return result


def test_train_on_a_dataframe_returns_a_model_and_metrics(trained):
    assert isinstance(trained, TrainResult)
    assert isinstance(trained.model, TextClassifier)
    assert trained.model.labels == ["neg", "pos"]
    assert trained.metrics["test"]["num_examples"] == 16  # test_size 0.1 of 160
    # validation_size was honoured for the DataFrame (0.25 of 160), not ignored
    # (half of it held out as the conformal calibration split, --calibration_split_size 0.5)
    validation = trained.metrics["validation"][0]["eval_num_examples"]
    assert validation + trained.metrics["conformal"]["num_examples"] == 40
    predictions = trained.model.predict(["the movie was great", "the film was awful"])
    assert [sorted(p["scores"]) for p in predictions] == [["neg", "pos"]] * 2


def test_auto_values_are_resolved_and_saved(trained):
    saved = yaml.safe_load((trained.output_dir / "config.yaml").read_text())
    # 104 training examples at batch 16: 7 steps/epoch -> capped at MAX_EPOCHS; small data -> 1e-4
    assert saved["num_train_epochs"] == MAX_EPOCHS
    assert saved["learning_rate"] == pytest.approx(1e-4)
    assert trained.config.num_train_epochs == MAX_EPOCHS
    epochs_run = len(trained.metrics["validation"])
    assert epochs_run == MAX_EPOCHS or trained.metrics["stopped_early"]
    model_config = json.loads((trained.output_dir / "config.json").read_text())
    assert model_config["max_seq_length"] == 12


def test_rerun_with_an_explicit_non_empty_dir_is_refused_unless_asked(trained, tiny_bert_dir):
    frame = toy_sentiment_frame(60)
    kwargs = {"text_column": "sentence", "label_column": "sentiment", "num_train_epochs": 1}
    with pytest.raises(FileExistsError, match="overwrite_output_dir"):
        _train(tiny_bert_dir, frame, trained.output_dir, **kwargs)
    assert (trained.output_dir / "model.safetensors").exists()


def test_train_on_a_csv_path_and_a_dataset_dict(tiny_bert_dir, tmp_path, toy_csv):
    from datasets import Dataset, DatasetDict

    kwargs = {"text_column": "sentence", "label_column": "sentiment", "num_train_epochs": 1}
    result = _train(tiny_bert_dir, str(toy_csv), tmp_path / "csv", **kwargs)
    assert result.config.train_file == str(toy_csv)
    frame = toy_sentiment_frame(120)
    splits = DatasetDict(
        {
            "train": Dataset.from_pandas(frame[:80]),
            "validation": Dataset.from_pandas(frame[80:100]),
            "test": Dataset.from_pandas(frame[100:]),
        }
    )
    result = _train(tiny_bert_dir, splits, tmp_path / "dd", **kwargs)
    assert result.metrics["test"]["num_examples"] == 20  # its own test split, kept
    # rerun into the same, now non-empty, directory: allowed only when asked
    result = _train(tiny_bert_dir, splits, tmp_path / "dd", overwrite_output_dir=True, **kwargs)
    assert result.output_dir == tmp_path / "dd"


# --- TextClassifier and predict() ---------------------------------------------------------------


def _old_predict(model_dir, texts, batch_size=64):
    """predict() before TextClassifier (the code it replaced), for comparison."""
    from nlp_transfer.metrics.classification import predict_labels, probabilities
    from nlp_transfer.text.inference import load_classifier, predict_logits_for_texts

    model, tokenizer, threshold = load_classifier(model_dir)
    probs = probabilities(predict_logits_for_texts(model, tokenizer, texts, batch_size))
    preds = predict_labels(probs, threshold)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return [
        {"label": names[p], "scores": dict(zip(names, row, strict=True))}
        for p, row in zip(preds, probs, strict=True)
    ]


TEXTS = ["great", "the film was a very dull and boring story and the plot was poor", "awful"]


def test_predict_matches_the_previous_behaviour_without_a_saved_length(trained, tmp_path):
    import shutil

    copy = tmp_path / "old_model"
    shutil.copytree(trained.output_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    del config["max_seq_length"]  # a model saved before the length travelled with it
    (copy / "config.json").write_text(json.dumps(config))
    new = nlp_transfer.predict(copy, TEXTS)
    old = _old_predict(copy, TEXTS)
    assert [r["label"] for r in new] == [r["label"] for r in old]
    for n, o in zip(new, old, strict=True):
        assert list(n["scores"].values()) == pytest.approx(list(o["scores"].values()), abs=1e-6)


def test_classifier_truncates_at_the_saved_length(trained):
    classifier = TextClassifier.from_pretrained(trained.output_dir)
    assert classifier.max_seq_length == 12
    tokens = classifier.tokenizer(TEXTS[1])["input_ids"]
    assert len(tokens) > 12
    truncated = classifier.tokenizer.decode(tokens[1:11])  # 10 words + [CLS] + [SEP] = 12
    logits = classifier.predict_logits([TEXTS[1], truncated])
    np.testing.assert_allclose(logits[0], logits[1], atol=1e-5)
    assert nlp_transfer.predict(trained.output_dir, TEXTS) == classifier.predict(TEXTS)
    one = classifier.predict("great")
    assert one == classifier.predict(["great"])[0]


def test_classifier_decodes_the_saved_problem_type(trained, tmp_path):
    import shutil

    copy = tmp_path / "multi"
    shutil.copytree(trained.output_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(
        json.dumps(config | {"problem_type": "multi_label_classification"})
    )
    classifier = TextClassifier.from_pretrained(copy)
    (out,) = classifier.predict(["good film"])
    assert set(out) == {"labels", "scores"}  # every label's sigmoid, names above threshold
    assert all(0.0 <= v <= 1.0 for v in out["scores"].values())
    assert out["labels"] == [k for k, v in out["scores"].items() if v >= 0.5]


def test_cli_text_task_parses_auto_and_explicit_values():
    from nlp_transfer.cli.config import parse_config
    from nlp_transfer.tasks import get_task

    auto = parse_config(get_task("text").config_class, ["--train_file", "x.csv"])
    assert (auto.num_train_epochs, auto.learning_rate, auto.early_stopping_patience) == (
        None,
        None,
        2,
    )
    fixed = parse_config(
        get_task("text").config_class,
        ["--num_train_epochs", "4", "--learning_rate", "2e-5", "--train_file", "x.csv"],
    )
    assert (fixed.num_train_epochs, fixed.learning_rate) == (4, 2e-5)
    sentiment = parse_config(get_task("sentiment").config_class, [])
    assert (sentiment.num_train_epochs, sentiment.learning_rate) == (3, 5e-5)
