"""Text classification end to end: the steps every text recipe runs, and the Python API.

    from nlp_transfer import TextClassificationConfig, run_text_classification

    config = TextClassificationConfig(train_file="reviews.csv", text_column="review",
                                      label_column="stars", output_dir="outputs/reviews")
    metrics = run_text_classification(config)

Steps: data (:mod:`.loaders`) -> model -> transfer plan
(:func:`~nlp_transfer.transfer.plan.plan_transfer`) -> fine-tuning through the shared run
(:class:`~nlp_transfer.training.trainer.Trainer`) or feature extraction
(:mod:`.features`) -> test -> TF-IDF baseline -> outputs and report.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from datasets import DatasetDict
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..data.encode import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from ..data.read import DataSource
from ..hub import DEFAULT_MODEL_NAME, check_push_to_hub, push_to_hub
from ..metrics.classification import (
    classification_metrics,
    cross_entropy,
    probabilities,
    select_threshold,
)
from ..reporting.model_card import write_model_card
from ..reporting.outputs import format_summary, run_metrics, save_run, write_report
from ..tasks import run_data_check
from ..training.callbacks import TrainerCallback
from ..training.imbalance import cross_entropy_loss
from ..training.run import TrainOutcome, start_run, train_and_predict
from ..training.setup import end_run
from ..transfer.adapters import save_adapter_outputs
from ..transfer.cache import CachedPrefixModel
from ..transfer.contrastive_stage import StageInputs
from ..transfer.plan import TransferPlan, plan_transfer
from .baseline import tfidf_logreg_baseline, tfidf_problem_baseline
from .config import TextClassificationConfig
from .defaults import resolve_data_sized
from .features import train_feature_extractor
from .fingerprint import write_fingerprint
from .loaders import class_weights, is_prepared, load_data, metrics_fn, text_dataloaders
from .model import build_text_classifier, resolve_model_path, source_head
from .problem import (
    TargetScaling,
    check_problem_settings,
    format_problem_summary,
    label_names_of,
    model_ready_labels,
    problem_defaults,
    problem_loss,
    problem_metrics_fn,
    problem_test_report,
    problem_type_of,
    write_problem_plots,
)
from .uncertainty import (
    abstention,
    calibrate,
    calibrating,
    conformal_scores,
    hold_out_calibration_split,
    write_uncertainty,
)

logger = get_logger(__name__)


def train_text_classifier(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    dataset: DatasetDict,
    accelerator: Accelerator,
    config: TextClassificationConfig,
    plan: TransferPlan,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainOutcome:
    """Tokenize, build dataloaders (caching the frozen prefix when the plan says so) and loss;
    train with the Trainer; predict.

    Args:
        model: Classifier with its transfer plan applied (frozen parameters set).
        tokenizer: Its tokenizer.
        dataset: ``train``/``validation``/``test`` splits with ``text`` and ``label``.
        accelerator: The run's Accelerator.
        config: Hyper-parameters (``learning_rate``, ``num_train_epochs``, batch sizes,
            ``class_weights``, ``sampling``, ``decision_threshold``...).
        plan: The run's transfer plan.
        callbacks: Trainer callbacks added to the defaults (e.g. a search's pruning).

    Returns:
        A :class:`~nlp_transfer.training.run.TrainOutcome` with validation (when threshold
        tuning needs them) and test predictions of the final model.

    Raises:
        ValueError: Bad ``--class_weights``.
    """
    problem = problem_type_of(dataset)
    if problem == SINGLE_LABEL:
        label_names = dataset["train"].features["label"].names
        loss_fn = cross_entropy_loss(class_weights(dataset, config))
        compute_metrics = metrics_fn(label_names, config)
        predict_validation = bool(config.tune_decision_threshold) and len(label_names) == 2
    else:
        dataset, scaling = model_ready_labels(dataset, problem, config.standardize_targets)
        loss_fn = problem_loss(problem, dataset, config.class_weights)
        compute_metrics = problem_metrics_fn(
            problem, list(model.config.id2label.values()), scaling, config.decision_threshold
        )
        predict_validation = bool(config.tune_decision_threshold) and problem == MULTI_LABEL
    # calibration and the conformal scores need the final model's validation predictions
    predict_validation = (
        predict_validation
        or calibrating(config, problem)
        or problem == REGRESSION
        or config.abstain_below_precision is not None
    )
    cache_model = model if plan.cache_prefix else None
    loaders = text_dataloaders(dataset, tokenizer, accelerator, config, cache_model=cache_model)
    # from here on the frozen prefix does no work
    cached = CachedPrefixModel(model, config.freeze_layers) if plan.cache_prefix else None
    return train_and_predict(
        model,
        config,
        loaders,
        accelerator=accelerator,
        compute_metrics=compute_metrics,
        loss_fn=loss_fn,
        plan=plan,
        callbacks=callbacks,
        prefix_cache=cached,
        # threshold tuning and calibration need the final model's validation predictions
        predict_validation=predict_validation,
    )


def choose_decision_threshold(
    config: TextClassificationConfig, validation: tuple[np.ndarray, np.ndarray], num_labels: int
) -> tuple[float | None, dict | None]:
    """The binary decision threshold: ``--decision_threshold``, or tuned on validation.

    Returns:
        ``(threshold, tuning)``: threshold None for multi-class tasks; ``tuning`` holds the
        validation F1 of the positive class at the tuned threshold, or None.
    """
    if num_labels != 2:
        return None, None
    if not config.tune_decision_threshold:
        return config.decision_threshold, None
    logits, labels = validation
    threshold, f1 = select_threshold(labels, probabilities(logits)[:, 1])
    logger.info(
        f"Decision threshold tuned on validation: {threshold:.4f} (positive-class F1 {f1:.4f})"
    )
    return threshold, {"tuned_on": "validation", "validation_f1_positive": f1}


def run_text_classification(
    config: TextClassificationConfig,
    dataset: DatasetDict | DataSource | None = None,
    task_name: str = "text classification",
    estimator: object | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> dict:
    """Fine-tune, evaluate and save a text classifier as ``config`` says; what every text recipe runs.

    Steps: Accelerator -> check ``output_dir`` -> data -> model -> transfer strategy (freezing)
    -> train with validation each epoch -> test -> TF-IDF baseline -> save -> print a summary.

    Args:
        config: The run's settings.
        dataset: Ready ``train``/``validation``/``test`` splits with ``text`` and ``label``
            (e.g. from :func:`~nlp_transfer.data.load_text_classification_dataset`), used as is;
            or a pandas ``DataFrame``, ``datasets.Dataset`` or other ``DatasetDict``, read with
            ``config``'s column, split and cap settings; None loads what ``config`` names.
        task_name: Title of the printed summary.
        estimator: Feature extraction with this unfitted scikit-learn classifier (it needs
            ``predict_proba``) as the head, e.g. ``SVC(probability=True)``; saved with skops.
        callbacks: Trainer callbacks added to the defaults (e.g. a search's pruning; a
            feature-extraction head trains without them).

    Returns:
        The metrics written to ``output_dir/metrics.json``.

    Raises:
        FileExistsError: ``output_dir`` is not empty and ``overwrite_output_dir`` is False.
        ValueError, FileNotFoundError, OSError: Bad data, model path or settings (the message
            names the flag to fix).
    """
    start = time.perf_counter()
    accelerator = start_run(config, task_name)
    if config.push_to_hub:
        check_push_to_hub()
    set_seed(config.seed)
    if not is_prepared(dataset):  # None, a DataFrame, a Dataset: the config's columns
        with accelerator.main_process_first():
            dataset = load_data(config, dataset)
    if config.audit:  # nlp-transfer audit on the splits this run uses: <output_dir>/audit
        run_data_check("audit", config, dataset, accelerator)
    problem = problem_type_of(dataset)
    check_problem_settings(config, problem)
    config = problem_defaults(config, problem)
    labels = label_names_of(dataset)
    model, tokenizer = build_text_classifier(
        config.init_from or config.model_name_or_path,
        label_names=labels,
        trust_remote_code=config.trust_remote_code,
        new_head=config.init_from is not None,
    )
    model.config.problem_type = problem  # pipeline() and predict() decode by it
    model.config.text_pair_column = config.text_pair_column
    if config.init_from:
        _log_weight_transfer(config.init_from, labels)
    on_cpu, processes = accelerator.device.type == "cpu", accelerator.num_processes
    config = resolve_data_sized(  # each choice logged with its reason
        config, dataset["train"], len(labels), model, tokenizer, on_cpu, processes
    )
    if estimator is not None and config.feature_extraction == "none":
        config = _with_estimator(config, estimator)
    dataset = hold_out_calibration_split(dataset, config, problem)  # conformal scores only
    plan = plan_transfer(model, config, details=_plan_details(config, estimator))
    stage = StageInputs.of_run(dataset["train"], tokenizer, len(labels), accelerator, problem)
    plan.before_training(model, stage)  # contrastive tuning of the encoder, when asked
    if plan.feature_extraction != "none":
        outcome = train_feature_extractor(
            model, tokenizer, dataset, accelerator, config, plan, estimator
        )
    else:
        model = plan.training_model(model)  # the peft wrapper for prompt tuning
        outcome = train_text_classifier(
            model, tokenizer, dataset, accelerator, config, plan, callbacks
        )
    return finish_text_run(config, accelerator, outcome, plan, dataset, tokenizer, start, task_name)


def _log_weight_transfer(init_from: str, labels: list[str]) -> None:
    """Log ``--init_from``'s source classifier's labels beside the new head's."""
    source = source_head(init_from, local_only=True) or []
    logger.info(
        f"Weight transfer: encoder initialised from {init_from} (a classifier for "
        f"{len(source)} label(s) {source[:6]}), new head for the {len(labels)} label(s) "
        f"{labels[:6]}"
    )


def _with_estimator(config: TextClassificationConfig, estimator: object):
    """The config of a feature-extraction run whose head is a user's scikit-learn estimator."""
    return dataclasses.replace(config, feature_extraction="logistic_regression")


def _plan_details(config: TextClassificationConfig, estimator: object | None) -> dict:
    """Text's entries of the strategy description (``metrics.json``, model card)."""
    if config.feature_extraction != "none":
        head = type(estimator).__name__ if estimator is not None else config.feature_extraction
        return {"head": head, "pooling": config.pooling}
    return {"init_from": config.init_from} if config.init_from else {}


def finish_text_run(
    config: TextClassificationConfig,
    accelerator: Accelerator,
    outcome: TrainOutcome,
    plan: TransferPlan,
    dataset: DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    start: float,
    task_name: str,
) -> dict:
    """Test metrics, the TF-IDF baseline, ``metrics.json``, the saved model, plots, model card,
    the Hub upload and the printed summary."""
    labels, problem = label_names_of(dataset), problem_type_of(dataset)
    unwrapped = accelerator.unwrap_model(outcome.model)
    uncalibrated_test = outcome.test
    outcome, calibration = calibrate(config, outcome, problem, unwrapped, len(labels))
    test_logits, test_labels = outcome.test
    long_text = _save_reading(config, unwrapped)
    test_metrics, extra, baseline = _test_report(
        config, outcome, dataset, unwrapped, accelerator.is_main_process
    )
    outcome.fit.train_runtime_s += plan.stage_seconds  # contrastive tuning is training too
    metrics = run_metrics(
        outcome.fit,
        test_metrics,
        plan.freeze,
        baseline,
        model_name=config.model_name_or_path or DEFAULT_MODEL_NAME,
        output_dir=config.output_dir,
        metric_for_best_model=config.metric_for_best_model,
        accelerator=accelerator,
        start_time=start,
    )
    scaling = extra.pop("scaling", TargetScaling())
    metrics |= extra
    if calibration is not None:
        metrics["calibration"] = calibration
    conformal = conformal_scores(outcome, problem, scaling, dataset)
    if conformal is not None:
        metrics["conformal"] = conformal["report"]
    metrics["transfer_strategy"] = plan.describe()
    metrics["long_text"] = long_text
    model_path = config.init_from or resolve_model_path(config.model_name_or_path)[0]
    # the adapter to output_dir/adapter; the model merged for the usual layout (--peft)
    saved = save_adapter_outputs(plan, accelerator, outcome.model, config.output_dir, tokenizer)
    save_run(
        config.output_dir,
        accelerator,
        saved,
        metrics,
        config,
        tokenizer,
        resolved_model_path=model_path,
    )
    if accelerator.is_main_process:
        write_uncertainty(config.output_dir, calibration, conformal, uncalibrated_test, outcome)
        write_fingerprint(config, dataset, outcome.validation, problem, len(labels))
    if accelerator.is_main_process and problem != SINGLE_LABEL:
        write_problem_plots(
            config.output_dir,
            problem,
            test_labels,
            test_logits,
            labels,
            scaling,
            metrics=metrics | {"metric_for_best_model": config.metric_for_best_model},
            history=outcome.fit.history,
        )
        write_model_card(config.output_dir, metrics, config, labels)
    elif accelerator.is_main_process:
        write_report(config, outcome, metrics, labels, threshold=metrics["decision_threshold"])
    if accelerator.is_main_process and config.push_to_hub:
        repo_id = config.hub_model_id or Path(config.output_dir).name
        logger.info(f"Pushed to the Hub: {push_to_hub(config.output_dir, repo_id)}")
    if problem == SINGLE_LABEL:
        accelerator.print(format_summary(metrics, task_name))
    else:
        accelerator.print(format_problem_summary(metrics, task_name, problem))
    end_run(accelerator)
    return metrics


def _save_reading(config: TextClassificationConfig, model) -> dict:
    """Record in ``model.config`` how training read texts (``max_seq_length``, ``long_text``)
    so that prediction reads them the same; returns ``metrics.json``'s ``long_text``."""
    model.config.max_seq_length = config.max_seq_length
    long_text = config.long_text_settings()
    long_text.save(model.config)
    description = long_text.describe(config.max_seq_length)
    return model.config.long_text | {
        "max_seq_length": config.max_seq_length,
        "description": description,
    }


def _test_report(config, outcome, dataset, model, main_process: bool):
    """``(test metrics, metrics.json extras, baseline metrics or None)`` for the problem type;
    the decision threshold(s) and target scaling travel with ``model``'s config."""
    labels = label_names_of(dataset)
    problem = problem_type_of(dataset)
    test_logits, test_labels = outcome.test
    baseline = None
    if problem != SINGLE_LABEL:
        scaling = TargetScaling()
        if problem == REGRESSION and config.standardize_targets:
            _, scaling = model_ready_labels(dataset, problem, standardize=True)
        test_metrics, extra = problem_test_report(problem, config, outcome, dataset, scaling, model)
        if config.run_baseline and main_process:
            baseline = tfidf_problem_baseline(
                dataset,
                problem,
                seed=config.seed,
                tune_decision_threshold=bool(config.tune_decision_threshold),
            )
        extra = extra | {"problem_type": problem, "scaling": scaling}
        return test_metrics, extra, baseline
    threshold, tuning = choose_decision_threshold(config, outcome.validation, len(labels))
    test_metrics = classification_metrics(test_labels, test_logits, labels, threshold)
    test_metrics["loss"] = cross_entropy(test_logits, test_labels)
    extra = {"decision_threshold": threshold, "threshold_tuning": tuning}
    if config.abstain_below_precision is not None:
        extra["abstention"] = abstention(config, outcome, model)
    if threshold is not None:  # travels with the model (config.json); prediction uses it
        model.config.decision_threshold = threshold
    if config.run_baseline and main_process:
        baseline = tfidf_logreg_baseline(
            dataset, seed=config.seed, tune_decision_threshold=config.tune_decision_threshold
        )
    return test_metrics, extra, baseline
