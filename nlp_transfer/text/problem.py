"""What changes with the problem type: labels as tensors, the loss, metrics, thresholds, plots.

Names follow ``transformers``' ``config.problem_type``:

| problem type | labels | loss | prediction |
| --- | --- | --- | --- |
| ``single_label_classification`` | one id | cross-entropy | softmax, argmax (binary: threshold) |
| ``multi_label_classification`` | a 0/1 vector ``(C,)`` | BCE with logits | sigmoid >= threshold per label |
| ``regression`` | a float | MSE | the output (standardisation undone) |

The single-label path is the original one and does not pass through here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.logging import get_logger
from datasets import ClassLabel, DatasetDict, Value
from datasets import Sequence as SequenceFeature
from torch import nn

from ..data.columns import numpy_column
from ..data.encode import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from ..metrics.multilabel import multilabel_metrics, select_label_thresholds
from ..metrics.regression import regression_metrics

logger = get_logger(__name__)

# metric_for_best_model when the user left the config's default. Multi-label with per-label
# thresholds tuned after training selects its epoch on a threshold-free score (macro average
# precision): F1 at 0.5 stays 0 for epochs while the ranking improves (problem_types.md).
DEFAULT_METRIC = {MULTI_LABEL: "average_precision", REGRESSION: "rmse"}
UNTUNED_MULTI_LABEL_METRIC = "f1_micro"


def problem_type_of(dataset: DatasetDict) -> str:
    """The problem type of loaded splits, read from the ``label`` feature."""
    feature = dataset["train"].features["label"]
    if isinstance(feature, ClassLabel):
        return SINGLE_LABEL
    if isinstance(getattr(feature, "feature", None), ClassLabel):
        return MULTI_LABEL
    return REGRESSION


def label_names_of(dataset: DatasetDict) -> list[str]:
    """Label names in id order (``["score"]`` for regression: one output)."""
    feature = dataset["train"].features["label"]
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    inner = getattr(feature, "feature", None)
    return list(inner.names) if isinstance(inner, ClassLabel) else ["score"]


def check_problem_settings(config, problem_type: str) -> None:
    """Refuse settings that do not apply to ``problem_type`` (the message names the flag).

    Raises:
        ValueError: ``--sampling``, ``--feature_extraction``, ``--class_weights`` (other than
            ``balanced`` for multi-label) or ``--standardize_targets`` where they do not apply;
            ``--strategy auto`` (a race of several runs: :func:`nlp_transfer.race.race`).
    """
    if getattr(config, "strategy", "manual") == "auto":
        raise ValueError(
            "--strategy auto races several runs: start it with nlp-transfer train, a recipe, "
            "nlp_transfer.train() or nlp_transfer.race.race(), not run_text_classification."
        )
    if problem_type == SINGLE_LABEL:
        if config.standardize_targets:  # None (unset) is on for regression only
            raise ValueError("--standardize_targets applies to --problem_type regression only.")
        return
    bad = []
    if config.sampling != "none":
        bad.append(f"--sampling {config.sampling}")
    if config.feature_extraction != "none":
        bad.append(f"--feature_extraction {config.feature_extraction}")
    allowed = (None, "none", "balanced") if problem_type == MULTI_LABEL else (None, "none")
    if config.class_weights not in allowed:
        bad.append(f"--class_weights {config.class_weights}")
    if config.standardize_targets and problem_type != REGRESSION:
        bad.append("--standardize_targets")
    if getattr(config, "abstain_below_precision", None) is not None:
        bad.append("--abstain_below_precision")
    if bad:
        raise ValueError(
            f"{', '.join(bad)}: not available for {problem_type} (single-label classification "
            "only); leave it at its default."
        )


def best_model_metric(config, problem_type: str) -> str:
    """``--metric_for_best_model``, or the problem type's default when the user left it at the
    config's (a recipe's) single-label default (multi-label: macro average precision when the
    thresholds are tuned after training, else micro-F1)."""
    default = next(
        f.default for f in dataclasses.fields(config) if f.name == "metric_for_best_model"
    )
    if problem_type != SINGLE_LABEL and config.metric_for_best_model == default:
        if problem_type == MULTI_LABEL and config.tune_decision_threshold is False:
            return UNTUNED_MULTI_LABEL_METRIC
        return DEFAULT_METRIC[problem_type]
    return config.metric_for_best_model


def problem_defaults(config, problem_type: str):
    """``config`` with the problem type's defaults filled in where the user left a setting unset.

    Multi-label: per-label decision thresholds tuned on validation (``--tune_decision_threshold``)
    and BCE ``pos_weight`` (``--class_weights balanced``), the epoch selected on macro average
    precision. Measured on two 20 Newsgroups tag sets in ``benchmarks/results/problem_types.md``:
    at a 0.5 threshold the model predicted no label at all (micro-F1 0.000). Regression:
    standardised targets. Single-label: unchanged (no threshold tuning, no class weights).
    Each choice the user did not make is logged.
    """
    multi = problem_type == MULTI_LABEL
    tune = config.tune_decision_threshold
    weights = config.class_weights
    if multi and tune is None:
        logger.info(
            "Multi-label: each label's decision threshold will be tuned on validation (its F1) "
            "and saved with the model; --tune_decision_threshold false keeps 0.5."
        )
    if multi and weights is None:
        logger.info(
            "Multi-label: BCE pos_weight = negatives / positives per label (--class_weights "
            "balanced), so rare labels are not ignored; --class_weights none turns it off."
        )
    config = dataclasses.replace(
        config,
        tune_decision_threshold=multi if tune is None else tune,
        class_weights=("balanced" if multi else "none") if weights is None else weights,
        standardize_targets=problem_type == REGRESSION and config.standardize_targets is not False,
    )
    return dataclasses.replace(
        config, metric_for_best_model=best_model_metric(config, problem_type)
    )


@dataclass
class TargetScaling:
    """Regression targets standardised for training: ``z = (y - mean) / std``."""

    mean: float = 0.0
    std: float = 1.0

    def undo(self, z: np.ndarray) -> np.ndarray:
        """Standardised values (any shape) -> the targets' units."""
        return np.asarray(z, dtype=np.float64) * self.std + self.mean


