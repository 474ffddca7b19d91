"""New conformal scores for a saved model from labelled texts of the period it now predicts.

Split conformal prediction promises its coverage on texts exchangeable with the rows its scores
came from (the run's calibration split). Texts that drift away from the training period break
the promise, and when what drifts is how labels follow the texts, nothing computed from the
texts alone restores it: on 20 Newsgroups' later posts a classifier can hardly tell them from
the calibration rows, yet the sets cover 3-5 points less than asked, and weighting the scores
by an estimated covariate shift (Tibshirani et al. 2019) does not help
(``docs/benchmarks.md``). What does: scores from a labelled sample of the new period.
:func:`refit_conformal` replaces ``conformal.json`` with the scores of such a sample, keeping
the model, its temperature and every other file as they are (``nlp-transfer refit-conformal``).
New texts exchangeable with that sample then get the guarantee again (Vovk et al. 2005;
Angelopoulos and Bates 2021, section 1).
"""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path

import numpy as np

from ..metrics.conformal import (
    ABSOLUTE_RESIDUAL,
    APS_RANDOMIZED,
    CONFORMAL_FILE,
    MIN_CONFORMAL_ROWS,
    aps_scores,
    example_uniforms,
    residual_scores,
    save_conformal_scores,
)
from .classifier import TextClassifier
from .predict import labelled_texts, read_labelled_table

logger = logging.getLogger(__name__)

FEW_ROWS = 200  # below this, one sample's coverage can be several points off (warned)


def refit_conformal(
    model_dir: str | os.PathLike,
    data_file: str | os.PathLike,
    *,
    text_column: str = "text",
    label_column: str = "label",
    batch_size: int = 64,
) -> dict:
    """Replace a saved model's conformal scores with those of a labelled file.

    The file should be a random sample of the texts the model will predict (e.g. recent texts,
    labelled after ``nlp-transfer monitor`` reported drift), not texts it was trained or
    validated on. The former ``conformal.json`` is kept, renamed with the time of the change.

    Args:
        model_dir: A run's ``output_dir`` (single-label or regression, single texts).
        data_file: ``.csv``/``.tsv``/``.jsonl``/``.parquet`` with text and label columns;
            labels as the model's label names or ids, or values for regression.
        text_column: Column holding the text.
        label_column: Column holding the label (value).
        batch_size: Texts per forward pass.

    Returns:
        ``{"rows", "method", "split", "file", "previous"}``: ``previous`` is where the former
        scores were moved (None when the model had none).

    Raises:
        ValueError: A multi-label or sentence-pair model; a missing column (the message names
            the flag); an unknown label or a non-numeric regression target; fewer than
            :data:`~nlp_transfer.metrics.conformal.MIN_CONFORMAL_ROWS` rows.
        FileNotFoundError: No saved model in ``model_dir`` or no ``data_file``.
    """
    classifier = TextClassifier.from_pretrained(model_dir)
    problem = classifier.problem_type
    if problem == "multi_label_classification" or getattr(
        classifier.config, "text_pair_column", None
    ):
        raise ValueError(
            f"{model_dir}: refit-conformal covers single-label and regression models of single "
            "texts (multi-label models have no prediction sets)."
        )
    if problem == "regression":
        texts, targets = _regression_texts(data_file, text_column, label_column)
        predictions = [r["score"] for r in classifier.predict(texts, batch_size)]
        method, scores = ABSOLUTE_RESIDUAL, residual_scores(targets, np.array(predictions))
    else:
        texts, labels = labelled_texts(data_file, text_column, label_column, classifier.labels)
        probs = classifier.predict_proba(texts, batch_size)
        method, scores = APS_RANDOMIZED, aps_scores(probs, labels, example_uniforms(texts))
    if len(scores) < MIN_CONFORMAL_ROWS:
        raise ValueError(
            f"{data_file} has {len(scores)} labelled rows; conformal scores need at least "
            f"{MIN_CONFORMAL_ROWS} (a few hundred for coverage within a few points)."
        )
    if len(scores) < FEW_ROWS:
        logger.warning(
            f"{len(scores)} rows: the coverage of sets from so few scores can be several points "
            "off the target (a few hundred rows keep it within about 2)."
        )
    previous = _keep_previous(Path(model_dir))
    split = f"file:{Path(data_file).name}"
    save_conformal_scores(model_dir, scores, method, split=split)
    logger.info(
        f"Conformal scores of {model_dir} refitted on {len(scores):,} rows of {data_file} "
        f"({method})" + (f"; the former scores are in {previous}" if previous else "")
    )
    return {
        "rows": len(scores),
        "method": method,
        "split": split,
        "file": str(data_file),
        "previous": None if previous is None else str(previous),
    }


def _regression_texts(data_file, text_column: str, label_column: str):
    table = read_labelled_table(data_file, text_column, label_column)
    try:
        targets = np.asarray(table[label_column], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{data_file}: column {label_column!r} must hold numbers for a regression model."
        ) from exc
    return list(table[text_column]), targets


def _keep_previous(model_dir: Path) -> Path | None:
    """Move ``conformal.json`` aside as ``conformal.<UTC time>.json``; None if there is none."""
    current = model_dir / CONFORMAL_FILE
    if not current.is_file():
        return None
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = model_dir / f"conformal.{stamp}.json"
    current.rename(target)
    return target
