"""The data of an image run: train/validation/test splits from a folder or a named dataset."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from ..data.memory import format_gb, memory_budget_bytes
from .datasets import FASHION_MNIST_LABELS, ImageDataset, load_cifar10, load_fashion_mnist
from .folder import decode_image_folder, find_split_dirs, native_image_size, scan_image_folder
from .streaming import StreamedImageDataset, decoded_size_bytes

logger = logging.getLogger(__name__)

ImageSplit = ImageDataset | StreamedImageDataset  # decoded in memory, or decoded when read


@dataclass
class ImageData:
    """The splits of an image run.

    Attributes:
        splits: ``train``, ``validation`` and ``test``: :class:`ImageDataset` (decoded, in
            memory) or, when streamed, :class:`StreamedImageDataset` (decoded when read).
        label_names: Class names by label id.
        description: One line naming the data (logs, model cards).
        streamed: Whether the images are streamed from disk (over the memory budget).
    """

    splits: dict[str, ImageSplit]
    label_names: list[str]
    description: str
    streamed: bool = False

    @property
    def native_size(self) -> int:
        """Side of the stored (or streamed) images, pixels."""
        return int(self.splits["train"].image_size)

    @property
    def memory_bytes(self) -> int:
        """Bytes of decoded images held in memory (0 when streamed)."""
        return sum(d.images.nbytes for d in self.splits.values() if isinstance(d, ImageDataset))


def split_off(
    dataset: ImageSplit, size: float, seed: int, what: str, names: list[str]
) -> tuple[ImageSplit, ImageSplit]:
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


def cap(dataset: ImageSplit, limit: int | None, seed: int) -> ImageSplit:
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
    paths, labels, names = scan_image_folder(dirs["train"], bad_images=config.bad_images)
    scans = {"train": (dirs["train"], paths, labels)}
    for split in ("validation", "test"):
        if split in dirs:
            paths, labels, _ = scan_image_folder(dirs[split], names, config.bad_images)
            scans[split] = (dirs[split], paths, labels)
    stream = _over_budget(config, sum(len(s[1]) for s in scans.values()), image_size)
    splits = {}
    for split, (root, paths, labels) in scans.items():
        splits[split] = decode_image_folder(
            root, paths, labels, names,
            image_size=image_size, resize_size=resize_size, bad_images=config.bad_images,
            require_every_class=split == "train", stream=stream,
            num_workers=config.dataloader_num_workers,
        )  # fmt: skip
    if "test" not in splits:
        splits["train"], splits["test"] = split_off(
            splits["train"], config.test_size, config.seed, "test", names
        )
    if "validation" not in splits:
        size = config.validation_size / (1 - (config.test_size if "test" not in dirs else 0.0))
        splits["train"], splits["validation"] = split_off(
            splits["train"], size, config.seed, "validation", names
        )
    return ImageData(splits, names, f"ImageFolder {dirs['train']}", streamed=stream)


def _over_budget(config, num_images: int, image_size: int) -> bool:
    """Whether ``num_images`` decoded RGB images exceed ``--image_cache_memory_gb`` (then they
    are streamed; the log says so)."""
    size = decoded_size_bytes(num_images, image_size)
    budget = memory_budget_bytes(config.image_cache_memory_gb)
    if size <= budget:
        return False
    rule = (
        " (unset: a quarter of the available RAM)" if config.image_cache_memory_gb is None else ""
    )
    workers = config.dataloader_num_workers
    where = f"{workers} DataLoader worker(s)" if workers else "the main process"
    logger.info(
        f"Images streamed from disk: {num_images:,} images decoded at 3x{image_size}x{image_size} "
        f"would take {format_gb(size)}, over the --image_cache_memory_gb budget of "
        f"{format_gb(budget)}{rule}; each is checked once now, then decoded when a batch needs "
        f"it, in {where} (--dataloader_num_workers)"
    )
    return True
