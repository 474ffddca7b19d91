"""The inference core under every text backend: load a saved model, tokenize and batch texts
by length, turn logits into predictions.

:class:`~nlp_transfer.text.classifier.TextClassifier` builds on it (torch, and the onnxruntime
backend of :mod:`~nlp_transfer.text.onnx_backend`), and the ``predict``/``evaluate`` functions of
:mod:`~nlp_transfer.text.predict` build on ``TextClassifier``. Nothing here imports either.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from ..training.pooling import pool_windows
from ..transfer.adapters import is_adapter_dir, load_adapter_classifier
from ..transfer.features import is_feature_classifier, load_feature_classifier
from .windows import TRUNCATE, LongTextSettings, encode_documents

# Truncation for models saved before max_seq_length travelled with them (capped by the
# tokenizer's model_max_length): what prediction always used.
FALLBACK_MAX_SEQ_LENGTH = 512


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


# A forward pass's fixed cost on a CPU, in tokens of work (texts x padded length), by backend:
# fitted by benchmarks/length_batches.py to the forward times of the default model
# (all-MiniLM-L6-v2; float32 torch 69 tokens, onnxruntime int8 23) on a 2-core Intel Xeon
# (results/length_batches.md). A larger model costs more per token, so for it these split less
# than they could; on a GPU a pass's fixed cost dwarfs padding: no split there.
CPU_CALL_COST_TOKENS = {"torch": 69.0, "onnxruntime": 23.0}


def call_cost_tokens(backend: str, device: str = "cpu") -> float | None:
    """The ``call_cost_tokens`` of :func:`length_batches` for ``backend`` (``torch``,
    ``onnxruntime``) on ``device``; None (no split by length) off the CPU."""
    return CPU_CALL_COST_TOKENS.get(backend) if device == "cpu" else None


def length_batches(
    lengths: Sequence[int], batch_size: int, call_cost_tokens: float | None = None
) -> list[slice]:
    """Consecutive batches of texts sorted by length (shortest first).

    With ``call_cost_tokens`` None, batches of ``batch_size``. Otherwise the split that
    minimises the work of the whole set, each batch costing its padded tokens (texts x the
    longest) plus ``call_cost_tokens`` (a forward pass's fixed cost, in tokens): where lengths
    differ, as in a server's batch of unrelated requests, shorter texts stop being padded to the
    longest one's length (dynamic programming over the split points, at most ``batch_size``
    texts a batch).

    Args:
        lengths: Token counts, ascending.
        batch_size: Texts per batch at most.
        call_cost_tokens: The fixed cost of one forward pass, in tokens of work; None: no
            splitting by length.

    Returns:
        Slices into ``lengths`` covering it in order.
    """
    n = len(lengths)
    if call_cost_tokens is None or n <= 1:
        return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    longest = np.asarray(lengths, dtype=np.float64)
    best, start = np.zeros(n + 1), np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):  # best[end]: the cheapest split of the first `end` texts
        first = np.arange(max(0, end - batch_size), end)
        cost = best[first] + call_cost_tokens + (end - first) * longest[end - 1]
        pick = int(np.argmin(cost))
        best[end], start[end] = cost[pick], first[pick]
    cuts, end = [], n
    while end > 0:
        cuts.append(slice(int(start[end]), end))
        end = int(start[end])
    return cuts[::-1]


def sorted_batch_logits(
    tokenizer,
    texts: Sequence,
    run_batch: Callable[[dict], np.ndarray],
    num_labels: int,
    batch_size: int = 64,
    max_seq_length: int = 512,
    tensors: str = "pt",
    long_text: LongTextSettings | None = None,
    call_cost_tokens: float | None = None,
) -> np.ndarray:
    """Logits ``(n, num_labels)`` of raw texts, by any backend, in input order.

    The texts are tokenized once, batched in order of length (little padding) and the order is
    restored after; ``run_batch`` runs the model on one padded batch. A text longer than
    ``max_seq_length`` tokens is read as ``long_text`` says, as in training
    (:mod:`~nlp_transfer.text.windows`): with ``chunks``, its windows' logits are pooled.

    Args:
        tokenizer: The model's tokenizer.
        texts: ``n`` strings, or ``(text, text_pair)`` tuples.
        run_batch: Padded batch (``input_ids``, ``attention_mask`` and, for pairs,
            ``token_type_ids``; each ``(batch, seq_len)``) -> logits ``(batch, num_labels)``.
        num_labels: Columns of the logits.
        batch_size: Texts per call of ``run_batch``.
        max_seq_length: Truncation, in tokens (capped by the tokenizer's ``model_max_length``).
        tensors: What the batch holds: ``"pt"`` (torch) or ``"np"`` (numpy) tensors.
        long_text: How longer texts are read (the saved model's settings); None: truncated.
        call_cost_tokens: Split by length too (:func:`length_batches`); None: batches of
            ``batch_size`` in length order.

    Raises:
        ValueError: A text is not a string.
    """
    texts = list(texts)
    pairs = check_texts(texts)
    max_len = min(
        max_seq_length, getattr(tokenizer, "model_max_length", max_seq_length) or max_seq_length
    )
    first, second = list(zip(*texts, strict=True)) if pairs else (texts, None)
    long_text = long_text or LongTextSettings()
    if long_text.strategy == TRUNCATE:
        encoded = tokenizer(
            list(first), second and list(second), truncation=True, max_length=max_len
        )
        document = None
    else:
        encoded, document, _ = encode_documents(
            tokenizer, list(first), second and list(second), max_len, long_text
        )
    types = encoded.get("token_type_ids")
    encoded = encoded["input_ids"]
    lengths = np.asarray([len(ids) for ids in encoded])
    order = np.argsort(lengths, kind="stable")
    out = np.zeros((len(encoded), num_labels), dtype=np.float32)
    for part in length_batches(lengths[order], batch_size, call_cost_tokens):
        idx = order[part]
        features = {"input_ids": [encoded[i] for i in idx]}
        if types is not None and pairs:
            features["token_type_ids"] = [types[i] for i in idx]
        out[idx] = run_batch(tokenizer.pad(features, return_tensors=tensors))
    if document is not None and long_text.windowed:
        return pool_windows(out, np.asarray(document), len(texts), long_text.pooling)
    return out


@torch.no_grad()
def predict_logits_for_texts(
    model: PreTrainedModel,
    tokenizer,
    texts: Sequence[str],
    batch_size: int = 64,
    max_seq_length: int = 512,
    long_text: LongTextSettings | None = None,
    call_cost: float | str | None = "auto",
) -> np.ndarray:
    """Logits ``(n, C)`` of a torch model for raw texts, in input order.

    Texts are batched in order of length (little padding) and the order is restored after
    (:func:`sorted_batch_logits`); longer texts are read as ``long_text`` says. ``call_cost``:
    :func:`length_batches`' ``call_cost_tokens``; ``"auto"``: :func:`call_cost_tokens` for the
    model's device.
    """
    device = next(model.parameters()).device
    if call_cost == "auto":
        call_cost = call_cost_tokens("torch", device.type)

    def run_batch(batch) -> np.ndarray:
        batch = {k: v.to(device) for k, v in batch.items()}
        return model(**batch).logits.float().cpu().numpy()

    return sorted_batch_logits(
        tokenizer,
        texts,
        run_batch,
        model.config.num_labels,
        batch_size,
        max_seq_length,
        long_text=long_text,
        call_cost_tokens=call_cost,
    )


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


def saved_max_seq_length(config) -> int:
    """The training run's truncation length saved in ``config.json``, or the fallback (512)."""
    return getattr(config, "max_seq_length", None) or FALLBACK_MAX_SEQ_LENGTH
