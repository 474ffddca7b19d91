"""Contrastive transfer (issue 33): in-batch pairs, the loss on a tiny fixture, the few-shot
default, what the stage and the head see, and the saved model through every backend."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from nlp_transfer.transfer.contrastive import contrastive_tune, in_batch_pairs, label_batches
from nlp_transfer.transfer.contrastive_stage import contrastive_epochs

from conftest import toy_sentiment_frame


def test_in_batch_pairs_are_every_unordered_pair_with_label_equality_targets():
    first, second, target = in_batch_pairs(torch.tensor([0, 1, 0, 1]))
    pairs = sorted(zip(first.tolist(), second.tolist(), strict=True))
    assert pairs == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    same = {
        (a, b): t for a, b, t in zip(first.tolist(), second.tolist(), target.tolist(), strict=True)
    }
    assert same[(0, 2)] == same[(1, 3)] == 1.0
    assert same[(0, 1)] == same[(2, 3)] == 0.0


def test_multi_label_pairs_score_the_jaccard_overlap_of_their_label_sets():
    rows = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 0]], dtype=torch.float32)
    first, second, target = in_batch_pairs(rows)
    got = {
        (a, b): t for a, b, t in zip(first.tolist(), second.tolist(), target.tolist(), strict=True)
    }
    assert got[(0, 1)] == pytest.approx(0.5)
    assert got[(0, 2)] == 0.0
    assert got[(0, 3)] == 1.0


def test_label_batches_hold_every_label_twice_and_only_the_given_indices():
    labels = [0, 1, 2] * 6
    batches = label_batches(labels, batch_size=6, seed=0, epochs=2)
    assert batches and all(len(b) <= 6 for b in batches)
    for batch in batches:
        counts = np.bincount([labels[i] for i in batch], minlength=3)
        assert (counts[counts > 0] >= 2).all()
    assert {i for b in batches for i in b} <= set(range(len(labels)))
    with pytest.raises(ValueError, match="two labels with two training examples"):
        label_batches([0, 0, 1], batch_size=4, seed=0, epochs=1)


def test_epochs_follow_the_pairs_each_example_meets():
    assert contrastive_epochs(16, 16, 120) == 8
    assert contrastive_epochs(1000, 16, 120) == 8  # given: the same whatever the size
    assert contrastive_epochs(16, 16, 1) == 1
    # unset: n / 2 epochs of batches of 16, within [16, 32]
    assert [contrastive_epochs(n, 16, None) for n in (16, 32, 48, 64, 1000)] == [16, 16, 24, 32, 32]
    assert contrastive_epochs(64, 8, None) == 69  # the same 480 partners in smaller batches


def test_the_loss_falls_on_a_tiny_fixture(tiny_bert_dir):
    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(tiny_bert_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    frame = toy_sentiment_frame(48, seed=3)
    labels = [int(s == "pos") for s in frame["sentiment"]]
    top = encoder.encoder.layer[-1]
    before = [p.detach().clone() for p in top.parameters()]
    report = contrastive_tune(
        encoder, tokenizer, list(frame["sentence"]), labels, loss_name="cosine",
        epochs=30, batch_size=16, learning_rate=3e-3, seed=0, show_progress=False,
    )  # fmt: skip
    first, last = np.mean(report.losses[:6]), np.mean(report.losses[-6:])
    assert last < 0.5 * first, (first, last)
    assert report.steps == len(report.losses) == 30 * 3
    assert report.pairs_seen == report.steps * 16 * 15 // 2
    changed = [not torch.equal(a, b) for a, b in zip(before, top.parameters(), strict=True)]
    assert all(changed)  # the top layer trained


def test_frozen_parameters_stay_as_they_were(tiny_bert_dir):
    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(tiny_bert_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    encoder.embeddings.requires_grad_(False)
    kept = {n: p.detach().clone() for n, p in encoder.embeddings.named_parameters()}
    frame = toy_sentiment_frame(16, seed=1)
    contrastive_tune(
        encoder, tokenizer, list(frame["sentence"]), [int(s == "pos") for s in frame["sentiment"]],
        loss_name="batch_all_triplet", epochs=2, batch_size=8, learning_rate=1e-3,
        show_progress=False,
    )  # fmt: skip
    for name, p in encoder.embeddings.named_parameters():
        assert torch.equal(p, kept[name]), name


def _config(tiny_bert_dir, out, **settings):
    from nlp_transfer import TextClassificationConfig

    base = dict(
        model_name_or_path=str(tiny_bert_dir), text_column="sentence", label_column="sentiment",
        output_dir=str(out), run_baseline=False, save_strategy="no", max_seq_length=32,
        per_device_train_batch_size=8,
    )  # fmt: skip
    return TextClassificationConfig(**(base | settings))


def _splits(n_train=24, seed=0):
    from nlp_transfer.data import load_text_classification_dataset

    frame = toy_sentiment_frame(n_train + 40, seed=seed)
    return load_text_classification_dataset(
        frame, text_column="sentence", label_column="sentiment", seed=seed
    )


def test_the_stage_and_the_head_see_only_the_training_split(tiny_bert_dir, tmp_path, monkeypatch):
    from sklearn.linear_model import LogisticRegression

    import nlp_transfer.text.features as text_features
    import nlp_transfer.transfer.contrastive_stage as contrastive
    from nlp_transfer import run_text_classification

    seen, fitted = {}, []
    tune = contrastive.contrastive_tune

    def recording_tune(encoder, tokenizer, texts, labels, **kwargs):
        seen["texts"], seen["labels"] = list(texts), list(labels)
        return tune(encoder, tokenizer, texts, labels, **kwargs)

    class RecordingLR(LogisticRegression):
        def fit(self, x, y, **kwargs):
            fitted.append(np.asarray(y))
            return super().fit(x, y, **kwargs)

    monkeypatch.setattr(contrastive, "contrastive_tune", recording_tune)
    monkeypatch.setattr(text_features, "default_sklearn_head", lambda seed=42: RecordingLR())
    dataset = _splits()
    metrics = run_text_classification(_config(tiny_bert_dir, tmp_path / "run"), dataset=dataset)
    train = dataset["train"]
    assert seen["texts"] == list(train["text"])  # every training text, in order, nothing else
    assert seen["labels"] == list(train["label"])
    others = set(dataset["validation"]["text"]) | set(dataset["test"]["text"])
    assert not (set(seen["texts"]) & others - set(train["text"]))
    assert len(fitted) == 1 and fitted[0].tolist() == list(train["label"])
    strategy = metrics["transfer_strategy"]
    assert strategy["name"] == "feature_extraction" and strategy["contrastive"]["loss"] == "cosine"
    assert strategy["contrastive"]["steps"] >= 1


def test_few_shot_default_is_logged_and_left_alone_when_a_strategy_is_chosen(
    tiny_bert_dir, tmp_path, caplog
):
    from datasets import Dataset

    from nlp_transfer.text.few_shot import FEW_SHOT_PER_CLASS, resolve_contrastive

    few = _splits()["train"]
    config = _config(tiny_bert_dir, tmp_path)
    with caplog.at_level(logging.INFO):
        chosen = resolve_contrastive(config, few, 2)
    assert (chosen.contrastive, chosen.feature_extraction) == ("cosine", "logistic_regression")
    assert "--contrastive auto: cosine" in caplog.text
    for chosen_by_user in ({"freeze_layers": 1}, {"learning_rate": 1e-4}, {"num_train_epochs": 3},
                           {"long_text_strategy": "chunks"}):  # fmt: skip
        left = resolve_contrastive(_config(tiny_bert_dir, tmp_path, **chosen_by_user), few, 2)
        assert (left.contrastive, left.feature_extraction) == ("none", "none"), chosen_by_user
    many = Dataset.from_dict({"label": [0, 1] * (FEW_SHOT_PER_CLASS + 1)}).cast_column(
        "label", few.features["label"]
    )
    assert resolve_contrastive(config, many, 2).contrastive == "none"
    regression = Dataset.from_dict({"label": [0.5, 1.5] * 4})
    assert resolve_contrastive(config, regression, 1).contrastive == "none"
    explicit = _config(tiny_bert_dir, tmp_path, contrastive="none")
    assert resolve_contrastive(explicit, few, 2) is explicit


def test_refusals_name_the_flags(tiny_bert_dir, tmp_path):
    from nlp_transfer import TextClassificationConfig

    with pytest.raises(ValueError, match="--contrastive must be one of"):
        TextClassificationConfig(dataset_name="x", contrastive="simcse")
    with pytest.raises(ValueError, match="--peft lora"):
        TextClassificationConfig(dataset_name="x", contrastive="cosine", peft="prompt_tuning")
    with pytest.raises(ValueError, match="--bitfit"):
        TextClassificationConfig(dataset_name="x", contrastive="cosine", bitfit=True)
    with pytest.raises(ValueError, match="one label per example"):
        TextClassificationConfig(
            dataset_name="x", contrastive="batch_hard_triplet",
            problem_type="multi_label_classification",
        )  # fmt: skip
    with pytest.raises(ValueError, match="at least 4"):
        TextClassificationConfig(
            dataset_name="x", contrastive="cosine", per_device_train_batch_size=2
        )


def test_regression_data_is_refused_with_the_flag(tiny_bert_dir, tmp_path):
    import pandas as pd

    from nlp_transfer import run_text_classification

    frame = toy_sentiment_frame(60, seed=2)
    frame["score"] = np.linspace(0, 1, len(frame))
    config = _config(
        tiny_bert_dir, tmp_path / "reg", label_column="score", contrastive="cosine",
        problem_type="regression", num_train_epochs=1,
    )  # fmt: skip
    with pytest.raises(ValueError, match="--contrastive"):
        run_text_classification(config, dataset=pd.DataFrame(frame))


def test_contrastive_then_end_to_end_fine_tuning(tiny_bert_dir, tmp_path):
    from nlp_transfer import run_text_classification

    config = _config(
        tiny_bert_dir, tmp_path / "ft", contrastive="cosent", num_train_epochs=2,
        learning_rate=1e-3, freeze_layers=1,
    )  # fmt: skip
    metrics = run_text_classification(config, dataset=_splits(40))
    strategy = metrics["transfer_strategy"]
    assert strategy["name"] == "fine_tuning" and strategy["freeze_layers"] == 1
    assert strategy["contrastive"]["loss"] == "cosent"
    assert metrics["timings"]["train_runtime_s"] >= strategy["contrastive"]["seconds"]


def test_a_saved_contrastive_model_predicts_the_same_through_each_backend(tiny_bert_dir, tmp_path):
    from nlp_transfer import TextClassifier, run_text_classification

    out = tmp_path / "fs"
    run_text_classification(_config(tiny_bert_dir, out), dataset=_splits())
    texts = ["good movie", "the plot was awful and boring", "a superb film", "bad"]
    load = TextClassifier.from_pretrained
    torch_out = load(out, "cpu").predict(texts)
    onnx_out = load(out, backend="onnxruntime").predict(texts)  # exported on first use
    int8_out = load(out, backend="onnxruntime", quantize="int8").predict(texts)
    assert [r["label"] for r in onnx_out] == [r["label"] for r in torch_out]
    for a, b in zip(torch_out, onnx_out, strict=True):
        for label, p in a["scores"].items():
            assert b["scores"][label] == pytest.approx(p, abs=1e-4)
    for a, b in zip(torch_out, int8_out, strict=True):
        for label, p in a["scores"].items():
            assert b["scores"][label] == pytest.approx(p, abs=0.05)


def test_with_lora_the_stage_tunes_only_the_adapters(tiny_bert_dir, tmp_path):
    from nlp_transfer import run_text_classification

    config = _config(
        tiny_bert_dir, tmp_path / "lora", contrastive="cosine", peft="lora",
        num_train_epochs=1, learning_rate=1e-3,
    )  # fmt: skip
    metrics = run_text_classification(config, dataset=_splits(40))
    strategy = metrics["transfer_strategy"]
    lora_params = strategy["peft"]["trainable_params"]
    head_params = 32 * 2 + 2  # the classifier; not part of the encoder the stage tunes
    assert strategy["contrastive"]["trainable_params"] == lora_params - head_params > 0
