"""Feature extraction: a frozen encoder, pooled features computed once, and a head fitted on them.

The encoder runs once over every example (no gradients, eval mode, batches of similar length),
then only the head trains: a torch linear/MLP head through the shared training loop, or any
scikit-learn estimator. The result saves as a directory :func:`load_feature_classifier` (and
therefore :func:`nlp_transfer.predict`) reads back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ..console import progress_bar

POOLING_CHOICES = ("mean", "cls")
FEATURE_CONFIG = "feature_extraction.json"
TORCH_HEAD_FILE = "head.safetensors"
SKLEARN_HEAD_FILE = "head.skops"


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """Pool token states into one vector per text.

    Args:
        hidden: Last hidden states, ``(batch, seq_len, hidden)``.
        attention_mask: ``(batch, seq_len)``, 1 for real tokens, 0 for padding.
        pooling: ``"mean"`` (average over real tokens; what sentence-transformers models such as
            all-MiniLM-L6-v2 were trained for, Reimers & Gurevych 2019) or ``"cls"`` (the
            first token's state, as in BERT's classification setup, Devlin et al. 2019).

    Returns:
        ``(batch, hidden)`` features, in ``hidden``'s dtype.

    Raises:
        ValueError: Unknown ``pooling``.
    """
    if pooling == "cls":
        return hidden[:, 0]
    if pooling != "mean":
        raise ValueError(f"--pooling must be one of {', '.join(POOLING_CHOICES)}, got {pooling!r}.")
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def encoder_of(model: PreTrainedModel) -> PreTrainedModel:
    """The encoder under a Hugging Face task model (``model.bert``, ``model.roberta``...)."""
    return model.base_model


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    dataloader: DataLoader,
    accelerator: Accelerator,
    pooling: str = "mean",
    desc: str = "Extracting features",
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled encoder features of every example of a prepared DataLoader, from all processes.

    The encoder runs in eval mode under ``torch.no_grad`` and the run's mixed precision;
    ``gather_for_metrics`` gives every process every example exactly once, in dataset order.

    Args:
        encoder: A Hugging Face encoder (``last_hidden_state`` output) on ``accelerator.device``.
        dataloader: Prepared DataLoader of tokenized dict batches with ``labels``.
        accelerator: The run's Accelerator.
        pooling: See :func:`pool`.
        desc: Progress-bar title.

    Returns:
        ``(features (n, hidden) float32, labels (n,))``.
    """
    encoder.eval()
    feats, labels = [], []
    for batch in progress_bar(dataloader, desc, enabled=accelerator.is_local_main_process):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        with accelerator.autocast():
            hidden = encoder(**inputs).last_hidden_state
        pooled = pool(hidden, batch["attention_mask"], pooling).float()
        pooled, y = accelerator.gather_for_metrics((pooled, batch["labels"]))
        feats.append(pooled.cpu())
        labels.append(y.cpu())
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


class FeatureDataset(torch.utils.data.Dataset):
    """``{"features": (hidden,) float32, "labels": int}`` items from precomputed features."""

    def __init__(self, features: np.ndarray, labels: np.ndarray):
        self.features = torch.as_tensor(features, dtype=torch.float32)
        self.labels = torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"features": self.features[i], "labels": self.labels[i]}


class FeatureHead(nn.Module):
    """A classification head on pooled features: linear, or a one-hidden-layer MLP.

    ``mlp`` is ``Dropout -> Linear(hidden, hidden) -> GELU -> Dropout -> Linear(hidden, C)``,
    the shape of BERT-style classification heads.

    Args:
        hidden_size: Feature size ``H``.
        num_labels: Classes ``C``.
        kind: ``"linear"`` or ``"mlp"``.
        dropout: Dropout probability before each linear layer (``mlp`` only).

    Raises:
        ValueError: Unknown ``kind``.
    """

    def __init__(self, hidden_size: int, num_labels: int, kind: str = "linear", dropout=0.1):
        super().__init__()
        if kind == "linear":
            self.net = nn.Linear(hidden_size, num_labels)
        elif kind == "mlp":
            self.net = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(hidden_size, hidden_size),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden_size, num_labels),
            )
        else:
            raise ValueError(f"A torch feature head is 'linear' or 'mlp', not {kind!r}.")
        self.kind = kind

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(batch, H)`` features -> ``(batch, C)`` logits."""
        return self.net(features)


def sklearn_logits(estimator: Any, features: np.ndarray) -> np.ndarray:
    """Log-probabilities ``(n, C)`` of a fitted scikit-learn classifier, used as logits.

    Softmax of these gives back ``predict_proba``, so every metric, threshold and plot of the
    library applies unchanged.

    Raises:
        TypeError: The estimator has no ``predict_proba`` (e.g. ``LinearSVC``: wrap it in
            ``CalibratedClassifierCV``).
    """
    if not hasattr(estimator, "predict_proba"):
        raise TypeError(
            f"{type(estimator).__name__} has no predict_proba; feature extraction needs class "
            "probabilities. Wrap it in sklearn.calibration.CalibratedClassifierCV."
        )
    probs = estimator.predict_proba(features)
    return np.log(np.clip(probs, 1e-12, 1.0)).astype(np.float32)


def linear_from_logistic_regression(estimator, num_labels: int) -> torch.nn.Linear:
    """The ``nn.Linear`` whose softmax is a fitted ``LogisticRegression``'s ``predict_proba``.

    Multinomial: ``W = coef_``, ``b = intercept_``. Binary (one row of coefficients ``w``):
    logits ``(0, x.w + b)``, whose softmax is ``(1 - sigmoid(z), sigmoid(z))``. Stored so, the
    head exports to ONNX and quantizes like any linear head.

    Args:
        estimator: A fitted ``sklearn.linear_model.LogisticRegression`` that saw every class.
        num_labels: Classes ``C``.

    Returns:
        ``nn.Linear(dim, C)``.
    """
    coef = torch.as_tensor(estimator.coef_, dtype=torch.float32)
    intercept = torch.as_tensor(estimator.intercept_, dtype=torch.float32)
    if coef.shape[0] == 1 and num_labels == 2:
        coef = torch.cat([torch.zeros_like(coef), coef])
        intercept = torch.cat([torch.zeros_like(intercept), intercept])
    layer = torch.nn.Linear(coef.shape[1], num_labels)
    with torch.no_grad():
        layer.weight.copy_(coef)
        layer.bias.copy_(intercept)
    return layer


def default_sklearn_head(seed: int = 42):
    """The default scikit-learn head: ``LogisticRegression(max_iter=1000)`` (L2, C=1)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000, random_state=seed)


