"""Weighted split conformal prediction under covariate shift (Tibshirani et al. 2019)."""

import numpy as np
import pytest

from nlp_transfer.metrics.conformal import aps_sets, conformal_quantile
from nlp_transfer.metrics.weighted_conformal import (
    MIN_NEW_ROWS,
    estimate_covariate_shift,
    weighted_conformal_thresholds,
)


def shifted_regression(rng, n, mean):
    """x ~ N(mean, 1); y = x + noise whose spread grows with |x|: residuals of the true
    function grow where the new rows are, so split conformal under-covers them."""
    x = rng.normal(mean, 1.0, size=n)
    y = x + rng.normal(size=n) * (0.2 + np.abs(x))
    return x, np.abs(y - x)  # features, nonconformity scores of the prediction f(x) = x


@pytest.mark.parametrize("n", [9, 19, 20, 99, 504])
@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_equal_weights_give_split_conformal(n, coverage):
    scores = np.random.default_rng(n).random(n)
    thresholds = weighted_conformal_thresholds(scores, np.ones(n), np.ones(4), coverage)
    assert np.array_equal(thresholds, np.full(4, conformal_quantile(scores, coverage)))


def test_weights_restore_coverage_under_covariate_shift():
    rng = np.random.default_rng(0)
    held_x, held_scores = shifted_regression(rng, 3000, mean=0.0)
    new_x, new_scores = shifted_regression(rng, 6000, mean=1.5)
    shift = estimate_covariate_shift(held_x[:, None], new_x[:, None], regularization=1.0)
    assert shift.domain_auc > 0.8  # the shift is there to find
    assert shift.effective_sample_size < 0.5 * len(held_x)
    new_weights = shift.weights(new_x[:, None])
    # the estimated ratio follows the true one, exp(1.5 x - 1.125), up to scale
    assert np.corrcoef(np.log(new_weights), 1.5 * new_x - 1.125)[0, 1] > 0.99
    for coverage in (0.8, 0.9):
        plain = np.mean(new_scores <= conformal_quantile(held_scores, coverage))
        thresholds = weighted_conformal_thresholds(held_scores, shift.held, new_weights, coverage)
        weighted = np.mean(new_scores <= thresholds)
        assert plain < coverage - 0.05
        assert abs(weighted - coverage) < 0.02


def test_no_shift_keeps_the_split_conformal_threshold_nearly():
    rng = np.random.default_rng(1)
    held_x, held_scores = shifted_regression(rng, 2000, mean=0.0)
    new_x, new_scores = shifted_regression(rng, 2000, mean=0.0)
    shift = estimate_covariate_shift(held_x[:, None], new_x[:, None])
    assert abs(shift.domain_auc - 0.5) < 0.05
    assert shift.effective_sample_size > 0.95 * len(held_x)
    weights = shift.weights(new_x[:, None])
    thresholds = weighted_conformal_thresholds(held_scores, shift.held, weights, 0.9)
    assert abs(np.mean(new_scores <= thresholds) - 0.9) < 0.02


def test_a_new_row_unlike_every_held_out_row_gets_no_bound():
    scores = np.linspace(0.1, 1.0, 10)
    thresholds = weighted_conformal_thresholds(scores, np.ones(10), np.array([1.0, 1000.0]), 0.9)
    assert thresholds[0] == conformal_quantile(scores, 0.9) and np.isinf(thresholds[1])


def test_aps_sets_take_one_threshold_per_example():
    probs = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1]])
    assert aps_sets(probs, np.array([0.5, 0.95])) == [[0], [0, 1]]
    assert aps_sets(probs, np.array([0.95, 0.5])) == [[0, 1], [0]]
    u = np.array([0.5, 0.5])
    assert aps_sets(probs, np.array([0.2, 0.9]), u) == [[], [0, 1]]


