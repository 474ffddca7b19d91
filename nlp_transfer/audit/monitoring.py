"""``nlp-transfer monitor``: has the incoming text drifted away from the training data?

The saved model's fingerprint (:mod:`nlp_transfer.text.fingerprint`: its encoder's features of
a training sample, the validation confusion matrix) is compared with the same model's reading of
the incoming texts (:mod:`.drift`): an MMD test with a permutation p-value, a domain
classifier's AUC, black-box shift estimation of the label priors, and the incoming texts least
like any training text. The verdict is "drift" when the MMD test rejects at ``alpha``; the
report then gives the domain-adaptation command that trains on the training data with the new
texts as the unlabelled target domain.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from pathlib import Path

import numpy as np
import yaml

from ..data.encode import SINGLE_LABEL
from ..data.read import DataSource, to_table
from ..metrics.conformal import CONFORMAL_FILE
from ..metrics.recalibration import map_logits, saved_binary_map
from ..text.fingerprint import load_fingerprint, model_features
from ..text.inference import load_classifier, predict_logits_for_texts
from .drift import black_box_shift, domain_classifier_auc, mmd_test
from .outliers import ood_scores

logger = logging.getLogger(__name__)

SHOWN_TEXTS = 10


def _incoming(file, text_column: str, text_pair_column: str | None, encoding: str) -> list:
    table = to_table(file, "--file", encoding)
    columns = list(getattr(table, "column_names", None) or table.columns)
    for column, flag in ((text_column, "--text_column"), (text_pair_column, "--text_pair_column")):
        if column is not None and column not in columns:
            raise ValueError(
                f"{file}: no column {column!r} ({flag}); the columns are {', '.join(columns)}."
            )
    texts = list(table[text_column])
    if text_pair_column is not None:
        texts = list(zip(texts, table[text_pair_column], strict=True))
    present = lambda t: isinstance(t, str) and bool(t.strip())  # noqa: E731
    return [t for t in texts if (present(t) if isinstance(t, str) else all(map(present, t)))]


def _advice(model_dir: Path, file, text_column: str) -> str:
    """The domain-adaptation command for the drifted texts, from the run's config.yaml."""
    settings = {}
    config = model_dir / "config.yaml"
    if config.exists():
        settings = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    if settings.get("train_file"):
        source = ["--source_file", str(settings["train_file"])]
    else:
        source = ["--source_dataset", str(settings.get("dataset_name") or "YOUR_TRAINING_DATA")]
    command = [
        "nlp-transfer", "train", "--task", "domain_adaptation", *source,
        "--target_train_file", str(file), "--text_column", text_column,
        "--methods", "source_only,dann,coral,mmd",
    ]  # fmt: skip
    return shlex.join(command)


def _refit_advice(model_dir: Path) -> str | None:
    """The ``refit-conformal`` command for a model with prediction sets (their coverage, and an
    abstention threshold's precision, were measured on the training period)."""
    if not (model_dir / CONFORMAL_FILE).is_file():
        return None
    return shlex.join(
        ["nlp-transfer", "refit-conformal", "--model_dir", str(model_dir), "--file",
         "LABELLED_SAMPLE_OF_NEW_TEXTS.csv"]
    )  # fmt: skip


def _label_shift(model, tokenizer, texts: list, fingerprint: dict) -> dict | None:
    """Black-box shift estimation for a single-label model saved with its validation confusion
    matrix; None otherwise."""
    problem = getattr(model.config, "problem_type", SINGLE_LABEL)
    if problem != SINGLE_LABEL or "validation_confusion" not in fingerprint:
        return None
    # as TextClassifier predicts (a binary model's isotonic map can move labels across 0.5)
    logits = map_logits(
        predict_logits_for_texts(model, tokenizer, texts), saved_binary_map(model.config)
    )
    shift = black_box_shift(fingerprint["validation_confusion"], logits.argmax(1))
    return {"labels": [model.config.id2label[i] for i in range(len(shift["weights"]))]} | shift


def _least_typical(reference: np.ndarray, new: np.ndarray, texts: list) -> list[dict]:
    """The :data:`SHOWN_TEXTS` incoming texts with the lowest out-of-distribution score against
    the training sample (cleanlab's, on unit vectors, as the audit's outliers)."""
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    _, scores = ood_scores(unit(reference), unit(new))
    return [
        {
            "text": texts[i] if isinstance(texts[i], str) else "\t".join(texts[i]),
            "score": round(float(scores[i]), 4),
        }
        for i in np.argsort(scores)[:SHOWN_TEXTS]
    ]


def _mean_shift(fingerprint: dict, new: np.ndarray) -> float:
    """The mean over feature dimensions of ``|new mean - training mean| / training std``: how
    many training standard deviations the incoming features moved, on average."""
    mean = fingerprint.get("feature_mean", fingerprint["features"].mean(0))
    std = fingerprint.get("feature_std", fingerprint["features"].std(0))
    return round(float((np.abs(new.mean(0) - mean) / np.maximum(std, 1e-6)).mean()), 4)


