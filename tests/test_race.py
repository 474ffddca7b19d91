"""``--strategy auto``: the strategy race (budget, resuming, leaderboard, the winner's output)."""

from __future__ import annotations

import json
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

from nlp_transfer.args import parse_duration
from nlp_transfer.race import race
from nlp_transfer.race.budget import BudgetCallback, TimeBudget
from nlp_transfer.race.candidates import DataFacts, choose_candidates
from nlp_transfer.race.report import markdown_table
from nlp_transfer.text.config import TextClassificationConfig

from conftest import toy_sentiment_frame

# validation accuracy each fake candidate "reaches"
FAKE_VALUES = {"feature_extraction": 0.70, "contrastive": 0.30, "freeze_half": 0.80, "lora": 0.60}
FAKE_VALUES["full"] = 0.99
# TF-IDF is real (no fake run) and perfect on the toy task: the fake races leave it out
WITHOUT_TFIDF = "feature_extraction,contrastive,freeze_half,lora,full"


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _config(tiny_bert_dir, out, **kwargs) -> TextClassificationConfig:
    settings = {
        "model_name_or_path": str(tiny_bert_dir),
        "text_column": "sentence",
        "label_column": "sentiment",
        "output_dir": str(out),
        "num_train_epochs": 2,
        "save_strategy": "no",
        "strategy": "auto",
    }
    return TextClassificationConfig(**(settings | kwargs))


def fake_run(clock: FakeClock, seconds: float, calls: list[str], stop_at: str | None = None):
    """A candidate's run that takes ``seconds`` of the fake clock and writes its metrics."""

    def run(config, dataset, callbacks):
        name = config.output_dir.rsplit("/", 1)[-1]
        calls.append(name)
        if name == stop_at:
            raise KeyboardInterrupt  # the process is killed in the middle of this candidate
        clock.now += seconds
        metrics = {"best_metric": FAKE_VALUES[name], "parameters": {"trainable": 10}}
        metrics["validation"] = [{"accuracy": FAKE_VALUES[name]}]
        from pathlib import Path

        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(config.output_dir) / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    return run


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("20m", 1200), ("1.5h", 5400), ("1h30m", 5400), ("45", 45)]
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "20 minutes", "0m", "-5"])
def test_parse_duration_refuses_bad_values(text):
    with pytest.raises(ValueError, match="--time_budget"):
        parse_duration(text)


def test_budget_flags_need_strategy_auto(tiny_bert_dir, tmp_path):
    with pytest.raises(ValueError, match="need --strategy auto"):
        _config(tiny_bert_dir, tmp_path, strategy="manual", time_budget="5m")
    with pytest.raises(ValueError, match="--time_budget 'later'"):
        _config(tiny_bert_dir, tmp_path, time_budget="later")


def test_budget_callback_stops_before_an_epoch_that_would_not_fit():
    clock = FakeClock()
    budget = TimeBudget(100.0, clock=clock)  # 95 s before the 5% reserve
    callback = BudgetCallback(budget, "full")
    trainer = SimpleNamespace(
        control=SimpleNamespace(should_training_stop=False), state=SimpleNamespace(epoch=1)
    )
    for epoch in (1, 2, 3):
        callback.on_epoch_begin(trainer)
        clock.now += 30  # each epoch takes 30 s
        trainer.state.epoch = epoch + 1  # on_epoch_end sees the next epoch
        callback.on_epoch_end(trainer)
        if trainer.control.should_training_stop:
            break
    # after epoch 3, 90 s are spent: a 4th epoch (30 s) does not fit in the 5 s left
    assert (epoch, callback.stopped_at) == (3, 3)
    assert budget.remaining == pytest.approx(5.0)


