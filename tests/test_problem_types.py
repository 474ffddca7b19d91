"""Multi-label, regression and sentence-pair runs end to end on GENERATED tiny data (no real
dataset of these types is packaged yet): Python API, CLI, predict, reload, ONNX, bad input."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest

from nlp_transfer import TextClassificationConfig, run_text_classification
from nlp_transfer.data.pipeline import load_problem_dataset
from nlp_transfer.text.predict import predict

from conftest import FILLER, NEGATIVE, POSITIVE

TOPICS = {"pos": POSITIVE, "neg": NEGATIVE}


def generated_multilabel_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Generated: each text holds words of 0-2 topics; its labels are those topics (joined by |)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        labels = [t for j, t in enumerate(TOPICS) if (i >> j) & 1]
        words = rng.sample(FILLER, 3) + [rng.choice(TOPICS[t]) for t in labels]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "tags": "|".join(labels)})
    return pd.DataFrame(rows)


def generated_regression_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Generated: the target is 2 * (#positive words - #negative words) + 10."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        k_pos, k_neg = rng.randint(0, 2), rng.randint(0, 2)
        words = rng.sample(FILLER, 3) + rng.sample(POSITIVE, k_pos) + rng.sample(NEGATIVE, k_neg)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "score": 2.0 * (k_pos - k_neg) + 10.0})
    return pd.DataFrame(rows)


def generated_pair_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Generated: a pair is 'same' when both sentences carry the same sentiment."""
    rng = random.Random(seed)
    rows = []
    for _i in range(n):
        a, b = rng.choice(list(TOPICS)), rng.choice(list(TOPICS))
        rows.append(
            {
                "premise": " ".join([*rng.sample(FILLER, 3), rng.choice(TOPICS[a])]),
                "hypothesis": " ".join([*rng.sample(FILLER, 2), rng.choice(TOPICS[b])]),
                "relation": "same" if a == b else "different",
            }
        )
    return pd.DataFrame(rows)


def _config(tiny_bert_dir, tmp_path, path, **kwargs) -> TextClassificationConfig:
    settings = dict(
        model_name_or_path=str(tiny_bert_dir),
        train_file=str(path),
        output_dir=str(tmp_path / "out"),
        num_train_epochs=2,
        learning_rate=1e-3,
        per_device_train_batch_size=16,
        max_seq_length=32,
        save_strategy="no",
        seed=0,
    )
    return TextClassificationConfig(**(settings | kwargs))


def test_multilabel_inferred_from_separator_trains_predicts_and_exports(tiny_bert_dir, tmp_path):
    path = tmp_path / "tags.csv"
    generated_multilabel_frame().to_csv(path, index=False)
    config = _config(
        tiny_bert_dir,
        tmp_path,
        path,
        label_column="tags",
        label_separator="|",
    )  # the multi-label defaults: thresholds tuned on validation, pos_weight, AP selection
    metrics = run_text_classification(config)
    test = metrics["test"]
    assert metrics["problem_type"] == "multi_label_classification"
    assert metrics["metric_for_best_model"] == "average_precision"
    assert metrics["threshold_tuning"] == {"tuned_on": "validation", "per_label": True}
    for key in ("f1_micro", "f1_macro", "f1_samples", "subset_accuracy", "hamming_loss"):
        assert 0.0 <= test[key] <= 1.0
    assert set(test["per_label"]) == {"neg", "pos"}
    assert len(metrics["decision_threshold"]) == 2
    assert metrics["baseline"]["f1_micro"] > 0.5
    out = tmp_path / "out"
    for plot in ("pr_curves.png", "label_f1.png", "training_curves.png"):
        assert (out / "plots" / plot).stat().st_size > 10_000
    saved = json.loads((out / "config.json").read_text())
    assert saved["problem_type"] == "multi_label_classification"
    assert len(saved["label_thresholds"]) == 2
    result = predict(out, ["the good movie", "a bad plot"])
    assert set(result[0]["scores"]) == {"neg", "pos"}
    assert all(set(r["labels"]) <= {"neg", "pos"} for r in result)

    from transformers import pipeline

    scores = pipeline("text-classification", model=str(out), top_k=None)(["the good movie"])[0]
    assert sum(s["score"] for s in scores) != pytest.approx(1.0, abs=1e-3)  # sigmoid, not softmax
    _check_onnx(out)


def test_regression_standardised_targets_are_undone_at_prediction(tiny_bert_dir, tmp_path):
    path = tmp_path / "scores.csv"
    generated_regression_frame().to_csv(path, index=False)
    config = _config(
        tiny_bert_dir,
        tmp_path,
        path,
        label_column="score",
        problem_type="regression",
        standardize_targets=True,
        num_train_epochs=4,
    )
    metrics = run_text_classification(config)
    test = metrics["test"]
    for key in ("pearson", "spearman", "mse", "mae", "r2"):
        assert key in test
    assert metrics["target_scaling"]["mean"] == pytest.approx(10.0, abs=1.0)
    assert metrics["baseline"]["pearson"] > 0.5
    out = tmp_path / "out"
    assert (out / "plots" / "predicted_vs_true.png").exists()
    values = [r["score"] for r in predict(out, ["good great", "bad awful", "the movie"])]
    # in the targets' units (around 10), not standardised (around 0)
    assert 4.0 < np.mean(values) < 16.0
    _check_onnx(out)


