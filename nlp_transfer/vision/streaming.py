"""Decoding image files, up front or streamed: one image when a batch needs it.

:func:`decode_image` turns a file into the uint8 tensor the model's collator takes. An
ImageFolder whose decoded images fit the memory budget (``--image_cache_memory_gb``) is decoded
once, up front, and kept in memory (:func:`~nlp_transfer.vision.folder.load_image_folder`).
One that does not is streamed: a :class:`StreamedImageDataset` holds only the paths and labels,
and each image is decoded again, in the DataLoader's worker processes
(``--dataloader_num_workers``), every time a batch needs it, so memory stays flat in the number
of images. Both give the same tensors: the same :func:`decode_image`, the same collator.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as TF

from ..console import progress_bar

# What PIL raises on a file that is not an image it can decode (truncated, corrupt, empty, a bomb)
DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    UnidentifiedImageError,
    Image.DecompressionBombError,
)
RGB_CHANNELS = 3  # decode_image always returns RGB


def decode_image(path: Path, image_size: int, resize_size: int | None = None) -> torch.Tensor:
    """Decode one file to a ``(3, image_size, image_size)`` uint8 RGB tensor.

    EXIF orientation is applied, the shorter side is resized to ``resize_size`` (default
    ``image_size``, bilinear with antialiasing) and the centre ``image_size`` square is kept,
    as torchvision's classification presets do.

    Raises:
        OSError, ValueError, SyntaxError: The file cannot be decoded (PIL's errors).
    """
    with Image.open(path) as image:
        image.load()
        rgb = ImageOps.exif_transpose(image).convert("RGB")
    resized = TF.resize(rgb, [resize_size or image_size], antialias=True)
    return TF.pil_to_tensor(TF.center_crop(resized, [image_size, image_size]))


def decoded_size_bytes(num_images: int, image_size: int, channels: int = RGB_CHANNELS) -> int:
    """Bytes that ``num_images`` decoded uint8 images of ``(channels, image_size, image_size)``
    take in memory: 100,000 RGB images at 224x224 are 15,052,800,000 bytes (15.1 GB)."""
    return int(num_images) * channels * image_size * image_size


class StreamedImageDataset(Dataset):
    """Image files and their labels; each item is decoded when it is read.

    The paths are kept as one numpy array of bytes, not a list of Python strings, so that
    forked DataLoader workers share them instead of copying them page by page as reference
    counts change.

    Args:
        paths: The image files, ``n`` of them.
        labels: ``(n,)`` int64 label ids.
        image_size: Side of the square images returned, pixels.
        resize_size: Shorter side before the centre crop; default ``image_size``.
    """

    def __init__(
        self,
        paths: list[str] | list[Path] | np.ndarray,
        labels: torch.Tensor,
        image_size: int,
        resize_size: int | None = None,
    ):
        if isinstance(paths, np.ndarray) and paths.dtype.kind == "S":
            self._paths = paths
        else:
            self._paths = np.array([os.fsencode(str(p)) for p in paths], dtype=np.bytes_)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        if len(self._paths) != len(self.labels):
            raise ValueError(f"{len(self._paths)} images but {len(self.labels)} labels.")
        self.image_size = image_size
        self.resize_size = resize_size

    @property
    def paths(self) -> list[str]:
        """The file of each image."""
        return [os.fsdecode(p) for p in self._paths]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        path = os.fsdecode(self._paths[i])
        try:
            pixels = decode_image(Path(path), self.image_size, self.resize_size)
        except DECODE_ERRORS as err:  # it decoded when the run started: the file has changed
            raise ValueError(f"Cannot decode image {path} any more: {err}") from err
        return {"pixel_values": pixels, "labels": self.labels[i]}

    def subset(self, indices: np.ndarray | list[int]) -> StreamedImageDataset:
        index = np.asarray(indices, dtype=np.int64)
        return StreamedImageDataset(
            self._paths[index], self.labels[torch.from_numpy(index)], self.image_size,
            self.resize_size,
        )  # fmt: skip


class _DecodeCheck(Dataset):
    """Item ``i``: ``""`` when file ``i`` decodes, else the decoder's error as text."""

    def __init__(self, paths: list[Path], image_size: int, resize_size: int | None):
        self.paths = np.array([os.fsencode(str(p)) for p in paths], dtype=np.bytes_)
        self.image_size = image_size
        self.resize_size = resize_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> str:
        try:
            decode_image(Path(os.fsdecode(self.paths[i])), self.image_size, self.resize_size)
        except DECODE_ERRORS as err:
            return f"{type(err).__name__}: {err}"
        return ""


def _as_list(items: list[str]) -> list[str]:
    return items


def find_undecodable(
    paths: list[Path],
    *,
    image_size: int,
    resize_size: int | None = None,
    num_workers: int = 0,
    desc: str = "Checking images",
    disable_progress: bool = False,
) -> list[tuple[Path, str]]:
    """The files that :func:`decode_image` cannot decode, found by decoding each once.

    Streamed images are checked before training, so that a bad file is reported by name, or
    skipped, as when they are decoded up front, not found mid-epoch. The decoded pixels are
    dropped at once; the work runs in ``num_workers`` DataLoader worker processes.

    Args:
        paths: The files.
        image_size: Side of the square images, pixels (as in training).
        resize_size: Shorter side before the centre crop.
        num_workers: DataLoader worker processes (0: in this process).
        desc: Progress-bar title.
        disable_progress: Hide the progress bar.

    Returns:
        ``[(path, "ErrorType: message"), ...]`` in the order of ``paths``.
    """
    # Its own generator: a DataLoader without one draws its workers' seed from the global RNG,
    # and the model is initialised after this, from that RNG.
    loader = DataLoader(
        _DecodeCheck(paths, image_size, resize_size),
        batch_size=32,
        num_workers=num_workers,
        collate_fn=_as_list,
        generator=torch.Generator(),
    )
    errors: list[str] = []
    for batch in progress_bar(loader, desc, enabled=not disable_progress):
        errors.extend(batch)
    return [(path, error) for path, error in zip(paths, errors, strict=True) if error]