def test_candidates_depend_on_the_data():
    few = DataFacts("single_label_classification", 32, 16, 6)
    names = [c.name for c in choose_candidates(few)[0]]
    assert names == ["tfidf", "feature_extraction", "contrastive", "freeze_half", "lora", "full"]
    many, skipped = choose_candidates(DataFacts("single_label_classification", 8000, 4000, 6))
    assert (
        "contrastive" not in [c.name for c in many]
        and "examples per class" in skipped["contrastive"]
    )
    multi = [
        c.name for c in choose_candidates(DataFacts("multi_label_classification", 90, 9, 6))[0]
    ]
    assert multi == ["tfidf", "freeze_half", "lora", "full"]
    with pytest.raises(ValueError, match="--race_candidates: unknown svm"):
        choose_candidates(few, ("tfidf", "svm"))


def test_race_keeps_the_budget_with_a_fake_clock(tiny_bert_dir, tmp_path):
    clock, calls = FakeClock(), []
    config = _config(
        tiny_bert_dir, tmp_path / "out", time_budget="100s", race_candidates=WITHOUT_TFIDF
    )
    metrics = race(
        config, toy_sentiment_frame(64), run=fake_run(clock, 40.0, calls), clock=clock, plots=False
    )
    board = {row["candidate"]: row for row in metrics["race"]["leaderboard"]}
    # 40 s each: feature extraction and contrastive use 80 s; freeze_half starts with 15 s
    # left and ends at 120 s; lora and full find the budget spent and are skipped
    assert calls == ["feature_extraction", "contrastive", "freeze_half"]
    assert board["lora"]["state"] == board["full"]["state"] == "skipped"
    assert board["lora"]["note"] == "time budget spent"
    assert metrics["race"]["winner"] == "freeze_half"  # the best of those that ran (0.80)


def test_a_candidate_the_budget_cut_short_says_so_on_the_leaderboard(tiny_bert_dir, tmp_path):
    """freeze_half's epochs take 30 s each: after two, another does not fit, and its row says
    it stopped for the budget (so no one reads it as the strategy run to its end)."""
    clock, calls = FakeClock(), []
    done = fake_run(clock, 0.0, calls)

    def run(config, dataset, callbacks):
        budget = [c for c in callbacks if isinstance(c, BudgetCallback)]
        trainer = SimpleNamespace(
            control=SimpleNamespace(should_training_stop=False), state=SimpleNamespace(epoch=1)
        )
        for epoch in (1, 2, 3) if budget else ():
            budget[0].on_epoch_begin(trainer)
            clock.now += 30.0
            trainer.state.epoch = epoch + 1
            budget[0].on_epoch_end(trainer)
            if trainer.control.should_training_stop:
                break
        return done(config, dataset, callbacks)

    config = _config(
        tiny_bert_dir, tmp_path / "out", time_budget="100s", race_candidates="freeze_half"
    )
    metrics = race(config, toy_sentiment_frame(64), run=run, clock=clock, plots=False)
    (row,) = metrics["race"]["leaderboard"]
    assert row["state"] == "complete" and row["stopped_by_budget"] == 3  # 90 s of 95
    table = markdown_table(metrics["race"]["leaderboard"], "accuracy")
    assert "complete (the budget stopped it after epoch 3)" in table


def test_killed_race_resumes_without_rerunning_finished_candidates(tiny_bert_dir, tmp_path):
    clock, calls = FakeClock(), []
    config = _config(
        tiny_bert_dir, tmp_path / "out", time_budget="1h", race_candidates=WITHOUT_TFIDF
    )
    data = toy_sentiment_frame(64)
    with pytest.raises(KeyboardInterrupt):
        race(config, data, run=fake_run(clock, 10.0, calls, stop_at="lora"), clock=clock)
    assert calls == ["feature_extraction", "contrastive", "freeze_half", "lora"]
    calls.clear()
    metrics = race(config, data, run=fake_run(clock, 10.0, calls), clock=clock, plots=False)
    assert calls == ["lora", "full"]  # feature extraction... were not run again
    board = {row["candidate"]: row for row in metrics["race"]["leaderboard"]}
    assert board["freeze_half"]["resumed"] and not board["full"].get("resumed")
    assert metrics["race"]["winner"] == "full"
    assert metrics["race"]["spent_s"] == pytest.approx(50.0)  # 30 s before the kill + 20 s