class FeatureExtractionClassifier(nn.Module):
    """A frozen encoder, a pooling and a head, behaving like a sequence classifier.

    ``model(input_ids=..., attention_mask=...)`` returns an object with ``logits``
    ``(batch, num_labels)`` (log-probabilities for a scikit-learn head) and ``model.config`` is
    the encoder's config with ``id2label``/``label2id``, so :mod:`nlp_transfer.predict` treats it
    like any saved classifier.

    Args:
        encoder: The (frozen) encoder.
        head: A :class:`FeatureHead` or a fitted scikit-learn classifier.
        pooling: See :func:`pool`.
    """

    def __init__(self, encoder: PreTrainedModel, head: Any, pooling: str = "mean"):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        if isinstance(head, nn.Module):
            self.head = head
            self.estimator = None
        else:
            self.head = None
            self.estimator = head
        self.config = encoder.config

    def forward(self, input_ids, attention_mask, **kwargs) -> SequenceClassifierOutput:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, **kwargs
        ).last_hidden_state
        features = pool(hidden, attention_mask, self.pooling).float()
        if self.head is not None:
            logits = self.head(features)
        else:
            logits = torch.from_numpy(sklearn_logits(self.estimator, features.cpu().numpy()))
        return SequenceClassifierOutput(logits=logits)

    def save_pretrained(self, path: str | os.PathLike, **kwargs) -> None:
        """Write the encoder (Hugging Face format), the head and ``feature_extraction.json``.

        A torch head goes to ``head.safetensors``; a scikit-learn head to ``head.skops``
        (skops format: loading it runs no arbitrary code, unlike pickle).
        """
        path = Path(path)
        self.encoder.save_pretrained(path, safe_serialization=True)
        spec = {"pooling": self.pooling}
        if self.head is not None:
            save_file(self.head.state_dict(), str(path / TORCH_HEAD_FILE))
            spec |= {"head": self.head.kind, "hidden_size": self.config.hidden_size}
        else:
            import skops.io as sio

            sio.dump(self.estimator, path / SKLEARN_HEAD_FILE)
            spec |= {"head": "sklearn", "estimator": type(self.estimator).__name__}
        (path / FEATURE_CONFIG).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


def is_feature_classifier(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a feature-extraction model (``feature_extraction.json``)."""
    return (Path(path) / FEATURE_CONFIG).exists()


def load_feature_classifier(path: str | os.PathLike) -> FeatureExtractionClassifier:
    """Load what :meth:`FeatureExtractionClassifier.save_pretrained` wrote.

    A scikit-learn head is read with ``skops.io.load``, trusting only the types skops finds in
    the file when they are scikit-learn/numpy types; anything else is refused.

    Raises:
        FileNotFoundError: No ``feature_extraction.json`` in ``path``.
        skops.io.exceptions.UntrustedTypesFoundException: The head file holds types outside
            scikit-learn and numpy.
    """
    path = Path(path)
    spec = json.loads((path / FEATURE_CONFIG).read_text(encoding="utf-8"))
    encoder = AutoModel.from_pretrained(path, local_files_only=True)
    if spec["head"] == "sklearn":
        import skops.io as sio

        file = path / SKLEARN_HEAD_FILE
        untrusted = sio.get_untrusted_types(file=file)
        unsafe = [t for t in untrusted if not t.startswith(("sklearn.", "numpy."))]
        if unsafe:
            raise sio.exceptions.UntrustedTypesFoundException(unsafe)
        head: Any = sio.load(file, trusted=untrusted)
    else:
        head = FeatureHead(spec["hidden_size"], encoder.config.num_labels, spec["head"])
        head.load_state_dict(load_file(str(path / TORCH_HEAD_FILE)))
    return FeatureExtractionClassifier(encoder, head, spec["pooling"]).eval()