def model_ready_labels(
    dataset: DatasetDict, problem_type: str, standardize: bool = False
) -> tuple[DatasetDict, TargetScaling]:
    """Labels as the loss wants them: 0/1 vectors ``(C,)`` for multi-label; float targets
    (standardised with the training split's mean and std when ``standardize``) for regression.
    """
    scaling = TargetScaling()
    if problem_type == MULTI_LABEL:
        num = len(label_names_of(dataset))

        def multi_hot(batch):
            rows = np.zeros((len(batch["label"]), num), dtype=np.float32)
            for i, ids in enumerate(batch["label"]):
                rows[i, ids] = 1.0
            return {"label": rows.tolist()}

        features = dataset["train"].features.copy()
        features["label"] = SequenceFeature(Value("float32"), length=num)
        dataset = dataset.map(multi_hot, batched=True, features=features, desc="Multi-hot labels")
    elif problem_type == REGRESSION and standardize:
        y = numpy_column(dataset["train"], "label").astype(np.float64)
        scaling = TargetScaling(float(y.mean()), float(y.std()) or 1.0)
        logger.info(f"Targets standardised: mean {scaling.mean:.4g}, std {scaling.std:.4g}")

        def scale(batch):
            return {"label": [(v - scaling.mean) / scaling.std for v in batch["label"]]}

        dataset = dataset.map(scale, batched=True, desc="Standardising targets")
    return dataset, scaling


def problem_loss(problem_type: str, dataset: DatasetDict, class_weights: str = "none"):
    """``(logits, labels) -> loss``: BCE with logits (``pos_weight`` = negatives / positives
    per label with ``--class_weights balanced``) or MSE."""
    if problem_type == REGRESSION:
        return lambda logits, labels: F.mse_loss(logits.squeeze(-1), labels.float())
    pos_weight = None
    if class_weights == "balanced":
        y = numpy_column(dataset["train"], "label").astype(np.float64)
        positives = y.sum(axis=0)
        pos_weight = torch.tensor((len(y) - positives) / np.maximum(positives, 1.0)).float()
        logger.info(f"pos_weight per label: {[round(w, 3) for w in pos_weight.tolist()]}")

    def loss(logits, labels):
        weight = None if pos_weight is None else pos_weight.to(logits.device)
        return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weight)

    return loss


def problem_metrics_fn(
    problem_type: str, label_names: list[str], scaling: TargetScaling, thresholds=0.5
):
    """``(labels, logits) -> metrics`` for the training loop (loss included)."""
    if problem_type == MULTI_LABEL:
        return lambda labels, logits: multilabel_metrics(labels, logits, label_names, thresholds)

    def compute(labels, logits):
        metrics = regression_metrics(scaling.undo(labels), scaling.undo(logits))
        metrics["loss"] = float(np.mean((np.reshape(logits, -1) - np.reshape(labels, -1)) ** 2))
        return metrics

    return compute


def problem_test_report(problem_type, config, outcome, dataset, scaling, model: nn.Module):
    """Test metrics (thresholds tuned on validation when asked) and what travels with the model.

    Returns:
        ``(test_metrics, extra)``; ``extra`` goes into ``metrics.json`` (thresholds, tuning).
    """
    names = label_names_of(dataset)
    logits, labels = outcome.test
    if problem_type == REGRESSION:
        fold_standardization(model, scaling)
        metrics = regression_metrics(scaling.undo(labels), scaling.undo(logits))
        return metrics, {"target_scaling": {"mean": scaling.mean, "std": scaling.std}}
    thresholds, tuning = [config.decision_threshold] * len(names), None
    if config.tune_decision_threshold and outcome.validation is not None:
        thresholds = select_label_thresholds(outcome.validation[1], outcome.validation[0])
        tuning = {"tuned_on": "validation", "per_label": True}
        logger.info(f"Per-label thresholds tuned on validation: {np.round(thresholds, 3)}")
    model.config.label_thresholds = [float(t) for t in thresholds]
    metrics = multilabel_metrics(labels, logits, names, thresholds)
    return metrics, {"decision_threshold": thresholds, "threshold_tuning": tuning}