def test_sentence_pairs_cli_with_frozen_prefix_cache(tiny_bert_dir, tmp_path):
    from nlp_transfer.cli.commands import main

    path = tmp_path / "pairs.csv"
    generated_pair_frame().to_csv(path, index=False)
    out = tmp_path / "out"
    flags = f"--model_name_or_path {tiny_bert_dir} --train_file {path} --output_dir {out} "
    flags += "--text_column premise --text_pair_column hypothesis --label_column relation "
    flags += "--num_train_epochs 2 --learning_rate 1e-3 --max_seq_length 32 --save_strategy no "
    flags += "--freeze_layers 2 --cache_frozen_prefix memory --layer_lr_decay 0.9"
    main(["train", *flags.split()])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["num_examples"] == 12
    assert set(metrics["test"]["per_class"]) == {"different", "same"}
    assert "accuracy" in metrics["baseline"]
    result = predict(out, [("the good movie", "a great plot"), ("a bad film", "so happy")])
    assert {r["label"] for r in result} <= {"different", "same"}
    lines = tmp_path / "predictions.jsonl"
    argv = ["predict", "--model_dir", str(out), "--output", str(lines)]
    main([*argv, "--text", "the good movie", "--text_pair", "a great plot"])
    (line,) = [json.loads(x) for x in lines.read_text().splitlines()]
    assert line["text"] == ["the good movie", "a great plot"]
    assert line["label"] == result[0]["label"]
    _check_onnx(out)


def _check_onnx(out):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from nlp_transfer.export import export_onnx

    report = export_onnx(out)
    assert report["max_abs_diff"] < 1e-3


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (
            pd.DataFrame({"text": ["a b", "c d"] * 10, "score": [1.0, "high"] * 10}),
            {"label_column": "score", "problem_type": "regression"},
            "--problem_type regression",
        ),
        (
            pd.DataFrame({"text": ["a b", "c d"] * 10, "score": [1.0, float("nan")] * 10}),
            {"label_column": "score", "problem_type": "regression"},
            "'score'",
        ),
        (  # floats are regression only when asked
            pd.DataFrame({"text": ["a b", "c d"] * 10, "score": [1.5, 2.0] * 10}),
            {"label_column": "score"},
            "--problem_type regression",
        ),
        (
            pd.DataFrame({"text": ["a b", "c d"] * 10, "label": ["x", "y"] * 10}),
            {"text_pair_column": "second"},
            "--text_pair_column",
        ),
    ],
)
def test_bad_input_names_the_column_and_flag(frame, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("-", r"\-")):
        load_problem_dataset(frame, **kwargs)


def test_multilabel_unknown_test_label_is_refused():
    train = pd.DataFrame({"text": ["a b", "c d", "e f"] * 5, "tags": ["x", "y", "x,y"] * 5})
    test = pd.DataFrame({"text": ["a b", "c d"], "tags": ["x", "z"]})
    with pytest.raises(ValueError, match=r"\['z'\].*'tags'.*test"):
        load_problem_dataset(train, test=test, label_column="tags", label_separator=",")


def test_multilabel_split_keeps_every_label_in_train():
    frame = generated_multilabel_frame(200)
    frame["tags"] = frame["tags"].str.split("|").apply(lambda t: [x for x in t if x])
    ds = load_problem_dataset(frame, label_column="tags")
    names = ds["train"].features["label"].feature.names
    assert names == ["neg", "pos"]
    assert sum(map(len, (ds[s] for s in ds))) == 200
    for split in ds:
        counts = np.bincount([i for ids in ds[split]["label"] for i in ids], minlength=2)
        share = counts / len(ds[split])
        assert np.all(np.abs(share - 0.5) < 0.12), (split, share)


@pytest.mark.parametrize(
    ("name", "problem_type"),
    [
        ("topics", "single_label_classification"),
        ("multi_label", "multi_label_classification"),
        ("regression", "regression"),
        ("sentence_pairs", "single_label_classification"),
    ],
)
def test_problem_yaml_configs_parse_with_the_topics_recipe(name, problem_type, tmp_path):
    from nlp_transfer.cli.config import parse_config
    from nlp_transfer.tasks import get_task

    from conftest import REPO

    cls = get_task("topics").config_class
    argv = ["--config", str(REPO / "recipes" / "configs" / f"{name}.yaml")]
    if name != "topics":
        argv += ["--train_file", str(tmp_path / "data.csv")]
    config = parse_config(cls, argv)
    assert config.problem_type == problem_type
    if name == "topics":
        assert (config.dataset_name, config.max_seq_length) == ("20_newsgroups", 256)


