"""Per-batch image preprocessing: to float, grey to RGB, resize, augment, normalise.

Images come decoded as uint8, from memory (:class:`~nlp_transfer.vision.datasets.ImageDataset`)
or decoded when read (:class:`~nlp_transfer.vision.streaming.StreamedImageDataset`);
:class:`ImageCollator` turns a list of them into the model's input batch (in the DataLoader's
worker processes when there are any). Augmentation (random
crop with padding, horizontal flip: the CIFAR recipe of He et al. 2016, section 4.2) uses
torchvision's v2 transforms, one draw per image, from torch's global RNG (seeded by the run and
saved in checkpoints).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms import v2

from ..data.samplers import EpochShuffleSampler
from .datasets import ImageDataset


def channel_stats(
    images: torch.Tensor | Dataset, max_images: int = 10_000, num_workers: int = 0
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, on the [0, 1] scale.

    Summed in float64 over batches of 256 images, so that neither the float copy of the
    images nor the images themselves (when streamed) are ever held whole. Grey statistics are
    repeated for the three RGB channels the model sees. At most ``max_images`` (the first
    ones) are used.

    Args:
        images: ``(n, C, H, W)`` uint8, an :class:`ImageDataset`, or a dataset of
            ``{"pixel_values": (C, H, W) uint8}`` items (a streamed split: decoded in
            DataLoader workers).
        max_images: Images used.
        num_workers: DataLoader worker processes that decode a dataset's images.

    Returns:
        ``(mean, std)``, 3 values each, rounded to 4 decimals; the std is the sample standard
        deviation over all pixels, at least 1e-3.
    """
    count, total, squares = 0, 0.0, 0.0
    for batch in _pixel_batches(images, max_images, num_workers):
        x = batch.to(torch.float64).div_(255)
        count += x.numel() // x.shape[1]
        total = total + x.sum(dim=(0, 2, 3))
        squares = squares + x.square().sum(dim=(0, 2, 3))
    mean = total / count
    std = ((squares - count * mean.square()) / max(count - 1, 1)).clamp_min(0).sqrt()
    std = std.clamp_min(1e-3)
    if len(mean) == 1:
        mean, std = mean.repeat(3), std.repeat(3)
    return [round(float(m), 4) for m in mean], [round(float(s), 4) for s in std]


def stack_pixels(features: list[dict]) -> torch.Tensor:
    """A list of ``{"pixel_values": (C, H, W)}`` items -> ``(n, C, H, W)``."""
    return torch.stack([f["pixel_values"] for f in features])


def _pixel_batches(images, max_images: int, num_workers: int, batch_size: int = 256):
    if isinstance(images, ImageDataset):
        images = images.images  # in memory already: no DataLoader needed
    if isinstance(images, torch.Tensor):
        yield from images[:max_images].split(batch_size)
        return
    subset = Subset(images, range(min(len(images), max_images)))
    # its own generator: drawing the workers' seed from the global RNG would change the training
    yield from DataLoader(
        subset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=stack_pixels,
        generator=torch.Generator(),
    )


class ImageCollator:
    """uint8 images -> a normalised float batch ``{"pixel_values", "labels"}``.

    Steps: stack, scale to [0, 1], repeat a grey channel to RGB, resize to ``image_size``
    (bilinear, antialiased) when the images have another size, augment (training only), and
    normalise with ``mean``/``std``.

    Args:
        image_size: Side of the model's square input, pixels.
        mean: Per-channel mean, 3 values.
        std: Per-channel std, 3 values.
        augment: Random crop (padding ``image_size // 8``, reflected) and horizontal flip.
    """

    def __init__(
        self,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool = False,
    ):
        self.image_size = image_size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.augment = (
            v2.Compose(
                [
                    v2.RandomCrop(
                        image_size, padding=max(image_size // 8, 1), padding_mode="reflect"
                    ),
                    v2.RandomHorizontalFlip(),
                ]
            )
            if augment
            else None
        )

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """``(n, C, H, W)`` uint8 -> ``(n, 3, image_size, image_size)`` normalised float32."""
        x = images.float().div_(255)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(
                x,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        if self.augment is not None:
            x = torch.stack([self.augment(image) for image in x])
        return (x - self.mean) / self.std

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        images = torch.stack([f["pixel_values"] for f in features])
        labels = torch.stack([torch.as_tensor(f["labels"]) for f in features])
        return {"pixel_values": self.pixels(images), "labels": labels}


def image_dataloaders(
    splits: dict[str, Dataset],
    collators: dict[str, object],
    *,
    per_device_train_batch_size: int,
    per_device_eval_batch_size: int,
    seed: int,
    num_workers: int = 0,
) -> dict[str, DataLoader]:
    """DataLoaders of every split: training order a function of ``seed`` + epoch (resumable).

    Args:
        splits: ``train``, ``validation``, ``test`` datasets.
        collators: The collate function of each split (the training one may augment).
        per_device_train_batch_size: Training batch size per process.
        per_device_eval_batch_size: Evaluation batch size per process.
        seed: Shuffling seed.
        num_workers: DataLoader worker processes.

    Returns:
        ``{split: DataLoader}``.
    """
    loaders = {}
    for split, dataset in splits.items():
        train = split == "train"
        loaders[split] = DataLoader(
            dataset,
            batch_size=per_device_train_batch_size if train else per_device_eval_batch_size,
            sampler=EpochShuffleSampler(len(dataset), seed=seed) if train else None,
            collate_fn=collators[split],
            num_workers=num_workers,
            generator=torch.Generator().manual_seed(seed),
        )
    return loaders


def stratified_indices(
    labels: np.ndarray, per_class: int, rng: np.random.Generator, exclude: np.ndarray | None = None
) -> np.ndarray:
    """``per_class`` random indices of each label (sorted), optionally avoiding ``exclude``.

    Raises:
        ValueError: A label has fewer than ``per_class`` candidates.
    """
    labels = np.asarray(labels)
    taken = np.zeros(len(labels), dtype=bool)
    if exclude is not None:
        taken[exclude] = True
    chosen = []
    for label in np.unique(labels):
        candidates = np.flatnonzero((labels == label) & ~taken)
        if len(candidates) < per_class:
            raise ValueError(
                f"Label {label} has {len(candidates)} examples left, fewer than {per_class}."
            )
        chosen.append(rng.choice(candidates, per_class, replace=False))
    return np.sort(np.concatenate(chosen))
