"""The isotonic map after the temperature (issue 35): fitted where it helps, labels unchanged,
saved with the model and applied by every backend."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from accelerate import PartialState
from scipy.special import expit, softmax

from nlp_transfer.metrics.calibration import calibration_metrics
from nlp_transfer.metrics.recalibration import (
    apply_binary_map,
    fit_binary_map,
    map_logits,
)
from nlp_transfer.training.calibration import apply_temperature, fit_temperature


def _bent(n, seed, bend=True):
    """Binary logits ``(n, 2)`` and labels drawn from sigmoid(z). ``bend``: the model reports
    ``3 tanh(z / 2)``, too sure near 0 and too unsure far from it (no temperature fixes both);
    else it reports ``z`` (calibrated)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.5, n)
    y = (rng.random(n) < expit(z)).astype(np.int64)
    s = 3 * np.tanh(z / 2) if bend else z
    return np.stack([np.zeros(n), s], axis=1), y


def test_a_bend_is_fitted_and_lowers_ece_on_fresh_data_where_the_temperature_cannot():
    logits, y = _bent(1500, 0)
    temperature = fit_temperature(logits, y)
    scaled = apply_temperature(logits, temperature)
    fitted = fit_binary_map(scaled, y)
    assert fitted is not None and fitted["cv_nll"] < fitted["cv_nll_temperature"]
    test_logits, test_y = _bent(20000, 1)
    test_scaled = apply_temperature(test_logits, temperature)
    before = calibration_metrics(test_scaled, test_y)
    after = calibration_metrics(map_logits(test_scaled, fitted), test_y)
    assert after["ece"] < 0.6 * before["ece"] and after["nll"] < before["nll"]


def test_a_calibrated_model_or_too_few_rows_get_no_map():
    assert fit_binary_map(*_bent(1500, 0, bend=False)) is None  # isotonic would only overfit
    assert fit_binary_map(*_bent(60, 0)) is None
    with pytest.raises(ValueError, match=r"\(n, 2\) logits"):
        fit_binary_map(np.zeros((10, 3)), np.zeros(10))


def test_the_map_keeps_the_ranking_and_labels_follow_it():
    """Strictly increasing, so a tuned threshold's partition survives; the default labels are
    the calibrated argmax, which moves only where g moves the 0.5 crossing."""
    logits, y = _bent(1500, 0)
    fitted = fit_binary_map(logits, y)
    p = np.linspace(0, 1, 10001)
    g = apply_binary_map(p, fitted)
    assert np.all(np.diff(g) > 0) and g.min() > 0 and g.max() < 1
    fresh, _ = _bent(50000, 2)
    before = softmax(fresh, axis=1)[:, 1]
    after = softmax(map_logits(fresh, fitted), axis=1)[:, 1]
    assert np.allclose(after, apply_binary_map(before, fitted))
    order = np.argsort(before, kind="stable")
    assert np.all(np.diff(after[order]) >= 0)  # same order
    moved = (before > 0.5) != (after > 0.5)
    crossing = before[moved]  # only between 0.5 and where g crosses 0.5
    g_inverse = np.interp(0.5, g, p)
    assert np.all((crossing - 0.5) * (crossing - g_inverse) <= 1e-9)


def test_add_binary_map_saves_the_map_and_recomputes_the_report():
    from nlp_transfer import TextClassificationConfig
    from nlp_transfer.text.run import choose_decision_threshold
    from nlp_transfer.text.uncertainty import add_binary_map
    from nlp_transfer.training.calibration import calibration_report
    from nlp_transfer.training.run import TrainOutcome

    PartialState()  # the module logs through accelerate
    val, test, held = _bent(1000, 0), _bent(2000, 1), _bent(300, 2)
    outcome = TrainOutcome(model=None, fit=None, validation=val, test=test, calibration=held)
    model = SimpleNamespace(config=SimpleNamespace(calibration={"method": "temperature"}))
    report = calibration_report(val, test, 1.0)
    outcome, report = add_binary_map(outcome, report, model, seed=0)
    saved = model.config.calibration
    assert saved["method"] == report["method"] == "temperature+isotonic"
    assert np.allclose(outcome.calibration[0], map_logits(held[0], saved["isotonic"]))
    assert report["test"]["after_temperature"] == calibration_metrics(*test)
    assert report["test"]["after"] == calibration_metrics(
        map_logits(test[0], saved["isotonic"]), test[1]
    )
    moved = test[0].argmax(axis=1) != outcome.test[0].argmax(axis=1)
    assert report["test"]["labels_changed"] == moved.sum()
    tuned = TextClassificationConfig(tune_decision_threshold=True)
    threshold, tuning = choose_decision_threshold(tuned, outcome.validation, 2)
    assert tuning is not None and 0 < threshold < 1  # tuned on the mapped probabilities
    plain = SimpleNamespace(config=SimpleNamespace(calibration={"method": "temperature"}))
    calibrated = TrainOutcome(None, None, _bent(1000, 0, bend=False), test)
    kept, plain_report = add_binary_map(calibrated, calibration_report(val, test, 1.0), plain, 0)
    assert kept is calibrated and plain_report["isotonic"] is None
    assert "isotonic" not in plain.config.calibration


