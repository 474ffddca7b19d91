"""Prediction and evaluation with a saved model (``output_dir`` of a run, or any HF classifier)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from ..data.custom import read_table
from ..metrics import classification_metrics, cross_entropy, predict_labels, probabilities
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
    return model, tokenizer, decision_threshold(model.config)


def decision_threshold(config) -> float | None:
    """A binary model's decision threshold: ``config.decision_threshold`` saved by training,
    0.5 for other binary models; None for multi-class ones (argmax)."""
    return getattr(config, "decision_threshold", 0.5) if config.num_labels == 2 else None


def check_texts(texts: Sequence) -> bool:
    """Whether ``texts`` are ``(text, text_pair)`` pairs; raise unless every item is a string.

    Raises:
        ValueError: An item (or half of a pair) is not a string.
    """
    pairs = bool(texts) and all(isinstance(t, list | tuple) and len(t) == 2 for t in texts)
    flat = [s for t in texts for s in t] if pairs else texts
    bad = [i for i, t in enumerate(flat) if not isinstance(t, str)]
    if bad:
        raise ValueError(
            f"Texts must be strings (or (text, text_pair) tuples for a sentence-pair model); "
            f"item {bad[0]} is {type(flat[bad[0]]).__name__}."
        )
    return pairs


def sorted_batch_logits(
    tokenizer,
    texts: Sequence,
    run_batch: Callable[[dict], np.ndarray],
    num_labels: int,
    batch_size: int = 64,
    max_seq_length: int = 512,
    tensors: str = "pt",
) -> np.ndarray:
    """Logits ``(n, num_labels)`` of raw texts, by any backend, in input order.

    The texts are tokenized once, batched in order of length (little padding) and the order is
    restored after; ``run_batch`` runs the model on one padded batch.

    Args:
        tokenizer: The model's tokenizer.
        texts: ``n`` strings, or ``(text, text_pair)`` tuples.
        run_batch: Padded batch (``input_ids``, ``attention_mask`` and, for pairs,
            ``token_type_ids``; each ``(batch, seq_len)``) -> logits ``(batch, num_labels)``.
        num_labels: Columns of the logits.
        batch_size: Texts per call of ``run_batch``.
        max_seq_length: Truncation, in tokens (capped by the tokenizer's ``model_max_length``).
        tensors: What the batch holds: ``"pt"`` (torch) or ``"np"`` (numpy) tensors.

    Raises:
        ValueError: A text is not a string.
    """
    texts = list(texts)
    pairs = check_texts(texts)
    max_len = min(
        max_seq_length, getattr(tokenizer, "model_max_length", max_seq_length) or max_seq_length
    )
    first, second = list(zip(*texts, strict=True)) if pairs else (texts, None)
    encoded = tokenizer(list(first), second and list(second), truncation=True, max_length=max_len)
    types = encoded.get("token_type_ids")
    encoded = encoded["input_ids"]
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    out = np.zeros((len(texts), num_labels), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        features = {"input_ids": [encoded[i] for i in idx]}
        if types is not None and pairs:
            features["token_type_ids"] = [types[i] for i in idx]
        out[idx] = run_batch(tokenizer.pad(features, return_tensors=tensors))
    return out


@torch.no_grad()
def predict_logits_for_texts(
    model: PreTrainedModel,
    tokenizer,
    texts: Sequence[str],
    batch_size: int = 64,
    max_seq_length: int = 512,
) -> np.ndarray:
    """Logits ``(n, C)`` of a torch model for raw texts, in input order.

    Texts are batched in order of length (little padding) and the order is restored after
    (:func:`sorted_batch_logits`).
    """
    device = next(model.parameters()).device

    def run_batch(batch) -> np.ndarray:
        batch = {k: v.to(device) for k, v in batch.items()}
        return model(**batch).logits.float().cpu().numpy()

    return sorted_batch_logits(
        tokenizer, texts, run_batch, model.config.num_labels, batch_size, max_seq_length
    )


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
        :func:`~nlp_transfer.metrics.classification_metrics` plus ``loss`` and ``backend``;
        for a backend other than torch also ``torch_accuracy``, ``accuracy_diff_vs_torch``,
        ``torch_<metric>`` and ``<metric>_diff_vs_torch`` for the run's
        ``metric_for_best_model`` (from its ``metrics.json``; ``f1_macro`` without one),
        ``label_agreement_vs_torch`` (fraction of equal predicted labels) and
        ``max_abs_logit_diff_vs_torch``.

    Raises:
        ValueError: A missing column, a label the model does not know, or a model type
            evaluate does not cover.
    """
    import json

    from ..plots import write_report_plots
    from .classifier import TextClassifier  # it builds on this module

    classifier = TextClassifier.from_pretrained(model_dir, backend=backend, quantize=quantize)
    _check_evaluable(model_dir, classifier.config)
    texts, labels = _labelled_texts(data_file, text_column, label_column, classifier.labels)
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
            "and nlp_transfer.metrics_multilabel / metrics_regression on the results."
        )


def _labelled_texts(
    data_file: str | os.PathLike, text_column: str, label_column: str, names: list[str]
) -> tuple[list, np.ndarray]:
    """The texts and label ids ``(n,)`` of a labelled file."""
    table = read_table(data_file)
    for column, flag in ((text_column, "--text_column"), (label_column, "--label_column")):
        if column not in table.column_names:
            raise ValueError(
                f"{data_file} has no column {column!r} (columns: {', '.join(table.column_names)}); pass {flag}."
            )
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
    out["max_abs_logit_diff_vs_torch"] = float(np.abs(logits - torch_logits).max(initial=0.0))
    return out
