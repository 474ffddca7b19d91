"""The sentiment recipe end to end: in-process on a tiny model, and under `accelerate launch`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, toy_sentiment_frame

TINY_TOTAL = 20_076  # tiny BERT + 2-label head, counted by hand in test_models.py
TINY_TRAINABLE_FREEZE_1 = 7_911  # layer_1 + pooler + classifier


def _flags(tiny_bert_dir, train_file, output_dir, *extra):
    return [
        "--model_name_or_path",
        str(tiny_bert_dir),
        "--train_file",
        str(train_file),
        "--text_column",
        "sentence",
        "--label_column",
        "sentiment",
        "--output_dir",
        str(output_dir),
        "--learning_rate",
        "1e-3",
        "--num_train_epochs",
        "3",
        "--per_device_train_batch_size",
        "16",
        *extra,
    ]


def test_recipe_in_process_learns_and_writes_model_metrics_and_config(
    tiny_bert_dir, toy_csv, tmp_path
):
    from transformers import pipeline

    import sentiment

    out = tmp_path / "run"
    # 5 epochs at 1e-2 (50 steps): the frozen-prefix run learns the toy task (chance is 0.5).
    learns = ("--freeze_layers", "1", "--learning_rate", "1e-2", "--num_train_epochs", "5")
    metrics = sentiment.main(_flags(tiny_bert_dir, toy_csv, out, *learns))
    assert (out / "model.safetensors").exists() and not list(out.glob("*.bin"))
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["test"]["accuracy"] == metrics["test"]["accuracy"]
    history = on_disk["validation"]
    assert len(history) == 5
    assert history[0]["eval_num_examples"] == 20
    assert on_disk["test"]["num_examples"] == 20
    assert on_disk["test"]["accuracy"] >= 0.8
    assert history[-1]["eval_loss"] < 0.5 * history[0]["eval_loss"]
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    # TF-IDF + logistic regression finds the one sentiment word of each toy sentence.
    assert on_disk["baseline"]["num_examples"] == 20 and on_disk["baseline"]["accuracy"] >= 0.9
    assert on_disk["parameters"]["trainable"] == TINY_TRAINABLE_FREEZE_1
    assert on_disk["parameters"]["total"] == TINY_TOTAL
    assert on_disk["parameters"]["frozen_blocks"] == ["embeddings", "layer_0"]
    assert on_disk["timings"]["train_runtime_s"] > 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["freeze_layers"] == 1 and config["learning_rate"] == 1e-2
    assert config["resolved_model_path"] == str(tiny_bert_dir)
    classifier = pipeline("text-classification", model=str(out))
    predictions = classifier(["the movie was great", "the film was awful"])
    assert [p["label"] for p in predictions] == ["pos", "neg"]


def test_recipe_refuses_a_non_empty_output_dir(tiny_bert_dir, toy_csv, tmp_path):
    import sentiment

    out = tmp_path / "run"
    out.mkdir()
    earlier = out / "metrics.json"
    earlier.write_text('{"earlier": "results"}')
    with pytest.raises(FileExistsError, match="--overwrite_output_dir"):
        sentiment.main(_flags(tiny_bert_dir, toy_csv, out, "--num_train_epochs", "1"))
    assert earlier.read_text() == '{"earlier": "results"}'
    sentiment.main(
        _flags(tiny_bert_dir, toy_csv, out, "--num_train_epochs", "1", "--overwrite_output_dir")
    )
    assert "earlier" not in earlier.read_text()


def test_python_api_with_a_dataframe(tiny_bert_dir, tmp_path):
    from nlp_transfer import (
        TextClassificationConfig,
        load_text_classification_dataset,
        run_text_classification,
    )

    dataset = load_text_classification_dataset(
        toy_sentiment_frame(120), text_column="sentence", label_column="sentiment"
    )
    config = TextClassificationConfig(
        model_name_or_path=str(tiny_bert_dir),
        output_dir=str(tmp_path / "api"),
        learning_rate=3e-3,
        num_train_epochs=8,
        per_device_train_batch_size=16,
        run_baseline=False,
    )
    metrics = run_text_classification(config, dataset=dataset)
    assert metrics["baseline"] is None
    assert metrics["test"]["num_examples"] == 12
    assert metrics["test"]["accuracy"] >= 0.9  # the toy task is learnt in 8 epochs (48 steps)
    assert (tmp_path / "api" / "model.safetensors").exists()


def _launch(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        str(accelerate),
        "launch",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_accelerate_launch_single_process_with_bf16(tiny_bert_dir, toy_csv, tmp_path):
    """One process under ``accelerate launch``; the recipe's --mixed_precision bf16 reaches
    accelerate (one launch for both: each took 10 s)."""
    out = tmp_path / "launched"
    proc = _launch(
        [
            "--num_processes",
            "1",
            str(REPO / "recipes" / "sentiment.py"),
            *_flags(
                tiny_bert_dir, toy_csv, out, "--freeze_layers", "1", "--mixed_precision", "bf16"
            ),
        ],
        tmp_path,
    )
    assert f"trainable params: {TINY_TRAINABLE_FREEZE_1:,} / {TINY_TOTAL:,}" in proc.stderr
    assert "== sentiment: test results (20 examples) ==" in proc.stdout
    assert (out / "model.safetensors").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["environment"]["mixed_precision"] == "bf16"
    assert metrics["test"]["num_examples"] == 20
