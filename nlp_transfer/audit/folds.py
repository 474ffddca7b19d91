"""Out-of-fold probabilities from fine-tuned folds (``--fold_classifier fine_tuned``).

k full training runs of the toolkit (:func:`~nlp_transfer.text.run.run_text_classification`,
the own-data defaults: data-sized epochs and learning rate, best epoch kept, temperature
calibration) on the other folds, each predicting its held-out fold. Slower than the default
logistic regression on sentence features by about k trainings, and better where the encoder's
frozen features separate the classes poorly (``docs/audit.md`` gives measured numbers).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from sklearn.model_selection import StratifiedKFold, train_test_split

from ..data.encode import SINGLE_LABEL
from ..text.classifier import TextClassifier
from ..text.config import TextClassificationConfig
from ..text.run import run_text_classification
from .data import AuditData
from .labels import folds_for

logger = logging.getLogger(__name__)

VALIDATION_SHARE = 0.1  # of the fitting folds, for the run's epoch selection and calibration


def _split(data: AuditData, rows: np.ndarray) -> Dataset:
    texts = [data.texts[i] for i in rows]
    columns: dict[str, list] = {"label": [int(data.labels[i]) for i in rows]}
    features = {"label": ClassLabel(names=data.label_names)}
    if texts and not isinstance(texts[0], str):
        columns["text"] = [t[0] for t in texts]
        columns["text_pair"] = [t[1] for t in texts]
        features |= {"text": Value("string"), "text_pair": Value("string")}
    else:
        columns["text"] = texts
        features["text"] = Value("string")
    return Dataset.from_dict(columns, features=Features(features))


def fine_tuned_fold_probabilities(
    data: AuditData,
    output_dir: Path,
    *,
    num_folds: int = 5,
    seed: int = 42,
    model_name_or_path: str | None = None,
    max_seq_length: int = 128,
    **train_settings,
) -> np.ndarray:
    """Each training row's class probabilities from a model fine-tuned without its fold.

    Args:
        data: The audited rows (single-label).
        output_dir: The fold runs go to ``output_dir/folds/fold-<k>`` (kept: each is an
            ordinary run with its ``metrics.json``).
        num_folds: k (fewer when a class has fewer rows).
        seed: Seed of the folds and of the runs.
        model_name_or_path: The encoder fine-tuned (None: the packaged default).
        max_seq_length: Tokens per text.
        **train_settings: Other :class:`~nlp_transfer.text.config.TextClassificationConfig`
            fields for every fold run (``num_train_epochs``, ``learning_rate``...).

    Returns:
        ``(n_train, C)`` softmax probabilities, in the order of the training rows.

    Raises:
        ValueError: Multi-label or regression data (use the logistic-regression folds).
    """
    if data.problem_type != SINGLE_LABEL:
        raise ValueError(
            "--fold_classifier fine_tuned supports single-label data; use "
            "--fold_classifier logistic_regression for multi-label or regression data."
        )
    train_rows = np.flatnonzero(data.mask("train"))
    labels = data.class_ids("train")
    folds = folds_for(labels, num_folds)
    probs = np.zeros((len(train_rows), len(data.label_names)))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (fit, held) in enumerate(cv.split(np.zeros(len(labels)), labels)):
        fit_part, val_part = train_test_split(
            fit, test_size=VALIDATION_SHARE, random_state=seed, stratify=labels[fit]
        )
        dataset = DatasetDict(
            train=_split(data, train_rows[fit_part]),
            validation=_split(data, train_rows[val_part]),
            test=_split(data, train_rows[held]),
        )
        run_dir = output_dir / "folds" / f"fold-{k}"
        logger.info(f"Fold {k + 1} of {folds}: fine-tuning on {len(fit):,} rows -> {run_dir}")
        config = TextClassificationConfig(
            output_dir=str(run_dir),
            model_name_or_path=model_name_or_path,
            max_seq_length=max_seq_length,
            seed=seed,
            run_baseline=False,
            save_strategy="no",
            **train_settings,
        )
        run_text_classification(config, dataset=dataset, task_name=f"audit fold {k + 1}")
        classifier = TextClassifier.from_pretrained(run_dir)
        probs[held] = classifier.predict_proba([data.texts[i] for i in train_rows[held]])
    return probs
