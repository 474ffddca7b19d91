"""Text classification: a pretrained BERT-family encoder, a classification head, a transfer plan.

    from nlp_transfer.text import TextClassificationConfig, run_text_classification

The task package beside :mod:`nlp_transfer.vision` and :mod:`nlp_transfer.adaptation`: its own
config fields (:mod:`.config`), data and loaders (:mod:`.loaders`), the run
(:mod:`.run`), feature extraction's encoding (:mod:`.features`), prediction (:mod:`.predict`),
ONNX export (:mod:`.export`) and the onnxruntime backend (:mod:`.onnx_backend`), batch prediction
of files (:mod:`.stream`, :mod:`.batch`) and the TF-IDF baseline (:mod:`.baseline`), on the shared
training loop and transfer plan.
"""

from .batch import predict_file
from .classifier import TextClassifier
from .config import TextClassificationConfig
from .predict import evaluate_saved_model, predict
from .run import run_text_classification
from .tasks import SentimentConfig, SpamConfig, TopicsConfig

__all__ = [
    "SentimentConfig",
    "SpamConfig",
    "TextClassificationConfig",
    "TextClassifier",
    "TopicsConfig",
    "evaluate_saved_model",
    "predict",
    "predict_file",
    "run_text_classification",
]
