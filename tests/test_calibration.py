"""Calibration (issue 35): temperature scaling fitted on validation, folded into the head."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, softmax
from torch import nn

from nlp_transfer.metrics.calibration import (
    calibration_metrics,
    expected_calibration_error,
    reliability_bins,
)
from nlp_transfer.training.calibration import (
    apply_temperature,
    fit_temperature,
    fold_temperature,
    head_layers,
)


def _overconfident(n=2000, classes=3, scale=4.0, seed=0):
    """Labels drawn from softmax(z) and logits scale * z: a model over-confident by ``scale``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.2, (n, classes))
    labels = np.array([rng.choice(classes, p=p) for p in softmax(z, axis=1)])
    return scale * z, labels


def test_ece_of_hand_made_bins():
    # two bins: confidence 0.9 right 1 of 2 (gap 0.4), confidence 0.3 right 0 of 2 (gap 0.3)
    confidence = np.array([0.9, 0.9, 0.3, 0.3])
    correct = np.array([1, 0, 0, 0])
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.5 * 0.4 + 0.5 * 0.3)
    bins = reliability_bins(confidence, correct)
    assert bins["count"] == [2, 2] and bins["accuracy"] == [0.0, 0.5]


def test_fitted_temperature_is_the_direct_minimum_of_validation_nll():
    logits, labels = _overconfident()
    temperature = fit_temperature(logits, labels)
    grid = np.exp(np.linspace(np.log(0.5), np.log(10), 4001))
    nll = [-np.mean(log_softmax(logits / t, axis=1)[np.arange(len(labels)), labels]) for t in grid]
    assert temperature == pytest.approx(grid[int(np.argmin(nll))], rel=2e-3)
    assert temperature == pytest.approx(4.0, rel=0.15)  # the over-confidence put in
    before = calibration_metrics(logits, labels)
    after = calibration_metrics(apply_temperature(logits, temperature), labels)
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"] / 2
    assert after["brier"] < before["brier"]


def test_a_calibrated_model_keeps_temperature_near_one_and_never_gets_worse():
    logits, labels = _overconfident(scale=1.0)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(1.0, abs=0.1)
    before = calibration_metrics(logits, labels)["nll"]
    assert calibration_metrics(apply_temperature(logits, temperature), labels)["nll"] <= before


def test_multi_label_gets_one_temperature_per_label():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1.5, (3000, 3))
    targets = (rng.random(z.shape) < 1 / (1 + np.exp(-z))).astype(float)
    logits = z * np.array([1.0, 3.0, 0.5])  # calibrated, over- and under-confident
    temperatures = fit_temperature(logits, targets, multi_label=True)
    assert temperatures == pytest.approx([1.0, 3.0, 0.5], rel=0.15)
    constant = targets.copy()
    constant[:, 1] = 1.0  # a label every example has: nothing to fit
    assert fit_temperature(logits, constant, multi_label=True)[1] == 1.0
    before = calibration_metrics(logits, targets, multi_label=True)
    after = calibration_metrics(apply_temperature(logits, temperatures), targets, multi_label=True)
    assert after["ece"] < before["ece"] and after["nll"] < before["nll"]


def test_fold_divides_the_heads_logits_and_nothing_else():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("encoder", nn.Linear(8, 8))
    model.add_module("classifier", nn.Linear(8, 3))
    x = torch.randn(5, 8)
    before = model(x).detach()
    fold_temperature(model, [2.0, 4.0, 0.5], 3)
    assert torch.allclose(model(x), before / torch.tensor([2.0, 4.0, 0.5]), atol=1e-6)
    fold_temperature(model, 2.0, 3)
    assert torch.allclose(model(x), before / torch.tensor([4.0, 8.0, 1.0]), atol=1e-6)
    assert head_layers(model, 3) == [model.classifier]
    with pytest.raises(ValueError, match="No 7-output linear layer"):
        fold_temperature(model, 2.0, 7)


