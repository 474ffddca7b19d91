"""Frozen-prefix caching and feature extraction for ResNets: run the frozen blocks once.

With the stem and the lower ``k`` stages frozen (``--freeze_layers k``) they run in eval mode
(BatchNorm uses its running statistics), so their output for an image never changes, as long
as the image does not (no augmentation). :func:`compute_block_outputs` runs them once over a
split; :class:`CachedPrefixResNet` then trains on those outputs, running only the stages above.
Feature extraction is the extreme case: every block is frozen and the cache holds the pooled
``layer4`` features, one vector per image, on which only a head is fitted.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..training.progress import progress_bar
from .models import ResNetClassifier


class CachedPrefixResNet(nn.Module):
    """A :class:`ResNetClassifier` fed the cached output of its lower ``num_blocks`` blocks.

    ``forward(prefix_features)`` runs blocks ``num_blocks..4``, pooling and ``fc``: the logits
    the whole model gives for the images those features came from. The weights are the
    model's own, so training this trains the model.

    Args:
        model: The classifier, its lower ``num_blocks`` blocks frozen.
        num_blocks: Cached blocks, 1..5 (the stem and ``num_blocks - 1`` stages).
    """

    def __init__(self, model: ResNetClassifier, num_blocks: int):
        super().__init__()
        if not 1 <= num_blocks <= 5:
            raise ValueError(f"Frozen-prefix caching needs 1..5 frozen blocks, got {num_blocks}.")
        self.model = model
        self.num_blocks = num_blocks

    def forward(self, prefix_features: torch.Tensor) -> torch.Tensor:
        """``(batch, C, h, w)`` cached block outputs -> ``(batch, num_labels)`` logits."""
        dtype = self.model.fc.weight.dtype if hasattr(self.model.fc, "weight") else torch.float32
        return self.model.fc(self.model.features(prefix_features.to(dtype), self.num_blocks))


class TensorDictDataset(Dataset):
    """``{name: tensor[i]}`` items from tensors of equal length (a cached split)."""

    def __init__(self, **tensors: torch.Tensor):
        lengths = {len(t) for t in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"Tensors of different lengths: {lengths}.")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {name: tensor[i] for name, tensor in self.tensors.items()}


@torch.no_grad()
def compute_block_outputs(
    model: ResNetClassifier,
    loader: DataLoader,
    accelerator: Accelerator,
    *,
    num_blocks: int,
    pooled: bool = False,
    dtype: torch.dtype = torch.float16,
    desc: str = "Caching frozen blocks",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Output of blocks ``0..num_blocks-1`` (eval mode, no gradients) for every image of ``loader``.

    Every process computes the whole split (the loader is not sharded), so each holds the full
    cache and the cached DataLoader is then sharded like any other.

    Args:
        model: The classifier (on ``accelerator.device``).
        loader: An unprepared, unshuffled DataLoader of normalised ``pixel_values`` batches.
        accelerator: For the device and the progress bar.
        num_blocks: Blocks to run, 1..5.
        pooled: Return the pooled, flattened output of all 5 blocks (feature extraction):
            ``(n, feature_dim)``; ``num_blocks`` must be 5.
        dtype: Storage dtype.
        desc: Progress-bar title.

    Returns:
        ``(outputs (n, C, h, w) or (n, feature_dim), labels (n,))`` on the CPU.
    """
    was_training = model.training
    model.eval()
    outputs, labels = [], []
    for batch in progress_bar(loader, desc, enabled=accelerator.is_local_main_process):
        x = batch["pixel_values"].to(accelerator.device)
        out = model.features(x) if pooled else model.forward_blocks(x, 0, num_blocks)
        outputs.append(out.to("cpu", dtype))
        labels.append(batch["labels"].cpu())
    model.train(was_training)
    return torch.cat(outputs), torch.cat(labels)
