"""Forward passes without gradients: logits of a prepared DataLoader, and their metrics.

Used after every epoch by :class:`~nlp_transfer.training.trainer.Trainer` and for the final test
predictions. ``gather_for_metrics`` collects every process's results, each example once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader

from ..console import progress_bar
from ..metrics.classification import cross_entropy
from .pooling import DOCUMENT_COLUMN, first_of_each, pool_windows

MetricsFn = Callable[[np.ndarray, np.ndarray], dict]
# A batch key that is not a model input: each row's document, when a long text was read as
# several windows (``--long_text_strategy chunks``, :mod:`nlp_transfer.text.windows`).
DOCUMENT_KEY = DOCUMENT_COLUMN
NOT_INPUTS = ("labels", DOCUMENT_KEY)


def forward_logits(model: nn.Module, batch: dict) -> torch.Tensor:
    """Run ``model(**inputs)`` and return logits of shape ``(batch, num_labels)``."""
    inputs = {k: v for k, v in batch.items() if k not in NOT_INPUTS}
    outputs = model(**inputs)
    return outputs.logits if hasattr(outputs, "logits") else outputs


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    dataloader: DataLoader,
    accelerator: Accelerator,
    desc: str = "Evaluating",
    pooling: str = "mean",
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels for every example of a prepared DataLoader, gathered from all processes.

    ``gather_for_metrics`` drops the samples Accelerate duplicates to even out the last batch
    across processes, so each example appears exactly once; results of length-sorted batches
    (:class:`~nlp_transfer.data.samplers.LengthSortedSampler`) are put back in dataset order.
    Batches with a ``document`` key (long texts read as windows) give one row per document:
    its windows' logits pooled (:func:`~nlp_transfer.text.windows.pool_windows`).

    Args:
        pooling: How windows' logits become their document's: ``mean`` or ``max``.

    Returns:
        ``(logits, labels)`` of shapes ``(n, num_labels)`` (float32) and ``(n,)``; ``n``
        examples, or documents when the batches carry ``document``.
    """
    model.eval()
    all_logits, all_labels, all_documents = [], [], []
    for batch in progress_bar(dataloader, desc, enabled=accelerator.is_local_main_process):
        logits = forward_logits(model, batch).float()
        gathered = (logits, batch["labels"])
        if DOCUMENT_KEY in batch:
            gathered += (batch[DOCUMENT_KEY],)
        gathered = accelerator.gather_for_metrics(gathered)
        all_logits.append(gathered[0].cpu())
        all_labels.append(gathered[1].cpu())
        if len(gathered) > 2:
            all_documents.append(gathered[2].cpu())
    logits, labels = torch.cat(all_logits).numpy(), torch.cat(all_labels).numpy()
    documents = torch.cat(all_documents).numpy() if all_documents else None
    order = _sampler_order(dataloader)
    if order is not None and len(order) == len(logits):  # sorted batches: back to dataset order
        restored_logits, restored_labels = np.empty_like(logits), np.empty_like(labels)
        restored_logits[order], restored_labels[order] = logits, labels
        logits, labels = restored_logits, restored_labels
        if documents is not None:
            restored = np.empty_like(documents)
            restored[order] = documents
            documents = restored
    if documents is not None:
        n = int(documents.max()) + 1 if len(documents) else 0
        return pool_windows(logits, documents, n, pooling), first_of_each(labels, documents, n)
    return logits, labels


def prepared(
    accelerator: Accelerator, dataloader: DataLoader | None, default: DataLoader
) -> DataLoader:
    """``dataloader`` prepared by ``accelerator`` unless it is already (an Accelerate one);
    ``default`` when it is None."""
    if dataloader is None:
        return default
    if hasattr(dataloader, "gradient_state"):
        return dataloader
    return accelerator.prepare(dataloader)


def _sampler_order(dataloader) -> np.ndarray | None:
    """The ``order`` of a :class:`~nlp_transfer.data.samplers.LengthSortedSampler` behind a
    (possibly Accelerate-prepared) DataLoader, or None."""
    stack, seen = [dataloader], 0
    while stack and seen < 12:
        obj = stack.pop()
        seen += 1
        if isinstance(getattr(obj, "order", None), np.ndarray):
            return obj.order
        stack += [
            getattr(obj, a)
            for a in ("batch_sampler", "sampler")
            if getattr(obj, a, None) is not None
        ]
    return None


def evaluate(
    model: nn.Module,
    dataloader: DataLoader,
    accelerator: Accelerator,
    compute_metrics: MetricsFn,
    desc: str = "Evaluating",
    pooling: str = "mean",
) -> dict:
    """Evaluate a model: ``compute_metrics(labels, logits)`` plus the mean cross-entropy ``loss``
    (per document when long texts were read as windows: ``pooling`` their logits)."""
    logits, labels = predict_logits(model, dataloader, accelerator, desc, pooling)
    metrics = compute_metrics(labels, logits)
    if "loss" not in metrics:  # multi-label and regression metrics bring their own loss
        metrics["loss"] = cross_entropy(logits, labels)
    return metrics