def test_bad_logits_are_refused():
    with pytest.raises(ValueError, match="calibration needs"):
        fit_temperature(np.zeros((0, 2)), np.zeros(0))


def test_a_run_saves_calibrated_probabilities_for_every_backend(tiny_bert_dir, tmp_path):
    """Trained, calibrated on validation, saved: torch and ONNX predict the calibrated
    probabilities, config.json and metrics.json record the temperature, the card and the plot
    show it; --calibration none leaves the model as trained."""
    from nlp_transfer import TextClassifier
    from nlp_transfer.metrics.conformal import aps_sets, conformal_quantile, example_uniforms

    from conftest import train_toy_sentiment

    out = train_toy_sentiment(
        tiny_bert_dir, tmp_path, "calibrated", num_train_epochs=3, abstain_below_precision=0.9
    )
    metrics = json.loads((out / "metrics.json").read_text())
    report = metrics["calibration"]
    temperature = report["temperature"]
    assert temperature > 0 and report["fitted_on"] == "validation"
    assert report["validation"]["after"]["nll"] <= report["validation"]["before"]["nll"]
    saved = json.loads((out / "config.json").read_text())
    assert saved["calibration"]["temperature"] == pytest.approx(temperature)
    assert (out / "plots" / "reliability.png").stat().st_size > 10_000
    assert "## Calibration" in (out / "README.md").read_text()

    plain_out = train_toy_sentiment(
        tiny_bert_dir, tmp_path, "plain", num_train_epochs=3, calibration="none"
    )
    plain = json.loads((plain_out / "metrics.json").read_text())
    assert "calibration" not in plain
    assert "calibration" not in json.loads((plain_out / "config.json").read_text())
    texts = ["a great film", "a dull plot", "fine acting"]
    raw = TextClassifier.from_pretrained(plain_out, device="cpu").predict_logits(texts)
    calibrated = TextClassifier.from_pretrained(out, device="cpu").predict_logits(texts)
    assert np.allclose(calibrated, raw / temperature, atol=1e-4)  # same seed, same weights
    conformal = metrics["conformal"]
    assert conformal["method"] == "aps_randomized"
    assert set(conformal["test"]) == {"0.8", "0.9", "0.95"}
    classifier = TextClassifier.from_pretrained(out, device="cpu")
    torch_sets = classifier.predict(texts, coverage=0.9)
    # randomised APS by hand: the saved validation scores' quantile, u from each text's hash
    q = conformal_quantile(json.loads((out / "conformal.json").read_text())["scores"], 0.9)
    expected = aps_sets(softmax(calibrated, axis=1), q, example_uniforms(texts))
    names = [[classifier.labels[i] for i in ids] for ids in expected]
    assert [r["prediction_set"] for r in torch_sets] == names
    abstention = metrics["abstention"]
    assert abstention["target_precision"] == 0.9 and set(abstention) >= {"validation", "test"}
    assert saved["abstain_below"] == abstention["threshold"]
    assert all(r["abstain"] == (r["score"] < abstention["threshold"]) for r in torch_sets)
    pytest.importorskip("onnxruntime")
    onnx = TextClassifier.from_pretrained(out, backend="onnxruntime")
    assert np.allclose(onnx.predict_proba(texts), softmax(calibrated, axis=1), atol=1e-4)
    onnx_sets = [r["prediction_set"] for r in onnx.predict(texts, coverage=0.9)]
    assert onnx_sets == [r["prediction_set"] for r in torch_sets]
    record = json.loads((out / "conformal.json").read_text())
    (out / "conformal.json").write_text(json.dumps(record | {"method": "aps"}))  # saved earlier
    old_aps = TextClassifier.from_pretrained(out, device="cpu").predict(texts, coverage=0.9)
    plain_sets = aps_sets(softmax(calibrated, axis=1), q)  # not randomised, never empty
    assert [r["prediction_set"] for r in old_aps] == [
        [classifier.labels[i] for i in ids] for ids in plain_sets
    ]
    (out / "conformal.json").unlink()  # a model saved before conformal prediction existed
    old = TextClassifier.from_pretrained(out, device="cpu")
    assert old.predict(texts)[0]["label"] == torch_sets[0]["label"]
    with pytest.raises(ValueError, match=r"conformal\.json"):
        old.predict(texts, coverage=0.9)


