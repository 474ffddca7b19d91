"""``nlp_transfer.audit(...)`` and ``nlp-transfer audit``: likely label errors, duplicates and
leakage, and outliers of a labelled text set, found before training.

What it does, in order (``docs/audit.md``):

1. reads every row of the training file (nothing split off; empty texts counted) and of the
   optional validation and test files, or a built-in set's splits (:mod:`.data`);
2. computes one sentence vector per text with the encoder, once, cached on disk (:mod:`.embed`);
3. ranks likely label errors of the training rows by confident learning on out-of-fold
   probabilities of a logistic regression (cleanlab; :mod:`.labels`);
4. finds exact and near duplicates within and across splits, those whose labels conflict and
   the validation and test rows leaked from training (:mod:`.duplicates`);
5. flags out-of-distribution texts and counts texts longer than the model reads
   (:mod:`.outliers`);
6. writes ``audit.md`` (with plots), ``audit.json``, ``suspects.csv`` and, with
   ``write_cleaned``, the training rows it would keep to a new file (:mod:`.report`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.encode import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from ..data.read import DataSource
from ..reporting.outputs import new_output_dir
from ..text.model import resolve_model_path
from ..training.setup import check_output_dir
from .data import AuditData, load_audit_data
from .duplicates import find_duplicates
from .embed import embed_texts
from .labels import (
    label_issues,
    multilabel_issues,
    out_of_fold_multilabel,
    out_of_fold_probabilities,
    tfidf_out_of_fold_probabilities,
)
from .outliers import far_out_threshold, length_report, ood_scores, token_lengths
from .report import (
    audit_summary,
    check_cleaned_path,
    suspects_table,
    write_audit,
    write_cleaned_file,
)

logger = logging.getLogger(__name__)


@dataclass
class AuditResult:
    """What :func:`audit` found.

    Attributes:
        output_dir: Where ``audit.md``, ``audit.json``, ``suspects.csv`` and ``plots/`` are.
        summary: The counts of ``audit.json``.
        suspects: One row per finding (``split``, ``row``, ``reason``, ``score``, ``text``,
            ``label``, ``suggested_label``, ``detail``, ``dropped``), as ``suspects.csv``.
        cleaned_file: The file written with ``write_cleaned``, else None.
    """

    output_dir: Path
    summary: dict
    suspects: pd.DataFrame
    cleaned_file: Path | None = None


FOLD_CLASSIFIERS = ("logistic_regression", "tfidf", "ensemble", "fine_tuned")
# What an unset --fold_classifier is for single-label data (benchmarks/results/audit.md).
DEFAULT_FOLD_CLASSIFIER = "ensemble"


def resolve_fold_classifier(requested: str | None, problem_type: str) -> str:
    """``--fold_classifier``, or its default for the problem type: :data:`DEFAULT_FOLD_CLASSIFIER`
    for single-label data, the logistic regression on sentence features for multi-label.

    Raises:
        ValueError: A choice the problem type does not support (the message says which do).
    """
    if requested is None:
        return DEFAULT_FOLD_CLASSIFIER if problem_type == SINGLE_LABEL else "logistic_regression"
    if problem_type != SINGLE_LABEL and requested != "logistic_regression":
        raise ValueError(
            f"--fold_classifier {requested} supports single-label data; multi-label data uses "
            "logistic_regression (leave the flag unset)."
        )
    return requested


def _single_label_probabilities(
    data: AuditData, features: np.ndarray, num_folds: int, seed: int, fold_classifier: str
) -> np.ndarray:
    """Out-of-fold probabilities of the training rows: the logistic regression on sentence
    features, TF-IDF + logistic regression, or the mean of both (``ensemble``)."""
    labels, num_labels = data.class_ids("train"), len(data.label_names)
    arms = []
    if fold_classifier in ("logistic_regression", "ensemble"):
        arms.append(
            out_of_fold_probabilities(features, labels, num_labels, num_folds=num_folds, seed=seed)
        )
    if fold_classifier in ("tfidf", "ensemble"):
        texts = [t for t, s in zip(data.flat_texts(), data.splits, strict=True) if s == "train"]
        arms.append(
            tfidf_out_of_fold_probabilities(
                texts, labels, num_labels, num_folds=num_folds, seed=seed
            )
        )
    return np.mean(arms, axis=0)


def _label_findings(
    data: AuditData,
    features: np.ndarray,
    num_folds: int,
    seed: int,
    fine_tune: dict | None,
    fold_classifier: str = "logistic_regression",
) -> dict | None:
    """Confident learning on the training rows; None for regression (no classes).

    Args:
        fine_tune: Settings of fine-tuned folds (``output_dir``, ``model_name_or_path``...),
            or None for the logistic regression on ``features``.
    """
    train = data.mask("train")
    if data.problem_type == REGRESSION:
        logger.warning("Label errors are not searched for regression targets (no classes).")
        return None
    if data.problem_type == MULTI_LABEL:
        targets = data.multi_hot("train")
        probs = out_of_fold_multilabel(features[train], targets, num_folds=num_folds, seed=seed)
        found = multilabel_issues(targets, probs)
    elif fine_tune is not None:
        from .folds import fine_tuned_fold_probabilities  # the training engine: on request

        probs = fine_tuned_fold_probabilities(data, num_folds=num_folds, seed=seed, **fine_tune)
        found = label_issues(data.class_ids("train"), probs)
    else:
        probs = _single_label_probabilities(data, features[train], num_folds, seed, fold_classifier)
        found = label_issues(data.class_ids("train"), probs)
    found["pred_probs"] = probs
    found["rows"] = np.flatnonzero(train)  # positions in the pooled rows
    return found


def _outlier_findings(
    data: AuditData, features: np.ndarray, tokenizer, max_seq_length: int
) -> dict:
    train = data.mask("train")
    train_scores, other_scores = ood_scores(features[train], features[~train])
    scores = np.zeros(len(data.texts))
    scores[train] = train_scores
    if other_scores is not None:
        scores[~train] = other_scores
    threshold = far_out_threshold(train_scores)
    first = [t if isinstance(t, str) else t[0] for t in data.texts]
    lengths = token_lengths(first, tokenizer)
    return {
        "ood_score": scores,
        "ood_threshold": threshold,
        "ood": scores < threshold,
        "lengths": lengths,
        "length_report": {
            s: length_report(lengths[data.mask(s)], max_seq_length) for s in data.split_names()
        },
    }


def audit(
    data: DataSource,
    *,
    validation: DataSource | None = None,
    test: DataSource | None = None,
    output_dir: str | os.PathLike | None = None,
    model_name_or_path: str | None = None,
    max_seq_length: int = 128,
    num_folds: int = 5,
    fold_classifier: str | None = None,
    near_duplicate_threshold: float = 0.95,
    write_cleaned: str | os.PathLike | None = None,
    overwrite_output_dir: bool = False,
    seed: int = 42,
    cache_dir: str | os.PathLike | None = None,
    encoding: str = "utf-8",
    **columns: str | None,
) -> AuditResult:
    """Audit a labelled text set: likely label errors, duplicates, leakage, outliers.

    Args:
        data: The training data: a file (``.csv``, ``.tsv``, ``.jsonl``, ``.parquet``), a
            DataFrame, a Dataset, or a built-in set's name (all its splits are audited).
        validation: Optional validation data (as ``data``), checked for leaked training rows.
        test: Optional test data, the same.
        output_dir: Where the report goes; must be empty unless ``overwrite_output_dir``
            (None: a new ``outputs/audit-YYYYmmdd-HHMMSS``).
        encoding: The files' text encoding (``--file_encoding``).
        **columns: ``text_column``, ``text_pair_column``, ``label_column``,
            ``label_separator``, ``problem_type``: as ``nlp-transfer train``'s flags.
        model_name_or_path: The encoder whose features are used (None: the packaged
            all-MiniLM-L6-v2).
        max_seq_length: Tokens read per text for its features (longer texts are counted).
        num_folds: k of the cross-validation that gives out-of-fold probabilities.
        fold_classifier: What gives them: ``logistic_regression`` on the sentence features,
            ``tfidf`` (TF-IDF + logistic regression), ``ensemble`` (the mean of both; minutes
            on a CPU), or ``fine_tuned``: k training runs of the toolkit's defaults (about k
            trainings' time; the runs are kept in ``output_dir/folds``). The last three are
            for single-label data. None: ``ensemble`` for single-label data, else
            ``logistic_regression``.
        near_duplicate_threshold: The cosine at or above which texts are near duplicates.
        write_cleaned: A new file (``.csv``, ``.tsv``, ``.jsonl``, ``.parquet``) for the
            training rows the audit keeps, every column of the source (never changed).
        overwrite_output_dir: Allow a non-empty ``output_dir``.
        seed: Seed of the folds.
        cache_dir: Where features and built-in downloads are kept.

    Returns:
        The findings (:class:`AuditResult`).

    Raises:
        FileExistsError: ``output_dir`` is not empty, or ``write_cleaned`` exists.
        FileNotFoundError: A data file or model path does not exist.
        TypeError: An unknown keyword argument.
        ValueError: Bad data or settings (the message names the flag or column).
    """
    start = time.perf_counter()
    check_audit_settings(num_folds, fold_classifier, near_duplicate_threshold)
    out = check_output_dir(output_dir or new_audit_dir(), overwrite_output_dir)
    cleaned = check_cleaned_path(write_cleaned, (data, validation, test))
    rows = load_audit_data(
        data, validation=validation, test=test, encoding=encoding, cache_dir=cache_dir, **columns
    )
    result = audit_rows(
        rows,
        out,
        model_name_or_path=model_name_or_path,
        max_seq_length=max_seq_length,
        num_folds=num_folds,
        fold_classifier=fold_classifier,
        near_duplicate_threshold=near_duplicate_threshold,
        seed=seed,
        cache_dir=cache_dir,
    )
    if cleaned is not None:
        _write_cleaned(result, cleaned, rows, data, encoding, cache_dir)
    result.summary["seconds"] = round(time.perf_counter() - start, 1)
    (out / "audit.json").write_text(json.dumps(result.summary, indent=2), encoding="utf-8")
    return result


def _write_cleaned(result: AuditResult, path: Path, rows, data, encoding, cache_dir) -> None:
    result.cleaned_file = write_cleaned_file(path, rows, result.suspects, data, encoding, cache_dir)
    result.summary["cleaned"]["file"] = str(path)


def check_audit_settings(num_folds: int, fold_classifier: str | None, threshold: float) -> None:
    """Refuse bad settings before any work.

    Raises:
        ValueError: The message names the flag.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"--near_duplicate_threshold must be in (0, 1], got {threshold}.")
    if num_folds < 2:
        raise ValueError(f"--num_folds must be at least 2, got {num_folds}.")
    if fold_classifier is not None and fold_classifier not in FOLD_CLASSIFIERS:
        raise ValueError(
            f"--fold_classifier must be one of {', '.join(FOLD_CLASSIFIERS)}, "
            f"got {fold_classifier!r}."
        )


