"""The text tasks in the task registry: ``text`` (any data) and the recipes' ``sentiment``,
``spam`` and ``topics`` (the same run with other defaults, :mod:`.tasks`)."""

from __future__ import annotations

import json
from pathlib import Path

from ..tasks import Task, register_task
from .config import TextClassificationConfig
from .export import export_text_onnx
from .run import run_text_classification
from .tasks import SentimentConfig, SpamConfig, TopicsConfig


def is_text_model(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds a transformers model (``config.json`` with a ``model_type``)."""
    path = model_dir / "config.json"
    try:
        return "model_type" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def _runner(title: str):
    def run(config: TextClassificationConfig, callbacks=()) -> dict:
        return run_text_classification(config, task_name=title, callbacks=callbacks)

    return run


for _name, _config_class, _title in (
    ("text", TextClassificationConfig, "text classification"),
    ("sentiment", SentimentConfig, "sentiment"),
    ("spam", SpamConfig, "spam"),
    ("topics", TopicsConfig, "topics"),
):
    register_task(
        Task(
            name=_name,
            title=_title,
            config_class=_config_class,
            modality="text",
            run=_runner(_title),
            recognizes=is_text_model if _name == "text" else None,
            export=export_text_onnx,
        )
    )
