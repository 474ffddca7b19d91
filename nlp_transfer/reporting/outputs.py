"""What a finished run leaves in ``output_dir``, and the summary it prints."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from accelerate import Accelerator
from torch import nn

from ..training.advice import advice
from ..training.trainer import FitResult
from ..transfer.freeze import FreezeReport
from .config_file import save_config


def new_output_dir(root: str | os.PathLike, prefix: str) -> Path:
    """A directory that does not exist yet: ``root/<prefix>-YYYYmmdd-HHMMSS`` (``-2``, ``-3``...
    when taken), so a rerun never writes over an earlier one."""
    base = Path(root) / time.strftime(f"{prefix}-%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def save_run(
    output_dir: str | os.PathLike,
    accelerator: Accelerator,
    model: nn.Module,
    metrics: dict,
    config: object,
    tokenizer: object | None = None,
    **resolved: object,
) -> Path | None:
    """Save the model (safetensors, Hugging Face format), tokenizer, ``metrics.json``, ``config.yaml``.

    Only the main process writes; every process waits for it.

    Args:
        output_dir: Target directory (created if missing).
        accelerator: The run's Accelerator.
        model: The (possibly prepared) model; it is unwrapped before saving.
        metrics: JSON-serialisable results.
        config: The run's config dataclass, written as YAML.
        tokenizer: Saved beside the model when given.
        **resolved: Extra resolved settings recorded in ``config.yaml`` (e.g. the model path).

    Returns:
        The directory on the main process, None elsewhere.
    """
    accelerator.wait_for_everyone()
    path = Path(output_dir).expanduser()
    if accelerator.is_main_process:
        path.mkdir(parents=True, exist_ok=True)
        accelerator.unwrap_model(model).save_pretrained(path, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
        (path / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        save_config(config, path / "config.yaml", **resolved)
    accelerator.wait_for_everyone()
    return path if accelerator.is_main_process else None


def format_summary(metrics: dict, title: str) -> str:
    """A short table of test metrics, fine-tuned model vs baseline, plus timings.

    Binary tasks also show precision, recall and F1 of the positive class (label id 1) at the
    decision threshold in use. Ends with :func:`~nlp_transfer.training.advice.advice`: what to
    try when the model is below the baseline on validation or was still fitting.
    """
    test = metrics["test"]
    rows = [("fine-tuned " + metrics.get("model_name", "model"), test)]
    if metrics.get("baseline"):
        rows.append(("TF-IDF + LogisticRegression", metrics["baseline"]))
    columns = [("accuracy", "accuracy"), ("macro-F1", "f1_macro")]
    names = list(test["per_class"])
    if len(names) == 2:
        positive = names[1]
        columns += [
            (f"{short}({positive})", f"{key}_{positive}")
            for short, key in (("P", "precision"), ("R", "recall"), ("F1", "f1"))
        ]
    width = max(len(name) for name, _ in rows) + 2
    header = "".join(f"{label:>{max(len(label), 8) + 2}}" for label, _ in columns)
    lines = [
        f"== {title}: test results ({test['num_examples']:,} examples) ==",
        f"{'model':<{width}}{header}",
    ]
    for name, m in rows:
        cells = "".join(f"{m[key]:>{max(len(label), 8) + 2}.4f}" for label, key in columns)
        lines.append(f"{name:<{width}}{cells}")
    if metrics.get("decision_threshold") is not None:
        tuned = " (tuned on validation)" if metrics.get("threshold_tuning") else ""
        lines.append(
            f"decision threshold p({names[1]}) >= {metrics['decision_threshold']:.4f}{tuned}"
        )
    t = metrics["timings"]
    lines.append(
        f"training {t['train_runtime_s']:.0f} s ({t['train_samples_per_second']:.1f} samples/s), "
        f"total {t['total_runtime_s']:.0f} s | best epoch {metrics['best_epoch']} | "
        f"trainable params {metrics['parameters']['trainable']:,} / {metrics['parameters']['total']:,}"
    )
    baseline = metrics.get("baseline") or {}
    if baseline.get("train_samples", 0) < baseline.get("train_rows", 0):
        lines.append(
            f"the baseline was fitted on a sample of {baseline['train_samples']:,} of the "
            f"{baseline['train_rows']:,} training rows (its cap)"
        )
    lines.append(f"saved to {metrics['output_dir']} (metrics.json, plots/, config.yaml)")
    lines += advice(metrics)  # below the baseline, or still fitting: what to try
    return "\n".join(lines)


def run_metrics(
    fit: FitResult,
    test_metrics: dict,
    freeze: FreezeReport,
    baseline: dict | None,
    *,
    model_name: str,
    output_dir: str | os.PathLike,
    metric_for_best_model: str,
    accelerator: Accelerator,
    start_time: float,
) -> dict:
    """Assemble ``metrics.json``: validation per epoch, test, baseline, timings, parameters.

    Args:
        fit: The training history.
        test_metrics: Metrics of the test split.
        freeze: What the transfer strategy froze.
        baseline: Baseline test metrics, or None.
        model_name: Display name of the pretrained model.
        output_dir: Where the run is saved.
        metric_for_best_model: The selection metric.
        accelerator: For the process count, device and precision.
        start_time: ``time.perf_counter()`` at the start of the run.

    Returns:
        A JSON-serialisable dict.
    """
    return {
        "model_name": model_name,
        "output_dir": str(output_dir),
        "metric_for_best_model": metric_for_best_model,
        "best_epoch": fit.best_epoch,
        "best_metric": fit.best_metric,
        "global_step": fit.global_step,
        "stopped_early": fit.stopped_early,
        "validation": fit.history,
        "test": test_metrics,
        "baseline": baseline,
        "timings": {
            "train_runtime_s": fit.train_runtime_s,
            "train_samples_per_second": fit.train_samples_per_second,
            "total_runtime_s": time.perf_counter() - start_time,
            "baseline_runtime_s": baseline["fit_runtime_s"] if baseline else None,
        },
        "parameters": {
            "trainable": freeze.trainable_params,
            "total": freeze.total_params,
            "frozen_blocks": freeze.frozen_blocks,
            "trainable_blocks": freeze.trainable_blocks,
        },
        "environment": {
            "num_processes": accelerator.num_processes,
            "device": str(accelerator.device),
            "mixed_precision": accelerator.mixed_precision,
        },
    }


def write_report(
    config,
    outcome,
    metrics: dict,
    label_names: list[str],
    *,
    threshold: float | None = None,
    modality: str = "text",
) -> None:
    """The report of a finished run, on the main process: ``plots/`` and the model card.

    Args:
        config: The run's arguments (``output_dir``, ``metric_for_best_model``...).
        outcome: Its :class:`~nlp_transfer.training.run.TrainOutcome` (test logits ``(n, C)``
            and labels ``(n,)``, the epoch history).
        metrics: What ``metrics.json`` holds.
        label_names: Class names, in label-id order.
        threshold: The binary decision threshold in use (None: argmax).
        modality: ``text`` or ``image`` (the model card's template).
    """
    from .model_card import write_model_card
    from .plots import write_report_plots

    test_logits, test_labels = outcome.test
    write_report_plots(
        config.output_dir,
        test_labels,
        test_logits,
        label_names,
        history=outcome.fit.history,
        metric=config.metric_for_best_model,
        threshold=threshold,
    )
    write_model_card(config.output_dir, metrics, config, label_names, modality=modality)
