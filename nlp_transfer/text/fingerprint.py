"""The training data's fingerprint, saved with a text model for ``nlp-transfer monitor``.

``fingerprint.npz`` beside the model holds what drift detection compares incoming texts with:

- ``features``: the saved model's own encoder features (mean-pooled last hidden states) of a
  random sample of at most :data:`SAMPLE_SIZE` held-out texts of the training data (validation
  and calibration splits: the weights never trained on them, so they are read as new texts from
  the same source are), ``(s, hidden)`` float32, and
  their per-dimension ``feature_mean`` and ``feature_std``, ``(hidden,)``;
- ``validation_confusion``: for single-label models, counts of (predicted, true) label pairs on
  the validation split, ``(C, C)``: what black-box shift estimation inverts (Lipton, Wang &
  Smola 2018); ``train_label_counts``: the training split's label counts, ``(C,)``.

It is computed after the model is saved, from the saved model, so that the monitor reads texts
exactly as the fingerprint was made.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.encode import SINGLE_LABEL
from ..transfer.features import FeatureExtractionClassifier, pool
from .inference import load_classifier, saved_max_seq_length, sorted_batch_logits

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.npz"
SAMPLE_SIZE = 500


def _encoder(model):
    """The encoder under a saved classifier: a feature extractor's own, else the task model's
    ``base_model`` (under a peft wrapper, e.g. prompt tuning, that of the wrapped model: the
    pretrained encoder, without the virtual tokens)."""
    if isinstance(model, FeatureExtractionClassifier):
        return model.encoder
    if hasattr(model, "get_base_model"):  # a peft model
        model = model.get_base_model()
    return model.base_model


@torch.no_grad()
def model_features(model, tokenizer, texts: Sequence, batch_size: int = 64) -> np.ndarray:
    """A saved classifier's encoder features of ``texts``: mean-pooled last hidden states,
    ``(n, hidden)`` float32, in input order (texts cut at the model's saved
    ``max_seq_length``)."""
    encoder = _encoder(model)
    device = next(model.parameters()).device
    hidden_size = model.config.hidden_size

    def run_batch(batch) -> np.ndarray:
        batch = {k: v.to(device) for k, v in batch.items()}
        hidden = encoder(**batch).last_hidden_state
        return pool(hidden, batch["attention_mask"], "mean").float().cpu().numpy()

    max_len = saved_max_seq_length(model.config)
    return sorted_batch_logits(tokenizer, list(texts), run_batch, hidden_size, batch_size, max_len)


def split_texts(split) -> list:
    """A split's texts, ``(text, text_pair)`` tuples for sentence pairs."""
    if "text_pair" in split.column_names:
        return list(zip(split["text"], split["text_pair"], strict=True))
    return list(split["text"])


def write_fingerprint(config, dataset, validation, problem: str, num_labels: int) -> Path:
    """Compute and save ``fingerprint.npz`` of a saved run.

    Args:
        config: The run's settings (``output_dir``: the saved model; ``seed``: of the sample).
        dataset: Its splits (``train`` sampled for the features).
        validation: ``(logits (n, C), labels (n,))`` of the validation split, or None.
        problem: The problem type (the confusion matrix is for single-label models only).
        num_labels: C.

    Returns:
        The file written.
    """
    output_dir = config.output_dir
    model, tokenizer, _ = load_classifier(output_dir, device="cpu")
    train = dataset["train"]
    # texts the weights were not trained on: a trained model reads its own training texts
    # differently from new ones, so they would not be exchangeable with new same-source texts
    held = [dataset[s] for s in ("validation", "calibration") if s in dataset]
    texts = [t for split in held for t in split_texts(split)] or split_texts(train)
    rng = np.random.default_rng(config.seed)
    rows = np.sort(rng.choice(len(texts), size=min(SAMPLE_SIZE, len(texts)), replace=False))
    texts = [texts[i] for i in rows]
    features = model_features(model, tokenizer, texts)
    arrays = {
        "features": features,
        "feature_mean": features.mean(0),
        "feature_std": features.std(0),
    }
    if problem == SINGLE_LABEL:
        labels = np.asarray(train["label"])
        arrays["train_label_counts"] = np.bincount(labels, minlength=num_labels)
        if validation is not None:
            logits, truth = validation
            confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
            np.add.at(confusion, (np.asarray(logits).argmax(1), np.asarray(truth)), 1)
            arrays["validation_confusion"] = confusion
    path = Path(output_dir) / FINGERPRINT_FILE
    np.savez(path, **arrays)
    logger.info(f"Fingerprint of the training data for nlp-transfer monitor: {path}")
    return path


def load_fingerprint(model_dir: str | os.PathLike) -> dict | None:
    """The arrays of ``model_dir/fingerprint.npz``, or None for a model saved without it."""
    path = Path(model_dir) / FINGERPRINT_FILE
    if not path.exists():
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
