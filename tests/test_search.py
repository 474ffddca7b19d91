"""Hyperparameter search (Optuna): trials, resuming a killed search, results, bad spaces."""

from __future__ import annotations

import json

import pytest
import yaml

from nlp_transfer.search import load_search_space, search
from nlp_transfer.text.config import TextClassificationConfig
from nlp_transfer.text.run import run_text_classification
from nlp_transfer.training.callbacks import TrainerCallback

from conftest import toy_sentiment_frame

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-3, "high": 5e-3, "log": True},
    "per_device_train_batch_size": {"type": "categorical", "choices": [16, 32]},
    "lora_r": {"type": "categorical", "choices": [2, 4]},
}


def _flags(tiny_bert_dir, data, out) -> list[str]:
    return [
        "--model_name_or_path", str(tiny_bert_dir),
        "--train_file", str(data),
        "--text_column", "sentence",
        "--label_column", "sentiment",
        "--output_dir", str(out),
        "--num_train_epochs", "2",
        "--run_baseline", "false",
        "--save_strategy", "no",
    ]  # fmt: skip


@pytest.fixture()
def small_csv(tmp_path):
    path = tmp_path / "small.csv"
    toy_sentiment_frame(80).to_csv(path, index=False)
    return path


def _space(tmp_path, space=SPACE):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def test_cli_search_writes_trials_best_config_and_plots(tiny_bert_dir, small_csv, tmp_path):
    from nlp_transfer.cli.commands import main
    from nlp_transfer.cli.config import parse_config

    out = tmp_path / "search"
    argv = ["search", "--n_trials", "3", "--search_space", str(_space(tmp_path))]
    assert main([*argv, *_flags(tiny_bert_dir, small_csv, out), "--peft", "lora"]) == 0
    assert (out / "study.db").exists()
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["trial_0", "trial_1", "trial_2"]
    summary = json.loads((out / "search.json").read_text())
    assert len(summary["trials"]) == 3
    best = summary["best_trial"]
    assert set(best["params"]) == {"learning_rate", "per_device_train_batch_size", "lora_r"}
    assert (out / "plots" / "optimization_history.png").stat().st_size > 0
    # the best configuration runs as it is with --config
    config = parse_config(TextClassificationConfig, ["--config", str(out / "best_config.yaml")])
    assert config.learning_rate == pytest.approx(best["params"]["learning_rate"])
    assert config.lora_r == best["params"]["lora_r"] and config.peft == "lora"
    assert config.output_dir == str(out / "best")


def test_killed_search_resumes_and_finishes_the_planned_trials(tiny_bert_dir, small_csv, tmp_path):
    import optuna
    from optuna.trial import TrialState

    from nlp_transfer.cli.config import parse_config

    out = tmp_path / "search"
    config = parse_config(TextClassificationConfig, _flags(tiny_bert_dir, small_csv, out))
    space = _space(tmp_path, {k: v for k, v in SPACE.items() if k != "lora_r"})

    class Kill(TrainerCallback):
        def on_evaluate(self, trainer, metrics):
            if trainer.args.output_dir.endswith("trial_1"):
                raise KeyboardInterrupt  # Ctrl-C in the middle of trial 1

    def killed_in_trial_1(trial_config, callbacks):
        return run_text_classification(trial_config, callbacks=[*callbacks, Kill()])

    with pytest.raises(KeyboardInterrupt):
        search(config, space, n_trials=3, run=killed_in_trial_1, plots=False)
    study = optuna.load_study(study_name="nlp_transfer_search", storage=f"sqlite:///{out}/study.db")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    study.ask()  # a process killed with SIGKILL leaves its trial RUNNING
    study = search(config, space, n_trials=3, plots=False)
    states = [t.state for t in study.trials]
    finished = [s for s in states if s in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    assert states[:3] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]
    assert json.loads((out / "search.json").read_text())["best_trial"] is not None


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"learning_rat": {"type": "float", "low": 1e-5, "high": 1e-3}}, "unknown setting"),
        ({"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-5}}, "empty range"),
        ({"warmup_ratio": {"type": "float", "low": 0.1, "high": 0.1}}, "empty range"),
        ({"freeze_layers": {"type": "int", "low": 3, "high": 1}}, "empty range"),
        ({"per_device_train_batch_size": {"type": "categorical", "choices": []}}, "empty choices"),
        ({"learning_rate": {"type": "float", "low": 0, "high": 1e-3, "log": True}}, "low > 0"),
        ({"learning_rate": {"type": "uniform", "low": 0, "high": 1}}, "needs a type"),
        ({}, "empty"),
    ],
)
def test_bad_search_space_is_refused_naming_the_setting(tmp_path, space, message):
    config = TextClassificationConfig(output_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match=message):
        load_search_space(_space(tmp_path, space), config)


def test_default_search_space_is_valid_and_drops_lora_without_peft(tmp_path):
    config = TextClassificationConfig(output_dir=str(tmp_path / "out"))
    from nlp_transfer.search import DEFAULT_SPACE

    space = load_search_space(DEFAULT_SPACE, config)
    assert "lora_r" not in space and "learning_rate" in space and "freeze_layers" in space
    config.peft = "lora"
    assert "lora_r" in load_search_space(DEFAULT_SPACE, config)
    config.peft = "prompt_tuning"  # it trains no layer: freeze_layers is not searched
    assert "freeze_layers" not in load_search_space(DEFAULT_SPACE, config)


def test_the_objective_is_the_metric_the_runs_select_on_for_each_problem_type(tmp_path):
    """A regression search minimises RMSE and a multi-label one maximises macro average
    precision (the runs' own selection metrics), not the single-label default, accuracy."""
    import pandas as pd

    from nlp_transfer.search import objective_metric

    texts = [f"text number {i}" for i in range(60)]
    pd.DataFrame({"text": texts, "label": [i / 10 for i in range(60)]}).to_csv(
        tmp_path / "scores.csv", index=False
    )
    pd.DataFrame({"text": texts, "label": [["a"], ["b"], ["a", "b"]] * 20}).to_json(
        tmp_path / "tags.jsonl", orient="records", lines=True
    )
    seen = []

    def fake_run(trial_config, callbacks):
        seen.append(trial_config.metric_for_best_model)
        return {"best_metric": trial_config.learning_rate}

    space = _space(tmp_path, {"learning_rate": SPACE["learning_rate"]})
    for data, problem, metric, direction in [
        ("scores.csv", "regression", "rmse", "MINIMIZE"),
        ("tags.jsonl", None, "average_precision", "MAXIMIZE"),
    ]:
        config = TextClassificationConfig(
            train_file=str(tmp_path / data), problem_type=problem, output_dir=str(tmp_path / metric)
        )
        assert objective_metric(config) == metric
        study = search(config, space, n_trials=2, run=fake_run, plots=False)
        assert study.direction.name == direction and seen[-2:] == [metric, metric]
        objective = json.loads((tmp_path / metric / "search.json").read_text())["objective"]
        assert objective == f"validation {metric} (best epoch)"
    plain = TextClassificationConfig(train_file="unread.csv", metric_for_best_model="f1_macro")
    assert objective_metric(plain) == "f1_macro"  # set by the user: kept, the data unread