def test_output_dir_with_other_files_is_refused(tiny_bert_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_text("an earlier run")
    with pytest.raises(FileExistsError, match="--overwrite_output_dir"):
        race(_config(tiny_bert_dir, out), toy_sentiment_frame(64))
    assert (out / "model.safetensors").read_text() == "an earlier run"


def test_run_text_classification_refuses_strategy_auto(tiny_bert_dir, tmp_path):
    from nlp_transfer.text.run import run_text_classification

    with pytest.raises(ValueError, match="--strategy auto races several runs"):
        run_text_classification(_config(tiny_bert_dir, tmp_path / "o"), toy_sentiment_frame(40))


@pytest.mark.slow
def test_tfidf_winner_is_an_ordinary_output_dir(tiny_bert_dir, tmp_path, capsys):
    """On the toy task (one sentiment word decides), TF-IDF wins against the random tiny BERT:
    the output loads in TextClassifier and nlp-transfer predict, and ONNX says why not."""
    from nlp_transfer import TextClassifier
    from nlp_transfer.cli.commands import main

    out = tmp_path / "out"
    config = _config(tiny_bert_dir, out, race_candidates="tfidf,full")
    metrics = race(config, toy_sentiment_frame(120))
    assert metrics["race"]["winner"] == "tfidf"
    assert (out / "tfidf.skops").is_file() and (out / "plots" / "race.png").is_file()
    with zipfile.ZipFile(out / "tfidf.skops") as stored:  # deflated: the vocabulary is JSON
        assert {m.compress_type for m in stored.infolist()} == {zipfile.ZIP_DEFLATED}
    assert "## Strategy race" in (out / "README.md").read_text()
    saved = json.loads((out / "metrics.json").read_text())
    assert [r["candidate"] for r in saved["race"]["leaderboard"]] == ["tfidf", "full"]
    classifier = TextClassifier.from_pretrained(out)
    assert classifier.backend == "tfidf"
    results = classifier.predict(["the movie was superb", "the plot was awful"])
    assert [r["label"] for r in results] == ["pos", "neg"]
    np.testing.assert_allclose(sum(results[0]["scores"].values()), 1.0, rtol=1e-6)
    (tmp_path / "in.txt").write_text("the movie was superb\n")
    assert main(["predict", "--model_dir", str(out), "--file", str(tmp_path / "in.txt")]) == 0
    assert "pos" in capsys.readouterr().out
    with pytest.raises(ValueError, match="TF-IDF model"):
        TextClassifier.from_pretrained(out, backend="onnxruntime")


@pytest.mark.slow
def test_fine_tuned_winner_reloads_through_every_backend(tiny_bert_dir, tmp_path):
    from nlp_transfer import TextClassifier

    out = tmp_path / "out"
    config = _config(tiny_bert_dir, out, race_candidates="freeze_half,full", num_train_epochs=3)
    metrics = race(config, toy_sentiment_frame(120))
    assert metrics["race"]["winner"] in ("freeze_half", "full")
    texts = ["the movie was superb", "the plot was awful", "a dull story"]
    torch_probs = TextClassifier.from_pretrained(out).predict_proba(texts)
    onnx_probs = TextClassifier.from_pretrained(out, backend="onnxruntime").predict_proba(texts)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)
    int8 = TextClassifier.from_pretrained(out, backend="onnxruntime", quantize="int8")
    assert int8.predict_proba(texts).shape == (3, 2)


