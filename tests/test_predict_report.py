"""The evaluation report (metrics and plots), prediction and the command line on a trained model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nlp_transfer.cli.commands import main as cli_main
from nlp_transfer.text.predict import evaluate_saved_model, predict

from conftest import toy_sentiment_frame


@pytest.fixture(scope="module")
def trained_dir(tiny_bert_dir, tmp_path_factory):
    """A tiny model trained on the toy task by the spam recipe (threshold tuned on validation)."""
    import spam

    data = tmp_path_factory.mktemp("data") / "toy.csv"
    toy_sentiment_frame(240).to_csv(data, index=False)
    out = tmp_path_factory.mktemp("runs") / "spam"
    spam.main(
        [
            "--model_name_or_path",
            str(tiny_bert_dir),
            "--train_file",
            str(data),
            "--text_column",
            "sentence",
            "--label_column",
            "sentiment",
            "--output_dir",
            str(out),
            "--learning_rate",
            "3e-3",
            "--num_train_epochs",
            "5",
            "--per_device_train_batch_size",
            "16",
            "--metric_for_best_model",
            "f1_pos",
            "--class_weights",
            "balanced",
            "--tune_decision_threshold",
            # Validation F1 saturates at 1.0 from epoch 3 on this toy task (24 examples); keep
            # the last, best-trained weights rather than the first epoch that reached it.
            "--load_best_model_at_end",
            "false",
            "--overwrite_output_dir",
        ]
    )
    return out


def test_report_has_every_metric_and_plot(trained_dir):
    metrics = json.loads((trained_dir / "metrics.json").read_text())
    test = metrics["test"]
    for key in (
        "accuracy",
        "f1_macro",
        "f1_weighted",
        "mcc",
        "roc_auc",
        "average_precision",
        "precision_pos",
        "recall_pos",
        "f1_pos",
        "confusion_matrix",
        "per_class",
    ):
        assert key in test, key
    assert test["per_class"]["pos"]["support"] + test["per_class"]["neg"]["support"] == 24
    assert metrics["threshold_tuning"]["tuned_on"] == "validation"
    assert test["decision_threshold"] == metrics["decision_threshold"]
    history = metrics["validation"]
    assert {"train_loss", "train_accuracy", "train_f1_pos", "eval_loss", "eval_f1_pos"} <= set(
        history[0]
    )
    for name in ("confusion_matrix", "roc_curve", "precision_recall_curve", "training_curves"):
        png = trained_dir / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_threshold_is_saved_with_the_model_and_used_by_predict(trained_dir, tmp_path):
    config = json.loads((trained_dir / "config.json").read_text())
    threshold = json.loads((trained_dir / "metrics.json").read_text())["decision_threshold"]
    assert config["decision_threshold"] == pytest.approx(threshold)
    results = predict(
        trained_dir, ["the movie was great and superb", "the film was awful and dull"]
    )
    assert [r["label"] for r in results] == ["pos", "neg"]
    assert set(results[0]["scores"]) == {"neg", "pos"}
    assert results[0]["score"] == pytest.approx(results[0]["scores"]["pos"])
    # The same model with a threshold no probability reaches predicts "neg" for everything.
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_dir, copy)
    (copy / "config.json").write_text(json.dumps(config | {"decision_threshold": 1.01}))
    assert {r["label"] for r in predict(copy, ["great superb lovely", "happy fine good"])} == {
        "neg"
    }


def test_predict_keeps_input_order_across_lengths(trained_dir):
    texts = ["great", "the film was a very dull and boring story", "awful", "the movie was superb"]
    single = [predict(trained_dir, [t])[0]["scores"]["pos"] for t in texts]
    batched = [r["scores"]["pos"] for r in predict(trained_dir, texts, batch_size=2)]
    assert batched == pytest.approx(single, abs=1e-5)


def test_cli_predict_from_text_and_files(trained_dir, tmp_path, capsys):
    assert (
        cli_main(
            [
                "predict",
                "--model_dir",
                str(trained_dir),
                "--text",
                "great superb",
                "--text",
                "awful dull",
            ]
        )
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["text"], r["label"]) for r in lines] == [
        ("great superb", "pos"),
        ("awful dull", "neg"),
    ]
    txt = tmp_path / "in.txt"
    txt.write_text("lovely film\n\nboring plot\n")
    out = tmp_path / "out.jsonl"
    cli_main(["predict", "--model_dir", str(trained_dir), "--file", str(txt), "--output", str(out)])
    assert [json.loads(x)["label"] for x in out.read_text().splitlines()] == ["pos", "neg"]
    csv = tmp_path / "in.csv"
    pd.DataFrame({"msg": ["happy story", "sad story"]}).to_csv(csv, index=False)
    cli_main(
        ["predict", "--model_dir", str(trained_dir), "--file", str(csv), "--text_column", "msg"]
    )
    assert [json.loads(x)["label"] for x in capsys.readouterr().out.splitlines()] == ["pos", "neg"]
    assert cli_main(["predict", "--model_dir", str(trained_dir), "--file", str(csv)]) == 1
    assert "no column 'text'" in capsys.readouterr().err


def test_evaluate_saved_model_on_a_labelled_file(trained_dir, tmp_path, capsys):
    frame = toy_sentiment_frame(40, seed=7)
    path = tmp_path / "labelled.csv"
    frame.to_csv(path, index=False)
    metrics = evaluate_saved_model(
        trained_dir,
        path,
        text_column="sentence",
        label_column="sentiment",
        output_dir=tmp_path / "report",
    )
    assert metrics["num_examples"] == 40 and metrics["accuracy"] >= 0.9
    assert (tmp_path / "report" / "plots" / "confusion_matrix.png").exists()
    cli_main(
        [
            "evaluate",
            "--model_dir",
            str(trained_dir),
            "--file",
            str(path),
            "--text_column",
            "sentence",
            "--label_column",
            "sentiment",
        ]
    )
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(metrics["accuracy"])
    frame.loc[0, "sentiment"] = "neutral"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match="unknown to the model"):
        evaluate_saved_model(trained_dir, path, text_column="sentence", label_column="sentiment")


def test_missing_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--model_dir"):
        predict(tmp_path, ["x"])


def test_confusion_matrix_grows_with_the_classes(tmp_path):
    """20 classes get a larger figure than 2, so the cells and names stay readable."""
    from PIL import Image

    from nlp_transfer.reporting.plots import plot_confusion_matrix

    rng = np.random.default_rng(0)
    sizes = {}
    for n in (2, 20):
        labels, preds = rng.integers(0, n, 200), rng.integers(0, n, 200)
        names = [f"newsgroup.category.{i}" for i in range(n)]
        path = plot_confusion_matrix(labels, preds, names, tmp_path / f"cm{n}.png", "test")
        sizes[n] = Image.open(path).size
    assert sizes[20][0] > 1.5 * sizes[2][0] and sizes[20][1] > 2 * sizes[2][1]
