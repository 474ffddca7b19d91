"""Prediction and evaluation with a saved image classifier (the ``output_dir`` of an image run)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import UnidentifiedImageError

from ..metrics.classification import (
    classification_metrics,
    cross_entropy,
    predict_labels,
    probabilities,
)
from .folder import find_split_dirs, load_image_folder
from .models import ResNetClassifier
from .streaming import decode_image as _decode
from .transforms import ImageCollator


def load_image_classifier(
    model_dir: str | os.PathLike, device: str | None = None
) -> tuple[ResNetClassifier, ImageCollator]:
    """A saved image classifier (eval mode) and the preprocessing it was trained with.

    Raises:
        FileNotFoundError: ``model_dir`` holds no image classifier.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = ResNetClassifier.from_pretrained(model_dir, device)
    c = model.config
    return model, ImageCollator(c.image_size, c.mean, c.std)


def decode_images(paths: Sequence[str | os.PathLike], model: ResNetClassifier) -> torch.Tensor:
    """Decode and resize image files as the model's preprocessing says: ``(n, 3, S, S)`` uint8.

    Raises:
        FileNotFoundError: A file does not exist.
        ValueError: A file cannot be decoded as an image (the message names it).
    """
    c = model.config
    images = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such image file.")
        try:
            images.append(_decode(Path(path), c.image_size, c.resize_size))
        except (OSError, ValueError, SyntaxError, UnidentifiedImageError) as err:
            raise ValueError(f"Cannot decode image {path}: {err}.") from err
    return torch.stack(images)


@torch.no_grad()
def image_logits(
    model: ResNetClassifier, collator: ImageCollator, images: torch.Tensor, batch_size: int = 64
) -> np.ndarray:
    """Logits ``(n, num_labels)`` of uint8 images ``(n, C, H, W)``, in input order."""
    device = next(model.parameters()).device
    out = [
        model(collator.pixels(images[i : i + batch_size]).to(device)).float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).numpy()


def predict_images(
    model_dir: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    *,
    batch_size: int = 64,
    device: str | None = None,
) -> list[dict]:
    """Classify image files with a saved model.

    Example:
        >>> predict_images("outputs/photos", ["cat.jpg", "dog.png"])
        [{'image': 'cat.jpg', 'label': 'cat', 'score': 0.97, 'scores': {...}}, ...]

    Args:
        model_dir: An image run's ``output_dir``.
        paths: Image files, length ``n``.
        batch_size: Images per forward pass.
        device: Torch device; default CUDA when available, else CPU.

    Returns:
        ``n`` dicts: ``image``, ``label`` (predicted name), ``score`` (its probability) and
        ``scores`` (probability of every class).

    Raises:
        FileNotFoundError: No saved model, or a missing image file.
        ValueError: A file that cannot be decoded.
    """
    model, collator = load_image_classifier(model_dir, device)
    probs = probabilities(image_logits(model, collator, decode_images(paths, model), batch_size))
    names = model.config.label_names
    return [
        {
            "image": str(path),
            "label": names[p],
            "score": float(row[p]),
            "scores": dict(zip(names, map(float, row), strict=True)),
        }
        for path, p, row in zip(paths, predict_labels(probs), probs, strict=True)
    ]


def evaluate_image_folder(
    model_dir: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    batch_size: int = 64,
    output_dir: str | os.PathLike | None = None,
    bad_images: str = "skip",
) -> dict:
    """Evaluate a saved image model on an ImageFolder (``<folder>/<class>/*.png``).

    The class folders must be among the model's classes. A folder holding ``test/`` is read
    from there.

    Args:
        model_dir: An image run's ``output_dir``.
        folder: The labelled images.
        batch_size: Images per forward pass.
        output_dir: If given, ``metrics.json`` and ``plots/`` are written there.
        bad_images: ``skip`` or ``error`` for files that are not images or cannot be decoded.

    Returns:
        :func:`~nlp_transfer.metrics.classification.classification_metrics` plus ``loss``.

    Raises:
        ValueError: A class folder the model does not know, or bad files under ``error``.
    """
    from ..reporting.plots import write_report_plots

    model, collator = load_image_classifier(model_dir)
    c = model.config
    dirs = find_split_dirs(folder)
    root = dirs.get("test", dirs["train"])
    dataset, _ = load_image_folder(
        root,
        image_size=c.image_size,
        resize_size=c.resize_size,
        class_names=list(c.label_names),
        bad_images=bad_images,
    )
    logits = image_logits(model, collator, dataset.images, batch_size)
    labels = dataset.labels.numpy()
    metrics = classification_metrics(labels, logits, c.label_names)
    metrics["loss"] = cross_entropy(logits, labels)
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        write_report_plots(out, labels, logits, c.label_names, split=Path(folder).name)
    return metrics
