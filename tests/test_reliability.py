"""Reliability: exact resume after SIGKILL/SIGTERM, NaN losses, 1x16 == 2x8, atomic checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, toy_sentiment_frame

# A driver that runs the sentiment recipe and sends itself `signal` right after optimizer step
# `at_step` (every process does, under accelerate launch): a crash at a known point.
DRIVER = """
import os, signal, sys
import torch
sys.path.insert(0, {recipes!r})
at_step, signum = int(os.environ["STOP_AT_STEP"]), int(os.environ["STOP_SIGNAL"])
original, calls = torch.optim.AdamW.step, [0]
def step(self, *args, **kwargs):
    out = original(self, *args, **kwargs)
    calls[0] += 1
    if calls[0] == at_step:
        os.kill(os.getpid(), signum)
    return out
torch.optim.AdamW.step = step
import sentiment
from nlp_transfer.training.checkpoint import exit_on_interrupt
with exit_on_interrupt():
    sentiment.main(sys.argv[1:])
"""

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "0"}


def _flags(model_dir, train_file, output_dir, *extra) -> list[str]:
    return [
        "--model_name_or_path",
        str(model_dir),
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
        "--run_baseline",
        "false",
        *extra,
    ]


def _python(args: list[str], cwd: Path, processes: int = 0, **env) -> subprocess.CompletedProcess:
    """Run a script with python (processes=0) or under ``accelerate launch`` on CPU processes."""
    if processes:
        launcher = [str(Path(sys.executable).with_name("accelerate")), "launch"]
        launcher += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        launcher += ["--num_processes", str(processes)]
        launcher += ["--multi_gpu"] if processes > 1 else []
    else:
        launcher = [sys.executable]
    return subprocess.run(
        [*launcher, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**ENV, **env},
        timeout=600,
    )


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _same_run(reference: Path, resumed: Path, atol: float = 1e-6) -> None:
    """Equal weights (to `atol`) and equal per-epoch and test metrics."""
    a, b = (
        load_file(str(reference / "model.safetensors")),
        load_file(str(resumed / "model.safetensors")),
    )
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (reference, resumed))
    strip = ("runtime", "per_second")
    for ea, eb in zip(ma["validation"], mb["validation"], strict=True):
        ea = {k: v for k, v in ea.items() if not any(s in k for s in strip)}
        eb = {k: v for k, v in eb.items() if not any(s in k for s in strip)}
        assert ea.keys() == eb.keys()
        for key in ea:
            if isinstance(ea[key], float):
                assert ea[key] == pytest.approx(eb[key], abs=1e-5), key
            else:
                assert ea[key] == eb[key], key
    for key in ("accuracy", "f1_macro", "loss"):
        assert ma["test"][key] == pytest.approx(mb["test"][key], abs=1e-5), key
    assert ma["best_epoch"] == mb["best_epoch"]


@pytest.fixture()
def toy_train(tmp_path) -> Path:
    path = tmp_path / "toy.csv"
    toy_sentiment_frame(200).to_csv(path, index=False)  # 160 train rows: 10 batches of 16
    return path


def _interrupt_and_resume(model_dir, data, tmp_path, signum, processes, *extra):
    """Reference run; a run stopped by `signum` after step 14 (of 30); its resumption."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(recipes=str(REPO / "recipes")))
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    recipe = str(REPO / "recipes" / "sentiment.py")
    _ok(
        _python(
            [recipe, *_flags(model_dir, data, reference, "--save_strategy", "no", *extra)],
            tmp_path,
            processes,
        )
    )
    stopped = _python(
        [
            str(driver),
            *_flags(
                model_dir, data, crashed, "--save_strategy", "steps", "--save_steps", "4", *extra
            ),
        ],
        tmp_path,
        processes,
        STOP_AT_STEP="14",
        STOP_SIGNAL=str(int(signum)),
    )
    assert stopped.returncode != 0
    assert not (crashed / "metrics.json").exists()
    resumed = _python(
        [
            recipe,
            *_flags(
                model_dir,
                data,
                crashed,
                "--save_strategy",
                "steps",
                "--save_steps",
                "4",
                "--resume_from_checkpoint",
                "latest",
                *extra,
            ),
        ],
        tmp_path,
        processes,
    )
    _ok(resumed)
    return reference, crashed, stopped, resumed


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tiny_bert_dir, toy_train, tmp_path):
    reference, crashed, stopped, resumed = _interrupt_and_resume(
        tiny_bert_dir, toy_train, tmp_path, signal.SIGKILL, 0
    )
    assert stopped.returncode == -signal.SIGKILL
    # SIGKILL after step 14: the newest checkpoint is step 12, two batches into epoch 2.
    assert (
        "Resumed from" in resumed.stderr and "epoch 2, 2 batches into it, step 12" in resumed.stderr
    )
    _same_run(reference, crashed)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_at_that_step_and_resumes_exactly(
    tiny_bert_dir, toy_train, tmp_path
):
    reference, crashed, stopped, resumed = _interrupt_and_resume(
        tiny_bert_dir, toy_train, tmp_path, signal.SIGTERM, 0
    )
    assert stopped.returncode == 128 + signal.SIGTERM
    assert "Training interrupted by SIGTERM" in stopped.stderr
    # The signal arrives inside step 14's update; the next step's check sees it, so the run
    # stops after step 15 with a checkpoint of exactly that step.
    assert "epoch 2, 5 batches into it, step 15" in resumed.stderr
    _same_run(reference, crashed)