def test_cached_prefix_is_exact_for_sentence_pairs_with_multi_hot_labels(tiny_bert_dir):
    """token_type_ids of pairs go through the frozen embeddings; the cache must match."""
    import torch
    from transformers import AutoTokenizer, DataCollatorWithPadding

    from nlp_transfer.text.model import build_text_classifier
    from nlp_transfer.text.problem import model_ready_labels
    from nlp_transfer.text.tokenize import tokenize_dataset
    from nlp_transfer.transfer.cache import (
        CachedPrefixModel,
        CachingCollator,
        add_cache_index,
        compute_prefix_cache,
    )
    from nlp_transfer.transfer.freeze import freeze_encoder_layers

    frame = generated_pair_frame(24)
    frame["tags"] = [["same"] if r == "same" else ["different", "x"] for r in frame["relation"]]
    ds = load_problem_dataset(
        frame, text_column="premise", text_pair_column="hypothesis", label_column="tags"
    )
    ds, _ = model_ready_labels(ds, "multi_label_classification")
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    tokenized = tokenize_dataset(ds, tokenizer, 64)["train"]
    assert any(1 in row for row in tokenized["token_type_ids"])  # the second text is typed 1
    model, _ = build_text_classifier(str(tiny_bert_dir), label_names=["different", "same", "x"])
    freeze_encoder_layers(model, 1)
    collator = DataCollatorWithPadding(tokenizer)
    cache = compute_prefix_cache(model, 1, tokenized, collator, batch_size=8, dtype=torch.float32)
    rows = [add_cache_index(tokenized)[i] for i in range(8)]
    cached = CachingCollator(collator, cache)(rows)
    plain = collator([{k: v for k, v in r.items() if k != "cache_index"} for r in rows])
    assert cached["labels"].shape == (8, 3) and cached["labels"].dtype == torch.float32
    wrapped = CachedPrefixModel(model, 1)
    model.eval()
    with torch.no_grad():
        wrapped.disable()
        expected = model(**{k: v for k, v in plain.items() if k != "labels"}).logits
        wrapped.enable()
        got = wrapped(**{k: v for k, v in cached.items() if k != "labels"}).logits
    wrapped.disable()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_cli_multilabel_lists_and_recipe_regression_with_l2sp_and_frozen_layers(
    tiny_bert_dir, tmp_path
):
    """The CLI infers multi-label from JSON lists; the topics recipe takes --problem_type
    regression; freezing with caching, L2-SP and LR decay run for both."""
    from topics import main as topics_main

    from nlp_transfer.cli.commands import main

    frame = generated_multilabel_frame()
    frame["tags"] = frame["tags"].str.split("|").apply(lambda t: [x for x in t if x])
    frame.to_json(tmp_path / "tags.jsonl", orient="records", lines=True)
    common = f"--model_name_or_path {tiny_bert_dir} --num_train_epochs 1 --max_seq_length 32 "
    common += "--save_strategy no --run_baseline false --freeze_layers 1 --l2sp_alpha 0.01 "
    common += "--layer_lr_decay 0.9 --learning_rate 1e-3"
    out = tmp_path / "tags"
    main(["train", *common.split(), "--train_file", str(tmp_path / "tags.jsonl"),
          "--label_column", "tags", "--output_dir", str(out)])  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["problem_type"] == "multi_label_classification"
    assert metrics["parameters"]["trainable"] < metrics["parameters"]["total"]
    assert "eval_f1_micro" in metrics["validation"][0]

    generated_regression_frame().to_csv(tmp_path / "scores.csv", index=False)
    out = tmp_path / "scores"
    result = topics_main([*common.split(), "--train_file", str(tmp_path / "scores.csv"),
                          "--label_column", "score", "--problem_type", "regression",
                          "--output_dir", str(out)])  # fmt: skip
    assert result["metric_for_best_model"] == "rmse"
    assert result["test"]["mse"] == pytest.approx(result["test"]["loss"])
    assert predict(out, ["good"])[0].keys() == {"score"}


def test_multilabel_split_moves_a_rare_label_back_into_train():
    frame = generated_multilabel_frame(60)
    frame.loc[59, "tags"] = "pos|rare"  # seen once: it must be learnable
    for seed in range(10):
        ds = load_problem_dataset(frame, label_column="tags", label_separator="|", seed=seed)
        rare = ds["train"].features["label"].feature.names.index("rare")
        assert any(rare in ids for ids in ds["train"]["label"]), seed
        assert sum(len(ds[s]) for s in ds) == 60


def test_a_label_held_out_only_is_moved_back_to_train():
    from nlp_transfer.data.splits import keep_labels_in_train as _keep_labels_in_train

    labels = [[0], [0, 1], [1], [2], [0]]
    y = np.zeros((5, 3), dtype=np.int64)
    for row, ids in enumerate(labels):
        y[row, ids] = 1
    train, held = _keep_labels_in_train(y, np.array([0, 1, 2]), {"test": np.array([3, 4])})
    assert train.tolist() == [0, 1, 2, 3] and held["test"].tolist() == [4]