def test_clear_errors():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match=f"at least {MIN_NEW_ROWS} texts"):
        estimate_covariate_shift(rng.random((100, 3)), rng.random((MIN_NEW_ROWS - 1, 3)))
    with pytest.raises(ValueError, match="one width"):
        estimate_covariate_shift(rng.random((100, 3)), rng.random((100, 2)))
    with pytest.raises(ValueError, match="One weight per score"):
        weighted_conformal_thresholds(np.ones(3), np.ones(2), np.ones(1), 0.9)
    with pytest.raises(ValueError, match="--coverage"):
        weighted_conformal_thresholds(np.ones(3), np.ones(3), np.ones(1), 1.0)


def test_shift_weighted_sets_from_a_saved_model(tiny_bert_dir, tmp_path, capsys):
    """A run saves its held-out rows' outputs; the API (batch or a given estimate), a file and
    the CLI give the same shift-weighted sets; a shifted batch gets wider sets; bad use gets
    clear errors."""
    import json

    import pandas as pd

    from nlp_transfer import TextClassifier
    from nlp_transfer.cli.commands import main as cli_main
    from nlp_transfer.text.batch import predict_file

    from conftest import FILLER, toy_sentiment_frame, train_toy_sentiment

    out = train_toy_sentiment(
        tiny_bert_dir,
        tmp_path,
        learning_rate=1e-2,
        num_train_epochs=5,
        per_device_train_batch_size=16,
    )
    assert json.loads((out / "metrics.json").read_text())["test"]["accuracy"] >= 0.8
    record = json.loads((out / "conformal.json").read_text())
    outputs = np.asarray(record["outputs"])
    assert outputs.shape == (record["num_examples"], 2)
    assert np.allclose(np.exp(outputs).sum(axis=1), 1.0, atol=1e-3)  # log-probabilities
    classifier = TextClassifier.from_pretrained(out, device="cpu")
    texts = list(toy_sentiment_frame(120, seed=5)["sentence"])
    shift = classifier.estimate_covariate_shift(texts)
    assert shift.sample_rows == 120 and len(shift.held) == len(outputs)
    batch = classifier.predict(texts, coverage=0.9, covariate_shift=True)
    sets = [r["prediction_set"] for r in batch]
    assert sets == [r["prediction_set"] for r in classifier.predict(texts, 64, 0.9, shift)]
    source = tmp_path / "new.csv"
    pd.DataFrame({"text": texts}).to_csv(source, index=False)
    predicted = tmp_path / "predicted.jsonl"
    predict_file(classifier, source, predicted, coverage=0.9, covariate_shift=True, chunk_size=50)
    lines = [json.loads(line) for line in predicted.read_text().splitlines()]
    assert [line["prediction_set"] for line in lines] == sets  # a sample of all 120 rows
    argv = ["predict", "--model_dir", str(out), "--coverage", "0.9", "--covariate_shift"]
    capsys.readouterr()  # the training run's printout
    assert cli_main([*argv, *[a for t in texts for a in ("--text", t)]]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["prediction_set"] for line in printed] == sets

    # texts without a sentiment word: unsure, unlike most calibration rows -> wider sets
    rng = np.random.default_rng(0)
    vague = [" ".join(rng.choice(FILLER, size=5)) for _ in range(80)]
    plain = classifier.predict(vague, coverage=0.9)
    weighted = classifier.predict(vague, coverage=0.9, covariate_shift=True)
    size = lambda rs: np.mean([len(r["prediction_set"]) for r in rs])  # noqa: E731
    assert size(weighted) > size(plain)

    with pytest.raises(ValueError, match="at least 50 texts"):
        classifier.predict(texts[:10], coverage=0.9, covariate_shift=True)
    with pytest.raises(ValueError, match="give a coverage too"):
        classifier.predict(texts, covariate_shift=True)
    with pytest.raises(SystemExit, match="--covariate_shift weighs prediction sets"):
        cli_main(["predict", "--model_dir", str(out), "--covariate_shift", "--text", "a"])
    (out / "conformal.json").write_text(json.dumps(record | {"outputs": None}))
    with pytest.raises(ValueError, match="train it again"):
        TextClassifier.from_pretrained(out, device="cpu").predict(
            texts, coverage=0.9, covariate_shift=True
        )
