"""Prediction and evaluation with a saved model (``output_dir`` of a run, or any HF classifier)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from ..data.custom import read_table
from ..metrics import classification_metrics, cross_entropy
from ..transfer.adapters import is_adapter_dir, load_adapter_classifier
from ..transfer.features import is_feature_classifier, load_feature_classifier


def load_classifier(model_dir: str | os.PathLike, device: str | None = None):
    """Load a saved classifier, its tokenizer, and its decision threshold (binary tasks).

    A fine-tuned model loads with ``AutoModelForSequenceClassification``; a feature-extraction
    run (``feature_extraction.json`` present) as encoder + pooling + its saved torch or
    scikit-learn head (:func:`~nlp_transfer.transfer.features.load_feature_classifier`); an
    adapter directory (``adapter_config.json``, e.g. ``output_dir/adapter``) as its base model
    with the adapter merged (:func:`~nlp_transfer.transfer.adapters.load_adapter_classifier`).

    Args:
        model_dir: A run's ``output_dir`` (or any local sequence-classification model).
        device: ``"cpu"``, ``"cuda"``...; default: CUDA when available.

    Returns:
        ``(model, tokenizer, threshold)``; ``threshold`` is ``config.decision_threshold`` saved by
        training, 0.5 for other binary models, None for multi-class ones.

    Raises:
        FileNotFoundError: ``model_dir`` has no ``config.json``.
    """
    path = Path(model_dir).expanduser()
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"--model_dir {path}: no saved model there (config.json missing).")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if is_feature_classifier(path):  # feature extraction: encoder + pooling + fitted head
        model = load_feature_classifier(path)
    elif is_adapter_dir(path):  # a peft adapter (output_dir/adapter): base model + adapter
        model = load_adapter_classifier(path)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
    threshold = (
        getattr(model.config, "decision_threshold", 0.5) if model.config.num_labels == 2 else None
    )
    return model, tokenizer, threshold


@torch.no_grad()
def predict_logits_for_texts(
    model: PreTrainedModel,
    tokenizer,
    texts: Sequence[str],
    batch_size: int = 64,
    max_seq_length: int = 512,
) -> np.ndarray:
    """Logits ``(n, C)`` for raw texts, in input order.

    Texts are batched in order of length (little padding) and the order is restored after.
    """
    texts = list(texts)
    pairs = bool(texts) and all(isinstance(t, list | tuple) and len(t) == 2 for t in texts)
    flat = [s for t in texts for s in t] if pairs else texts
    bad = [i for i, t in enumerate(flat) if not isinstance(t, str)]
    if bad:
        raise ValueError(
            f"Texts must be strings (or (text, text_pair) tuples for a sentence-pair model); "
            f"item {bad[0]} is {type(flat[bad[0]]).__name__}."
        )
    max_len = min(
        max_seq_length, getattr(tokenizer, "model_max_length", max_seq_length) or max_seq_length
    )
    first, second = list(zip(*texts, strict=True)) if pairs else (texts, None)
    encoded = tokenizer(list(first), second and list(second), truncation=True, max_length=max_len)
    types = encoded.get("token_type_ids")
    encoded = encoded["input_ids"]
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    device = next(model.parameters()).device
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        features = {"input_ids": [encoded[i] for i in idx]}
        if types is not None and pairs:
            features["token_type_ids"] = [types[i] for i in idx]
        batch = tokenizer.pad(features, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items()}
        out[idx] = model(**batch).logits.float().cpu().numpy()
    return out


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
    from .classifier import TextClassifier  # it builds on this module

    return TextClassifier.from_pretrained(model_dir, device).predict(list(texts), batch_size)


def decode_predictions(logits: np.ndarray, config) -> list[dict]:
    """Multi-label and regression outputs as dicts.

    Multi-label: ``labels`` (names whose sigmoid probability reaches the label's saved
    threshold, ``config.label_thresholds``, default 0.5) and ``scores`` (every label's
    probability). Regression: ``score``, the predicted value (in the targets' units: a
    standardisation was folded into the head when saving).
    """
    if config.problem_type == "regression":
        return [{"score": float(v)} for v in np.reshape(logits, (len(logits), -1))[:, 0]]
    names = [config.id2label[i] for i in range(config.num_labels)]
    thresholds = np.asarray(getattr(config, "label_thresholds", None) or [0.5] * len(names))
    probs = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    return [
        {
            "labels": [n for n, p, t in zip(names, row, thresholds, strict=True) if p >= t],
            "scores": dict(zip(names, map(float, row), strict=True)),
        }
        for row in probs
    ]


def evaluate_saved_model(
    model_dir: str | os.PathLike,
    data_file: str | os.PathLike,
    *,
    text_column: str = "text",
    label_column: str = "label",
    batch_size: int = 64,
    output_dir: str | os.PathLike | None = None,
) -> dict:
    """Evaluate a saved model on a labelled file; optionally write the report and plots.

    Labels may be the model's label names or its label ids.

    Args:
        model_dir: A run's ``output_dir``.
        data_file: ``.csv``/``.tsv``/``.jsonl``/``.parquet`` with text and label columns.
        text_column: Column holding the text.
        label_column: Column holding the label.
        batch_size: Texts per forward pass.
        output_dir: If given, ``metrics.json`` and ``plots/`` are written there.

    Returns:
        :func:`~nlp_transfer.metrics.classification_metrics` plus ``loss``.

    Raises:
        ValueError: A missing column, or a label the model does not know.
    """
    import json

    from ..plots import write_report_plots

    model, tokenizer, threshold = load_classifier(model_dir)
    problem_type = getattr(model.config, "problem_type", None)
    if problem_type in ("multi_label_classification", "regression") or getattr(
        model.config, "text_pair_column", None
    ):
        raise ValueError(
            f"{model_dir} is a {problem_type} model"
            + (" of sentence pairs" if getattr(model.config, "text_pair_column", None) else "")
            + "; evaluate covers single-texts single-label models. Use predict() on the texts "
            "and nlp_transfer.metrics_multilabel / metrics_regression on the results."
        )
    table = read_table(data_file)
    for column, flag in ((text_column, "--text_column"), (label_column, "--label_column")):
        if column not in table.column_names:
            raise ValueError(
                f"{data_file} has no column {column!r} (columns: {', '.join(table.column_names)}); pass {flag}."
            )
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    ids = {name: i for i, name in enumerate(names)} | {str(i): i for i in range(len(names))}
    raw = [str(v) for v in table[label_column]]
    unknown = sorted(set(raw) - set(ids))
    if unknown:
        raise ValueError(
            f"Label(s) {unknown[:5]} in {data_file} are unknown to the model (labels: {names})."
        )
    labels = np.array([ids[v] for v in raw])
    max_len = getattr(model.config, "max_seq_length", None) or 512  # the training run's length
    logits = predict_logits_for_texts(
        model, tokenizer, list(table[text_column]), batch_size, max_len
    )
    metrics = classification_metrics(labels, logits, names, threshold)
    metrics["loss"] = cross_entropy(logits, labels)
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        write_report_plots(
            out, labels, logits, names, threshold=threshold, split=Path(data_file).name
        )
    return metrics
