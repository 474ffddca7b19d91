"""Starting points and label formats that just work: a fine-tuned classifier with another label set
as --model_name_or_path, a 1-output regression start, multi-label strings without a separator."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from nlp_transfer.data.pipeline import load_problem_dataset
from nlp_transfer.text.model import build_text_classifier, head_change

from conftest import tiny_config


def _saved_classifier(tiny_bert_dir, path, id2label: dict, problem_type=None):
    """The tiny BERT as a sequence classifier with ``id2label``, saved (as a run would be)."""
    config = tiny_config("bert", num_labels=len(id2label))
    config.id2label, config.label2id = id2label, {v: k for k, v in id2label.items()}
    config.problem_type = problem_type
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_config(config)
    encoder = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    model.bert.load_state_dict(encoder.bert.state_dict())
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(path)
    return model


def test_a_classifier_for_other_labels_keeps_its_encoder_and_gets_a_new_head(
    tiny_bert_dir, tmp_path, caplog
):
    source = _saved_classifier(tiny_bert_dir, tmp_path / "src", {0: "neg", 1: "pos"})
    with caplog.at_level(logging.INFO, logger="nlp_transfer"):
        model, _ = build_text_classifier(str(tmp_path / "src"), label_names=["a", "b", "c"])
    assert "2 label(s) ['neg', 'pos'], not the 3 label(s) ['a', 'b', 'c']" in caplog.text
    assert "its encoder is kept and its head replaced" in caplog.text
    torch.testing.assert_close(
        model.bert.encoder.layer[1].output.dense.weight,
        source.bert.encoder.layer[1].output.dense.weight,
    )
    assert model.classifier.weight.shape == (3, 32)
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}


def test_the_same_labels_keep_the_head_and_other_names_replace_it(tiny_bert_dir, tmp_path, caplog):
    source = _saved_classifier(tiny_bert_dir, tmp_path / "src", {0: "neg", 1: "pos"})
    with caplog.at_level(logging.INFO, logger="nlp_transfer"):
        kept, _ = build_text_classifier(str(tmp_path / "src"), label_names=["NEG", "POS"])
    assert "its head is kept" in caplog.text
    torch.testing.assert_close(kept.classifier.weight, source.classifier.weight)
    renamed, _ = build_text_classifier(str(tmp_path / "src"), label_names=["ham", "spam"])
    assert not torch.allclose(renamed.classifier.weight, source.classifier.weight)
    assert renamed.classifier.bias.abs().sum() == 0  # re-initialised as BERT does


def test_head_change_rules():
    assert head_change(None, ["a", "b"]) is None  # an encoder, not a classifier
    assert head_change(["LABEL_0", "LABEL_1"], ["x", "y"]) is None  # unnamed, same size
    assert head_change(["score"], ["score"]) is None  # a regression start for regression
    assert "1 label(s) ['score'], not the 2 label(s)" in head_change(["score"], ["x", "y"])
    many = head_change([f"l{i}" for i in range(9)], ["x", "y"])
    assert "3 more]" in many


def test_a_regression_start_trains_a_regression(tiny_bert_dir, tmp_path):
    from nlp_transfer.cli import main

    source = _saved_classifier(tiny_bert_dir, tmp_path / "src", {0: "score"}, "regression")
    model, _ = build_text_classifier(str(tmp_path / "src"), label_names=["score"])
    torch.testing.assert_close(model.classifier.weight, source.classifier.weight)
    frame = pd.DataFrame(
        {
            "text": [f"good film {'great ' * (i % 5)}" for i in range(60)],
            "y": [i % 5 for i in range(60)],
        }
    )
    frame.to_csv(tmp_path / "reg.csv", index=False)
    out = tmp_path / "out"
    main(
        ["train", "--train_file", str(tmp_path / "reg.csv"), "--label_column", "y",
         "--problem_type", "regression", "--model_name_or_path", str(tmp_path / "src"),
         "--output_dir", str(out), "--num_train_epochs", "1", "--run_baseline", "false",
         "--save_strategy", "no"]
    )  # fmt: skip
    saved = AutoModelForSequenceClassification.from_pretrained(out)
    assert saved.config.num_labels == 1 and saved.config.problem_type == "regression"


def _multi_label_frame() -> pd.DataFrame:
    labels = ["a,b", "c", "b, c", "a", "a,c", "b"] * 10
    return pd.DataFrame({"text": [f"text {i}" for i in range(60)], "label": labels})


def test_explicit_multi_label_strings_get_their_separator_inferred(caplog):
    with caplog.at_level(logging.INFO, logger="nlp_transfer"):
        ds = load_problem_dataset(_multi_label_frame(), problem_type="multi_label_classification")
    assert "--label_separator ',' inferred" in caplog.text
    assert ds["train"].features["label"].feature.names == ["a", "b", "c"]
    rows = [r for split in ds.values() for r in split]
    names = ds["train"].features["label"].feature.names
    assert sorted(len(r["label"]) for r in rows).count(2) == 30  # "a,b", "b, c", "a,c" x 10
    assert {names[i] for r in rows for i in r["label"]} == {"a", "b", "c"}


def test_single_label_strings_holding_a_separator_are_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="nlp_transfer"):
        ds = load_problem_dataset(_multi_label_frame())  # no problem type: single-label
    assert "pass --label_separator ','" in caplog.text
    assert "a,b" in ds["train"].features["label"].names  # as the user's file says, warned


@pytest.mark.parametrize("separator", [";", "|"])
def test_other_likely_separators(separator):
    frame = _multi_label_frame()
    frame["label"] = frame["label"].str.replace(",", separator)
    ds = load_problem_dataset(frame, problem_type="multi_label_classification")
    assert ds["train"].features["label"].feature.names == ["a", "b", "c"]


def test_auto_max_seq_length_rules():
    import numpy as np

    from nlp_transfer.text.defaults import auto_max_seq_length

    short = np.arange(10, 60)  # sentences: the old default stays
    assert auto_max_seq_length(short, 512, on_cpu=True)[0] == 128
    long = np.full(100, 300)
    length, reason, capped = auto_max_seq_length(long, 512, on_cpu=False)
    assert (length, capped) == (320, False)  # 300 rounded up to a multiple of 32
    length, reason, capped = auto_max_seq_length(long, 512, on_cpu=True)
    assert (length, capped) == (128, True) and "100% of the texts are cut" in reason
    assert "seq_length.md" in reason  # the measurement behind the CPU cap
    length, _, capped = auto_max_seq_length(np.full(10, 900), 512, on_cpu=False)
    assert (length, capped) == (512, True)
    assert auto_max_seq_length(short, 64, on_cpu=True)[:3:2] == (64, False)  # a tiny model


def test_auto_max_seq_length_of_pairs_is_logged_and_saved(tiny_bert_dir, tmp_path, capsys):
    """Unset, the length follows the training pairs (both texts counted); logged; saved."""
    from nlp_transfer.cli import main

    words = "good bad fine film plot acting " * 6
    frame = pd.DataFrame(
        {"a": [words[: 20 + i] for i in range(40)], "b": [words] * 40, "y": ["x", "z"] * 20}
    )
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    out = tmp_path / "out"
    main(
            ["train", "--train_file", str(tmp_path / "pairs.csv"), "--text_column", "a",
             "--text_pair_column", "b", "--label_column", "y", "--model_name_or_path",
             str(tiny_bert_dir), "--output_dir", str(out), "--num_train_epochs", "1",
             "--run_baseline", "false", "--save_strategy", "no"]
        )  # fmt: skip
    assert (
        "--max_seq_length auto: 64 (95% of 32 sampled training texts fit in"
        in capsys.readouterr().err
    )
    assert AutoModelForSequenceClassification.from_pretrained(out).config.max_seq_length == 64
    assert "max_seq_length: 64" in (out / "config.yaml").read_text()
