"""Where a vision model's starting weights come from: ``--weights none | NAME | PATH``.

- ``none``: torchvision's random initialisation (training from scratch).
- a torchvision weights name (``IMAGENET1K_V1``, ``DEFAULT``...): read from the torch hub cache
  (``$TORCH_HOME/hub/checkpoints``), downloaded only when the download host answers. Offline
  (``HF_HUB_OFFLINE=1``) or unreachable, it fails at once with a message saying what to do,
  instead of hanging on the network. The preprocessing comes from the weights' metadata
  (``weights.transforms()``: resize, centre crop, mean and std).
- a local path: the ``output_dir`` of an image run of this library (weights and preprocessing),
  a ``.safetensors`` file, or a plain ``state_dict`` saved with ``torch.save``. Pickled files
  are read with ``torch.load(weights_only=True)``, which refuses anything but tensors and
  plain containers (no code runs while loading).

The head (``fc``) is never taken over: it is new for the task's classes, as in the classic
recipe ("replace ``fc`` with a new head for the target classes").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from safetensors.torch import load_file
from torch import nn

from ..hub import HUB_PROBE_TIMEOUT_S, endpoint_reachable, hub_offline_requested
from .models import WEIGHTS_FILE, ImageModelConfig, is_image_model

HEAD_PREFIX = "fc."


@dataclass
class InitialWeights:
    """What ``--weights`` resolved to.

    Attributes:
        spec: The value given (``none``, a weights name or a path).
        state_dict: The weights, or None for ``none``.
        config: The saved config of a model of this library (its preprocessing), or None.
        image_size: Input size of the torchvision preset (e.g. 224), or None.
        resize_size: Resize before the centre crop in the preset (e.g. 256), or None.
        mean: Normalisation mean of the preset, or None.
        std: Normalisation std of the preset, or None.
    """

    spec: str = "none"
    state_dict: dict[str, torch.Tensor] | None = None
    config: ImageModelConfig | None = None
    image_size: int | None = None
    resize_size: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None

    @property
    def pretrained(self) -> bool:
        return self.state_dict is not None


def load_initial_weights(
    architecture: str, spec: str | None, timeout: float = HUB_PROBE_TIMEOUT_S
) -> InitialWeights:
    """Resolve and read ``--weights`` (see the module docstring).

    Args:
        architecture: ``resnet18``, ``resnet34`` or ``resnet50``.
        spec: ``none``/None, a torchvision weights name, or a local path.
        timeout: Seconds to wait for the download host before giving up.

    Returns:
        The :class:`InitialWeights`.

    Raises:
        FileNotFoundError: A path that does not exist, or a directory without a saved image model.
        ValueError: Neither a path nor a weights name of ``architecture``; a saved model of
            another architecture; a file that is not a state_dict of tensors.
        OSError: Torchvision weights that are not cached while offline or unreachable.
    """
    if spec is None or spec.strip().lower() in ("", "none"):
        return InitialWeights()
    path = Path(spec).expanduser()
    if path.exists():
        return _load_local(architecture, spec, path)
    if "/" in spec or os.sep in spec or path.suffix in (".pt", ".pth", ".bin", ".safetensors"):
        raise FileNotFoundError(f"--weights {spec}: no such file or directory.")
    return _load_torchvision(architecture, spec, timeout)


def _load_local(architecture: str, spec: str, path: Path) -> InitialWeights:
    if path.is_dir():
        if not is_image_model(path):
            raise FileNotFoundError(
                f"--weights {spec}: no image model saved by nlp_transfer there (config.json with "
                "task image-classification); give the output_dir of an image run, or a "
                ".safetensors / .pt state_dict file."
            )
        config = ImageModelConfig.load(path)
        if config.architecture != architecture:
            raise ValueError(
                f"--weights {spec} holds a {config.architecture}, but --architecture is "
                f"{architecture}; pass --architecture {config.architecture}."
            )
        return InitialWeights(spec, load_file(str(path / WEIGHTS_FILE)), config)
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle errors have many types; all mean "not a state_dict"
            raise ValueError(
                f"--weights {spec}: cannot be read as a state_dict with "
                f"torch.load(weights_only=True) ({type(err).__name__}: {str(err)[:200]}). Save "
                "plain weights with torch.save(model.state_dict(), path) or as .safetensors."
            ) from err
    return InitialWeights(spec, _plain_state_dict(state, spec))


def _plain_state_dict(state: object, spec: str) -> dict[str, torch.Tensor]:
    """Unwrap ``{"state_dict": ...}``/``{"model": ...}`` and DDP's ``module.`` prefixes."""
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"--weights {spec}: not a state_dict (a dict of name -> tensor).")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_torchvision(architecture: str, name: str, timeout: float) -> InitialWeights:
    from torchvision.models import get_model_weights

    enum = get_model_weights(architecture)
    if name not in enum.__members__:
        raise ValueError(
            f"--weights {name}: not a local path, and not a torchvision weights name for "
            f"{architecture} ({', '.join(enum.__members__)}). Use --weights none to train from "
            "scratch."
        )
    weights = enum[name]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if not cached.is_file():
        host = urlparse(weights.url).hostname
        reason = None
        if hub_offline_requested():
            reason = "offline mode is set (HF_HUB_OFFLINE=1)"
        elif not endpoint_reachable(weights.url, timeout):
            reason = f"{host} cannot be reached (no connection within {timeout:.0f} s)"
        if reason is not None:
            raise OSError(
                f"--weights {name}: the {architecture} {name} weights are not in the torch hub "
                f"cache ({cached}) and {reason}. Download {weights.url} where there is a "
                f"network and copy it to {cached.parent}/ (or point $TORCH_HOME at a cache "
                "holding it), pass a local checkpoint with --weights PATH, or train from "
                "scratch with --weights none."
            )
        torch.hub.load_state_dict_from_url(
            weights.url, progress=False, check_hash=True, weights_only=True
        )
    state = torch.load(cached, map_location="cpu", weights_only=True)
    preset = weights.transforms()
    return InitialWeights(
        spec=name,
        state_dict=state,
        image_size=int(preset.crop_size[0]),
        resize_size=int(preset.resize_size[0]),
        mean=list(preset.mean),
        std=list(preset.std),
    )


def apply_initial_weights(model: nn.Module, weights: InitialWeights) -> list[str]:
    """Copy every non-head weight of ``weights`` into ``model``; the head stays new.

    Args:
        model: A freshly built :class:`~nlp_transfer.vision.models.ResNetClassifier`.
        weights: What :func:`load_initial_weights` returned.

    Returns:
        Names of the parameters and buffers that were loaded.

    Raises:
        ValueError: The weights do not fit the model (names or shapes differ: another
            architecture); the message lists a few of the offending keys.
    """
    if weights.state_dict is None:
        return []
    body = {k: v for k, v in weights.state_dict.items() if not k.startswith(HEAD_PREFIX)}
    own = model.state_dict()
    missing = sorted(k for k in own if not k.startswith(HEAD_PREFIX) and k not in body)
    unexpected = sorted(k for k in body if k not in own)
    mismatched = sorted(k for k in body if k in own and body[k].shape != own[k].shape)
    if missing or unexpected or mismatched:
        raise ValueError(
            f"--weights {weights.spec} does not fit a {model.config.architecture}: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, other shapes {mismatched[:3]}. "
            "Is --architecture right?"
        )
    model.load_state_dict(body, strict=False)
    return list(body)
