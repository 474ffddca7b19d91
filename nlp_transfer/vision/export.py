"""ONNX export of a saved image classifier, checked against PyTorch with onnxruntime.

The graph takes ``pixel_values`` ``(batch, 3, S, S)`` float32 (normalised as the model's
``config.json`` says: resize to ``S``, scale to [0, 1], subtract ``mean``, divide by ``std``)
with a dynamic batch axis, and returns ``logits`` ``(batch, num_labels)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..optional import require_onnx
from .models import ResNetClassifier


def export_image_onnx(
    model_dir: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    opset: int = 18,
    check: bool = True,
    atol: float = 1e-4,
) -> dict:
    """Export a saved image classifier to ONNX (fp32, CPU) and by default check it.

    Uses ``torch.onnx.export`` with the ``torch.export``-based exporter (``dynamo=True``).

    Args:
        model_dir: An image run's ``output_dir``.
        output: The ``.onnx`` file; default ``model_dir/model.onnx``.
        opset: ONNX opset version.
        check: Run the export with onnxruntime on batches of 1 and 5 images and compare its
            logits with PyTorch's.
        atol: The largest absolute logit difference accepted by the check.

    Returns:
        ``{"path", "inputs", "image_size", "opset", "max_abs_diff"}``.

    Raises:
        ImportError: onnx/onnxruntime/onnxscript are not installed.
        ValueError: The exported logits differ from PyTorch's by more than ``atol``.
    """
    require_onnx("onnx")
    require_onnx("onnxscript")
    model = ResNetClassifier.from_pretrained(model_dir, "cpu").float().eval()
    size = model.config.image_size
    path = Path(output) if output else Path(model_dir) / "model.onnx"
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.onnx.export(
            model,
            (),
            str(path),
            kwargs={"pixel_values": example},
            input_names=["pixel_values"],
            output_names=["logits"],
            opset_version=opset,
            dynamo=True,
            verbose=False,
            external_data=False,
            dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch")}},
        )
    report = {
        "path": str(path),
        "inputs": ["pixel_values"],
        "image_size": size,
        "opset": opset,
        "max_abs_diff": None,
    }
    if check:
        report["max_abs_diff"] = check_image_onnx(path, model, atol)
    return report


def check_image_onnx(path: str | os.PathLike, model: ResNetClassifier, atol: float = 1e-4) -> float:
    """Largest absolute logit difference between onnxruntime and PyTorch on random batches
    of 1 and 5 images (so the dynamic batch axis is exercised).

    Raises:
        ValueError: The difference exceeds ``atol``.
    """
    require_onnx("onnxruntime")
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    size = model.config.image_size
    generator = torch.Generator().manual_seed(1)
    worst = 0.0
    for batch in (1, 5):
        pixels = torch.randn(batch, 3, size, size, generator=generator)
        with torch.no_grad():
            expected = model(pixels).numpy()
        (got,) = session.run(["logits"], {"pixel_values": pixels.numpy()})
        worst = max(worst, float(np.abs(got - expected).max()))
    if worst > atol:
        raise ValueError(
            f"The ONNX export {path} differs from PyTorch by up to {worst:.2e} in the logits "
            f"(allowed {atol:.0e}); do not deploy it."
        )
    return worst
