"""Behaviour pinned across refactors: tiny fixtures through every transfer strategy, task and
problem type, through the real ``nlp-transfer train`` entry point, compared with the test metrics
and trainable-parameter counts recorded in ``tests/data/behaviour.json``.

The recorded values were made by the code *before* the engine refactor (the Trainer, the
registries). A change that alters what a run computes (the order of operations, a default, which
parameters train) changes them, and this test fails. A change meant to alter behaviour records
them again, in its own commit, and says why:

    NLP_TRANSFER_RECORD_BEHAVIOUR=1 python -m pytest tests/test_behaviour_unchanged.py -m slow
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from test_problem_types import (
    generated_multilabel_frame,
    generated_pair_frame,
    generated_regression_frame,
)

from conftest import toy_sentiment_frame, write_image_folder

RECORD = os.environ.get("NLP_TRANSFER_RECORD_BEHAVIOUR") == "1"
RECORDED = Path(__file__).parent / "data" / "behaviour.json"
# The same code on the same CPU gives the same numbers; another CPU's matmul kernels may move
# a loss in its last digits, never by this much (relative).
TOLERANCE = 1e-5

TEXT = "--text_column sentence --label_column sentiment"
COMMON = "--num_train_epochs 4 --learning_rate 1e-2 --max_seq_length 32 --save_strategy no"
COMMON += " --per_device_train_batch_size 16 --seed 0 --run_baseline false"
# Calibration (a post-training step added later) changes the test probabilities and losses, not
# what training computes; tests/test_calibration.py covers it.
COMMON += " --calibration none"
# The few-shot default (contrastive tuning and a head on its embeddings, added later) would turn
# these 120-row runs into contrastive runs; tests/test_contrastive.py covers that default.
COMMON += " --contrastive none"

# name -> (data kind, flags beyond the common ones)
CASES = {
    "full_fine_tuning": ("toy", ""),
    "freeze_1_cached": ("toy", "--freeze_layers 1 --cache_frozen_prefix memory"),
    "freeze_1_uncached": ("toy", "--freeze_layers 1 --cache_frozen_prefix no"),
    "freeze_all_head_lr": ("toy", "--freeze_layers 2 --head_learning_rate 1e-2"),
    "lr_decay_l2sp": (
        "toy",
        "--layer_lr_decay 0.8 --head_learning_rate 3e-3 --l2sp_alpha 0.01 --l2sp_beta 0.001",
    ),
    "gradual_unfreezing": ("toy", "--gradual_unfreezing true --num_train_epochs 3"),
    "gradual_unfreezing_steps": ("toy", "--gradual_unfreezing true --unfreeze_every_n_steps 3"),
    "feature_extraction_logreg": ("toy", "--feature_extraction logistic_regression"),
    "feature_extraction_linear": ("toy", "--feature_extraction linear"),
    "feature_extraction_mlp": ("toy", "--feature_extraction mlp"),
    "lora": ("toy", "--peft lora --lora_r 4"),
    "lora_upper_layer": ("toy", "--peft lora --freeze_layers 1"),
    "ia3": ("toy", "--peft ia3"),
    "prompt_tuning": ("toy", "--peft prompt_tuning --num_virtual_tokens 4"),
    "bitfit": ("toy", "--bitfit true"),
    "class_weights_early_stopping": (
        "toy",
        "--class_weights balanced --early_stopping_patience 1 --num_train_epochs 3",
    ),
    "multi_label": (
        "multi_label",
        "--tune_decision_threshold true --class_weights balanced --metric_for_best_model f1_micro",
    ),  # the multi-label defaults of the time, given explicitly
    "regression": ("regression", "--standardize_targets true --num_train_epochs 3"),
    "sentence_pairs_cached": (
        "pairs",
        "--freeze_layers 1 --cache_frozen_prefix memory --layer_lr_decay 0.9",
    ),
}
DATA = {
    "toy": (lambda: toy_sentiment_frame(120), TEXT),
    "multi_label": (
        generated_multilabel_frame,
        "--text_column text --label_column tags --label_separator |",
    ),
    "regression": (
        generated_regression_frame,
        "--text_column text --label_column score --problem_type regression",
    ),
    "pairs": (
        generated_pair_frame,
        "--text_column premise --text_pair_column hypothesis --label_column relation",
    ),
}


def _scalars(record: dict) -> dict:
    return {
        k: v
        for k, v in record.items()
        if isinstance(v, int | float) and not k.endswith("runtime_s") and "per_second" not in k
    }


def _pinned(metrics: dict) -> dict:
    """What a refactor must not change: the test metrics, every epoch's validation metrics and
    training loss, the parameter counts and blocks, the best epoch, steps, early stopping and
    the strategy's description."""
    return {
        "test": _scalars(metrics["test"]),
        "validation": [_scalars(record) for record in metrics.get("validation", [])],
        "parameters": metrics.get("parameters"),
        "best_epoch": metrics.get("best_epoch"),
        "global_step": metrics.get("global_step"),
        "stopped_early": metrics.get("stopped_early"),
        "transfer_strategy": metrics.get("transfer_strategy"),
    }


