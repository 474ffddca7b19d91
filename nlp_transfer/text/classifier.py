"""A reusable text model: load a run's ``output_dir`` once, predict many times.

    from nlp_transfer import TextClassifier

    classifier = TextClassifier.from_pretrained("outputs/reviews")
    classifier.predict(["great film", "dull"])   # [{'label': 'pos', 'score': 0.97, ...}, ...]

It applies what training saved with the model (``config.json``): the truncation length
(``max_seq_length``), the decision threshold of a binary task (``decision_threshold``) and the
problem type. :func:`nlp_transfer.predict` is a one-call wrapper over it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..metrics import predict_labels, probabilities
from .predict import load_classifier, predict_logits_for_texts

# Truncation for models saved before max_seq_length travelled with them (capped by the
# tokenizer's model_max_length): what prediction always used.
FALLBACK_MAX_SEQ_LENGTH = 512
SUPPORTED_PROBLEM_TYPES = (None, "single_label_classification")


class TextClassifier:
    """A loaded text classifier with its tokenizer, truncation length and decision threshold.

    Attributes:
        model: The ``torch`` model, in eval mode, on its device.
        tokenizer: Its tokenizer.
        threshold: Binary tasks: predict label id 1 when its probability is >= this; None for
            multi-class tasks (argmax).
        max_seq_length: Texts are truncated to this many tokens (the training run's).
        labels: Label names by id.
    """

    def __init__(self, model, tokenizer, threshold: float | None, max_seq_length: int):
        self.model = model
        self.tokenizer = tokenizer
        self.threshold = threshold
        self.max_seq_length = max_seq_length
        config = model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]

    @classmethod
    def from_pretrained(
        cls, model_dir: str | os.PathLike, device: str | None = None
    ) -> TextClassifier:
        """Load a run's ``output_dir`` (or any local sequence-classification model).

        Args:
            model_dir: The directory holding ``config.json``, the weights and the tokenizer.
            device: ``"cpu"``, ``"cuda"``...; default CUDA when available, else CPU.

        Returns:
            The classifier.

        Raises:
            FileNotFoundError: ``model_dir`` has no ``config.json``.
            NotImplementedError: The model's ``problem_type`` is not single-label
                classification (multi-label and regression models are not supported yet).
        """
        model, tokenizer, threshold = load_classifier(model_dir, device)
        problem_type = getattr(model.config, "problem_type", None)
        if problem_type not in SUPPORTED_PROBLEM_TYPES:
            raise NotImplementedError(
                f"{model_dir}: problem_type {problem_type!r} is not supported by "
                "TextClassifier yet (single-label classification only); load the model with "
                "transformers.AutoModelForSequenceClassification and read its logits."
            )
        max_len = getattr(model.config, "max_seq_length", None) or FALLBACK_MAX_SEQ_LENGTH
        return cls(model, tokenizer, threshold, max_len)

    def predict_logits(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Logits ``(n, num_labels)`` of ``texts``, in input order (float32).

        Raises:
            ValueError: A text is not a string.
        """
        return predict_logits_for_texts(
            self.model, self.tokenizer, texts, batch_size, self.max_seq_length
        )

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities ``(n, num_labels)`` (softmax of the logits), rows sum to 1."""
        return probabilities(self.predict_logits(texts, batch_size))

    def predict(self, texts: Sequence[str] | str, batch_size: int = 64) -> list[dict] | dict:
        """Classify texts, applying the saved decision threshold of a binary task.

        Args:
            texts: ``n`` texts; or one string (then one dict is returned).
            batch_size: Texts per forward pass (memory, not results).

        Returns:
            One dict per text: ``label`` (predicted name), ``score`` (its probability) and
            ``scores`` (probability of every label).

        Raises:
            ValueError: A text is not a string.
        """
        if isinstance(texts, str):
            return self.predict([texts], batch_size)[0]
        probs = self.predict_proba(texts, batch_size)
        preds = predict_labels(probs, self.threshold)
        return [
            {
                "label": self.labels[p],
                "score": float(row[p]),
                "scores": dict(zip(self.labels, map(float, row), strict=True)),
            }
            for p, row in zip(preds, probs, strict=True)
        ]

    def __repr__(self) -> str:
        threshold = "" if self.threshold is None else f", threshold={self.threshold:.4f}"
        return (
            f"TextClassifier(labels={self.labels}, max_seq_length={self.max_seq_length}{threshold})"
        )
