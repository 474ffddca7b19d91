"""ImageFolder layouts: ``<root>/<class>/*.png``, checked file by file before any training.

Like ``torchvision.datasets.ImageFolder`` (class = sub-folder name, classes sorted, files found
recursively), but every file is decoded once, up front: a file that is not an image, or an image
that cannot be decoded, is reported by name, and either skipped with a count in the log
(``--bad_images skip``, the default) or stops the run (``--bad_images error``), instead of
crashing mid-epoch. The decoded images are kept in memory, or, past the memory budget, only
checked and then streamed (:mod:`nlp_transfer.vision.streaming`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS
from tqdm.auto import tqdm

from .datasets import ImageDataset
from .streaming import DECODE_ERRORS, StreamedImageDataset, decode_image, find_undecodable

logger = logging.getLogger(__name__)

BAD_IMAGE_CHOICES = ("skip", "error")
SPLIT_FOLDERS = {
    "train": ("train",),
    "validation": ("val", "validation", "valid"),
    "test": ("test",),
}


def find_split_dirs(
    train_dir: str | os.PathLike,
    validation_dir: str | os.PathLike | None = None,
    test_dir: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """The folders of each split.

    ``train_dir`` is either a folder of class folders, or a folder holding ``train/`` (and
    optionally ``val/`` or ``validation/``, and ``test/``). Explicit ``validation_dir`` and
    ``test_dir`` take precedence. Splits without a folder are split off the training data later.

    Raises:
        FileNotFoundError: A given folder does not exist.
    """
    root = Path(train_dir).expanduser()
    for flag, value in (
        ("--train_dir", root),
        ("--validation_dir", validation_dir),
        ("--test_dir", test_dir),
    ):
        if value is not None and not Path(value).expanduser().is_dir():
            raise FileNotFoundError(f"{flag} {value}: no such directory.")
    dirs = {"train": root}
    if (root / "train").is_dir():
        for split, names in SPLIT_FOLDERS.items():
            found = next((root / n for n in names if (root / n).is_dir()), None)
            if found is not None:
                dirs[split] = found
    if validation_dir is not None:
        dirs["validation"] = Path(validation_dir).expanduser()
    if test_dir is not None:
        dirs["test"] = Path(test_dir).expanduser()
    return dirs


def scan_image_folder(
    root: Path, class_names: list[str] | None = None, bad_images: str = "skip"
) -> tuple[list[Path], list[int], list[str]]:
    """List ``<root>/<class>/**`` image files with their label ids.

    Args:
        root: The split's folder.
        class_names: The training split's classes (for validation/test); None: this folder's.
        bad_images: What to do with files that are not images: ``skip`` (logged with a count)
            or ``error``.

    Returns:
        ``(paths, label_ids, class_names)``.

    Raises:
        ValueError: No class folders; a class folder unknown to the training split; a file that
            is not an image under ``bad_images="error"``; a class left without images.
    """
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise ValueError(
            f"{root} has no class folders: expected {root}/<class name>/<image files>, one "
            "folder per class (e.g. train/cat/1.png, train/dog/2.png)."
        )
    names = found if class_names is None else class_names
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise ValueError(
            f"{root} has class folder(s) {unknown} that the training data does not have "
            f"(classes: {names}); rename or remove them."
        )
    paths, labels, not_images = [], [], []
    for label, name in enumerate(names):
        folder = root / name
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        for p in files:
            if p.suffix.lower() in IMG_EXTENSIONS:
                paths.append(p)
                labels.append(label)
            else:
                not_images.append(p)
    if not_images:
        if bad_images == "error":
            raise ValueError(
                f"{not_images[0]} is not an image file (extension {not_images[0].suffix!r}; "
                f"images end in {', '.join(IMG_EXTENSIONS)}). Remove it from {root}, or pass "
                "--bad_images skip to skip such files (with a count in the log)."
            )
        shown = ", ".join(str(p) for p in not_images[:3])
        logger.warning(
            f"Skipped {len(not_images)} file(s) in {root} that are not images (by extension): "
            f"{shown}{', ...' if len(not_images) > 3 else ''}. Pass --bad_images error to stop "
            "on such files instead."
        )
    return paths, labels, list(names)


MAX_NATIVE_IMAGE_SIZE = 224  # folders of mixed sizes are resized to at most this
SIZE_SAMPLE = 500  # images whose header is read to find a folder's size


def native_image_size(root: Path, max_size: int = MAX_NATIVE_IMAGE_SIZE) -> int:
    """The side to train a folder's images at, from the images themselves (no weights preset).

    Reads the size from the headers of up to :data:`SIZE_SAMPLE` images, evenly spaced. All of
    one size: their shorter side (square images are kept exactly as they are, e.g. 28 for
    MNIST-like digits, not upscaled). Sizes differ: the median shorter side, at most
    ``max_size``, and the log says so.

    Args:
        root: The training split's folder (``<root>/<class>/<images>``).
        max_size: Cap for folders of mixed sizes, pixels.

    Returns:
        The side of the square model input, pixels.

    Raises:
        ValueError: See :func:`scan_image_folder`; no image header can be read.
    """
    paths, _, _ = scan_image_folder(root, bad_images="skip")
    step = max(1, len(paths) // SIZE_SAMPLE)
    sizes = []
    for path in paths[::step]:
        try:
            with Image.open(path) as image:
                sizes.append(tuple(sorted(image.size)))  # orientation-free (short, long)
        except (OSError, ValueError, SyntaxError, UnidentifiedImageError):
            continue  # reported when the folder is decoded
    if not sizes:
        raise ValueError(f"{root}: no readable image to take the size from; pass --image_size.")
    if len(set(sizes)) == 1:
        logger.info(f"Images of {root} are all {sizes[0][0]}x{sizes[0][1]}: kept at that size")
        return sizes[0][0]
    side = min(int(np.median([short for short, _ in sizes])), max_size)
    shown = ", ".join(f"{a}x{b}" for a, b in sorted(set(sizes))[:3])
    logger.info(
        f"Images of {root} differ in size ({shown}...): resized to {side}x{side} (the median "
        f"shorter side, at most {max_size}); --image_size sets another"
    )
    return side


def load_image_folder(
    root: Path,
    *,
    image_size: int,
    resize_size: int | None = None,
    class_names: list[str] | None = None,
    bad_images: str = "skip",
    disable_progress: bool = False,
    stream: bool = False,
    num_workers: int = 0,
) -> tuple[ImageDataset | StreamedImageDataset, list[str]]:
    """Decode every image of an ImageFolder split (see :func:`scan_image_folder`).

    Args:
        root: The split's folder.
        image_size: Side of the square images kept, pixels.
        resize_size: Shorter side before the centre crop; default ``image_size``.
        class_names: The training split's classes, for validation/test folders.
        bad_images: ``skip`` (count and names logged) or ``error`` for files that are not
            images or cannot be decoded.
        disable_progress: Hide the progress bar.
        stream: Keep only paths and labels (:class:`StreamedImageDataset`); see
            :func:`decode_image_folder`.
        num_workers: DataLoader workers that check streamed images.

    Returns:
        ``(dataset, class_names)``; the dataset keeps each image's path.

    Raises:
        ValueError: See :func:`scan_image_folder`; an undecodable image under
            ``bad_images="error"``; a class with no usable image.
    """
    paths, labels, names = scan_image_folder(root, class_names, bad_images)
    dataset = decode_image_folder(
        root, paths, labels, names,
        image_size=image_size, resize_size=resize_size, bad_images=bad_images,
        require_every_class=class_names is None, disable_progress=disable_progress,
        stream=stream, num_workers=num_workers,
    )  # fmt: skip
    return dataset, names


def decode_image_folder(
    root: Path,
    paths: list[Path],
    labels: list[int],
    names: list[str],
    *,
    image_size: int,
    resize_size: int | None = None,
    bad_images: str = "skip",
    require_every_class: bool = True,
    disable_progress: bool = False,
    stream: bool = False,
    num_workers: int = 0,
) -> ImageDataset | StreamedImageDataset:
    """The images of a scanned split (:func:`scan_image_folder`), decoded up front or streamed.

    Up front (``stream=False``): every image is decoded here and kept as uint8
    (:class:`ImageDataset`). Streamed: every image is decoded once to check it, in
    ``num_workers`` DataLoader workers, and dropped; the :class:`StreamedImageDataset` keeps
    the paths and labels and decodes again when a batch is read. The same files are kept
    either way, and the same pixels come out.

    Args:
        root: The split's folder (for messages).
        paths: Its image files.
        labels: Their label ids.
        names: The class names.
        image_size: Side of the square images, pixels.
        resize_size: Shorter side before the centre crop; default ``image_size``.
        bad_images: ``skip`` (count and names logged) or ``error``.
        require_every_class: Every class must keep an image (the training split).
        disable_progress: Hide the progress bar.
        stream: Stream instead of keeping the decoded images.
        num_workers: DataLoader workers that check streamed images.

    Raises:
        ValueError: An undecodable image under ``bad_images="error"``; a class with no usable
            image (``require_every_class``); no usable image at all.
    """
    if stream:
        images = None
        failed = find_undecodable(
            paths, image_size=image_size, resize_size=resize_size, num_workers=num_workers,
            desc=f"Checking {root.name}", disable_progress=disable_progress,
        )  # fmt: skip
        if failed and bad_images == "error":
            raise ValueError(_decode_error_message(*failed[0]))
    else:
        images, failed = _decode_all(
            root, paths, image_size, resize_size, bad_images, disable_progress
        )
    bad = {p for p, _ in failed}
    kept = [label for p, label in zip(paths, labels, strict=True) if p not in bad]
    if failed:
        shown = "; ".join(f"{p} ({e})" for p, e in failed[:3])
        logger.warning(
            f"Skipped {len(failed)} image(s) in {root} that cannot be decoded: {shown}"
            f"{'; ...' if len(failed) > 3 else ''}. Pass --bad_images error to stop on them instead."
        )
    counts = np.bincount(np.asarray(kept, dtype=np.int64), minlength=len(names))
    empty = [names[i] for i in np.flatnonzero(counts == 0)]
    if require_every_class and empty:
        raise ValueError(f"{root}: class folder(s) {empty} hold no usable image.")
    if not kept:
        raise ValueError(f"{root}: no usable image.")
    good_paths = [str(p) for p in paths if p not in bad]
    label_ids = torch.tensor(kept, dtype=torch.int64)
    if images is None:
        return StreamedImageDataset(good_paths, label_ids, image_size, resize_size)
    return ImageDataset(torch.stack(images), label_ids, good_paths)


def _decode_error_message(path: Path, error: object) -> str:
    return (
        f"Cannot decode image {path}: {error}. Delete or re-export the file, or pass "
        "--bad_images skip to skip undecodable images (with a count in the log)."
    )


def _decode_all(
    root: Path,
    paths: list[Path],
    image_size: int,
    resize_size: int | None,
    bad_images: str,
    disable_progress: bool,
) -> tuple[list[torch.Tensor], list[tuple[Path, str]]]:
    """Decode every file in this process: ``(images, [(path, "ErrorType: message"), ...])``."""
    images, failed = [], []
    for path in tqdm(paths, desc=f"Decoding {root.name}", leave=False, disable=disable_progress):
        try:
            images.append(decode_image(path, image_size, resize_size))
        except DECODE_ERRORS as err:
            if bad_images == "error":
                raise ValueError(_decode_error_message(path, err)) from err
            failed.append((path, f"{type(err).__name__}: {err}"))
    return images, failed