def _compare(name: str, got: dict, want: dict) -> list[str]:
    """Differences between two pinned dicts, as readable lines."""
    problems = []

    def walk(path: str, a, b) -> None:
        if isinstance(b, dict):
            if not isinstance(a, dict) or set(a) != set(b):
                problems.append(f"{path}: keys {sorted(a or {})} != recorded {sorted(b)}")
                return
            for key in b:
                walk(f"{path}.{key}", a[key], b[key])
        elif isinstance(b, list):  # per-epoch records: each value within the tolerance
            if not isinstance(a, list) or len(a) != len(b):
                problems.append(f"{path}: {len(a or [])} items != recorded {len(b)}")
                return
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(f"{path}[{i}]", x, y)
        elif isinstance(b, float) or isinstance(a, float):
            if a is None or b is None or not math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=1e-9):
                problems.append(f"{path}: {a} != recorded {b}")
        elif a != b:
            problems.append(f"{path}: {a} != recorded {b}")

    walk(name, got, want)
    return problems


def _recorded() -> dict:
    return json.loads(RECORDED.read_text()) if RECORDED.exists() else {}


def _check_or_record(name: str, pinned: dict) -> None:
    recorded = _recorded()
    if RECORD:
        recorded[name] = pinned
        RECORDED.parent.mkdir(parents=True, exist_ok=True)
        RECORDED.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
        return
    assert name in recorded, f"no recorded behaviour for {name}; record it (module docstring)"
    problems = _compare(name, pinned, recorded[name])
    assert not problems, "behaviour changed:\n" + "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_text_run_matches_the_recorded_behaviour(name, tiny_bert_dir, tmp_path):
    from nlp_transfer.cli.commands import main

    kind, flags = CASES[name]
    make_frame, columns = DATA[kind]
    path = tmp_path / "data.csv"
    make_frame().to_csv(path, index=False)
    out = tmp_path / "out"
    argv = f"--model_name_or_path {tiny_bert_dir} --train_file {path} --output_dir {out} "
    argv += f"{columns} {COMMON} {flags}"
    assert main(["train", *argv.split()]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    _check_or_record(name, _pinned(metrics))


@pytest.mark.slow
def test_image_run_matches_the_recorded_behaviour(tmp_path):
    from nlp_transfer.cli.commands import main

    data = write_image_folder(tmp_path / "images", per_class=12)
    out = tmp_path / "out"
    argv = f"--task image --train_dir {data} --output_dir {out} --image_size 32 "
    argv += "--num_train_epochs 3 --per_device_train_batch_size 8 --learning_rate 1e-3 "
    argv += "--validation_size 0.25 --test_size 0.25 --freeze_layers 2 --seed 0 --calibration none"
    assert main(["train", *argv.split()]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    _check_or_record("image_freeze_2", _pinned(metrics))


@pytest.mark.slow
def test_domain_adaptation_matches_the_recorded_behaviour(tiny_bert_dir, tmp_path):
    from test_adaptation import _recipe_flags, _write_files

    from nlp_transfer.cli.commands import main

    paths = _write_files(tmp_path)
    flags = _recipe_flags(tiny_bert_dir, paths, tmp_path / "out", "--methods", "dann,coral")
    assert main(["train", "--task", "domain_adaptation", *flags, "--seed", "0"]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    pinned = {
        method: {
            "target_test": _scalars(record["target_test"]),
            "validation": [_scalars(r) for r in record["validation"]],
            "trainable_params": record["trainable_params"],
            "best_epoch": record["best_epoch"],
        }
        for method, record in metrics["methods"].items()
    }
    _check_or_record("domain_adaptation_dann_coral", pinned)
