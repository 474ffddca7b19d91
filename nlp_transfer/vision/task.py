"""The ``image`` task in the task registry: torchvision ResNets on an image folder or a built-in
set (the image recipe's run)."""

from __future__ import annotations

from ..tasks import Task, register_task
from .config import ImageClassificationConfig
from .experiment import run_image_task
from .export import export_image_onnx
from .models import is_image_model

register_task(
    Task(
        name="image",
        title="image classification",
        config_class=ImageClassificationConfig,
        modality="image",
        run=run_image_task,
        recognizes=is_image_model,
        export=export_image_onnx,
    )
)
