"""The ecosystem: nlp-transfer CLI, model cards, TensorBoard, ONNX export, Hub errors."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from nlp_transfer.cli.commands import main as cli_main

from conftest import REPO


def _flags(model_dir, train_file, output_dir, *extra) -> list[str]:
    return [
        "--model_name_or_path",
        str(model_dir),
        "--train_file",
        str(train_file),
        "--text_column",
        "sentence",
        "--label_column",
        "sentiment",
        "--output_dir",
        str(output_dir),
        "--learning_rate",
        "3e-3",
        "--num_train_epochs",
        "2",
        "--per_device_train_batch_size",
        "16",
        *extra,
    ]


# The toy task is learnt in 5 epochs at 1e-2 (50 steps): logits then differ between texts.
LEARNS = ("--learning_rate", "1e-2", "--num_train_epochs", "5")


@pytest.fixture(scope="module")
def trained(tiny_bert_dir, tmp_path_factory):
    """A tiny fine-tuned model from the sentiment recipe, logging to TensorBoard."""
    import sentiment
    from conftest import toy_sentiment_frame

    data = tmp_path_factory.mktemp("eco_data") / "toy.csv"
    toy_sentiment_frame(200).to_csv(data, index=False)
    out = tmp_path_factory.mktemp("eco") / "run"
    metrics = sentiment.main(
        _flags(
            tiny_bert_dir, data, out, *LEARNS, "--report_to", "tensorboard", "--logging_steps", "2"
        )
    )
    assert metrics["test"]["accuracy"] >= 0.8
    return out, metrics, data


def test_cli_train_gives_the_same_model_as_the_recipe(trained, tiny_bert_dir, tmp_path):
    out, metrics, data = trained
    again = tmp_path / "cli"
    assert (
        cli_main(
            [
                "train",
                "--task",
                "sentiment",
                *_flags(
                    tiny_bert_dir,
                    *(data, again, *LEARNS),
                    *("--report_to", "tensorboard", "--logging_steps", "2"),
                ),
            ]
        )
        == 0
    )
    a, b = load_file(str(out / "model.safetensors")), load_file(str(again / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=0, rtol=0, msg=name)
    cli_metrics = json.loads((again / "metrics.json").read_text())
    assert cli_metrics["test"]["accuracy"] == metrics["test"]["accuracy"]
    assert [h["eval_loss"] for h in cli_metrics["validation"]] == [
        h["eval_loss"] for h in metrics["validation"]
    ]


def test_cli_help_is_grouped_and_complete(capsys):
    from dataclasses import fields

    from nlp_transfer.text import SpamConfig

    with pytest.raises(SystemExit):
        cli_main(["train", "--task", "spam", "--help"])
    text = capsys.readouterr().out
    for title in (
        "Data:",
        "Model:",
        "Transfer strategy:",
        "Optimisation:",
        "Checkpoints and resuming:",
        "Tracking and sharing:",
    ):
        assert title in text
    for f in fields(SpamConfig):
        assert f"--{f.name}" in text
    assert "default: f1_spam" in text  # the task's own defaults
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    top = capsys.readouterr().out
    for command in ("train", "evaluate", "predict", "export", "datasets", "benchmark"):
        assert command in top


def test_model_card_metadata_parses_and_matches_metrics(trained):
    from huggingface_hub import ModelCard

    out, metrics, _ = trained
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-classification"
    assert card.data.base_model is None  # a local directory is not a Hub id
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["accuracy"] == round(metrics["test"]["accuracy"], 4)
    assert results["f1_pos"] == round(metrics["test"]["f1_pos"], 4)
    assert "## Transfer strategy" in card.text and "plots/confusion_matrix.png" in card.text
    assert "| `learning_rate` | 0.01 |" in card.text
    assert (out / "plots" / "confusion_matrix.png").exists()


def test_model_card_names_a_hub_base_model_and_its_licence():
    from nlp_transfer.reporting.model_card import build_model_card
    from nlp_transfer.text import TextClassificationConfig

    metrics = {
        "model_name": "sentence-transformers/all-MiniLM-L6-v2",
        "output_dir": "outputs/sentiment",
        "test": {"accuracy": 0.8661, "f1_macro": 0.866, "num_examples": 1008},
        "baseline": {"accuracy": 0.7956, "f1_macro": 0.7956},
        "transfer_strategy": {"name": "fine_tuning", "freeze_layers": 0},
        "validation": [{}, {}],
        "best_epoch": 2,
    }
    config = TextClassificationConfig(dataset_name="rotten_tomatoes_sentences")
    card = build_model_card(metrics, config, ["negative", "positive"])
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.license == "apache-2.0"
    assert card.data.datasets == ["rotten_tomatoes_sentences"]
    assert "| TF-IDF + LogisticRegression | 0.7956 | 0.7956 |" in card.text


def test_tensorboard_events_hold_loss_lr_and_epoch_metrics(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, metrics, _ = trained
    event_files = list((out / "runs").rglob("events.out.tfevents.*"))
    assert event_files, list((out / "runs").rglob("*"))
    tags: dict[str, list] = {}
    for path in event_files:
        acc = EventAccumulator(str(path))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            tags.setdefault(tag, []).extend(acc.Scalars(tag))
    assert {"train/loss", "train/learning_rate", "eval/accuracy", "eval/loss"} <= set(tags)
    # 10 steps per epoch, logged every 2 steps; metrics once per epoch at its last step.
    assert [e.step for e in tags["train/loss"]] == list(range(2, 51, 2))
    assert [e.step for e in tags["eval/accuracy"]] == [10, 20, 30, 40, 50]
    assert [e.value for e in tags["eval/accuracy"]] == pytest.approx(
        [h["eval_accuracy"] for h in metrics["validation"]]
    )


def test_missing_tracker_package_names_the_extra(monkeypatch):
    import builtins

    from nlp_transfer.optional import require_tracker

    real_import = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name == "mlflow":
            raise ImportError("No module named 'mlflow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    with pytest.raises(ImportError, match=r"--report_to mlflow needs .*nlp-transfer\[mlflow\]"):
        require_tracker("mlflow")


def test_unknown_tracker_is_refused():
    from nlp_transfer.text import TextClassificationConfig

    with pytest.raises(ValueError, match=r"unknown tracker.*comet"):
        TextClassificationConfig(dataset_name="x", report_to="tensorboard,comet")
    assert TextClassificationConfig(dataset_name="x", report_to="all").report_to_list() == [
        "tensorboard",
        "wandb",
        "mlflow",
    ]


def test_push_to_hub_offline_fails_before_training(tiny_bert_dir, toy_csv, tmp_path, monkeypatch):
    import sentiment

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "hub"
    with pytest.raises(
        ConnectionError, match="--push_to_hub: the Hugging Face Hub cannot be reached"
    ):
        sentiment.main(_flags(tiny_bert_dir, toy_csv, out, "--push_to_hub"))
    assert not out.exists() or not any(out.iterdir())


def test_onnx_export_matches_pytorch(trained, tmp_path, capsys):
    import numpy as np
    import onnx
    import onnxruntime as ort
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, _, data = trained
    path = tmp_path / "tiny.onnx"
    assert cli_main(["export", "--model_dir", str(out), "--output", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["max_abs_diff"] < 1e-4
    graph = onnx.load(str(path)).graph
    inputs = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in graph.input
    }
    assert set(inputs) >= {"input_ids", "attention_mask"}
    assert all(isinstance(d, str) for d in inputs["input_ids"])  # both axes dynamic
    # ONNX Runtime against the saved PyTorch model, compared here (not the exporter's own check):
    # padded batches of other sizes and lengths than the export's samples.
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    texts = __import__("pandas").read_csv(data)["sentence"].tolist()
    for batch in (texts[:1], texts[1:6], [t + " and the plot" * 3 for t in texts[6:13]]):
        encoded = tokenizer(batch, padding=True, return_tensors="pt")
        with torch.no_grad():
            want = model(**encoded).logits.numpy()
        (got,) = session.run(["logits"], {n: encoded[n].numpy() for n in names})
        assert got.shape == want.shape == (len(batch), 2)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert np.ptp(want[:, 1] - want[:, 0]) > 1e-3  # the texts get different logits


def test_onnx_export_of_feature_extraction_heads(tiny_bert_dir, toy_csv, tmp_path):
    from nlp_transfer.export import export_onnx

    import sentiment

    linear = tmp_path / "fe_linear"
    sentiment.main(
        _flags(
            tiny_bert_dir,
            toy_csv,
            linear,
            "--feature_extraction",
            "linear",
            "--run_baseline",
            "false",
        )
    )
    assert export_onnx(linear)["max_abs_diff"] < 1e-4
    sk = tmp_path / "fe_lr"
    sentiment.main(
        _flags(
            tiny_bert_dir,
            toy_csv,
            sk,
            "--feature_extraction",
            "logistic_regression",
            "--run_baseline",
            "false",
        )
    )
    # the default logistic regression is saved as its equal linear layer: it exports too
    assert export_onnx(sk)["max_abs_diff"] < 1e-4
    # another scikit-learn head cannot be one ONNX graph: refused, nothing written
    from sklearn.neighbors import KNeighborsClassifier

    from nlp_transfer import TextClassificationConfig, run_text_classification

    knn = tmp_path / "fe_knn"
    config = TextClassificationConfig(
        model_name_or_path=str(tiny_bert_dir), train_file=str(toy_csv), text_column="sentence",
        label_column="sentiment", output_dir=str(knn), run_baseline=False, save_strategy="no",
    )  # fmt: skip
    run_text_classification(config, estimator=KNeighborsClassifier(5))
    with pytest.raises(ValueError, match=r"scikit-learn head.*--feature_extraction linear"):
        export_onnx(knn)
    assert not (knn / "model.onnx").exists()


def test_datasets_list_shows_every_builtin(tmp_path, capsys):
    from nlp_transfer.data.builtin import BUILTIN_DATASETS

    assert cli_main(["datasets", "--json", "--cache_dir", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(BUILTIN_DATASETS)
    for row in rows:
        spec = BUILTIN_DATASETS[row["name"]]
        assert row["labels"] == list(spec.label_names) and row["cached"] is False
        assert row["license"] == spec.license and row["citation"] == spec.citation
    sizes = {r["name"]: r["description"].split(" ")[0] for r in rows}  # the domains too
    assert sizes["amazon_review_snippets"] == "2,985" and sizes["tweets"] == "3,432"
    assert (
        sizes["nyt_editorial_snippets"] == "2,970"
        and sizes["rotten_tomatoes_sentences"] == "10,072"
    )
    assert "Hu & Liu (2004)" in BUILTIN_DATASETS["amazon_review_snippets"].citation
    assert cli_main(["datasets", "--cache_dir", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "rotten_tomatoes_sentences  [not cached]" in listing
    assert "tweets  [not cached]" in listing and "nyt_editorial_snippets  [not cached]" in listing
    with pytest.raises(SystemExit, match="NAME must be one of"):
        cli_main(["datasets", "fetch", "imdb"])


@pytest.mark.slow
def test_train_with_the_committed_yaml_equals_the_recipe(tiny_bert_dir, tmp_path):
    """`nlp-transfer train --config recipes/configs/sentiment.yaml` == the recipe, same seed."""
    import sentiment

    config = str(REPO / "recipes" / "configs" / "sentiment.yaml")
    small = ["--model_name_or_path", str(tiny_bert_dir), "--max_train_samples", "64"]
    small += ["--max_eval_samples", "32", "--num_train_epochs", "1", "--run_baseline", "false"]
    recipe_out, cli_out = tmp_path / "recipe", tmp_path / "cli"
    m1 = sentiment.main(["--config", config, *small, "--output_dir", str(recipe_out)])
    assert cli_main(["train", "--config", config, *small, "--output_dir", str(cli_out)]) == 0
    m2 = json.loads((cli_out / "metrics.json").read_text())
    assert m1["test"]["accuracy"] == m2["test"]["accuracy"]
    a, b = (
        load_file(str(recipe_out / "model.safetensors")),
        load_file(str(cli_out / "model.safetensors")),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_console_script_is_installed():
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    script = shutil.which("nlp-transfer") or str(Path(sys.executable).with_name("nlp-transfer"))
    proc = subprocess.run(
        [script, "datasets", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert {r["name"] for r in json.loads(proc.stdout)} >= {"rotten_tomatoes_sentences", "sms_spam"}
