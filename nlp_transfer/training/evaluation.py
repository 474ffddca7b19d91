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

MetricsFn = Callable[[np.ndarray, np.ndarray], dict]


def forward_logits(model: nn.Module, batch: dict) -> torch.Tensor:
    """Run ``model(**inputs)`` and return logits of shape ``(batch, num_labels)``."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    outputs = model(**inputs)
    return outputs.logits if hasattr(outputs, "logits") else outputs


@torch.no_grad()
def predict_logits(
    model: nn.Module, dataloader: DataLoader, accelerator: Accelerator, desc: str = "Evaluating"
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels for every example of a prepared DataLoader, gathered from all processes.

    ``gather_for_metrics`` drops the samples Accelerate duplicates to even out the last batch
    across processes, so each example appears exactly once; results of length-sorted batches
    (:class:`~nlp_transfer.data.samplers.LengthSortedSampler`) are put back in dataset order.

    Returns:
        ``(logits, labels)`` of shapes ``(n, num_labels)`` (float32) and ``(n,)``.
    """
    model.eval()
    all_logits, all_labels = [], []
    for batch in progress_bar(dataloader, desc, enabled=accelerator.is_local_main_process):
        logits = forward_logits(model, batch).float()
        logits, labels = accelerator.gather_for_metrics((logits, batch["labels"]))
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
    logits, labels = torch.cat(all_logits).numpy(), torch.cat(all_labels).numpy()
    order = _sampler_order(dataloader)
    if order is not None and len(order) == len(logits):  # sorted batches: back to dataset order
        restored_logits, restored_labels = np.empty_like(logits), np.empty_like(labels)
        restored_logits[order], restored_labels[order] = logits, labels
        return restored_logits, restored_labels
    return logits, labels


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
) -> dict:
    """Evaluate a model: ``compute_metrics(labels, logits)`` plus the mean cross-entropy ``loss``."""
    logits, labels = predict_logits(model, dataloader, accelerator, desc)
    metrics = compute_metrics(labels, logits)
    if "loss" not in metrics:  # multi-label and regression metrics bring their own loss
        metrics["loss"] = cross_entropy(logits, labels)
    return metrics
