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


def _python(
    args: list[str], cwd: Path, processes: int = 0, config_file: Path | None = None, **env
) -> subprocess.CompletedProcess:
    """Run a script with python (processes=0) or under ``accelerate launch`` on CPU processes.

    With ``config_file`` the processes come from that accelerate config instead of flags.
    """
    if config_file is not None:
        launcher = [str(Path(sys.executable).with_name("accelerate")), "launch"]
        launcher += ["--config_file", str(config_file)]
    elif processes:
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


def _uninterrupted(model_dir, data, output_dir, processes, *extra) -> Path:
    """The reference: the same run without a crash and without checkpoints."""
    recipe = str(REPO / "recipes" / "sentiment.py")
    flags = _flags(model_dir, data, output_dir, "--save_strategy", "no", *extra)
    _ok(_python([recipe, *flags], output_dir.parent, processes))
    return output_dir


@pytest.fixture(scope="module")
def one_process_reference(tiny_bert_dir, tmp_path_factory) -> Path:
    """One uninterrupted one-process run, shared by the SIGKILL and SIGTERM tests (same flags)."""
    root = tmp_path_factory.mktemp("one_process_reference")
    data = root / "toy.csv"
    toy_sentiment_frame(200).to_csv(data, index=False)  # the same rows as `toy_train`
    return _uninterrupted(tiny_bert_dir, data, root / "reference", 0)


