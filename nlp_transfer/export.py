"""ONNX export of a saved model, text or image: the entry point of ``nlp-transfer export``.

The task packages do the work (:func:`nlp_transfer.text.export.export_text_onnx`,
:func:`nlp_transfer.vision.export.export_image_onnx`); this module picks one by what the
directory holds and checks that the optional ONNX packages are installed.
"""

from __future__ import annotations

import os

ONNX_EXTRA = "pip install 'nlp-transfer[onnx]' (onnx, onnxruntime, onnxscript)"


def require_onnx(module: str) -> None:
    """Import one of the ONNX packages, or fail with the install command.

    Raises:
        ImportError: ``module`` is not installed (the message names the extra to install).
    """
    try:
        __import__(module)
    except ImportError:
        raise ImportError(f"ONNX export needs the {module} package: {ONNX_EXTRA}.") from None


def export_onnx(
    model_dir: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    opset: int = 18,
    check: bool = True,
    atol: float = 1e-4,
) -> dict:
    """Export a saved text or image classifier to ONNX and (by default) check it.

    Text models take ``input_ids``/``attention_mask`` (see
    :func:`~nlp_transfer.text.export.export_text_onnx`), image models ``pixel_values``
    (:func:`~nlp_transfer.vision.export.export_image_onnx`); both run in fp32 on the CPU.

    Args:
        model_dir: A run's ``output_dir``.
        output: The ``.onnx`` file; default ``model_dir/model.onnx``.
        opset: ONNX opset version.
        check: Compare onnxruntime's logits with PyTorch's on sample inputs.
        atol: The largest absolute logit difference accepted by the check.

    Returns:
        ``{"path", "inputs", "opset", "max_abs_diff"}`` (``max_abs_diff`` None without check).

    Raises:
        ImportError: onnx/onnxruntime/onnxscript are not installed (the message says how).
        ValueError: The model cannot be exported as one graph, or the check failed.
    """
    from .vision.models import is_image_model

    if is_image_model(model_dir):
        from .vision.export import export_image_onnx

        return export_image_onnx(model_dir, output, opset=opset, check=check, atol=atol)
    from .text.export import export_text_onnx

    return export_text_onnx(model_dir, output, opset=opset, check=check, atol=atol)
