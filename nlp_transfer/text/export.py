"""ONNX export of a saved classifier, checked against PyTorch with onnxruntime.

``nlp-transfer export --model_dir DIR --format onnx`` writes ``DIR/model.onnx`` with inputs
``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the model uses them), each of
shape ``(batch, sequence)`` with both axes dynamic, and one output ``logits`` of shape
``(batch, num_labels)``. A feature-extraction model with a torch head is exported whole (encoder,
pooling and head); one with a scikit-learn head is refused with the reason, not exported without
its head.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..optional import require_onnx
from ..transfer.features import FeatureExtractionClassifier
from .inference import load_classifier


class _LogitsOnly(nn.Module):
    """``(input_ids, attention_mask[, token_type_ids]) -> logits``: the graph ONNX gets."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return out.logits if hasattr(out, "logits") else out


def export_text_onnx(
    model_dir: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    opset: int = 18,
    check: bool = True,
    atol: float = 1e-4,
) -> dict:
    """Export a saved text classifier to ONNX and (by default) check it with onnxruntime.

    Uses ``torch.onnx.export`` (the ``torch.export``-based exporter) in fp32 on the CPU.

    Args:
        model_dir: A run's ``output_dir`` (fine-tuned, or feature extraction with a torch head).
        output: The ``.onnx`` file; default ``model_dir/model.onnx``.
        opset: ONNX opset version.
        check: Run the export with onnxruntime on texts of different lengths and batch sizes
            and compare its logits with PyTorch's.
        atol: The largest absolute logit difference accepted by the check.

    Returns:
        ``{"path", "inputs", "opset", "max_abs_diff"}`` (``max_abs_diff`` None without check).

    Raises:
        ImportError: onnx/onnxruntime/onnxscript are not installed (the message says how).
        ValueError: A feature-extraction model with a scikit-learn head (not exportable as one
            graph), or the exported logits differ from PyTorch's by more than ``atol``.
    """
    require_onnx("onnx")
    require_onnx("onnxscript")
    model, tokenizer, _ = load_classifier(model_dir, device="cpu")
    if isinstance(model, FeatureExtractionClassifier) and model.head is None:
        raise ValueError(
            f"{model_dir} is a feature-extraction model with a scikit-learn head "
            f"({type(model.estimator).__name__}), which ONNX export does not cover: the encoder could "
            "be exported but the head would be lost. Train it with --feature_extraction linear "
            "or mlp to export it, or use nlp_transfer.predict."
        )
    model = model.float().eval()
    path = Path(output) if output else Path(model_dir) / "model.onnx"
    samples = ["a short one", "a somewhat longer example sentence to classify, with punctuation!"]
    pairs = samples[::-1] if getattr(model.config, "text_pair_column", None) else None
    encoded = tokenizer(samples, pairs, padding=True, return_tensors="pt")  # pairs: types 0 and 1
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in encoded]
    wrapper = _LogitsOnly(model).eval()
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (),
            str(path),
            kwargs={n: encoded[n] for n in names},
            input_names=names,
            output_names=["logits"],
            opset_version=opset,
            dynamo=True,
            verbose=False,
            external_data=False,
            dynamic_shapes={n: {0: batch, 1: sequence} for n in names},
        )
    report = {"path": str(path), "inputs": names, "opset": opset, "max_abs_diff": None}
    if check:
        report["max_abs_diff"] = check_onnx(path, wrapper, tokenizer, names, atol)
    return report


def check_onnx(
    path: str | os.PathLike, wrapper: nn.Module, tokenizer, names: list[str], atol: float = 1e-4
) -> float:
    """Largest absolute difference between onnxruntime's and PyTorch's logits.

    Runs batches of 1 and 3 texts of different lengths, so the dynamic axes are exercised.

    Raises:
        ValueError: The difference exceeds ``atol``.
    """
    require_onnx("onnxruntime")
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for texts in (
        ["one"],
        ["first text", "a second, rather longer text about a film", "third " * 20],
    ):
        encoded = tokenizer(
            texts, padding=True, truncation=True, max_length=128, return_tensors="pt"
        )
        with torch.no_grad():
            expected = wrapper(**{n: encoded[n] for n in names}).numpy()
        (got,) = session.run(["logits"], {n: encoded[n].numpy() for n in names})
        worst = max(worst, float(np.abs(got - expected).max()))
    if worst > atol:
        raise ValueError(
            f"The ONNX export {path} differs from PyTorch by up to {worst:.2e} in the logits "
            f"(allowed {atol:.0e}); do not deploy it."
        )
    return worst