@pytest.mark.slow
def test_two_process_sigkill_then_resume_equals_uninterrupted_run(
    tiny_bert_dir, toy_train, tmp_path
):
    reference, crashed, _, resumed = _interrupt_and_resume(
        tiny_bert_dir, toy_train, tmp_path, signal.SIGKILL, 2, "--per_device_train_batch_size", "8"
    )
    assert "Resumed from" in resumed.stderr
    checkpoint = max((crashed / "checkpoints").iterdir(), key=lambda p: int(p.name.split("-")[1]))
    assert {"process_0.safetensors", "process_1.safetensors"} <= {
        p.name for p in checkpoint.iterdir()
    }
    _same_run(reference, crashed)


@pytest.fixture(scope="session")
def tiny_bert_no_dropout(tiny_bert_dir, tmp_path_factory) -> Path:
    """The tiny BERT with dropout off: the same batches then give the same updates anywhere."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = tmp_path_factory.mktemp("tiny_bert_no_dropout")
    config = AutoConfig.from_pretrained(tiny_bert_dir)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    AutoModel.from_pretrained(tiny_bert_dir, config=config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(path)
    return path


@pytest.mark.slow
def test_one_process_batch_16_equals_two_processes_batch_8(
    tiny_bert_no_dropout, toy_train, tmp_path
):
    """Same global batch and order (uniform shuffle), dropout off: the same weights and metrics."""
    recipe = str(REPO / "recipes" / "sentiment.py")
    common = ["--group_by_length", "false", "--num_train_epochs", "1", "--save_strategy", "no"]
    one, two = tmp_path / "one", tmp_path / "two"
    _ok(_python([recipe, *_flags(tiny_bert_no_dropout, toy_train, one, *common)], tmp_path, 1))
    _ok(
        _python(
            [
                recipe,
                *_flags(
                    tiny_bert_no_dropout,
                    toy_train,
                    two,
                    *common,
                    "--per_device_train_batch_size",
                    "8",
                ),
            ],
            tmp_path,
            2,
        )
    )
    a, b = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    start = load_file(str(tiny_bert_no_dropout / "model.safetensors"))
    moved = max((a[f"bert.{k}"] - start[k]).abs().max().item() for k in start if f"bert.{k}" in a)
    assert moved > 1e-3  # training happened: the comparison below means something
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4, msg=name)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert ma["validation"][0]["eval_loss"] == pytest.approx(
        mb["validation"][0]["eval_loss"], abs=1e-5
    )
    assert mb["environment"]["num_processes"] == 2