def test_every_backend_applies_a_saved_map_and_an_older_model_predicts_as_before(
    tiny_bert_dir, tmp_path
):
    """A map written into a trained model's config.json (as training saves it): torch, ONNX and
    int8 give the mapped probabilities and their argmax labels; without it, as before."""
    from nlp_transfer import TextClassifier

    from conftest import toy_sentiment_frame, train_toy_sentiment

    out = train_toy_sentiment(tiny_bert_dir, tmp_path)
    texts = [" ".join(row) for row in toy_sentiment_frame(40, seed=3)[["sentence"]].values]
    plain = TextClassifier.from_pretrained(out, device="cpu")
    raw = plain.predict_logits(texts)
    labels_before = [r["label"] for r in plain.predict(texts)]
    assert labels_before == [plain.labels[int(q > 0.5)] for q in softmax(raw, axis=1)[:, 1]]
    p = softmax(raw.astype(np.float64), axis=1)[:, 1]
    isotonic = {
        "x": [float(np.min(p)), float(np.median(p)), float(np.max(p))],
        "y": [0.2, 0.4, 0.9],
    }
    config_path = out / "config.json"
    saved = json.loads(config_path.read_text())
    saved["calibration"] |= {"method": "temperature+isotonic", "isotonic": isotonic}
    config_path.write_text(json.dumps(saved))
    backends = [{"device": "cpu"}]
    if pytest.importorskip("onnxruntime"):
        backends += [{"backend": "onnxruntime"}, {"backend": "onnxruntime", "quantize": "int8"}]
    for kwargs in backends:
        classifier = TextClassifier.from_pretrained(out, **kwargs)
        own = softmax(classifier.backend_logits(texts).astype(np.float64), axis=1)[:, 1]
        if not kwargs.get("quantize"):  # int8 has logits of its own
            assert np.allclose(own, p, atol=1e-4), kwargs
        assert np.allclose(classifier.predict_proba(texts)[:, 1], apply_binary_map(own, isotonic))
        mapped = apply_binary_map(own, isotonic)
        results = classifier.predict(texts)
        assert [r["label"] for r in results] == [classifier.labels[int(q > 0.5)] for q in mapped]
        assert all(r["score"] >= 0.5 for r in results)  # the label is the calibrated argmax
        if kwargs.get("device"):  # the map moved the 0.5 crossing past some texts
            assert [r["label"] for r in results] != labels_before
    del saved["calibration"]["isotonic"]
    config_path.write_text(json.dumps(saved))  # as a model saved before the map existed
    old = TextClassifier.from_pretrained(out, device="cpu")
    assert np.array_equal(old.predict_logits(texts), raw)


def test_the_model_card_shows_the_map_step_when_kept():
    from nlp_transfer.reporting.model_card import _calibration_fields

    step = {"ece": 0.05, "brier": 0.2, "nll": 0.33}
    report = {"temperature": 1.4, "test": {"before": step, "after": step}}
    plain = _calibration_fields({"calibration": report})
    assert [name for name, _ in plain["rows"]] == ["before calibration", "after calibration"]
    assert plain["isotonic_text"] is None
    report["test"] |= {"after_temperature": step, "labels_changed": 7}
    report["isotonic"] = {"cv_nll": 0.30, "cv_nll_temperature": 0.31, "breakpoints": 12}
    mapped = _calibration_fields({"calibration": report})
    assert [name for name, _ in mapped["rows"]][1] == "after the temperature"
    assert (
        "centered isotonic" in mapped["isotonic_text"] and "7 test texts" in mapped["isotonic_text"]
    )