def test_a_candidate_behind_by_more_than_noise_is_stopped_from_epoch_2(tiny_bert_dir, tmp_path):
    """40 validation rows: the margin is 1/sqrt(40) = 0.158. Epoch 1 (warm-up) stops nobody;
    at epoch 2 lora (0.60) is 0.20 behind freeze_half (0.80): pruned; full (0.70, 0.10 behind,
    within the noise) goes on to win. Rank alone would have stopped full at epoch 1 (0.40)."""
    curves = {
        "freeze_half": [0.60, 0.80, 0.85],
        "lora": [0.50, 0.60, 0.95],
        "full": [0.40, 0.70, 0.90],
    }
    calls = []

    def run(config, dataset, callbacks):
        name = config.output_dir.rsplit("/", 1)[-1]
        calls.append(name)
        trainer = SimpleNamespace(
            state=SimpleNamespace(epoch=1), control=SimpleNamespace(should_training_stop=False)
        )
        for epoch, value in enumerate(curves[name], start=1):
            trainer.state.epoch = epoch
            for callback in callbacks:
                callback.on_evaluate(trainer, {"accuracy": value})
        from pathlib import Path

        metrics = {"best_metric": max(curves[name]), "validation": [{}] * 3}
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(config.output_dir) / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    config = _config(tiny_bert_dir, tmp_path / "out", race_candidates="freeze_half,lora,full")
    metrics = race(config, toy_sentiment_frame(400), run=run, plots=False)  # 40 validation rows
    board = {row["candidate"]: row for row in metrics["race"]["leaderboard"]}
    assert calls == ["freeze_half", "lora", "full"]
    assert board["lora"]["state"] == "pruned" and board["lora"]["value"] == 0.60
    assert board["lora"]["epochs_run"] == 2
    assert board["full"]["state"] == board["freeze_half"]["state"] == "complete"
    assert metrics["race"]["winner"] == "full"
    assert [r["candidate"] for r in metrics["race"]["leaderboard"]] == [
        "full",
        "freeze_half",
        "lora",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["multi_label", "regression"])
def test_race_works_for_multi_label_and_regression(tiny_bert_dir, tmp_path, problem):
    """TF-IDF (one-vs-rest / ridge) and fine-tuning race on the problem type's own metric; the
    winner predicts in the problem type's form."""
    from test_problem_types import generated_multilabel_frame, generated_regression_frame

    from nlp_transfer import TextClassifier

    if problem == "multi_label":
        frame, settings = (
            generated_multilabel_frame(),
            {"label_column": "tags", "label_separator": "|"},
        )
        metric, key = "average_precision", "labels"
    else:
        frame, settings = (
            generated_regression_frame(),
            {"label_column": "score", "problem_type": "regression"},
        )
        metric, key = "rmse", "score"
    config = _config(
        tiny_bert_dir,
        tmp_path / "out",
        race_candidates="tfidf,feature_extraction,full",
        **(settings | {"text_column": "text"}),
    )
    metrics = race(config, frame, plots=False)
    board = {row["candidate"]: row for row in metrics["race"]["leaderboard"]}
    assert metrics["race"]["metric"] == f"validation {metric}"
    assert board["feature_extraction"]["state"] == "skipped"  # single-label only
    assert board["tfidf"]["value"] is not None and board["full"]["value"] is not None
    tfidf, full = board["tfidf"]["value"], board["full"]["value"]
    # full fine-tuning (the defaults' choice) is kept unless TF-IDF is ahead by more than noise
    margin = 1 / np.sqrt(json.loads((tmp_path / "out" / "race.json").read_text())["n_validation"])
    ahead = tfidf < full / (1 + margin) if problem == "regression" else tfidf > full + margin
    assert metrics["race"]["winner"] == ("tfidf" if ahead else "full")
    result = TextClassifier.from_pretrained(tmp_path / "out").predict(["the good movie"])[0]
    assert key in result
    saved = json.loads((tmp_path / "out" / "race" / "tfidf" / "config.json").read_text())
    if problem == "multi_label":  # thresholds tuned on validation by default, as fine-tuning's
        assert len(saved["label_thresholds"]) == 2


