"""Prediction and evaluation with a saved model (``output_dir`` of a run, or any HF classifier):
the one-call :func:`predict` and :func:`evaluate_saved_model`, above
:class:`~nlp_transfer.text.classifier.TextClassifier`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.read import read_table
from ..metrics.calibration import calibration_metrics
from ..metrics.classification import (
    classification_metrics,
    cross_entropy,
    predict_labels,
    probabilities,
)
from .classifier import TextClassifier


def predict(
    model_dir: str | os.PathLike,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    device: str | None = None,
) -> list[dict]:
    """Classify texts with a saved model, applying its saved decision threshold and length.

    A one-call wrapper over :meth:`TextClassifier.from_pretrained(model_dir).predict(texts)
    <nlp_transfer.text.classifier.TextClassifier.predict>`; load a ``TextClassifier`` once to
    predict many times.

    Example:
        >>> predict("outputs/spam", ["WINNER!! Claim your prize now", "see you at 6?"])
        [{'label': 'spam', 'score': 0.99, 'scores': {'ham': 0.01, 'spam': 0.99}}, ...]

    Args:
        model_dir: A run's ``output_dir``.
        texts: Texts to classify, length ``n``.
        batch_size: Texts per forward pass.
        device: Torch device; default CUDA when available, else CPU.

    Returns:
        ``n`` dicts: ``label`` (predicted name), ``score`` (its probability) and ``scores``
        (probability of every label); for multi-label and regression models, see
        :meth:`~nlp_transfer.text.classifier.TextClassifier.predict`.

    Raises:
        FileNotFoundError: No saved model in ``model_dir``.
        ValueError: A text is not a string.
    """
    return TextClassifier.from_pretrained(model_dir, device).predict(list(texts), batch_size)


def evaluate_saved_model(
    model_dir: str | os.PathLike,
    data_file: str | os.PathLike,
    *,
    text_column: str = "text",
    label_column: str = "label",
    batch_size: int = 64,
    output_dir: str | os.PathLike | None = None,
    backend: str = "torch",
    quantize: str | None = None,
) -> dict:
    """Evaluate a saved model on a labelled file; optionally write the report and plots.

    Labels may be the model's label names or its label ids. With another backend than torch
    (``onnxruntime``, optionally ``quantize="int8"``), the PyTorch model is evaluated on the same
    texts too, and the differences are reported beside the metrics.

    Args:
        model_dir: A run's ``output_dir``.
        data_file: ``.csv``/``.tsv``/``.jsonl``/``.parquet`` with text and label columns.
        text_column: Column holding the text.
        label_column: Column holding the label.
        batch_size: Texts per forward pass.
        output_dir: If given, ``metrics.json`` and ``plots/`` are written there.
        backend: ``"torch"`` or ``"onnxruntime"`` (see
            :meth:`~nlp_transfer.text.classifier.TextClassifier.from_pretrained`).
        quantize: ``"int8"`` with onnxruntime: the dynamically quantized model.

    Returns:
        :func:`~nlp_transfer.metrics.classification.classification_metrics` plus ``loss`` and ``backend``;
        for a backend other than torch also ``torch_accuracy``, ``accuracy_diff_vs_torch``,
        ``torch_<metric>`` and ``<metric>_diff_vs_torch`` for the run's
        ``metric_for_best_model`` (from its ``metrics.json``; ``f1_macro`` without one),
        ``label_agreement_vs_torch`` (fraction of equal predicted labels),
        ``max_abs_logit_diff_vs_torch`` and ``ece_diff_vs_torch`` (how the expected calibration
        error moves, e.g. after int8 quantization); ``calibration``: ECE (15 bins), Brier score
        and NLL of the probabilities this backend gives.

    Raises:
        ValueError: A missing column, a label the model does not know, or a model type
            evaluate does not cover.
    """
    import json

    from ..reporting.plots import write_report_plots

    classifier = TextClassifier.from_pretrained(model_dir, backend=backend, quantize=quantize)
    _check_evaluable(model_dir, classifier.config)
    texts, labels = labelled_texts(data_file, text_column, label_column, classifier.labels)
    logits = classifier.predict_logits(texts, batch_size)
    metrics = _metrics(labels, logits, classifier)
    metrics["backend"] = backend + (f"-{quantize}" if quantize else "")
    if backend != "torch":
        torch_classifier = TextClassifier.from_pretrained(model_dir)
        torch_logits = torch_classifier.predict_logits(texts, batch_size)
        reference = _metrics(labels, torch_logits, torch_classifier)
        metrics |= _difference(metrics, reference, logits, torch_logits, main_metric(model_dir))
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        write_report_plots(
            out,
            labels,
            logits,
            classifier.labels,
            threshold=classifier.threshold,
            split=Path(data_file).name,
        )
    return metrics


def _check_evaluable(model_dir: str | os.PathLike, config) -> None:
    problem_type = getattr(config, "problem_type", None)
    pairs = getattr(config, "text_pair_column", None)
    if problem_type in ("multi_label_classification", "regression") or pairs:
        raise ValueError(
            f"{model_dir} is a {problem_type} model"
            + (" of sentence pairs" if pairs else "")
            + "; evaluate covers single-texts single-label models. Use predict() on the texts "
            "and nlp_transfer.metrics.multilabel / nlp_transfer.metrics.regression on the results."
        )


def read_labelled_table(data_file: str | os.PathLike, text_column: str, label_column: str):
    """The file as a ``Dataset``, checked to hold both columns.

    Raises:
        ValueError: A missing column (the message names the flag to pass).
    """
    table = read_table(data_file)
    for column, flag in ((text_column, "--text_column"), (label_column, "--label_column")):
        if column not in table.column_names:
            raise ValueError(
                f"{data_file} has no column {column!r} (columns: {', '.join(table.column_names)}); pass {flag}."
            )
    return table


def labelled_texts(
    data_file: str | os.PathLike, text_column: str, label_column: str, names: list[str]
) -> tuple[list, np.ndarray]:
    """The texts and label ids ``(n,)`` of a labelled file (labels as ``names`` or ids).

    Raises:
        ValueError: A missing column (the message names the flag) or an unknown label.
    """
    table = read_labelled_table(data_file, text_column, label_column)
    ids = {name: i for i, name in enumerate(names)} | {str(i): i for i in range(len(names))}
    raw = [str(v) for v in table[label_column]]
    unknown = sorted(set(raw) - set(ids))
    if unknown:
        raise ValueError(
            f"Label(s) {unknown[:5]} in {data_file} are unknown to the model (labels: {names})."
        )
    return list(table[text_column]), np.array([ids[v] for v in raw])


def _metrics(labels: np.ndarray, logits: np.ndarray, classifier) -> dict:
    metrics = classification_metrics(labels, logits, classifier.labels, classifier.threshold)
    metrics["loss"] = cross_entropy(logits, labels)
    metrics["calibration"] = calibration_metrics(logits, labels)  # ECE, Brier, NLL
    return metrics


def main_metric(model_dir: str | os.PathLike) -> str:
    """The run's ``metric_for_best_model`` (its ``metrics.json``), or ``f1_macro``."""
    import json

    path = Path(model_dir) / "metrics.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["metric_for_best_model"]
    except (OSError, ValueError, KeyError, TypeError):
        return "f1_macro"


def _difference(
    metrics: dict, reference: dict, logits: np.ndarray, torch_logits: np.ndarray, main: str
) -> dict:
    """This backend's metrics minus PyTorch's on the same texts, and their agreement."""
    out = {}
    for name in dict.fromkeys(["accuracy", main]):
        if isinstance(metrics.get(name), float | int) and isinstance(
            reference.get(name), float | int
        ):
            out[f"torch_{name}"] = reference[name]
            out[f"{name}_diff_vs_torch"] = metrics[name] - reference[name]
    threshold = metrics.get("decision_threshold")
    same = predict_labels(probabilities(logits), threshold) == predict_labels(
        probabilities(torch_logits), threshold
    )
    out["label_agreement_vs_torch"] = float(np.mean(same)) if len(same) else None
    out["ece_diff_vs_torch"] = metrics["calibration"]["ece"] - reference["calibration"]["ece"]
    out["max_abs_logit_diff_vs_torch"] = float(np.abs(logits - torch_logits).max(initial=0.0))
    return out
