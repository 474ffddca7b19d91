"""A reusable text model: load a run's ``output_dir`` once, predict many times.

    from nlp_transfer import TextClassifier

    classifier = TextClassifier.from_pretrained("outputs/reviews")
    classifier.predict(["great film", "dull"])   # [{'label': 'pos', 'score': 0.97, ...}, ...]

It applies what training saved with the model (``config.json``): the truncation length
(``max_seq_length``), the decision threshold of a binary task (``decision_threshold``), the
isotonic calibration map of a binary task (``calibration.isotonic``) and the problem type.
:func:`nlp_transfer.predict` is a one-call wrapper over it. The model runs in
PyTorch, or exported to ONNX in onnxruntime (``backend="onnxruntime"``, optionally quantized to
int8: :mod:`nlp_transfer.text.onnx_backend`); both decode their logits here, the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..metrics.classification import predict_labels, probabilities
from ..metrics.conformal import add_conformal, load_conformal_scores
from ..metrics.recalibration import map_logits, saved_binary_map
from .inference import call_cost_tokens as cpu_call_cost_tokens
from .inference import (
    decision_threshold,
    decode_predictions,
    load_classifier,
    predict_logits_for_texts,
    saved_max_seq_length,
    sorted_batch_logits,
)
from .onnx_backend import OnnxModel, load_onnx_model
from .tfidf_model import TfidfModel, is_tfidf_model, load_tfidf_model
from .windows import LongTextSettings

SINGLE_LABEL_TYPES = (None, "single_label_classification")


class TextClassifier:
    """A loaded text classifier with its tokenizer, truncation length and decision threshold.

    Attributes:
        model: The ``torch`` model, in eval mode, on its device; for the onnxruntime backend an
            :class:`~nlp_transfer.text.onnx_backend.OnnxModel` (its ``session``, ``onnx_path``).
        config: The saved ``config.json`` (labels, problem type, thresholds).
        tokenizer: Its tokenizer.
        threshold: Binary tasks: predict label id 1 when its probability is >= this; None for
            multi-class tasks (argmax).
        max_seq_length: Texts are truncated to this many tokens (the training run's).
        long_text: How longer texts are read (the training run's ``--long_text_strategy``:
            truncated, head and tail, or windows whose logits are pooled).
        labels: Label names by id.
    """

    def __init__(
        self,
        model,
        tokenizer,
        threshold: float | None,
        max_seq_length: int,
        config=None,
        conformal: dict | None = None,
    ):
        self.model = model
        self.config = config if config is not None else model.config
        self.tokenizer = tokenizer
        self.threshold = threshold
        self.max_seq_length = max_seq_length
        self.labels = [self.config.id2label[i] for i in range(self.config.num_labels)]
        self.long_text = LongTextSettings.of(self.config)
        # method and held-out scores saved by training (conformal.json), for predict(coverage=)
        self.conformal = conformal
        # binary: the isotonic map after the temperature (config.json's calibration.isotonic)
        self.isotonic = saved_binary_map(self.config)

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | os.PathLike,
        device: str | None = None,
        *,
        backend: str = "torch",
        quantize: str | None = None,
        num_threads: int | None = None,
    ) -> TextClassifier:
        """Load a run's ``output_dir`` (or any local sequence-classification model).

        Args:
            model_dir: The directory holding ``config.json``, the weights and the tokenizer.
            device: ``"cpu"``, ``"cuda"``...; default CUDA when available, else CPU (torch).
            backend: ``"torch"``, or ``"onnxruntime"``: ``model_dir/model.onnx``, exported
                once when missing or older than the weights
                (:func:`~nlp_transfer.text.onnx_backend.load_onnx_model`).
            quantize: ``"int8"`` (onnxruntime only): dynamic int8 quantization of the weights,
                ``model_dir/model.int8.onnx``, made once.
            num_threads: onnxruntime's intra-op threads, not spinning (None: its default,
                one per core). Not used by torch, whose threads belong to the whole process
                (set them with ``torch.set_num_threads``).

        Returns:
            The classifier; its predictions have the same form whatever the backend.

        A TF-IDF model (``tfidf.skops``, kept by the strategy race when it won) loads with
        the ``torch`` backend name and runs in scikit-learn.

        Raises:
            FileNotFoundError: ``model_dir`` has no ``config.json``.
            ValueError: An unknown backend, or ``quantize`` without onnxruntime; ONNX for a
                TF-IDF model.
        """
        scores = load_conformal_scores(model_dir)
        if is_tfidf_model(model_dir):
            if backend != "torch" or quantize is not None:
                raise ValueError(
                    f"{model_dir} holds a TF-IDF model (scikit-learn): it has no ONNX or int8 "
                    "backend; leave --backend at torch."
                )
            tfidf = load_tfidf_model(model_dir)
            return cls(tfidf, None, decision_threshold(tfidf.config), 0, tfidf.config, scores)
        if backend != "torch" or quantize is not None:
            onnx_model, config, tokenizer = load_onnx_model(
                model_dir, backend, quantize, device, num_threads
            )
            threshold, max_seq_length = decision_threshold(config), saved_max_seq_length(config)
            return cls(onnx_model, tokenizer, threshold, max_seq_length, config, scores)
        model, tokenizer, threshold = load_classifier(model_dir, device)
        return cls(model, tokenizer, threshold, saved_max_seq_length(model.config), None, scores)

    def predict_logits(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        call_cost_tokens: float | str | None = "auto",
    ) -> np.ndarray:
        """Logits ``(n, num_labels)`` of ``texts``, in input order: the backend's (float32),
        calibrated as training saved (the temperature is in the weights; a binary model with an
        isotonic map gets log-probabilities after it, float64:
        :func:`~nlp_transfer.metrics.recalibration.map_logits`).

        Texts are batched in order of length; on a CPU a batch of very unequal lengths is also
        split where padding would cost more than another forward pass
        (:func:`~nlp_transfer.text.inference.length_batches`; ``call_cost_tokens``: a pass's
        fixed cost in tokens, None: batches of ``batch_size`` only, ``"auto"``: the backend's
        measured cost on the CPU). The logits do not depend on the batching.

        Raises:
            ValueError: A text is not a string.
        """
        logits = self.backend_logits(texts, batch_size, call_cost_tokens)
        return map_logits(logits, self.isotonic)

    def backend_logits(self, texts, batch_size=64, call_cost_tokens="auto") -> np.ndarray:
        """The backend's own logits (float32), before any map: :meth:`predict_logits`."""
        if isinstance(self.model, TfidfModel):
            return self.model.predict_logits(texts)
        if isinstance(self.model, OnnxModel):
            if call_cost_tokens == "auto":
                call_cost_tokens = cpu_call_cost_tokens("onnxruntime")
            return sorted_batch_logits(
                self.tokenizer,
                texts,
                self.model.run_batch,
                self.config.num_labels,
                batch_size,
                self.max_seq_length,
                tensors="np",
                long_text=self.long_text,
                call_cost_tokens=call_cost_tokens,
            )
        return predict_logits_for_texts(
            self.model, self.tokenizer, texts, batch_size, self.max_seq_length, self.long_text,
            call_cost_tokens,
        )  # fmt: skip

    @property
    def backend(self) -> str:
        """``"torch"``, ``"onnxruntime"`` or ``"tfidf"`` (scikit-learn)."""
        return self.model.backend if isinstance(self.model, OnnxModel | TfidfModel) else "torch"

    @property
    def problem_type(self) -> str:
        """``single_label_classification``, ``multi_label_classification`` or ``regression``."""
        return getattr(self.config, "problem_type", None) or "single_label_classification"

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Probabilities ``(n, num_labels)``: softmax of the logits (rows sum to 1), or each
        label's sigmoid for a multi-label model.

        Raises:
            ValueError: A regression model (it has values, not probabilities).
        """
        logits = self.predict_logits(texts, batch_size)
        if self.problem_type == "multi_label_classification":
            return 1.0 / (1.0 + np.exp(-logits))
        if self.problem_type == "regression":
            raise ValueError("A regression model predicts values: use predict().")
        return probabilities(logits)

    def predict(
        self, texts: Sequence[str] | str, batch_size: int = 64, coverage: float | None = None
    ) -> list[dict] | dict:
        """Predict for texts, applying what training saved (threshold(s), target scaling).

        Args:
            texts: ``n`` texts, or ``(text, text_pair)`` tuples for a sentence-pair model; or
                one string (then one dict is returned).
            batch_size: Texts per forward pass (memory, not results).
            coverage: E.g. 0.9: add a conformal ``prediction_set`` (single-label: label names,
                most probable first; empty where the target is below what the top label alone
                covers) or ``interval`` (regression: ``[low, high]``) that holds the truth with
                at least this probability (:mod:`~nlp_transfer.metrics.conformal`, from the
                scores saved in ``conformal.json``; a text gets the same set in every backend).

        Returns:
            One dict per text. Single-label: ``label`` (predicted name), ``score`` (its
            probability) and ``scores`` (probability of every label). Multi-label: ``labels``
            (names at or above their threshold) and ``scores``. Regression: ``score`` (the
            predicted value, in the targets' units).

        Raises:
            ValueError: A text is not a string; ``coverage`` outside (0, 1), for a multi-label
                model, or for a model saved without conformal scores.
        """
        if isinstance(texts, str):
            return self.predict([texts], batch_size, coverage)[0]
        if coverage is not None:
            self.check_coverage(coverage)
        results = self.decode(self.predict_logits(texts, batch_size))
        if coverage is not None:
            add_conformal(results, self.conformal, coverage, self.labels, texts)
        return results

    def check_coverage(self, coverage: float) -> None:
        """Raise ValueError unless this model can give prediction sets at ``coverage``."""
        if self.problem_type == "multi_label_classification":
            raise ValueError(
                "--coverage: prediction sets are for single-label and regression models."
            )
        if self.conformal is None:
            raise ValueError(
                "--coverage: this model was saved without conformal scores (conformal.json); "
                "train it again with this version to get prediction sets."
            )
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"--coverage must be in (0, 1), got {coverage}.")

    def decode(self, logits: np.ndarray) -> list[dict]:
        """The dicts :meth:`predict` returns, from logits ``(n, num_labels)`` of any backend."""
        if self.problem_type != "single_label_classification":
            return decode_predictions(logits, self.config)
        probs = probabilities(logits)
        preds = predict_labels(probs, self.threshold)
        results = [
            {
                "label": self.labels[p],
                "score": float(row[p]),
                "scores": dict(zip(self.labels, map(float, row), strict=True)),
            }
            for p, row in zip(preds, probs, strict=True)
        ]
        abstain_below = getattr(self.config, "abstain_below", None)
        if abstain_below is not None:  # --abstain_below_precision: flag the unsure ones
            for r, row in zip(results, probs, strict=True):
                r["abstain"] = bool(row.max() < abstain_below)
        return results

    def __repr__(self) -> str:
        threshold = "" if self.threshold is None else f", threshold={self.threshold:.4f}"
        backend = "" if self.backend == "torch" else f", backend={self.backend!r}"
        return (
            f"{type(self).__name__}(labels={self.labels}, max_seq_length={self.max_seq_length}"
            f"{threshold}{backend})"
        )