def fold_standardization(model: nn.Module, scaling: TargetScaling) -> None:
    """Put the target scaling into the last one-output linear layer, so the saved model (and
    ``pipeline()``, ONNX) predicts in the targets' units: ``w' = std * w``, ``b' = std * b + mean``.
    """
    if scaling.mean == 0.0 and scaling.std == 1.0:
        return
    last = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == 1]
    if not last:
        raise ValueError("No one-output linear layer to fold --standardize_targets into.")
    with torch.no_grad():
        last[-1].weight.mul_(scaling.std)
        if last[-1].bias is not None:
            last[-1].bias.mul_(scaling.std).add_(scaling.mean)


def write_problem_plots(
    output_dir, problem_type: str, labels, logits, names, scaling, *, metrics=None, history=None
) -> list:
    """``plots/`` of a multi-label or regression run.

    Multi-label: per-label precision-recall curves as small multiples with each label's
    operating point (``pr_curves.png``) and per-label F1 beside support (``label_f1.png``).
    Regression: predicted vs true (``predicted_vs_true.png``). Both: loss and the selection
    metric per epoch (``training_curves.png``) when ``history`` is given.

    Args:
        output_dir: The run's directory.
        problem_type: ``multi_label_classification`` or ``regression``.
        labels: Test targets, ``(n, C)`` 0/1 or ``(n,)`` (standardised when ``scaling`` is).
        logits: Test outputs, ``(n, C)`` or ``(n, 1)``.
        names: Label names (multi-label).
        scaling: The regression target scaling to undo.
        metrics: ``metrics.json``'s content (its ``test`` per-label report, ``decision_threshold``
            and ``metric_for_best_model``).
        history: The Trainer's per-epoch records.

    Returns:
        The written paths.
    """
    from pathlib import Path

    from ..metrics.multilabel import sigmoid_probabilities
    from ..reporting.plots import plot_training_curves
    from ..reporting.plots_problems import (
        plot_label_f1_support,
        plot_label_pr_curves,
        plot_predicted_vs_true,
    )

    metrics = metrics or {}
    plots = Path(output_dir) / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    paths = []
    if problem_type == MULTI_LABEL:
        y = np.asarray(labels).astype(np.int64)
        thresholds = metrics.get("decision_threshold")
        probs = sigmoid_probabilities(logits)
        paths.append(plot_label_pr_curves(y, probs, names, plots / "pr_curves.png", thresholds))
        if "per_label" in metrics.get("test", {}):
            per_label = metrics["test"]["per_label"]
            paths.append(plot_label_f1_support(per_label, plots / "label_f1.png"))
    else:
        truth, predicted = scaling.undo(labels), scaling.undo(logits)
        paths.append(plot_predicted_vs_true(truth, predicted, plots / "predicted_vs_true.png"))
    if history:
        metric = metrics.get("metric_for_best_model") or DEFAULT_METRIC[problem_type]
        curves = plots / "training_curves.png"
        paths.append(plot_training_curves(history, metric, curves, "training"))
    return paths


def format_problem_summary(metrics: dict, title: str, problem_type: str) -> str:
    """The printed summary of a multi-label or regression run: test metrics vs the baseline."""
    keys = (
        ["f1_micro", "f1_macro", "f1_samples", "subset_accuracy", "hamming_loss"]
        if problem_type == MULTI_LABEL
        else ["pearson", "spearman", "mse", "mae", "r2"]
    )
    test = metrics["test"]
    rows = [("fine-tuned " + metrics.get("model_name", "model"), test)]
    if metrics.get("baseline"):
        rows.append(("TF-IDF baseline", metrics["baseline"]))
    width = max(len(name) for name, _ in rows) + 2
    lines = [
        f"== {title} ({problem_type}): test results ({test['num_examples']:,} examples) ==",
        f"{'model':<{width}}" + "".join(f"{k:>18}" for k in keys),
    ]
    for name, m in rows:
        cells = "".join(f"{m[k]:>18.4f}" if m.get(k) is not None else f"{'-':>18}" for k in keys)
        lines.append(f"{name:<{width}}{cells}")
    t = metrics["timings"]
    lines.append(
        f"training {t['train_runtime_s']:.0f} s | best epoch {metrics['best_epoch']} | "
        f"trainable params {metrics['parameters']['trainable']:,} / "
        f"{metrics['parameters']['total']:,}"
    )
    lines.append(f"saved to {metrics['output_dir']} (metrics.json, plots/, config.yaml)")
    return "\n".join(lines)