def _interrupt_and_resume(model_dir, data, tmp_path, signum, processes, *extra, reference=None):
    """A run stopped by `signum` after step 14 (of 30); its resumption; the reference run
    (made here unless given: an uninterrupted run of the same flags)."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(recipes=str(REPO / "recipes")))
    crashed = tmp_path / "crashed"
    recipe = str(REPO / "recipes" / "sentiment.py")
    if reference is None:
        reference = _uninterrupted(model_dir, data, tmp_path / "reference", processes, *extra)
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
def test_sigterm_saves_a_checkpoint_at_that_step_and_resumes_exactly(
    tiny_bert_dir, toy_train, tmp_path, one_process_reference
):
    reference, crashed, stopped, resumed = _interrupt_and_resume(
        tiny_bert_dir, toy_train, tmp_path, signal.SIGTERM, 0, reference=one_process_reference
    )
    assert stopped.returncode == 128 + signal.SIGTERM
    assert "Training interrupted by SIGTERM" in stopped.stderr
    # The signal arrives inside step 14's update; the next step's check sees it, so the run
    # stops after step 15 with a checkpoint of exactly that step.
    assert "epoch 2, 5 batches into it, step 15" in resumed.stderr
    _same_run(reference, crashed)


def _tree(path: Path) -> dict[str, bytes]:
    """Every file under `path` with its bytes (what a failed run must not change)."""
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def _nan_after(monkeypatch, batches: int) -> None:
    """Make the training loss NaN from the `batches`-th batch on."""
    import nlp_transfer.text.run as tc

    real, calls = tc.cross_entropy_loss, [0]

    def poisoned(weights):
        loss = real(weights)

        def fn(logits, labels):
            calls[0] += 1
            value = loss(logits, labels)
            return value * float("nan") if calls[0] >= batches else value

        return fn

    monkeypatch.setattr(tc, "cross_entropy_loss", poisoned)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(
    tiny_bert_dir, toy_train, tmp_path, monkeypatch
):
    import sentiment

    out = tmp_path / "run"
    flags = _flags(tiny_bert_dir, toy_train, out, "--save_strategy", "steps", "--save_steps", "2")
    flags += ["--save_total_limit", "2"]
    _nan_after(monkeypatch, 7)
    with pytest.raises(FloatingPointError) as err:
        sentiment.main(flags)
    message = str(err.value)
    assert "The training loss is nan at optimizer step 7 (epoch 1, batch 7)" in message
    assert f"last good checkpoint, {out / 'checkpoints' / 'checkpoint-6'}, is intact" in message
    assert "--learning_rate" in message
    # save_total_limit 2: only the two newest complete checkpoints remain; no metrics written.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "checkpoint-4",
        "checkpoint-6",
    ]
    assert not (out / "metrics.json").exists()
    before = _tree(out)

    # Failed attempts on the same output_dir change nothing in it.
    monkeypatch.undo()
    bad = tmp_path / "excel.csv"
    bad.write_bytes("sentence,sentiment\ncaf\u00e9 good,pos\n".encode("latin-1"))
    attempts = [
        (_flags(tiny_bert_dir, toy_train, out), FileExistsError, "resume_from_checkpoint latest"),
        (
            _flags(tiny_bert_dir, bad, out, "--resume_from_checkpoint", "latest"),
            ValueError,
            "not valid utf-8",
        ),
        (
            [
                *_flags(tiny_bert_dir, toy_train, out, "--resume_from_checkpoint", "latest"),
                "--per_device_train_batch_size",
                "8",
            ],
            ValueError,
            "10 training batches per epoch; this one has 20",
        ),
        (
            _flags(tiny_bert_dir, toy_train, out, "--resume_from_checkpoint", str(out / "nope")),
            FileNotFoundError,
            "not a complete checkpoint",
        ),
    ]
    for argv, error, text in attempts:
        with pytest.raises(error, match=text):
            sentiment.main(argv)
        assert _tree(out) == before

    # With the cause gone, the run continues from step 6 and finishes.
    flags += ["--resume_from_checkpoint", "latest"]
    metrics = sentiment.main(flags)
    assert metrics["global_step"] == 30 and len(metrics["validation"]) == 3
    # A finished run is not "resumed" over.
    with pytest.raises(FileExistsError, match="holds a finished run"):
        sentiment.main(flags)


def test_unfinished_checkpoints_are_ignored_and_cleaned(tmp_path):
    from nlp_transfer.training.checkpoint import STATE_FILE, Checkpointer, resolve_resume_path

    root = tmp_path / "checkpoints"
    for name, complete in (
        ("checkpoint-4", True),
        ("checkpoint-10", False),
        ("checkpoint-8.tmp", True),
    ):
        (root / name).mkdir(parents=True)
        (root / name / "model.safetensors").write_bytes(b"x")
        if complete:
            (root / name / STATE_FILE).write_text("{}")
    checkpointer = Checkpointer(tmp_path, "steps", save_steps=2)
    assert [p.name for p in checkpointer.checkpoints()] == ["checkpoint-4"]
    assert resolve_resume_path(tmp_path, "latest") == root / "checkpoint-4"
    with pytest.raises(FileNotFoundError, match=r"no complete checkpoint.*--save_strategy"):
        resolve_resume_path(tmp_path / "elsewhere", "latest")


def test_early_stopping_after_patience_epochs(tiny_bert_dir, toy_train, tmp_path):
    import sentiment

    out = tmp_path / "es"
    flags = _flags(
        tiny_bert_dir, toy_train, out, "--learning_rate", "1e-9", "--num_train_epochs", "5"
    )
    metrics = sentiment.main(
        [*flags, "--early_stopping_patience", "2", "--metric_for_best_model", "accuracy"]
    )
    # Nothing is learnt at lr 1e-9: accuracy never improves on epoch 1, so 1 + 2 epochs run.
    assert metrics["stopped_early"] and len(metrics["validation"]) == 3
    assert metrics["best_epoch"] == 1


@pytest.mark.parametrize(
    "name", ["cpu", "multi_cpu", "single_gpu", "multi_gpu", "multi_node", "fsdp"]
)
def test_accelerate_config_templates_parse(name):
    from accelerate.commands.config.config_args import load_config_from_file

    path = REPO / "recipes" / "accelerate_configs" / f"{name}.yaml"
    config = load_config_from_file(str(path))
    assert config.num_processes >= 1 and config.machine_rank == 0
    if name == "multi_node":
        assert config.num_machines == 2 and config.rdzv_backend == "c10d"
        assert config.main_process_port == 29500
    if name == "fsdp":
        assert config.fsdp_config["fsdp_use_orig_params"] is True
