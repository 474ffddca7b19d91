"""Frozen-prefix caching and feature extraction for ResNets: run the frozen blocks once.

With the stem and the lower ``k`` stages frozen (``--freeze_layers k``) they run in eval mode
(BatchNorm uses its running statistics), so their output for an image never changes, as long
as the image does not (no augmentation). :func:`compute_block_outputs` runs them once over a
split; :class:`CachedPrefixResNet` then trains on those outputs, running only the stages above.
Feature extraction is the extreme case: every block is frozen and the cache holds the pooled
``layer4`` features, one vector per image, on which only a head is fitted.

:func:`cache_prefix_splits` keeps the cache in memory while it fits in the memory budget
(``--image_cache_memory_gb``, less the decoded images held in memory), and past it writes it to
a memory-mapped ``.npy`` file per split (:class:`MemmapDataset`), removed after the run. The
values are the same either way: the same float16 (or float32) numbers, stored in one place or
the other.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..console import progress_bar
from ..data.fetch import default_cache_dir
from ..models.blocks import get_block_view
from ..transfer.cache import allocate_values, choose_storage
from ..transfer.strategies.freeze import CACHE_DTYPES
from .models import ResNetClassifier

logger = logging.getLogger(__name__)


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


class MemmapDataset(Dataset):
    """``{"prefix_features": values[i], "labels": labels[i]}`` from a ``.npy`` file on disk.

    The file is opened memory-mapped and read-only by each process that reads it (a DataLoader
    worker too: the open map is not pickled), so only the pages in use occupy memory, and the
    kernel can drop them again.

    Args:
        path: A ``.npy`` file of ``(n, C, h, w)`` values.
        labels: ``(n,)`` int64.
    """

    def __init__(self, path: Path, labels: torch.Tensor):
        self.path = Path(path)
        self.labels = labels
        self._values: np.ndarray | None = None

    @property
    def values(self) -> np.ndarray:
        """The memory-mapped values (opened on first use)."""
        if self._values is None:
            self._values = np.load(self.path, mmap_mode="r")
        return self._values

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "prefix_features": torch.from_numpy(np.array(self.values[i])),
            "labels": self.labels[i],
        }

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_values": None}


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
    out: np.ndarray | None = None,
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
        out: Where to write the outputs instead of a new tensor: an ``(n, ...)`` array of the
            storage dtype, e.g. a ``numpy.memmap`` (:func:`~nlp_transfer.transfer.cache.allocate_values`).

    Returns:
        ``(outputs (n, C, h, w) or (n, feature_dim), labels (n,))`` on the CPU; with ``out``,
        the outputs are ``out`` seen as a tensor.
    """
    was_training = model.training
    model.eval()
    outputs, labels, done = [], [], 0
    for batch in progress_bar(loader, desc, enabled=accelerator.is_local_main_process):
        x = batch["pixel_values"].to(accelerator.device)
        y = model.features(x) if pooled else model.forward_blocks(x, 0, num_blocks)
        if out is None:
            outputs.append(y.to("cpu", dtype))
        else:
            out[done : done + len(y)] = y.to("cpu", dtype).numpy()
            done += len(y)
        labels.append(batch["labels"].cpu())
    model.train(was_training)
    return (torch.cat(outputs) if out is None else torch.from_numpy(out)), torch.cat(labels)


def plain_loader(dataset: Dataset, collator, config) -> DataLoader:
    """An unshuffled evaluation-size DataLoader (for computing frozen outputs once), with
    ``config``'s ``per_device_eval_batch_size`` and ``dataloader_num_workers``."""
    return DataLoader(
        dataset,
        batch_size=config.per_device_eval_batch_size,
        collate_fn=collator,
        num_workers=config.dataloader_num_workers,
    )


@torch.no_grad()
def prefix_output_shape(
    model: ResNetClassifier, num_blocks: int, device: torch.device | str = "cpu"
) -> tuple[int, ...]:
    """``(C, h, w)`` of blocks ``0..num_blocks-1``'s output for one image of the model's input
    size, from one forward pass of a blank image (eval mode; no statistics change)."""
    was_training = model.training
    model.eval()
    size = model.config.image_size
    shape = model.forward_blocks(torch.zeros(1, 3, size, size, device=device), 0, num_blocks).shape
    model.train(was_training)
    return tuple(shape[1:])


def cache_prefix_splits(
    model: ResNetClassifier,
    splits: dict[str, Dataset],
    collator,
    accelerator: Accelerator,
    config,
    *,
    budget_bytes: int,
) -> tuple[dict[str, Dataset], Path | None]:
    """Run the frozen stem and ``config.freeze_layers`` stages once over every split.

    Storage (``--cache_frozen_prefix``): ``auto`` keeps the cache in memory when its size
    (images x C x h x w x bytes per value) fits in ``budget_bytes``, else writes it to a
    memory-mapped file per split in a new directory under ``<cache_dir>/prefix_cache``
    (float16 there when ``--cache_dtype bfloat16``: numpy has none); ``memory`` and ``disk``
    force one. Every process computes and stores its own copy (as in memory).

    Args:
        model: The classifier (on ``accelerator.device``), its prefix frozen.
        splits: The image datasets.
        collator: Turns their items into normalised ``pixel_values`` batches.
        accelerator: For the device and the progress bar.
        config: An :class:`~nlp_transfer.vision.config.ImageClassificationConfig`.
        budget_bytes: Memory the cache may take, bytes.

    Returns:
        ``({split: TensorDictDataset | MemmapDataset}, directory)``: the directory of the disk
        cache (to remove after training), or None in memory.
    """
    num_blocks = config.freeze_layers + 1  # the stem and k stages
    dtype = CACHE_DTYPES[config.cache_dtype]
    shape = prefix_output_shape(model, num_blocks, accelerator.device)
    size = sum(len(d) for d in splits.values()) * math.prod(shape) * dtype.itemsize
    directory = None
    if choose_storage(config.cache_frozen_prefix, size, budget_bytes=budget_bytes) == "disk":
        dtype = torch.float16 if dtype == torch.bfloat16 else dtype
        root = default_cache_dir(config.cache_dir) / "prefix_cache"
        root.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix="images-", dir=root))
    start, cached = time.perf_counter(), {}
    for split, dataset in splits.items():
        out = (
            None
            if directory is None
            else allocate_values((len(dataset), *shape), dtype, directory / split)
        )
        x, y = compute_block_outputs(
            model, plain_loader(dataset, collator, config), accelerator,
            num_blocks=num_blocks, dtype=dtype, desc=f"Caching frozen blocks ({split})", out=out,
        )  # fmt: skip
        if out is None:
            cached[split] = TensorDictDataset(prefix_features=x, labels=y)
        else:
            out.flush()
            cached[split] = MemmapDataset(directory / split / "values.npy", y)
    frozen = ", ".join(b.name for b in get_block_view(model).blocks[:num_blocks])
    where = "in memory" if directory is None else f"memory-mapped in {directory}"
    logger.info(
        f"Frozen-prefix cache: {frozen} computed once for "
        f"{' + '.join(f'{len(d):,}' for d in cached.values())} images ({size / 2**20:.0f} MiB "
        f"{str(dtype).removeprefix('torch.')}, {where}) in {time.perf_counter() - start:.1f} "
        "s; training runs only the stages above"
    )
    return cached, directory
