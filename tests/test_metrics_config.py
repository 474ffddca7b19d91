"""Metrics against hand computation; config parsing, YAML and validation."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from nlp_transfer.cli.config import parse_config
from nlp_transfer.metrics.classification import classification_metrics
from nlp_transfer.reporting.config_file import save_config
from nlp_transfer.text import TextClassificationConfig


def test_binary_metrics_by_hand():
    labels = np.array([0, 0, 0, 1, 1])
    logits = np.array([[2, 0], [1, 0], [0, 1], [0, 3], [1, 0]], dtype=float)  # preds 0 0 1 1 0
    m = classification_metrics(labels, logits, ["neg", "pos"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["confusion_matrix"] == [[2, 1], [1, 1]]
    assert m["per_class"]["neg"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    )
    assert m["per_class"]["pos"]["precision"] == pytest.approx(1 / 2)
    assert m["f1_macro"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # ROC-AUC: P(score_pos > score_neg) over the 6 (pos, neg) pairs of softmax(pos) scores.
    score = 1 / (1 + np.exp(logits[:, 0] - logits[:, 1]))
    pairs = [(p, n) for p in score[labels == 1] for n in score[labels == 0]]
    expected = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])
    assert m["roc_auc"] == pytest.approx(expected)


def test_multiclass_roc_auc_and_absent_class():
    labels = np.array([0, 1, 2, 2])
    logits = np.eye(3)[[0, 1, 2, 2]] * 5
    m = classification_metrics(labels, logits, ["a", "b", "c"])
    assert m["accuracy"] == 1.0 and m["roc_auc"] == pytest.approx(1.0)
    m = classification_metrics(np.array([0, 0, 1]), np.eye(3)[[0, 0, 1]], ["a", "b", "c"])
    assert m["roc_auc"] is None  # undefined when a class never occurs
    with pytest.raises(ValueError, match="logits must be"):
        classification_metrics(labels, logits[:, :2], ["a", "b", "c"])


def test_yaml_then_flags_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "learning_rate: 5e-5\nnum_train_epochs: 2\ntrain_file: a.csv\ngroup_by_length: false\n"
    )
    config = parse_config(
        TextClassificationConfig, ["--config", str(path), "--num_train_epochs", "4"]
    )
    assert config.learning_rate == 5e-5 and config.num_train_epochs == 4
    assert config.train_file == "a.csv" and config.group_by_length is False
    save_config(config, tmp_path / "out.yaml", extra="x")
    saved = yaml.safe_load((tmp_path / "out.yaml").read_text())
    assert saved["num_train_epochs"] == 4 and saved["extra"] == "x"


def test_yaml_unknown_key_lists_valid_ones(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-4\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) lr; valid keys: .*learning_rate"):
        parse_config(TextClassificationConfig, ["--config", str(path)])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be positive"),
        (["--learning_rate", "-1"], "--learning_rate must be positive"),
        (["--num_train_epochs", "0"], "--num_train_epochs must be positive"),
        (["--mixed_precision", "fp8"], "--mixed_precision must be one of"),
        (["--warmup_ratio", "1.5"], "--warmup_ratio"),
        (["--per_device_eval_batch_size", "-8"], "--per_device_eval_batch_size must be positive"),
        (["--learning_rate", "0"], "--learning_rate must be positive"),
        (["--save_strategy", "hourly"], "--save_strategy must be one of no, epoch, steps"),
        (["--save_steps", "0"], "--save_steps must be positive"),
        (["--save_total_limit", "0"], "--save_total_limit must be positive"),
        (["--early_stopping_patience", "0"], "--early_stopping_patience must be positive"),
        (["--empty_texts", "keep"], "--empty_texts must be one of drop, error"),
        (
            ["--feature_extraction", "linear", "--resume_from_checkpoint", "latest"],
            "feature-extraction runs write no checkpoints",
        ),
    ],
)
def test_bad_values_name_the_flag(flags, message):
    with pytest.raises(ValueError, match=message):
        parse_config(TextClassificationConfig, ["--train_file", "x.csv", *flags])


def test_data_source_is_required():
    from nlp_transfer.text.loaders import load_data

    with pytest.raises(ValueError, match=r"--dataset_name .* or --train_file"):
        load_data(parse_config(TextClassificationConfig, []))
    with pytest.raises(ValueError, match="not both"):
        parse_config(TextClassificationConfig, ["--dataset_name", "x", "--train_file", "y.csv"])
