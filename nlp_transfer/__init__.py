"""nlp_transfer: transfer learning for text classification with pretrained BERT-family encoders.

The Python API in one import::

    from nlp_transfer import TextClassificationConfig, run_text_classification

    metrics = run_text_classification(TextClassificationConfig(
        train_file="reviews.csv", text_column="review", label_column="stars",
        freeze_layers=4, output_dir="outputs/reviews"))
"""

from .config import TextClassificationConfig, parse_config
from .data import (
    list_builtin_datasets,
    load_builtin_dataset,
    load_text_classification_dataset,
)
from .metrics import classification_metrics
from .models.blocks import get_block_view
from .models.text import build_text_classifier
from .text_classification import run_text_classification
from .transfer.freeze import FreezeReport, freeze_encoder_layers, freeze_lower_blocks

__version__ = "0.1.0"

__all__ = [
    "FreezeReport",
    "TextClassificationConfig",
    "build_text_classifier",
    "classification_metrics",
    "freeze_encoder_layers",
    "freeze_lower_blocks",
    "get_block_view",
    "list_builtin_datasets",
    "load_builtin_dataset",
    "load_text_classification_dataset",
    "parse_config",
    "run_text_classification",
]
