"""nlp_transfer: transfer learning for text classification with pretrained BERT-family encoders.

The Python API in one import::

    from nlp_transfer import TextClassificationConfig, run_text_classification

    metrics = run_text_classification(TextClassificationConfig(
        train_file="reviews.csv", text_column="review", label_column="stars",
        freeze_layers=4, output_dir="outputs/reviews"))
"""

from .api import TrainResult, train
from .config import parse_config
from .data import (
    list_builtin_datasets,
    load_builtin_dataset,
    load_text_classification_dataset,
)
from .data.samplers import ClassBalancedSampler, LengthGroupedSampler
from .metrics import classification_metrics, select_threshold
from .models.blocks import get_block_view
from .models.text import build_text_classifier
from .text.classifier import TextClassifier
from .text.config import TextClassificationConfig
from .text.predict import evaluate_saved_model, predict
from .text.run import run_text_classification
from .training.imbalance import class_weights_from_spec, cross_entropy_loss
from .transfer.freeze import FreezeReport, freeze_encoder_layers, freeze_lower_blocks

__version__ = "0.1.0"

__all__ = [
    "ClassBalancedSampler",
    "FreezeReport",
    "LengthGroupedSampler",
    "TextClassificationConfig",
    "TextClassifier",
    "TrainResult",
    "build_text_classifier",
    "class_weights_from_spec",
    "classification_metrics",
    "cross_entropy_loss",
    "evaluate_saved_model",
    "freeze_encoder_layers",
    "freeze_lower_blocks",
    "get_block_view",
    "list_builtin_datasets",
    "load_builtin_dataset",
    "load_text_classification_dataset",
    "parse_config",
    "predict",
    "run_text_classification",
    "select_threshold",
    "train",
]