def monitor(
    model_dir: str | os.PathLike,
    file: DataSource,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    max_texts: int = 1000,
    alpha: float = 0.05,
    num_permutations: int = 500,
    seed: int = 0,
    encoding: str = "utf-8",
    output_file: str | os.PathLike | None = None,
) -> dict:
    """Compare incoming texts with a saved model's training data.

    Args:
        model_dir: A text run's ``output_dir`` saved with ``fingerprint.npz``.
        file: The incoming texts: a file (``.csv``, ``.tsv``, ``.jsonl``, ``.parquet``), a
            DataFrame or a Dataset (labels, if any, are not read).
        text_column: The column of the texts.
        text_pair_column: The column of the second texts of sentence pairs, or None.
        max_texts: Compare a random sample of at most this many incoming texts.
        alpha: The MMD test's level: drift when its p-value is below it.
        num_permutations: Permutations of the MMD test.
        seed: Seed of the sample and the permutations.
        encoding: The file's text encoding.
        output_file: Also write the report as JSON there (never over an existing file).

    Returns:
        ``{"verdict": "drift" | "no drift", "mmd", "domain_classifier_auc", "mean_shift"
        (the mean standardised shift of the feature means), "label_shift"
        (single-label; else None), "most_out_of_distribution": [{"text", "score"}],
        "num_texts", "advice", "refit_advice"}``: on drift, ``advice`` the domain-adaptation
        command and ``refit_advice`` (models with prediction sets) the ``refit-conformal``
        command for a labelled sample of the new texts; else both None.

    Raises:
        FileNotFoundError: No model or file there, or a model saved without a fingerprint.
        FileExistsError: ``output_file`` exists.
        ValueError: A missing column, ``alpha`` outside (0, 1) or fewer than 2 texts.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"--alpha must be in (0, 1), got {alpha}.")
    if output_file is not None and Path(output_file).exists():
        raise FileExistsError(f"--output_file {output_file} exists; name a new file.")
    model_dir = Path(model_dir).expanduser()
    fingerprint = load_fingerprint(model_dir)
    if fingerprint is None:
        raise FileNotFoundError(
            f"--model_dir {model_dir} has no fingerprint.npz (models trained before "
            "nlp-transfer monitor existed): train it again to save one."
        )
    texts = _incoming(file, text_column, text_pair_column, encoding)
    if len(texts) < 2:
        raise ValueError(f"{file}: the monitor needs at least 2 texts, got {len(texts)}.")
    rng = np.random.default_rng(seed)
    if len(texts) > max_texts:
        texts = [texts[i] for i in np.sort(rng.choice(len(texts), max_texts, replace=False))]
    model, tokenizer, _ = load_classifier(model_dir)
    new = model_features(model, tokenizer, texts)
    reference = fingerprint["features"]
    report = {
        "num_texts": len(texts),
        "num_reference_texts": len(reference),
        "mmd": mmd_test(reference, new, num_permutations=num_permutations, seed=seed),
        "domain_classifier_auc": round(domain_classifier_auc(reference, new, seed=seed), 4),
        "mean_shift": _mean_shift(fingerprint, new),
    }
    report["label_shift"] = _label_shift(model, tokenizer, texts, fingerprint)
    report["verdict"] = "drift" if report["mmd"]["p_value"] < alpha else "no drift"
    report["alpha"] = alpha
    report["most_out_of_distribution"] = _least_typical(reference, new, texts)
    drift = report["verdict"] == "drift"
    report["advice"] = _advice(model_dir, file, text_column) if drift else None
    report["refit_advice"] = _refit_advice(model_dir) if drift else None
    if output_file is not None:
        Path(output_file).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def format_monitor_report(report: dict) -> str:
    """The lines ``nlp-transfer monitor`` prints."""
    mmd = report["mmd"]
    lines = [
        f"Verdict: {report['verdict']} ({report['num_texts']:,} incoming texts vs "
        f"{report['num_reference_texts']:,} training texts)",
        f"  MMD^2 {mmd['mmd2']:.5f}, permutation p-value {mmd['p_value']:.4f} "
        f"(alpha {report['alpha']})",
        f"  domain classifier AUC {report['domain_classifier_auc']:.3f} (0.5: indistinguishable); "
        f"feature means moved {report['mean_shift']:.3f} training std on average",
    ]
    shift = report["label_shift"]
    if shift is not None:
        priors = ", ".join(
            f"{name} {p:.2f} -> {q:.2f}"
            for name, p, q in zip(
                shift["labels"], shift["validation_priors"], shift["estimated_priors"], strict=True
            )
        )
        lines.append(f"  label priors (black-box shift estimation): {priors}")
    lines.append("  least like the training texts:")
    for item in report["most_out_of_distribution"][:5]:
        text = " ".join(item["text"].split())
        lines.append(f"    {item['score']:.3f}  {text[:90]}")
    if report["advice"]:
        lines.append(f"  to adapt the model to the new texts: {report['advice']}")
    if report.get("refit_advice"):
        lines.append(
            "  its prediction sets (and abstention threshold) were fitted on the training "
            f"period; label a random sample of new texts and run: {report['refit_advice']}"
        )
    return "\n".join(lines)
