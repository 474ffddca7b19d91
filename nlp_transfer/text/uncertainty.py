"""What a text run adds to its predictions' probabilities after training: calibration
(temperature scaling, folded into the head), conformal scores for prediction sets, and the
abstention threshold; see ``docs/calibration.md``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from accelerate.logging import get_logger
from datasets import DatasetDict

from ..data.encode import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from ..metrics.calibration import calibration_metrics
from ..metrics.classification import probabilities
from ..metrics.conformal import (
    ABSOLUTE_RESIDUAL,
    APS,
    APS_RANDOMIZED,
    MIN_CONFORMAL_ROWS,
    aps_scores,
    coverage_report,
    example_uniforms,
    residual_scores,
    save_conformal_scores,
)
from ..metrics.recalibration import fit_binary_map, map_logits
from ..metrics.selective import select_abstention_threshold, selective_report
from ..reporting.plots import plot_reliability_diagram
from ..training.calibration import calibrate_outcome
from ..training.run import TrainOutcome
from .config import TextClassificationConfig
from .problem import TargetScaling

logger = get_logger(__name__)


def calibrating(config: TextClassificationConfig, problem: str) -> bool:
    """Whether the run fits a temperature after training (classification with
    ``--calibration auto`` or ``temperature``; a scikit-learn head is left as it is)."""
    return (
        config.calibration != "none"
        and problem != REGRESSION
        and config.feature_extraction == "none"
    )


def hold_out_calibration_split(dataset, config: TextClassificationConfig, problem: str):
    """``dataset`` with a ``calibration`` split: ``--calibration_split_size`` of the validation
    rows (stratified by label for single-label data, seeded), which split conformal prediction
    scores and nothing else sees: the epoch and the temperature are chosen on the rest. The
    guarantee of split conformal prediction needs scores from data the fitted model never
    depended on (Vovk et al. 2005; Angelopoulos & Bates 2021, section 1.3).

    Unchanged when the share is 0, for multi-label data (no conformal sets), for feature
    extraction (its head is fitted on every split's features at once), or when either part
    would have fewer than :data:`~nlp_transfer.metrics.conformal.MIN_CONFORMAL_ROWS` rows (logged).
    """
    size = config.calibration_split_size
    if size == 0 or problem == MULTI_LABEL or config.feature_extraction != "none":
        return dataset
    n = len(dataset["validation"])
    held = round(n * size)
    if held < MIN_CONFORMAL_ROWS or n - held < MIN_CONFORMAL_ROWS:
        logger.info(
            f"Conformal scores on validation: its {n} rows are too few to hold out "
            f"--calibration_split_size {size} (at least {MIN_CONFORMAL_ROWS} each side)."
        )
        return dataset
    stratify = "label" if problem == SINGLE_LABEL else None
    try:
        parts = dataset["validation"].train_test_split(
            test_size=held, seed=config.seed, stratify_by_column=stratify
        )
    except ValueError:  # a class with one validation row cannot be stratified
        parts = dataset["validation"].train_test_split(test_size=held, seed=config.seed)
    logger.info(
        f"Calibration split: {held} of the {n} validation rows held out for the conformal "
        f"scores (--calibration_split_size {size}); the epoch and temperature use the other "
        f"{n - held}."
    )
    return DatasetDict(dict(dataset) | {"validation": parts["train"], "calibration": parts["test"]})


def split_uniforms(dataset, split: str, n: int) -> np.ndarray | None:
    """Randomised APS's ``u`` of each text of ``dataset[split]`` (in the order of its logits),
    or None when the split's size differs from ``n``."""
    if split not in dataset or len(dataset[split]) != n:
        return None
    columns = dataset[split].column_names
    texts = dataset[split]["text"]
    if "text_pair" in columns:
        texts = list(zip(texts, dataset[split]["text_pair"], strict=True))
    return example_uniforms(texts)


def conformal_scores(
    outcome: TrainOutcome, problem: str, scaling: TargetScaling, dataset=None
) -> dict | None:
    """The conformal scores of the held-out calibration split (:func:`hold_out_calibration_split`;
    else of validation): randomised APS for single-label, absolute residuals in the targets'
    units for regression; and the coverage they give on test at 0.8, 0.9 and 0.95. None for
    multi-label or without those predictions.

    Args:
        dataset: The run's splits (``text``, ``text_pair``), whose texts give APS's ``u``;
            without them (or if a split's size differs from its logits') APS is not randomised.

    Returns:
        ``{"method", "scores" (n,), "report"}``; ``report`` goes into ``metrics.json``.
    """
    split = "calibration" if outcome.calibration is not None else "validation"
    held = outcome.calibration if outcome.calibration is not None else outcome.validation
    if held is None or problem == MULTI_LABEL:
        return None
    (val_logits, val_labels), (test_logits, test_labels) = held, outcome.test
    test_uniforms = None
    if problem == REGRESSION:
        method = ABSOLUTE_RESIDUAL
        scores = residual_scores(scaling.undo(val_labels), scaling.undo(val_logits))
        test_outputs, test_targets = scaling.undo(test_logits), scaling.undo(test_labels)
    else:
        val_uniforms = test_uniforms = None
        if dataset is not None:
            val_uniforms = split_uniforms(dataset, split, len(val_labels))
            test_uniforms = split_uniforms(dataset, "test", len(test_labels))
        if val_uniforms is None or test_uniforms is None:
            val_uniforms = test_uniforms = None
            logger.warning("Conformal sets: texts and logits differ in number; APS not randomised.")
        method = APS if val_uniforms is None else APS_RANDOMIZED
        scores = aps_scores(probabilities(val_logits), val_labels, val_uniforms)
        test_outputs, test_targets = probabilities(test_logits), test_labels
    test = coverage_report(
        scores, test_outputs, test_targets, regression=problem == REGRESSION, uniforms=test_uniforms
    )
    report = {"method": method, "split": split, "num_examples": len(scores), "test": test}
    return {"method": method, "scores": scores, "report": report}


def write_uncertainty(output_dir, calibration, conformal, uncalibrated_test, outcome) -> None:
    """``plots/reliability.png`` (calibrated runs) and ``conformal.json`` (runs with scores)."""
    if calibration is not None:
        plots = Path(output_dir) / "plots"
        plots.mkdir(parents=True, exist_ok=True)
        multi = np.ndim(outcome.test[1]) == 2  # multi-hot labels
        plot_reliability_diagram(uncalibrated_test, outcome.test, plots / "reliability.png", multi)
    if conformal is not None:
        save_conformal_scores(
            output_dir, conformal["scores"], conformal["method"], conformal["report"]["split"]
        )


def abstention(config, outcome: TrainOutcome, model) -> dict:
    """The confidence threshold for ``--abstain_below_precision``, chosen on (calibrated)
    validation and saved in ``model``'s config; its coverage and precision on both splits."""
    val_probs, test_probs = probabilities(outcome.validation[0]), probabilities(outcome.test[0])
    target = config.abstain_below_precision
    threshold = select_abstention_threshold(val_probs, outcome.validation[1], target)
    model.config.abstain_below = threshold
    model.config.abstain_below_precision = target  # refit-conformal chooses it again for this
    report = {
        "target_precision": target,
        "threshold": threshold,
        "validation": selective_report(val_probs, outcome.validation[1], threshold),
        "test": selective_report(test_probs, outcome.test[1], threshold),
    }
    logger.info(
        f"Abstention below confidence {threshold:.4f} (validation precision "
        f"{report['validation']['precision']} at coverage {report['validation']['coverage']:.3f})"
    )
    return report


def calibrate(config, outcome: TrainOutcome, problem: str, model, num_labels: int):
    """``(outcome, report)``: with ``--calibration auto`` or ``temperature`` (classification, a
    trained head), the temperature fitted on validation, folded into ``model`` and recorded in
    its config; with ``auto`` a binary model then gets the isotonic map where it lowers the
    cross-validated NLL (:func:`add_binary_map`). The outcome's logits calibrated. Else
    ``(outcome, None)``."""
    if not calibrating(config, problem):
        return outcome, None
    outcome, report = calibrate_outcome(outcome, model, num_labels, problem == MULTI_LABEL)
    logger.info(
        f"Calibration: temperature {np.round(report['temperature'], 4)} fitted on validation "
        f"(NLL {report['validation']['before']['nll']:.4f} -> "
        f"{report['validation']['after']['nll']:.4f}); folded into the head"
    )
    model.config.calibration = {k: report[k] for k in ("method", "temperature", "fitted_on")}
    if config.calibration == "auto" and problem == SINGLE_LABEL and num_labels == 2:
        outcome, report = add_binary_map(outcome, report, model, config.seed)
    return outcome, report


def add_binary_map(outcome: TrainOutcome, report: dict, model, seed: int):
    """After the temperature, the isotonic map of a binary model
    (:func:`~nlp_transfer.metrics.recalibration.fit_binary_map`, fitted on the validation rows
    the temperature was fitted on) when it lowers their cross-validated NLL: saved in
    ``model.config.calibration["isotonic"]``, applied to the outcome's logits, and the report's
    ``after`` recomputed (the temperature's alone kept as ``after_temperature``; and
    ``labels_changed``, the rows whose label the map moved across 0.5).

    Returns:
        ``(outcome, report)``; the outcome unchanged and ``report["isotonic"]`` None when the
        map is not kept.
    """
    fitted = fit_binary_map(*outcome.validation, seed=seed)
    report["isotonic"] = None
    if fitted is None:
        logger.info("Calibration: no isotonic map (it did not lower cross-validated NLL)")
        return outcome, report
    isotonic = {"x": fitted["x"], "y": fitted["y"]}
    model.config.calibration |= {"method": "temperature+isotonic", "isotonic": isotonic}
    splits = {"validation": outcome.validation, "test": outcome.test}
    if outcome.calibration is not None:
        splits["calibration"] = outcome.calibration
    mapped = {name: (map_logits(s[0], isotonic), s[1]) for name, s in splits.items()}
    report |= {
        "method": "temperature+isotonic",
        "isotonic": {k: fitted[k] for k in ("cv_nll", "cv_nll_temperature")}
        | {"breakpoints": len(isotonic["x"])},
    }
    for name in ("validation", "test"):
        report[name]["after_temperature"] = report[name]["after"]
        report[name]["after"] = calibration_metrics(*mapped[name])
        moved = splits[name][0].argmax(axis=1) != mapped[name][0].argmax(axis=1)
        report[name]["labels_changed"] = int(moved.sum())  # where g moved the 0.5 crossing
    logger.info(
        f"Calibration: isotonic map after the temperature ({len(isotonic['x'])} breakpoints; "
        f"cross-validated NLL {fitted['cv_nll_temperature']:.4f} -> {fitted['cv_nll']:.4f}); "
        f"it moved {report['validation']['labels_changed']} validation labels across 0.5"
    )
    return dataclasses.replace(outcome, **mapped), report
