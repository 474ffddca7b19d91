"""torchvision ResNets as classifiers of the library: a new head, the block view, saving.

A :class:`ResNetClassifier` *is* a ``torchvision.models.ResNet`` (same modules, same state_dict
keys, so torchvision and plain ``state_dict`` weights load into it), with three additions:

- ``forward(pixel_values)``: the keyword the shared training loop passes (``model(**batch)``);
- :meth:`~ResNetClassifier.forward_blocks`: run blocks ``start..`` of the block view
  ``[stem, layer1, layer2, layer3, layer4]``, which frozen-prefix caching and feature
  extraction need;
- ``config`` (:class:`ImageModelConfig`): architecture, label names and the preprocessing it was
  trained with, saved beside the weights (``config.json`` + ``model.safetensors``).

For small images the stem's max-pool can be dropped (``stem_maxpool=False``): the stem then
downsamples by 2 instead of 4, so a 28x28 image reaches ``layer4`` as 2x2 instead of 1x1. The
max-pool has no parameters, so this changes no weight shape and pretrained weights still fit.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models import ResNet
from torchvision.models.resnet import BasicBlock, Bottleneck

from ..transfer.features import FeatureHead

ARCHITECTURES: dict[str, tuple[type[nn.Module], tuple[int, ...]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}
HEAD_KINDS = ("linear", "mlp")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TASK = "image-classification"
# Below this input size the stem's max-pool is dropped by default (``--stem_maxpool auto``).
SMALL_IMAGE_SIZE = 112


@dataclass
class ImageModelConfig:
    """What an image classifier is and how its inputs are prepared; saved as ``config.json``.

    Attributes:
        architecture: ``resnet18``, ``resnet34`` or ``resnet50``.
        label_names: Class names by label id.
        image_size: Side of the square input, pixels.
        mean: Per-channel mean subtracted from pixels in [0, 1] (3 values, RGB).
        std: Per-channel standard deviation divided by (3 values).
        stem_maxpool: Whether the stem keeps its 3x3/2 max-pool.
        head: ``linear`` (torchvision's ``fc``) or ``mlp`` (feature extraction's MLP head).
        resize_size: Shorter side images are resized to before the centre crop to
            ``image_size`` (torchvision presets: 256 for 224); None means ``image_size``.
        weights: Where the initial weights came from (``none``, a torchvision weights name, or
            a path), for model cards.
        task: Always ``image-classification``: marks the directory as an image model.
        calibration: The temperature folded into ``fc`` after training (``method``,
            ``temperature``, ``fitted_on``), or None.
    """

    architecture: str
    label_names: list[str]
    image_size: int
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    stem_maxpool: bool = True
    head: str = "linear"
    resize_size: int | None = None
    weights: str = "none"
    task: str = TASK
    calibration: dict | None = None

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"--architecture must be one of {', '.join(ARCHITECTURES)}, "
                f"got {self.architecture!r}."
            )
        if self.head not in HEAD_KINDS:
            raise ValueError(f"An image head is one of {', '.join(HEAD_KINDS)}, not {self.head!r}.")
        if len(self.label_names) < 2:
            raise ValueError(f"An image classifier needs >= 2 classes, got {self.label_names}.")
        if self.image_size < 8:
            raise ValueError(f"--image_size must be at least 8 pixels, got {self.image_size}.")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    def save(self, directory: str | os.PathLike) -> Path:
        path = Path(directory) / CONFIG_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ImageModelConfig:
        """Read ``directory/config.json``.

        Raises:
            FileNotFoundError: No ``config.json`` there, or it is not an image model's.
        """
        path = Path(directory).expanduser() / CONFIG_FILE
        if not is_image_model(directory):
            raise FileNotFoundError(f"{path}: not the config.json of a saved image classifier.")
        values = json.loads(path.read_text(encoding="utf-8"))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


def is_image_model(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds an image classifier saved by this library."""
    path = Path(directory).expanduser() / CONFIG_FILE
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("task") == TASK
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


class ResNetClassifier(ResNet):
    """A torchvision ResNet whose ``forward`` takes ``pixel_values`` and whose blocks can be run
    separately; see the module docstring.

    Args:
        config: Architecture, classes and preprocessing. Weights are randomly initialised
            (torchvision's initialisation); load others with ``load_state_dict``.
    """

    def __init__(self, config: ImageModelConfig):
        block, layers = ARCHITECTURES[config.architecture]
        super().__init__(block, list(layers), num_classes=config.num_labels)
        if not config.stem_maxpool:
            self.maxpool = nn.Identity()
        if config.head == "mlp":
            self.fc = FeatureHead(self.fc.in_features, config.num_labels, "mlp")
        self.config = config

    @property
    def feature_dim(self) -> int:
        """Size of the pooled ``layer4`` features (512 for ResNet-18/34, 2048 for ResNet-50)."""
        return _out_channels(self.layer4)

    def forward_blocks(self, x: torch.Tensor, start: int = 0, stop: int = 5) -> torch.Tensor:
        """Run blocks ``start..stop-1`` of ``[stem, layer1, layer2, layer3, layer4]``.

        Args:
            x: The input of block ``start``: pixels ``(batch, 3, H, W)`` for ``start=0``, else
                the output of block ``start - 1``, ``(batch, C, h, w)``.
            start: First block to run, 0..5.
            stop: One past the last block to run, ``start..5``.

        Returns:
            The output of block ``stop - 1`` (``x`` itself when ``start == stop``).
        """
        if start == 0 and stop > 0:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        for stage in stages[max(start, 1) - 1 : max(stop - 1, 0)]:
            x = stage(x)
        return x

    def features(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Pooled features ``(batch, feature_dim)``: blocks ``start..4``, average pool, flatten."""
        return torch.flatten(self.avgpool(self.forward_blocks(x, start)), 1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(batch, 3, H, W)`` normalised pixels -> ``(batch, num_labels)`` logits."""
        return self.fc(self.features(pixel_values))

    def save_pretrained(self, directory: str | os.PathLike, **_: object) -> None:
        """Write ``model.safetensors`` and ``config.json`` (what :meth:`from_pretrained` reads).

        Extra keyword arguments (``safe_serialization``...) are accepted and ignored: the
        weights are always safetensors.
        """
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(path / WEIGHTS_FILE), metadata={"format": "pt"})
        self.config.save(path)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, device: str | torch.device = "cpu"
    ) -> ResNetClassifier:
        """Load what :meth:`save_pretrained` wrote, in eval mode.

        Raises:
            FileNotFoundError: No image model in ``directory``.
        """
        path = Path(directory).expanduser()
        config = ImageModelConfig.load(path)
        if not (path / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(f"{path}: {WEIGHTS_FILE} missing.")
        model = cls(config)
        model.load_state_dict(load_file(str(path / WEIGHTS_FILE), device=str(device)))
        return model.to(device).eval()


def _out_channels(stage: nn.Sequential) -> int:
    last = stage[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features
