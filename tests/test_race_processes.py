"""``--strategy auto`` under several processes: the main process decides, the others follow."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_race import FakeClock, _config
from test_reliability import _ok, _python, toy_train

from nlp_transfer.race import run as race_run
from nlp_transfer.race.budget import BudgetCallback, TimeBudget
from nlp_transfer.training.callbacks import CallbackError

from conftest import toy_sentiment_frame

__all__ = ["toy_train"]  # the fixture, used below


def test_a_follower_process_trains_each_candidate_and_takes_the_main_processs_rows(
    tiny_bert_dir, tmp_path, monkeypatch
):
    """A process other than the main one: it trains every candidate the main process runs (a
    stop on the main process reaches it as CallbackError), never opens the study or writes the
    outputs, and returns the rows and the result the main process shares."""
    out = tmp_path / "out"
    main_rows = {
        "freeze_half": {"candidate": "freeze_half", "state": "pruned", "value": 0.6},
        "full": {"candidate": "full", "state": "complete", "value": 0.9},
    }
    main_result = {"race": {"winner": "full"}, "from": "the main process"}
    shared, calls = [], []

    def share(value):  # what broadcast_object_list gives a follower: the main process's value
        shared.append(value)
        step = len(shared)
        if step in (1, 3):  # "run freeze_half", "run full": nothing decided before
            return None
        if step == 2:
            return main_rows["freeze_half"]
        if step == 4:
            return main_rows["full"]
        return main_result

    def run(config, dataset, callbacks):
        name = config.output_dir.rsplit("/", 1)[-1]
        calls.append(name)
        if name == "freeze_half":  # the main process pruned it after an epoch
            raise CallbackError("A callback raised on another process after epoch 2")
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        return {"best_metric": 0.1}  # this process's own value is not the leaderboard's

    monkeypatch.setattr(race_run, "is_main_process", lambda: False)
    monkeypatch.setattr(race_run, "share", share)
    config = _config(tiny_bert_dir, out, race_candidates="freeze_half,full")
    result = race_run.race(config, toy_sentiment_frame(64), run=run, plots=False)
    assert calls == ["freeze_half", "full"]  # trained together with the main process
    assert result == main_result
    assert shared[1] is None and shared[3] is None  # it shares nothing of its own
    assert not (out / "race" / "study.db").exists()  # the study is the main process's
    assert not (out / "metrics.json").exists() and not (out / "race.json").exists()


def test_a_budget_stop_on_one_process_stops_every_process():
    """Each process reads its own clock; one that finds no room for another epoch stops all."""
    clock = FakeClock()
    budget = TimeBudget(1000.0, clock=clock)  # plenty left on this process's clock
    seen, other = [], {"flag": 0.0}

    def reduce(flag, op):  # the other process's flag added to this one's
        seen.append((float(flag[0]), op))
        return flag + torch.tensor([other["flag"]])

    accelerator = SimpleNamespace(num_processes=2, device="cpu", reduce=reduce)
    for other["flag"], stops in ((0.0, False), (1.0, True)):
        trainer = SimpleNamespace(
            accelerator=accelerator,
            control=SimpleNamespace(should_training_stop=False),
            state=SimpleNamespace(epoch=2),
        )
        callback = BudgetCallback(budget, "full")
        callback.on_epoch_begin(trainer)
        clock.now += 10
        callback.on_epoch_end(trainer)
        assert trainer.control.should_training_stop is stops
    assert seen == [(0.0, "sum"), (0.0, "sum")]  # this process itself wanted to go on


@pytest.mark.slow
def test_two_process_race_agrees_on_one_winner(tiny_bert_dir, toy_train, tmp_path):
    """``accelerate launch --num_processes 2`` (CPU processes): every candidate trains on both
    processes, the main process writes one leaderboard, and the winner is an ordinary run."""
    out = tmp_path / "race"
    flags = ["-m", "nlp_transfer.cli", "train", "--task", "text"]
    flags += ["--model_name_or_path", str(tiny_bert_dir), "--train_file", str(toy_train)]
    flags += ["--text_column", "sentence", "--label_column", "sentiment"]
    flags += ["--output_dir", str(out), "--num_train_epochs", "2", "--save_strategy", "no"]
    flags += ["--strategy", "auto", "--time_budget", "30m"]
    flags += ["--race_candidates", "tfidf,feature_extraction,freeze_half,full"]
    proc = _ok(_python(flags, tmp_path, 2))
    metrics = json.loads((out / "metrics.json").read_text())
    board = {row["candidate"]: row for row in metrics["race"]["leaderboard"]}
    assert set(board) == {"tfidf", "feature_extraction", "freeze_half", "full"}
    assert all(row["state"] == "complete" for row in board.values()), board
    for name in ("freeze_half", "full"):  # trained data-parallel on both processes
        run = json.loads((out / "race" / name / "metrics.json").read_text())
        assert run["environment"]["num_processes"] == 2
    log = proc.stdout + proc.stderr
    assert log.count(f"race: {metrics['race']['winner']} wins") == 1  # the main process's line