def audit_rows(
    rows: AuditData,
    out: Path,
    *,
    model_name_or_path: str | None = None,
    max_seq_length: int = 128,
    num_folds: int = 5,
    fold_classifier: str | None = None,
    near_duplicate_threshold: float = 0.95,
    seed: int = 42,
    cache_dir: str | os.PathLike | None = None,
) -> AuditResult:
    """The audit of rows already read (:func:`audit` after reading; ``train --audit`` on the
    run's own splits): features, label issues, duplicates, outliers; the report in ``out``.

    Raises:
        ValueError: ``fine_tuned`` folds on data that is not single-label.
    """
    start = time.perf_counter()
    fold_classifier = resolve_fold_classifier(fold_classifier, rows.problem_type)
    logger.info(f"Auditing {len(rows.texts):,} rows ({_split_counts(rows)})")
    path, local_only = resolve_model_path(model_name_or_path)
    features = embed_texts(rows.texts, path, max_seq_length=max_seq_length, cache_dir=cache_dir)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    fine_tune = None
    if fold_classifier == "fine_tuned":
        fine_tune = {
            "output_dir": out,
            "model_name_or_path": model_name_or_path,
            "max_seq_length": max_seq_length,
        }
    labels = _label_findings(rows, features, num_folds, seed, fine_tune, fold_classifier)
    duplicates = find_duplicates(
        rows.flat_texts(), rows.splits, rows.labels, features, near_duplicate_threshold
    )
    outliers = _outlier_findings(rows, features, tokenizer, max_seq_length)
    suspects = suspects_table(rows, labels, duplicates, outliers)
    summary = audit_summary(rows, labels, duplicates, outliers, suspects)
    summary["settings"] = {
        "model_name_or_path": model_name_or_path or "all-MiniLM-L6-v2 (packaged)",
        "max_seq_length": max_seq_length,
        "num_folds": num_folds,
        "fold_classifier": fold_classifier,
        "near_duplicate_threshold": near_duplicate_threshold,
        "seed": seed,
    }
    summary["seconds"] = round(time.perf_counter() - start, 1)
    write_audit(out, rows, labels, outliers, suspects, summary)
    return AuditResult(out, summary, suspects)


def new_audit_dir(root: str | os.PathLike = "outputs") -> Path:
    """``root/audit-YYYYmmdd-HHMMSS`` (``-2``, ``-3``... if taken): a directory not there yet."""
    return new_output_dir(root, "audit")


def _split_counts(rows: AuditData) -> str:
    return ", ".join(f"{s} {int(rows.mask(s).sum()):,}" for s in rows.split_names())
