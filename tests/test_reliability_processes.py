"""Reliability across processes: exact resume of a two-process run after SIGKILL, and one
process at batch 16 equal to two processes at batch 8 (split from ``test_reliability.py`` so that
the two halves can run on different test workers)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_reliability import _flags, _interrupt_and_resume, _ok, _python, _same_run, toy_train

from conftest import REPO

__all__ = ["toy_train"]  # the fixture, used by the tests below


@pytest.mark.slow
def test_two_process_sigkill_then_resume_equals_uninterrupted_run(
    tiny_bert_dir, toy_train, tmp_path
):
    reference, crashed, _, resumed = _interrupt_and_resume(
        tiny_bert_dir, toy_train, tmp_path, signal.SIGKILL, 2, "--per_device_train_batch_size", "8"
    )
    # SIGKILL after step 14: the newest checkpoint is step 12, two batches into epoch 2 (the
    # one-process case is the SIGTERM test's, which resumes mid-epoch the same way).
    assert (
        "Resumed from" in resumed.stderr and "epoch 2, 2 batches into it, step 12" in resumed.stderr
    )
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
    """Same global batch and order (uniform shuffle), dropout off: the same weights and metrics.

    The two processes are launched through the shipped
    ``recipes/accelerate_configs/multi_cpu.yaml``, so the template is tested too.
    """
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
            config_file=REPO / "recipes" / "accelerate_configs" / "multi_cpu.yaml",
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


# ---------------------------------------------------------------------------------------------
# In-process: NaN losses, failed runs leave earlier results alone, pruning, atomic checkpoints.
