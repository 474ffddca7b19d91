"""The Trainer: it learns a learnable task; schedule, optimizer, best-epoch restore, callbacks
(their events and order, errors on other processes), progress and checkpoint logs."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from nlp_transfer.data import load_text_classification_dataset
from nlp_transfer.data.samplers import LengthGroupedSampler
from nlp_transfer.metrics.classification import classification_metrics
from nlp_transfer.text.model import build_text_classifier
from nlp_transfer.text.tokenize import build_dataloaders, tokenize_dataset
from nlp_transfer.training.arguments import TrainingConfig
from nlp_transfer.training.callbacks import TrainerCallback
from nlp_transfer.training.evaluation import evaluate
from nlp_transfer.training.schedule import create_scheduler
from nlp_transfer.training.trainer import Trainer
from nlp_transfer.transfer.freeze import freeze_encoder_layers
from nlp_transfer.transfer.optim import create_optimizer

from conftest import toy_sentiment_frame


def _trainer(tiny_bert_dir, tmp_path, epochs, *, callbacks=(), metrics=None, **settings):
    """A Trainer of the tiny BERT on the toy task (lr 3e-3, warm-up 10%, weight decay 0.01)."""
    set_seed(0)
    ds = load_text_classification_dataset(
        toy_sentiment_frame(240), text_column="sentence", label_column="sentiment"
    )
    model, tok = build_text_classifier(str(tiny_bert_dir), label_names=["neg", "pos"])
    loaders = build_dataloaders(
        tokenize_dataset(ds, tok, 32),
        tok,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
    )
    defaults = dict(learning_rate=3e-3, weight_decay=0.01, save_strategy="no")
    args = TrainingConfig(
        output_dir=str(tmp_path), num_train_epochs=epochs, **(defaults | settings)
    )
    return Trainer(
        model,
        args,
        accelerator=Accelerator(
            cpu=True, gradient_accumulation_steps=args.gradient_accumulation_steps
        ),
        train_dataloader=loaders["train"],
        eval_dataloader=loaders["validation"],
        compute_metrics=metrics or metrics_fn,
        callbacks=callbacks,
    )


def metrics_fn(labels, logits):
    return classification_metrics(labels, logits, ["neg", "pos"])


def test_trainer_learns_a_learnable_task(tiny_bert_dir, tmp_path):
    trainer = _trainer(tiny_bert_dir, tmp_path, epochs=6)
    before = trainer.evaluate()
    result = trainer.train()
    losses = [h["train_loss"] for h in result.history]
    assert len(result.history) == 6
    assert losses[-1] < 0.5 * losses[0]
    assert result.history[-1]["eval_accuracy"] >= 0.9 > before["accuracy"]
    assert result.history[-1]["eval_num_examples"] == 24
    assert result.global_step == 6 * trainer.num_batches
    assert result.history[-1]["learning_rate"] == 0.0  # linear schedule ends at zero
    assert result.train_samples_per_second > 0
    logits, labels = trainer.predict()
    assert logits.shape == (24, 2) and labels.shape == (24,)


def test_best_epoch_weights_are_restored(tiny_bert_dir, tmp_path):
    # "loss" in the name -> lower is better; select on the *highest* validation loss
    # by flipping the sign via a custom metric, to force an early best epoch.
    def worst_first(labels, logits):
        m = metrics_fn(labels, logits)
        m["neg_accuracy_loss"] = m["accuracy"]  # lower is better: prefers the least accurate epoch
        return m

    trainer = _trainer(
        tiny_bert_dir,
        tmp_path,
        epochs=3,
        metrics=worst_first,
        metric_for_best_model="neg_accuracy_loss",
    )
    result = trainer.train()
    accuracies = [h["eval_accuracy"] for h in result.history]
    assert result.best_epoch == 1 + accuracies.index(min(accuracies))
    after = evaluate(trainer.model, trainer.eval_dataloader, trainer.accelerator, metrics_fn)
    assert after["accuracy"] == accuracies[result.best_epoch - 1]


class _Recorder(TrainerCallback):
    """Records every event with the epoch and step it saw."""

    def __init__(self):
        self.events = []

    def __getattribute__(self, name):
        if name.startswith("on_"):
            return lambda trainer, *args: self.events.append(
                (name, trainer.state.epoch, trainer.state.global_step)
            )
        return super().__getattribute__(name)


def test_callbacks_see_every_event_in_order_and_can_stop_training(tiny_bert_dir, tmp_path):
    recorder = _Recorder()

    class StopAfterEpoch1(TrainerCallback):
        def on_evaluate(self, trainer, metrics):
            assert 0.0 <= metrics["accuracy"] <= 1.0
            trainer.control.should_training_stop = True

    trainer = _trainer(
        tiny_bert_dir,
        tmp_path,
        epochs=3,
        callbacks=[recorder, StopAfterEpoch1()],
        gradient_accumulation_steps=2,
    )
    result = trainer.train()
    assert len(result.history) == 1  # stopped after epoch 1 by the control object
    names = [name for name, *_ in recorder.events]
    n = trainer.num_batches
    assert names[:2] == ["on_train_begin", "on_epoch_begin"]
    batch_events = [e for e in names if e in ("on_substep_end", "on_step_end")]
    assert len(batch_events) == n and names.count("on_step_begin") == n
    assert batch_events[:2] == ["on_substep_end", "on_step_end"]  # 2 batches per step
    assert names[-3:] == ["on_evaluate", "on_epoch_end", "on_train_end"]
    assert recorder.events[-2][1] == 2  # at on_epoch_end the state is at the next epoch
    assert result.global_step == (n + 1) // 2


def test_optimizer_holds_only_trainable_parameters(tiny_bert_dir):
    model, _ = build_text_classifier(str(tiny_bert_dir), label_names=["neg", "pos"])
    report = freeze_encoder_layers(model, 2)
    optimizer = create_optimizer(model, 1e-3, 0.01)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    assert sum(p.numel() for p in params) == report.trainable_params
    decayed = next(g for g in optimizer.param_groups if g["weight_decay"] > 0)["params"]
    assert all(p.ndim == 2 for p in decayed)


def test_scheduler_counts_optimizer_steps_with_accumulation():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1.0)
    sched = create_scheduler(
        opt,
        num_batches_per_epoch=10,
        num_train_epochs=2,
        gradient_accumulation_steps=3,
        warmup_ratio=0.25,
    )
    # ceil(10 / 3) = 4 steps per epoch, 8 in all, 2 of warm-up
    lrs = []
    for _ in range(8):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[:3] == [0.0, 0.5, 1.0]
    assert sched.get_last_lr()[0] == 0.0


def test_length_grouped_sampler_is_a_permutation_with_homogeneous_batches():
    lengths = [(i * 37) % 50 + 1 for i in range(1000)]
    sampler = LengthGroupedSampler(lengths, batch_size=10, seed=3, megabatch_factor=20)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == list(range(1000)) and sorted(second) == list(range(1000))
    assert first != second  # reshuffled each epoch
    spread = [
        max(lengths[i] for i in b) - min(lengths[i] for i in b)
        for b in (first[j : j + 10] for j in range(0, 1000, 10))
    ]
    assert sum(spread) / len(spread) < 5  # vs ~40 for random batches of lengths 1..50
    sampler.set_epoch(0)
    assert list(sampler) == first  # deterministic per (seed, epoch): same on every process


def test_bf16_on_a_cpu_without_native_bf16_warns(monkeypatch, capsys):
    from accelerate.state import AcceleratorState

    from nlp_transfer.training import setup

    monkeypatch.setattr(setup, "cpu_has_native_bf16", lambda: False)
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        accelerator = setup.build_accelerator("bf16", use_cpu=True)
        assert accelerator.mixed_precision == "bf16"  # a warning, not a refusal
        err = capsys.readouterr().err
        assert "no native bfloat16" in err and "--mixed_precision no" in err
        monkeypatch.setattr(setup, "cpu_has_native_bf16", lambda: True)
        AcceleratorState._reset_state(reset_partial_state=True)
        setup.build_accelerator("bf16", use_cpu=True)
        assert "no native bfloat16" not in capsys.readouterr().err
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def test_mixed_precision_auto_is_decided_by_the_hardware(monkeypatch, capsys):
    """Native bf16 (flags) decides without timing, so a busy machine cannot flip the choice;
    only unknown flags probe, and then the median of several probes counts."""
    from accelerate.state import AcceleratorState

    from nlp_transfer.training import setup

    def never(device):
        raise AssertionError("probed although the hardware decides")

    assert setup.resolve_mixed_precision("cpu", native_bf16=False, probe=never)[0] == "no"
    choice, why = setup.resolve_mixed_precision("cpu", True, probe=never)
    assert choice == "bf16" and "computes bf16 natively" in why
    # unknown flags: one slow probe on a busy machine does not decide, the median does
    monkeypatch.setattr(setup, "cpu_has_native_bf16", lambda: None)
    timings = iter([(1.0, 0.5), (1.0, 2.0), (1.0, 0.6), (1.0, 0.55), (1.0, 0.7)])
    choice, why = setup.resolve_mixed_precision("cpu", probe=lambda d: next(timings))
    assert choice == "bf16" and "median of 5 probes" in why and "0.60x" in why
    choice, why = setup.resolve_mixed_precision("cpu", probe=lambda d: (1.0, 0.95))
    assert choice == "no" and "0.95x" in why
    fp32_s, bf16_s = setup.probe_bf16_speed("cpu", tokens=16, hidden=8, repeats=1)
    assert fp32_s > 0 and bf16_s > 0

    # Through the run's Accelerator: the resolved precision is what training uses, and logged.
    monkeypatch.setattr(setup, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(setup, "probe_bf16_speed", never)
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        assert setup.build_accelerator("auto", use_cpu=True).mixed_precision == "bf16"
        assert "--mixed_precision auto: bf16" in capsys.readouterr().err
        monkeypatch.setattr(setup, "cpu_has_native_bf16", lambda: False)
        AcceleratorState._reset_state(reset_partial_state=True)
        assert setup.build_accelerator("auto", use_cpu=True).mixed_precision == "no"
        assert "has no native bf16" in capsys.readouterr().err
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def test_a_callback_exception_stops_training_before_that_epochs_checkpoint(tiny_bert_dir, tmp_path):
    import signal

    class Pruned(Exception):
        pass

    calls = []

    class Prune(TrainerCallback):
        def on_evaluate(self, trainer, metrics):
            calls.append((trainer.state.epoch, metrics["accuracy"], metrics["loss"]))
            if trainer.state.epoch == 2:
                raise Pruned(f"pruned at epoch {trainer.state.epoch}")

    trainer = _trainer(
        tiny_bert_dir, tmp_path, epochs=3, callbacks=[Prune()], save_strategy="epoch"
    )
    handler_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Pruned, match="pruned at epoch 2"):
        trainer.train()
    assert [epoch for epoch, *_ in calls] == [1, 2]  # 1-based, nothing after the raise
    assert all(0.0 <= acc <= 1.0 and loss > 0 for _, acc, loss in calls)
    # Epoch 1's checkpoint was written; epoch 2's was not (the callback ran before it).
    checkpoints = trainer.checkpointer.checkpoints()
    assert [p.name for p in checkpoints] == [f"checkpoint-{trainer.num_batches}"]
    assert signal.getsignal(signal.SIGINT) is handler_before  # the stop handlers are undone


def _log_run(tiny_bert_dir, tmp_path, caplog, monkeypatch, capsys, terminal):
    from nlp_transfer.training import progress

    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: terminal)
    trainer = _trainer(
        tiny_bert_dir, tmp_path, 2, save_strategy="epoch", logging_steps=4, save_total_limit=None
    )
    capsys.readouterr()  # set-up's output (model loading, tokenizing) is not the training's
    caplog.set_level(logging.INFO)
    trainer.train()
    return trainer.num_batches, caplog.records


def test_without_a_terminal_progress_is_plain_log_lines_and_checkpoints_one_line(
    tiny_bert_dir, tmp_path, caplog, monkeypatch, capsys
):
    num_batches, records = _log_run(tiny_bert_dir, tmp_path, caplog, monkeypatch, capsys, False)
    lines = [r.getMessage() for r in records if "samples/s" in r.getMessage()]
    assert len(lines) == 2 * (num_batches // 4)
    assert f"epoch 1/2 | batch 4/{num_batches} | step 4 | loss " in lines[0]
    assert f"epoch 2/2 | batch {num_batches - num_batches % 4}/" in lines[-1]
    assert all("of training left" in line for line in lines)
    assert "\r" not in capsys.readouterr().err  # no progress bar updates
    saved = [r.getMessage() for r in records if "Checkpoint saved" in r.getMessage()]
    assert len(saved) == 2
    assert saved[0].endswith(f"(step {num_batches}, end of epoch 1)")  # not "epoch 2"
    assert saved[1].endswith(f"(step {2 * num_batches}, end of epoch 2)")
    assert not [r for r in records if r.name.startswith("accelerate.")]
    # trainer_state.json after epoch 1: 1-based, epoch 2 in progress, 1 epoch completed
    state = json.loads(
        (tmp_path / "checkpoints" / f"checkpoint-{num_batches}" / "trainer_state.json").read_text()
    )
    assert (state["epoch"], state["batches_done"], state["epochs_completed"]) == (2, 0, 1)
    assert [h["epoch"] for h in state["history"]] == [1]


def test_on_a_terminal_progress_is_a_bar_and_no_log_lines(
    tiny_bert_dir, tmp_path, caplog, monkeypatch, capsys
):
    _, records = _log_run(tiny_bert_dir, tmp_path, caplog, monkeypatch, capsys, True)
    assert not [r for r in records if "samples/s" in r.getMessage()]
    assert "Training" in capsys.readouterr().err  # tqdm's bar


def test_format_duration():
    from nlp_transfer.training.progress import format_duration

    assert [format_duration(s) for s in (9.4, 125, 3725)] == ["9s", "2m05s", "1h02m"]


def test_a_callback_error_on_another_process_stops_this_process_too():
    from types import SimpleNamespace

    from nlp_transfer.training.callbacks import CallbackError, CallbackHandler

    def other_process_raised(flags, op):  # this process: 0; the other one raised: + 1
        assert op == "sum"
        return flags + 1

    two = SimpleNamespace(num_processes=2, device="cpu", reduce=other_process_raised)
    trainer = SimpleNamespace(accelerator=two, state=SimpleNamespace(epoch=3))
    handler = CallbackHandler([TrainerCallback()])
    with pytest.raises(CallbackError, match="another process after epoch 3"):
        handler.on_evaluate(trainer, {"accuracy": 0.5})
    trainer.accelerator = SimpleNamespace(num_processes=1, device="cpu")
    handler.on_evaluate(trainer, {"accuracy": 0.5})  # no error