def test_an_image_run_is_calibrated_the_same_way(tmp_path):
    from nlp_transfer.cli import main
    from nlp_transfer.vision.models import ImageModelConfig

    from conftest import write_image_folder

    data = write_image_folder(tmp_path / "images", per_class=12)
    out = tmp_path / "out"
    argv = f"--task image --train_dir {data} --output_dir {out} --image_size 32 "
    argv += "--num_train_epochs 2 --per_device_train_batch_size 8 --learning_rate 1e-3 "
    argv += "--validation_size 0.25 --test_size 0.25 --freeze_layers 2 --seed 0"
    assert main(["train", *argv.split()]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    report = metrics["calibration"]
    assert report["validation"]["after"]["nll"] <= report["validation"]["before"]["nll"]
    assert metrics["test"]["loss"] == pytest.approx(report["test"]["after"]["nll"], rel=1e-4)
    saved = ImageModelConfig.load(out)
    assert saved.calibration["temperature"] == pytest.approx(report["temperature"])
    assert (out / "plots" / "reliability.png").exists()


# --- conformal prediction sets and intervals ------------------------------------------------


def test_aps_sets_and_scores_by_hand():
    from nlp_transfer.metrics.conformal import aps_scores, aps_sets, conformal_quantile

    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    assert aps_scores(probs, np.array([1, 1])).tolist() == pytest.approx([0.9, 0.5])
    assert aps_sets(probs, 0.85) == [[0], [1, 2]]
    assert aps_sets(probs, 0.9) == [[0, 1], [1, 2]]
    assert aps_sets(probs, 0.4) == [[0], [1]]  # never empty
    # randomised (Romano et al. 2020): mass ranked above the true label + u * its own
    u = np.array([0.5, 0.25])
    assert aps_scores(probs, np.array([1, 1]), u).tolist() == pytest.approx([0.75, 0.125])
    assert aps_scores(probs, np.array([2, 0]), u).tolist() == pytest.approx([0.95, 0.85])
    # label k is in the set when (mass above k) + u * p_k <= q: a prefix, possibly empty
    assert aps_sets(probs, 0.3, u) == [[0], [1]]
    assert aps_sets(probs, 0.75, u) == [[0, 1], [1, 2]]
    assert aps_sets(probs, 0.1, u) == [[], []]
    assert conformal_quantile([0.1, 0.2, 0.3, 0.4], 0.5) == 0.3  # ceil(5 * 0.5) = 3rd
    assert conformal_quantile([0.1, 0.2], 0.9) == float("inf")  # too few for 90%
    with pytest.raises(ValueError, match="--coverage"):
        conformal_quantile([0.1], 1.0)


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_conformal_coverage_holds_on_exchangeable_data(target):
    from nlp_transfer.metrics.conformal import (
        aps_scores,
        coverage_report,
        example_uniforms,
        residual_scores,
    )

    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2.0, (6000, 4))
    probs = softmax(0.5 * logits, axis=1)  # a miscalibrated model: the truth is softmax(logits)
    labels = np.array([rng.choice(4, p=p) for p in softmax(logits, axis=1)])
    scores = aps_scores(probs[:1000], labels[:1000])
    report = coverage_report(scores, probs[1000:], labels[1000:], coverages=(target,))
    # the guarantee (up to sampling), and a little over: a set is never empty
    assert target - 0.015 <= report[str(target)]["coverage"] <= target + 0.03
    assert 1 <= report[str(target)]["mean_set_size"] <= 4
    assert report[str(target)]["empty_sets"] == 0
    u = example_uniforms([f"text {i}" for i in range(6000)])
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.02
    randomised = aps_scores(probs[:3000], labels[:3000], u[:3000])
    tight = coverage_report(randomised, probs[3000:], labels[3000:], (target,), uniforms=u[3000:])
    # randomised: at the target up to sampling (std about 0.01 with 3,000 + 3,000 examples)
    assert tight[str(target)]["coverage"] == pytest.approx(target, abs=0.02)
    x = rng.normal(size=6000)
    y = 1000 + 50 * x + rng.standard_t(3, size=6000) * 10  # far from zero, heavy tails
    residual = residual_scores(y[:1000], 1000 + 50 * x[:1000])
    intervals = coverage_report(residual, 1000 + 50 * x[1000:], y[1000:], (target,), True)
    assert intervals[str(target)]["coverage"] == pytest.approx(target, abs=0.02)


