"""The data of an image run: train/validation/test splits from a folder or a named dataset."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from .datasets import FASHION_MNIST_LABELS, ImageDataset, load_cifar10, load_fashion_mnist
from .folder import find_split_dirs, load_image_folder, native_image_size

logger = logging.getLogger(__name__)


@dataclass
class ImageData:
    """The splits of an image run.

    Attributes:
        splits: ``train``, ``validation`` and ``test`` :class:`ImageDataset`.
        label_names: Class names by label id.
        description: One line naming the data (logs, model cards).
    """

    splits: dict[str, ImageDataset]
    label_names: list[str]
    description: str

    @property
    def native_size(self) -> int:
        """Side of the stored images, pixels."""
        return int(self.splits["train"].images.shape[-1])


def split_off(
    dataset: ImageDataset, size: float, seed: int, what: str, names: list[str]
) -> tuple[ImageDataset, ImageDataset]:
    """Split a stratified fraction ``size`` off ``dataset``: ``(rest, split)``.

    Raises:
        ValueError: A class has too few images to stratify (the message names the flags).
    """
    if not 0 < size < 1:
        raise ValueError(f"--{what}_size must be a fraction in (0, 1), got {size}.")
    labels = dataset.labels.numpy()
    try:
        rest, part = train_test_split(
            np.arange(len(labels)), test_size=size, stratify=labels, random_state=seed
        )
    except ValueError as err:
        counts = np.bincount(labels, minlength=len(names))
        per_class = ", ".join(f"{n}: {c}" for n, c in zip(names, counts, strict=True))
        raise ValueError(
            f"Cannot split a stratified {what} set ({size:.0%}) off {len(labels)} training images "
            f"(images per class: {per_class}): every class needs at least 2 images, and the "
            f"{what} set one per class. Add images, or pass --{what}_dir. ({err})"
        ) from err
    return dataset.subset(np.sort(rest)), dataset.subset(np.sort(part))


def cap(dataset: ImageDataset, limit: int | None, seed: int) -> ImageDataset:
    """At most ``limit`` images, drawn at random with ``seed`` (kept in their order)."""
    if limit is None or limit >= len(dataset):
        return dataset
    chosen = np.random.default_rng(seed).choice(len(dataset), limit, replace=False)
    return dataset.subset(np.sort(chosen))


def load_image_data(
    config, image_size: int | None = None, resize_size: int | None = None
) -> ImageData:
    """Load what ``config`` names: ``--train_dir`` (+ folders) or ``--dataset_name``.

    Missing validation/test splits are split off the training data (stratified,
    ``--validation_size``/``--test_size``, ``--seed``); for the named datasets, whose test split
    is fixed, only validation is. ``--max_train_samples``/``--max_eval_samples`` apply last.

    Args:
        config: An :class:`~nlp_transfer.vision.config.ImageClassificationConfig`.
        image_size: Side folder images are cropped to; default: their own size
            (:func:`~nlp_transfer.vision.folder.native_image_size`: kept when all images share
            one size, else the median shorter side, at most 224). Named datasets keep their
            own size (the collator resizes per batch).
        resize_size: Shorter side of folder images before the centre crop.

    Returns:
        The :class:`ImageData`.

    Raises:
        ValueError, FileNotFoundError, OSError: Bad folders or files, or data that cannot be had.
    """
    if config.train_dir is not None:
        data = _folder_data(config, image_size, resize_size)
    elif config.dataset_name == "cifar10":
        splits, names = load_cifar10(config.cache_dir)
        splits["train"], splits["validation"] = split_off(
            splits["train"], config.validation_size, config.seed, "validation", names
        )
        data = ImageData(splits, names, "CIFAR-10 (Krizhevsky 2009), 32x32 RGB")
    elif config.dataset_name == "fashion_mnist":
        splits = load_fashion_mnist(config.cache_dir)
        names = list(FASHION_MNIST_LABELS)
        splits["train"], splits["validation"] = split_off(
            splits["train"], config.validation_size, config.seed, "validation", names
        )
        data = ImageData(splits, names, "Fashion-MNIST (Xiao et al. 2017), 28x28 grey")
    else:
        raise ValueError(
            f"--dataset_name {config.dataset_name!r} is not a single dataset; "
            "fashion_mnist_transfer is run by run_image_task (several runs)."
        )
    data.splits = {
        "train": cap(data.splits["train"], config.max_train_samples, config.seed),
        "validation": cap(data.splits["validation"], config.max_eval_samples, config.seed),
        "test": cap(data.splits["test"], config.max_eval_samples, config.seed),
    }
    sizes = ", ".join(f"{s} {len(d):,}" for s, d in data.splits.items())
    logger.info(f"Data: {data.description}; {sizes}; classes {data.label_names}")
    return data


def _folder_data(config, image_size: int | None, resize_size: int | None) -> ImageData:
    dirs = find_split_dirs(config.train_dir, config.validation_dir, config.test_dir)
    image_size = image_size or native_image_size(dirs["train"])
    kwargs = {"image_size": image_size, "resize_size": resize_size, "bad_images": config.bad_images}
    train, names = load_image_folder(dirs["train"], **kwargs)
    splits = {"train": train}
    for split in ("validation", "test"):
        if split in dirs:
            splits[split], _ = load_image_folder(dirs[split], class_names=names, **kwargs)
    if "test" not in splits:
        splits["train"], splits["test"] = split_off(
            splits["train"], config.test_size, config.seed, "test", names
        )
    if "validation" not in splits:
        size = config.validation_size / (1 - (config.test_size if "test" not in dirs else 0.0))
        splits["train"], splits["validation"] = split_off(
            splits["train"], size, config.seed, "validation", names
        )
    return ImageData(splits, names, f"ImageFolder {dirs['train']}")
