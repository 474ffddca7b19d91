"""The tasks of ``nlp-transfer train --task``: name -> config class and run.

The text tasks (:mod:`nlp_transfer.text.tasks`) share one run and differ in defaults; the
``image`` task is the image recipe's config and run; ``domain_adaptation`` trains several
models and prints one table. Task packages are imported only when their task is asked for.
"""

from __future__ import annotations

from .text.tasks import TEXT_TASKS

__all__ = ["TASKS", "TEXT_TASKS", "run_task", "task_config_class"]


def run_task(name: str, config) -> dict:
    """Run task ``name`` (a key of :data:`TASKS`) with its parsed config; returns its metrics."""
    if name == "image":
        from .vision.experiment import run_image_task

        return run_image_task(config)
    if name == "domain_adaptation":  # several models, one table
        from .adaptation import run_domain_adaptation

        return run_domain_adaptation(config)
    from .text.run import run_text_classification

    return run_text_classification(config, task_name=TEXT_TASKS[name][1])


def task_config_class(name: str) -> type:
    """The config dataclass of task ``name``."""
    if name == "image":
        from .vision.config import ImageClassificationConfig

        return ImageClassificationConfig
    if name == "domain_adaptation":
        from .adaptation import DomainAdaptationConfig

        return DomainAdaptationConfig
    return TEXT_TASKS[name][0]


TASKS = (*TEXT_TASKS, "image", "domain_adaptation")