# --- abstention -------------------------------------------------------------------------------


def test_abstention_threshold_is_the_lowest_reaching_the_target_precision():
    from nlp_transfer.metrics.selective import select_abstention_threshold, selective_report

    # confidences 0.95 .. 0.55; the three most confident right, then wrong, right, wrong...
    top = np.array([0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55])
    probs = np.stack([top, 1 - top], axis=1)
    labels = np.array([0, 0, 0, 1, 0, 1, 0, 1, 1])
    assert select_abstention_threshold(probs, labels, 1.0) == 0.85
    assert select_abstention_threshold(probs, labels, 0.8) == 0.75  # 4 of 5 right
    report = selective_report(probs, labels, 0.75)
    assert report == {"coverage": 5 / 9, "precision": 0.8, "num_examples": 9}
    never = select_abstention_threshold(probs, 1 - labels, 1.0)  # the top one is wrong
    assert never > 1.0 and selective_report(probs, labels, never)["precision"] is None
    tied = np.array([[0.9, 0.1], [0.9, 0.1]])
    assert select_abstention_threshold(tied, np.array([0, 1]), 1.0) > 1.0  # a tie is not split
    from nlp_transfer import TextClassificationConfig

    with pytest.raises(ValueError, match="--abstain_below_precision"):
        TextClassificationConfig(abstain_below_precision=1.5)


@pytest.mark.parametrize("share", [0.5, 0.0])
def test_conformal_scores_come_from_a_held_out_calibration_split(tiny_bert_dir, tmp_path, share):
    """With --calibration_split_size, part of validation is kept from the epoch choice and the
    temperature: the conformal scores come from it alone; 0 scores on validation as before."""
    from nlp_transfer import TextClassificationConfig, run_text_classification

    from conftest import toy_sentiment_frame

    path = tmp_path / "toy.csv"
    toy_sentiment_frame(300, seed=0).to_csv(path, index=False)
    out = tmp_path / "run"
    metrics = run_text_classification(
        TextClassificationConfig(
            model_name_or_path=str(tiny_bert_dir),
            train_file=str(path),
            text_column="sentence",
            label_column="sentiment",
            validation_size=0.3,  # 90 validation rows
            num_train_epochs=2,
            learning_rate=1e-3,
            max_seq_length=32,
            save_strategy="no",
            run_baseline=False,
            calibration_split_size=share,
            output_dir=str(out),
        )
    )
    conformal = metrics["conformal"]
    saved = json.loads((out / "conformal.json").read_text())
    scores = saved["scores"]
    assert saved["split"] == conformal["split"]  # the file names the rows it scored
    epoch_rows = metrics["validation"][-1]["eval_num_examples"]
    if share:
        assert conformal["split"] == "calibration"
        assert conformal["num_examples"] == len(scores) == 45
        assert epoch_rows == 45  # the epoch was picked on the other half
    else:
        assert conformal["split"] == "validation"
        assert conformal["num_examples"] == len(scores) == epoch_rows == 90
    assert metrics["calibration"]["fitted_on"] == "validation"


def test_a_bad_calibration_split_size_is_refused_by_name():
    from nlp_transfer import TextClassificationConfig

    with pytest.raises(ValueError, match="--calibration_split_size must be in"):
        TextClassificationConfig(train_file="x.csv", calibration_split_size=1.0)
