"""Optional dependencies, imported on demand with an error that says how to install them.

This module imports nothing of the library, so every layer may use it.
"""

from __future__ import annotations

import sys
from types import ModuleType

ONNX_EXTRA = "pip install 'nlp-transfer[onnx]' (onnx, onnxruntime, onnxscript)"

# tracker -> (module to import, pip extra that installs it)
TRACKER_PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}


def require(module: str, why: str, install: str) -> ModuleType:
    """Import ``module``, or fail saying what needs it and how to install it.

    Args:
        module: The module to import (``onnxruntime``).
        why: What needs it, the start of the message (``ONNX export``).
        install: The install command (``pip install 'nlp-transfer[onnx]'``).

    Returns:
        The module.

    Raises:
        ImportError: ``module`` is not installed.
    """
    try:
        __import__(module)
    except ImportError:
        raise ImportError(f"{why} needs the {module} package: {install}.") from None
    return sys.modules[module]


def require_onnx(module: str) -> ModuleType:
    """Import one of the ONNX packages, or fail with the install command.

    Raises:
        ImportError: ``module`` is not installed (the message names the extra to install).
    """
    return require(module, "ONNX export", ONNX_EXTRA)


def require_tracker(name: str) -> ModuleType:
    """Import a tracker's package (``--report_to NAME``), or fail with the install command.

    Raises:
        ImportError: The package is not installed.
    """
    module, extra = TRACKER_PACKAGES[name]
    return require(
        module,
        f"--report_to {name}",
        f"pip install 'nlp-transfer[{extra}]' (or pip install {module})",
    )
