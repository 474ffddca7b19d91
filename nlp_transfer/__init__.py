"""nlp_transfer: transfer learning for text classification with pretrained BERT-family encoders.

The Python API in one import::

    from nlp_transfer import TextClassificationConfig, run_text_classification

    metrics = run_text_classification(TextClassificationConfig(
        train_file="reviews.csv", text_column="review", label_column="stars",
        freeze_layers=4, output_dir="outputs/reviews"))

The names below are imported on first use (PEP 562 module ``__getattr__``), so that
``import nlp_transfer`` and ``nlp-transfer --help`` do not load torch, transformers or datasets.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Public name -> "module:attribute", the module relative to this package. Keep __all__ and the
# TYPE_CHECKING imports below in step with it (tests/test_cli.py checks that the three agree).
_LAZY: dict[str, str] = {
    "AuditResult": ".audit:AuditResult",
    "ClassBalancedSampler": ".data.samplers:ClassBalancedSampler",
    "FreezeReport": ".transfer.freeze:FreezeReport",
    "LengthGroupedSampler": ".data.samplers:LengthGroupedSampler",
    "TextClassificationConfig": ".text.config:TextClassificationConfig",
    "TextClassifier": ".text.classifier:TextClassifier",
    "TrainResult": ".api:TrainResult",
    "audit": ".audit:audit",
    "build_text_classifier": ".text.model:build_text_classifier",
    "class_weights_from_spec": ".training.imbalance:class_weights_from_spec",
    "classification_metrics": ".metrics.classification:classification_metrics",
    "cross_entropy_loss": ".training.imbalance:cross_entropy_loss",
    "evaluate_saved_model": ".text.predict:evaluate_saved_model",
    "freeze_encoder_layers": ".transfer.freeze:freeze_encoder_layers",
    "freeze_lower_blocks": ".transfer.freeze:freeze_lower_blocks",
    "get_block_view": ".models.blocks:get_block_view",
    "list_builtin_datasets": ".data:list_builtin_datasets",
    "load_builtin_dataset": ".data:load_builtin_dataset",
    "load_text_classification_dataset": ".data:load_text_classification_dataset",
    "monitor": ".audit:monitor",
    "parse_config": ".cli.config:parse_config",
    "predict": ".text.predict:predict",
    "predict_file": ".text.batch:predict_file",
    "run_text_classification": ".text.run:run_text_classification",
    "search": ".search:search",
    "select_threshold": ".metrics.classification:select_threshold",
    "serve": ".serving.server:serve",
    "train": ".api:train",
    "Trainer": ".training.trainer:Trainer",
    "TrainerCallback": ".training.callbacks:TrainerCallback",
    "TrainerControl": ".training.callbacks:TrainerControl",
    "Task": ".tasks:Task",
    "register_task": ".tasks:register_task",
    "list_tasks": ".tasks:list_tasks",
    "TransferStrategy": ".transfer.strategies:TransferStrategy",
    "register_strategy": ".transfer.strategies:register_strategy",
    "list_strategies": ".transfer.strategies:list_strategies",
}

__all__ = [
    "AuditResult",
    "ClassBalancedSampler",
    "FreezeReport",
    "LengthGroupedSampler",
    "Task",
    "TextClassificationConfig",
    "TextClassifier",
    "TrainResult",
    "Trainer",
    "TrainerCallback",
    "TrainerControl",
    "TransferStrategy",
    "audit",
    "build_text_classifier",
    "class_weights_from_spec",
    "classification_metrics",
    "cross_entropy_loss",
    "evaluate_saved_model",
    "freeze_encoder_layers",
    "freeze_lower_blocks",
    "get_block_view",
    "list_builtin_datasets",
    "list_strategies",
    "list_tasks",
    "load_builtin_dataset",
    "load_text_classification_dataset",
    "monitor",
    "parse_config",
    "predict",
    "predict_file",
    "register_strategy",
    "register_task",
    "run_text_classification",
    "search",
    "select_threshold",
    "serve",
    "train",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time, __getattr__ below
    from .api import TrainResult, train
    from .audit import AuditResult, audit, monitor
    from .cli.config import parse_config
    from .data import (
        list_builtin_datasets,
        load_builtin_dataset,
        load_text_classification_dataset,
    )
    from .data.samplers import ClassBalancedSampler, LengthGroupedSampler
    from .metrics.classification import classification_metrics, select_threshold
    from .models.blocks import get_block_view
    from .search import search
    from .serving.server import serve
    from .tasks import Task, list_tasks, register_task
    from .text.batch import predict_file
    from .text.classifier import TextClassifier
    from .text.config import TextClassificationConfig
    from .text.model import build_text_classifier
    from .text.predict import evaluate_saved_model, predict
    from .text.run import run_text_classification
    from .training.callbacks import TrainerCallback, TrainerControl
    from .training.imbalance import class_weights_from_spec, cross_entropy_loss
    from .training.trainer import Trainer
    from .transfer.freeze import FreezeReport, freeze_encoder_layers, freeze_lower_blocks
    from .transfer.strategies import TransferStrategy, list_strategies, register_strategy


def __getattr__(name: str):
    """Import a public name on first use and keep it (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, attribute = _LAZY[name].partition(":")
    value = getattr(importlib.import_module(module, __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """Keeps a public name from being replaced by a submodule of the same name.

    Importing a submodule binds it as an attribute of its package: importing
    ``nlp_transfer.predict`` (the module) would otherwise hide the function ``predict``.
    """

    def __setattr__(self, name: str, value) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
