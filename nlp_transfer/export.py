"""ONNX export of a saved model, text or image: the entry point of ``nlp-transfer export``.

The task that saved the model does the work (its ``export`` in the task registry, e.g.
:func:`nlp_transfer.text.export.export_text_onnx`,
:func:`nlp_transfer.vision.export.export_image_onnx`); this module finds it by what the directory
holds.
"""

from __future__ import annotations

import os

from .tasks import task_of_model_dir


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
    task = task_of_model_dir(model_dir)
    if task.export is None:
        raise ValueError(f"{model_dir}: a {task.name} run saves no model that exports to ONNX.")
    return task.export(model_dir, output, opset=opset, check=check, atol=atol)
