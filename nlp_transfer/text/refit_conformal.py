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
Angelopoulos and Bates 2021, section 1). The abstention threshold of a model trained with
``--abstain_below_precision`` has the same problem (its precision was estimated on the training
period) and is chosen again on the same sample, for the same target precision
(Geifman and El-Yaniv 2017; :mod:`nlp_transfer.metrics.selective`).
"""

from __future__ import annotations

import datetime
import json
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
from ..metrics.selective import select_abstention_threshold, selective_report
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
    abstain_below_precision: float | None = None,
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
        abstain_below_precision: Single-label: choose the abstention threshold again on the
            file, for this target precision (e.g. 0.95). Unset: a model saved with a threshold
            gets it chosen again for the target it was trained with; one without keeps none.

    Returns:
        ``{"rows", "method", "split", "file", "previous", "abstention"}``: ``previous`` is where
        the former scores were moved (None when the model had none); ``abstention`` (None when
        the model abstains on nothing) the new threshold, the former one, the target, and the
        coverage and precision of the threshold on the file (an in-sample estimate).

    Raises:
        ValueError: A multi-label or sentence-pair model; a missing column (the message names
            the flag); an unknown label or a non-numeric regression target; fewer than
            :data:`~nlp_transfer.metrics.conformal.MIN_CONFORMAL_ROWS` rows;
            ``abstain_below_precision`` outside (0, 1] or for a regression model; a saved
            threshold whose target precision the model does not record (pass the flag).
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
    target = abstention_target(classifier.config, problem, abstain_below_precision)
    if problem == "regression":
        texts, targets = _regression_texts(data_file, text_column, label_column)
        predictions = [r["score"] for r in classifier.predict(texts, batch_size)]
        method, scores = ABSOLUTE_RESIDUAL, residual_scores(targets, np.array(predictions))
    else:
        texts, labels = labelled_texts(data_file, text_column, label_column, classifier.labels)
        probs = classifier.predict_proba(texts, batch_size)
        method, scores = APS_RANDOMIZED, aps_scores(probs, labels, example_uniforms(texts))
    _check_rows(len(scores), data_file)
    previous = _keep_previous(Path(model_dir))
    split = f"file:{Path(data_file).name}"
    save_conformal_scores(model_dir, scores, method, split=split)
    abstention = None
    if target is not None:
        abstention = refit_abstention(Path(model_dir), probs, labels, target, split)
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
        "abstention": abstention,
    }


def _check_rows(rows: int, data_file) -> None:
    if rows < MIN_CONFORMAL_ROWS:
        raise ValueError(
            f"{data_file} has {rows} labelled rows; conformal scores need at least "
            f"{MIN_CONFORMAL_ROWS} (a few hundred for coverage within a few points)."
        )
    if rows < FEW_ROWS:
        logger.warning(
            f"{rows} rows: the coverage of sets from so few scores can be several points "
            "off the target (a few hundred rows keep it within about 2)."
        )


def abstention_target(config, problem: str, flag: float | None) -> float | None:
    """The target precision the abstention threshold is chosen for: ``flag``, else the one the
    model was trained with (``config.abstain_below_precision``); None when neither is set and
    the model has no threshold."""
    if flag is not None:
        if problem == "regression":
            raise ValueError(
                "--abstain_below_precision is for single-label models, not regression."
            )
        if not 0.0 < flag <= 1.0:
            raise ValueError(f"--abstain_below_precision must be in (0, 1], got {flag}.")
        return float(flag)
    if getattr(config, "abstain_below", None) is None:
        return None
    saved = getattr(config, "abstain_below_precision", None)
    if saved is None:  # models saved before the target was recorded beside the threshold
        raise ValueError(
            f"This model abstains below confidence {config.abstain_below:.4f} but does not record "
            "the precision it was chosen for; pass --abstain_below_precision (e.g. 0.95) to "
            "choose it again on the file."
        )
    return float(saved)


def refit_abstention(model_dir: Path, probs, labels, target: float, split: str) -> dict:
    """Choose the abstention threshold for ``target`` on ``(probs, labels)`` and save it in
    ``config.json``; the former threshold is appended to ``abstain_below_history``."""
    threshold = select_abstention_threshold(probs, labels, target)
    path = model_dir / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    former = config.get("abstain_below")
    if former is not None:
        config.setdefault("abstain_below_history", []).append(
            {
                "abstain_below": former,
                "abstain_below_precision": config.get("abstain_below_precision"),
                "fitted_on": config.get("abstain_below_fitted_on", "validation"),
                "replaced_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            }
        )
    config |= {
        "abstain_below": threshold,
        "abstain_below_precision": target,
        "abstain_below_fitted_on": split,
    }
    tmp = path.with_name(f".config.{os.getpid()}.json")
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    stat = path.stat()
    os.replace(tmp, path)  # never a half-written config.json
    # the threshold is applied after the network (TextClassifier.decode): an ONNX export stays
    # valid, so config.json keeps its time and is not taken for a change of the weights
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    report = selective_report(probs, labels, threshold)
    precision = "-" if report["precision"] is None else f"{report['precision']:.3f}"
    logger.info(
        f"Abstention below confidence {threshold:.4f} "
        f"({'none before' if former is None else f'was {former:.4f}'}), chosen on {split} for "
        f"precision {target}: there it answers {report['coverage']:.1%} at precision {precision}"
    )
    return {"threshold": threshold, "former": former, "target_precision": target, **report}


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