def test_recipe_and_python_api_take_strategy_auto(tiny_bert_dir, toy_csv, tmp_path):
    """The sentiment recipe and nlp_transfer.train() run the race when asked (TF-IDF alone: fast),
    and nlp_transfer.train() returns the winner as its model."""
    import nlp_transfer

    import sentiment

    flags = ["--model_name_or_path", str(tiny_bert_dir), "--train_file", str(toy_csv)]
    flags += ["--text_column", "sentence", "--label_column", "sentiment"]
    flags += ["--output_dir", str(tmp_path / "recipe"), "--strategy", "auto"]
    metrics = sentiment.main([*flags, "--race_candidates", "tfidf"])
    assert metrics["race"]["winner"] == "tfidf"
    result = nlp_transfer.train(
        str(toy_csv), text_column="sentence", label_column="sentiment",
        model_name_or_path=str(tiny_bert_dir), output_dir=tmp_path / "api",
        strategy="auto", race_candidates="tfidf",
    )  # fmt: skip
    assert result.metrics["race"]["winner"] == "tfidf"
    assert result.model.backend == "tfidf"
    assert result.model.predict("the movie was superb")["label"] == "pos"


def test_a_race_where_nothing_applies_says_why(tiny_bert_dir, tmp_path):
    from test_problem_types import generated_regression_frame

    config = _config(
        tiny_bert_dir, tmp_path / "out", text_column="text", label_column="score",
        problem_type="regression", race_candidates="feature_extraction,contrastive",
    )  # fmt: skip
    with pytest.raises(ValueError, match="feature_extraction: skipped a scikit-learn head"):
        race(config, generated_regression_frame(), plots=False)


def test_the_defaults_choice_is_kept_unless_beaten_by_more_than_validation_noise():
    from nlp_transfer.race.winner import BEST, default_candidate, pick_winner

    few = choose_candidates(DataFacts("single_label_classification", 32, 16, 6))[0]
    many = choose_candidates(DataFacts("single_label_classification", 8000, 4000, 6))[0]
    assert (default_candidate(few), default_candidate(many)) == ("contrastive", "full")
    finished = [
        {"candidate": "tfidf", "value": 0.5625},
        {"candidate": "contrastive", "value": 0.4062},
    ]
    # 32 validation rows: margin 1/sqrt(32) = 0.177 > 0.156 behind: the default is kept
    winner, why = pick_winner(finished, "contrastive", 32, greater_is_better=True)
    assert winner["candidate"] == "contrastive" and "within validation noise" in why
    # 1,000 rows: margin 0.032 < 0.156: the evidence wins
    assert pick_winner(finished, "contrastive", 1000, True) == (finished[0], BEST)
    # a loss (lower is better): the margin is relative, 10% at 100 rows
    losses = [{"candidate": "lora", "value": 1.00}, {"candidate": "full", "value": 1.08}]
    assert pick_winner(losses, "full", 100, False)[0]["candidate"] == "full"
    losses[1]["value"] = 1.12
    assert pick_winner(losses, "full", 100, False)[0]["candidate"] == "lora"
    # the default did not finish (or was not raced): the best wins
    assert pick_winner(finished, "full", 32, True) == (finished[0], BEST)


def test_a_race_records_why_its_winner_won(tiny_bert_dir, tmp_path):
    clock, calls = FakeClock(), []
    FAKE = dict(FAKE_VALUES)
    config = _config(tiny_bert_dir, tmp_path / "out", race_candidates="contrastive,freeze_half")

    def run(config, dataset, callbacks):  # freeze_half ahead of contrastive by 0.05 only
        FAKE_VALUES["contrastive"] = 0.75
        return fake_run(clock, 1.0, calls)(config, dataset, callbacks)

    try:
        metrics = race(config, toy_sentiment_frame(64), run=run, clock=clock, plots=False)
    finally:
        FAKE_VALUES.update(FAKE)
    assert metrics["race"]["winner"] == "contrastive"  # 7 validation rows: 0.05 is noise
    assert "freeze_half's 0.8000 is within validation noise" in metrics["race"]["winner_reason"]
    saved = json.loads((tmp_path / "out" / "race.json").read_text())
    assert saved["winner_reason"] == metrics["race"]["winner_reason"]
    assert "within validation noise" in (tmp_path / "out" / "README.md").read_text()
