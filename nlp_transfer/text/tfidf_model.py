"""A TF-IDF model saved as an ordinary ``output_dir``: what the strategy race keeps when TF-IDF
wins (:mod:`nlp_transfer.race`).

The fitted scikit-learn ``Pipeline`` (``TfidfVectorizer`` or the pairs' ``PairFeatures``, then
logistic regression, one-vs-rest logistic regression or ridge) is written with skops
(``tfidf.skops``: loading it runs no arbitrary code, unlike pickle) beside a ``config.json``
that holds what prediction needs (labels, problem type, decision thresholds), so that
:class:`~nlp_transfer.text.classifier.TextClassifier`, ``nlp-transfer predict`` and ``evaluate``
load it like a fine-tuned model. Its logits are the log-probabilities (single-label: softmax
gives the probabilities back), the log-odds (multi-label: sigmoid gives them back) or the
predicted value (regression).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import PretrainedConfig

from .inference import check_texts

TFIDF_FILE = "tfidf.skops"
MODEL_TYPE = "nlp_transfer_tfidf"
# Types a saved pipeline may hold: scikit-learn's, numpy's, scipy's and our PairFeatures.
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "nlp_transfer.text.baseline.")


def is_tfidf_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a saved TF-IDF model (``tfidf.skops``)."""
    return (Path(path) / TFIDF_FILE).is_file()


def save_tfidf_model(
    pipeline,
    path: str | os.PathLike,
    labels: Sequence[str],
    problem_type: str,
    *,
    decision_threshold: float | None = None,
    label_thresholds: Sequence[float] | None = None,
) -> Path:
    """Write ``pipeline`` and its ``config.json`` into ``path`` (created).

    Args:
        pipeline: A fitted scikit-learn pipeline with ``predict_proba`` (classification) or
            ``predict`` (regression) on texts (pairs: a DataFrame ``text``, ``text_pair``).
        path: The output directory.
        labels: Label names by id (regression: ``["score"]``).
        problem_type: ``single_label_classification``, ``multi_label_classification`` or
            ``regression``.
        decision_threshold: Binary tasks: the positive label's probability threshold.
        label_thresholds: Multi-label: each label's threshold.

    Returns:
        ``path``.
    """
    import skops.io as sio

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    # Deflated: skops writes the vocabulary as JSON, 350 MB for the ~560,000 n-grams of 4,000
    # news posts. At level 1 that file went from 443 to 71 MB for 2.5 s more to write and 1.9 s
    # more to load (20 Newsgroups race, seed 2, Intel Xeon).
    sio.dump(pipeline, path / TFIDF_FILE, compression=zipfile.ZIP_DEFLATED, compresslevel=1)
    config = {
        "model_type": MODEL_TYPE,
        "problem_type": problem_type,
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
        "num_labels": len(labels),
    }
    if decision_threshold is not None:
        config["decision_threshold"] = float(decision_threshold)
    if label_thresholds is not None:
        config["label_thresholds"] = [float(t) for t in np.ravel(label_thresholds)]
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


class TfidfModel:
    """A loaded TF-IDF pipeline with the logits interface of the other backends.

    Attributes:
        pipeline: The scikit-learn pipeline.
        config: Its ``config.json`` as a ``transformers.PretrainedConfig`` (``id2label``...).
    """

    backend = "tfidf"

    def __init__(self, pipeline, config: PretrainedConfig):
        self.pipeline, self.config = pipeline, config

    def predict_logits(self, texts: Sequence) -> np.ndarray:
        """Logits ``(n, num_labels)`` float32 of ``texts`` (strings or ``(text, pair)`` tuples).

        Raises:
            ValueError: A text is not a string.
        """
        if not len(texts):
            return np.zeros((0, self.config.num_labels), dtype=np.float32)
        pairs = check_texts(texts)
        inputs = pd.DataFrame(list(texts), columns=["text", "text_pair"]) if pairs else list(texts)
        if self.config.problem_type == "regression":
            return np.asarray(self.pipeline.predict(inputs), dtype=np.float32).reshape(-1, 1)
        probs = np.clip(np.asarray(self.pipeline.predict_proba(inputs), np.float64), 1e-12, 1)
        if self.config.problem_type == "multi_label_classification":
            probs = np.clip(probs, None, 1 - 1e-12)
            return np.log(probs / (1 - probs)).astype(np.float32)
        return np.log(probs).astype(np.float32)


def load_tfidf_model(path: str | os.PathLike) -> TfidfModel:
    """Load what :func:`save_tfidf_model` wrote, trusting only scikit-learn, numpy and scipy
    types (and this package's ``PairFeatures``).

    Raises:
        FileNotFoundError: No ``tfidf.skops`` in ``path``.
        skops.io.exceptions.UntrustedTypesFoundException: The file holds other types.
    """
    import skops.io as sio

    path = Path(path)
    file = path / TFIDF_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path} holds no TF-IDF model ({TFIDF_FILE}).")
    untrusted = sio.get_untrusted_types(file=file)
    unsafe = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if unsafe:
        raise sio.exceptions.UntrustedTypesFoundException(unsafe)
    pipeline = sio.load(file, trusted=untrusted)
    saved = json.loads((path / "config.json").read_text(encoding="utf-8"))
    saved.pop("model_type", None)
    return TfidfModel(pipeline, PretrainedConfig(**saved))
