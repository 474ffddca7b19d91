"""nlp-transfer refit-conformal: conformal scores from labelled texts of a new period."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nlp_transfer import TextClassifier
from nlp_transfer.cli.commands import main as cli_main
from nlp_transfer.metrics.conformal import (
    MIN_CONFORMAL_ROWS,
    aps_scores,
    aps_sets,
    conformal_quantile,
    example_uniforms,
)
from nlp_transfer.text.refit_conformal import refit_conformal

from conftest import toy_sentiment_frame, train_toy_sentiment


@pytest.fixture(scope="module")
def sentiment_model(tiny_bert_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("refit")
    return train_toy_sentiment(
        tiny_bert_dir, root, learning_rate=1e-2, num_train_epochs=5, per_device_train_batch_size=16
    )


def test_refit_replaces_the_scores_and_keeps_the_former_ones(sentiment_model, tmp_path, capsys):
    former = (sentiment_model / "conformal.json").read_text()
    new = toy_sentiment_frame(100, seed=7).rename(columns={"sentence": "text", "sentiment": "y"})
    source = tmp_path / "recent.csv"
    new.to_csv(source, index=False)
    capsys.readouterr()
    argv = ["refit-conformal", "--model_dir", str(sentiment_model), "--file", str(source)]
    assert cli_main([*argv, "--label_column", "y"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 100 and report["split"] == "file:recent.csv"
    assert report["abstention"] is None  # trained without --abstain_below_precision
    assert Path(report["previous"]).read_text() == former  # kept aside, not overwritten
    saved = json.loads((sentiment_model / "conformal.json").read_text())
    assert saved["split"] == "file:recent.csv" and saved["num_examples"] == 100
    classifier = TextClassifier.from_pretrained(sentiment_model, device="cpu")
    texts = list(new["text"])
    labels = np.array([classifier.labels.index(v) for v in new["y"]])
    probs = classifier.predict_proba(texts)
    expected = np.sort(aps_scores(probs, labels, example_uniforms(texts)))
    assert np.allclose(saved["scores"], expected, atol=1e-6)
    # the sets a loaded model gives now come from the new scores
    others = list(toy_sentiment_frame(30, seed=8)["sentence"])
    q = conformal_quantile(saved["scores"], 0.9)
    by_hand = aps_sets(classifier.predict_proba(others), q, example_uniforms(others))
    sets = [r["prediction_set"] for r in classifier.predict(others, coverage=0.9)]
    assert sets == [[classifier.labels[i] for i in ids] for ids in by_hand]


def test_bad_files_are_refused_and_nothing_moves(sentiment_model, tmp_path):
    before = (sentiment_model / "conformal.json").read_text()
    frame = toy_sentiment_frame(60, seed=9)
    path = tmp_path / "new.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match="--label_column"):
        refit_conformal(sentiment_model, path, text_column="sentence")  # no column "label"
    frame.head(MIN_CONFORMAL_ROWS - 1).to_csv(path, index=False)
    with pytest.raises(ValueError, match=f"at least {MIN_CONFORMAL_ROWS}"):
        refit_conformal(sentiment_model, path, text_column="sentence", label_column="sentiment")
    frame.assign(sentiment="meh").to_csv(path, index=False)
    with pytest.raises(ValueError, match="unknown to the model"):
        refit_conformal(sentiment_model, path, text_column="sentence", label_column="sentiment")
    assert (sentiment_model / "conformal.json").read_text() == before


def test_regression_residuals_in_the_targets_units(tiny_bert_dir, tmp_path):
    frame = toy_sentiment_frame(200, seed=0)
    frame["score"] = np.where(frame["sentiment"] == "pos", 12.0, 8.0)
    train = tmp_path / "scores.csv"
    frame.to_csv(train, index=False)
    out = train_toy_sentiment(
        tiny_bert_dir, tmp_path, "reg", train_file=str(train), label_column="score",
        problem_type="regression", num_train_epochs=2,
    )  # fmt: skip
    new = toy_sentiment_frame(40, seed=3)
    new["score"] = np.where(new["sentiment"] == "pos", 12.0, 8.0)
    path = tmp_path / "new_scores.csv"
    new.to_csv(path, index=False)
    report = refit_conformal(out, path, text_column="sentence", label_column="score")
    assert report["method"] == "absolute_residual" and report["rows"] == 40
    classifier = TextClassifier.from_pretrained(out, device="cpu")
    predicted = np.array([r["score"] for r in classifier.predict(list(new["sentence"]))])
    saved = json.loads((out / "conformal.json").read_text())["scores"]
    assert np.allclose(saved, np.sort(np.abs(new["score"].to_numpy() - predicted)), atol=1e-5)
    pd.DataFrame({"sentence": new["sentence"], "score": ["high"] * 40}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="must hold numbers"):
        refit_conformal(out, path, text_column="sentence", label_column="score")
    with pytest.raises(ValueError, match="not regression"):
        refit_conformal(
            out, path, text_column="sentence", label_column="score", abstain_below_precision=0.9
        )


def test_the_abstention_threshold_is_chosen_again_for_its_target(tiny_bert_dir, tmp_path, capsys):
    from nlp_transfer.metrics.selective import select_abstention_threshold

    out = train_toy_sentiment(
        tiny_bert_dir, tmp_path, "abstains", learning_rate=1e-2, num_train_epochs=5,
        per_device_train_batch_size=16, abstain_below_precision=0.9,
    )  # fmt: skip
    config_path = out / "config.json"
    trained = json.loads(config_path.read_text())
    assert trained["abstain_below_precision"] == 0.9  # the target travels with the threshold
    mtime = config_path.stat().st_mtime_ns
    new = toy_sentiment_frame(120, seed=11)
    path = tmp_path / "recent.csv"
    new.to_csv(path, index=False)
    report = refit_conformal(out, path, text_column="sentence", label_column="sentiment")
    classifier = TextClassifier.from_pretrained(out, device="cpu")
    texts = list(new["sentence"])
    probs = classifier.predict_proba(texts)
    labels = np.array([classifier.labels.index(v) for v in new["sentiment"]])
    expected = select_abstention_threshold(probs, labels, 0.9)
    abstention = report["abstention"]
    assert abstention["threshold"] == pytest.approx(expected)
    assert (
        abstention["former"] == trained["abstain_below"] and abstention["target_precision"] == 0.9
    )
    saved = json.loads(config_path.read_text())
    assert saved["abstain_below"] == pytest.approx(expected)
    assert saved["abstain_below_fitted_on"] == "file:recent.csv"
    assert saved["abstain_below_history"][0]["abstain_below"] == trained["abstain_below"]
    assert config_path.stat().st_mtime_ns == mtime  # an ONNX export is not taken as stale
    flags = [r["abstain"] for r in classifier.predict(texts)]
    assert flags == list(probs.max(axis=1) < expected)
    # another target through the CLI; the history keeps both former thresholds
    capsys.readouterr()
    argv = ["refit-conformal", "--model_dir", str(out), "--file", str(path)]
    argv += ["--text_column", "sentence", "--label_column", "sentiment"]
    assert cli_main([*argv, "--abstain_below_precision", "0.8"]) == 0
    cli_report = json.loads(capsys.readouterr().out)["abstention"]
    assert cli_report["threshold"] == pytest.approx(select_abstention_threshold(probs, labels, 0.8))
    saved = json.loads(config_path.read_text())
    assert saved["abstain_below_precision"] == 0.8 and len(saved["abstain_below_history"]) == 2
    # a model saved before the target was recorded: the flag is asked for, nothing moves
    saved.pop("abstain_below_precision")
    config_path.write_text(json.dumps(saved))
    before = (out / "conformal.json").read_text()
    with pytest.raises(ValueError, match="pass --abstain_below_precision"):
        refit_conformal(out, path, text_column="sentence", label_column="sentiment")
    assert (out / "conformal.json").read_text() == before
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        refit_conformal(
            out, path, text_column="sentence", label_column="sentiment",
            abstain_below_precision=1.5,
        )  # fmt: skip
