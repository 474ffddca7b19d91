"""Vision: torchvision ResNets on the library's block view, training loop, metrics and outputs.

from nlp_transfer.vision import ImageClassificationConfig, run_image_classification

metrics = run_image_classification(ImageClassificationConfig(
    train_dir="photos/", weights="IMAGENET1K_V1", freeze_layers=3,
    output_dir="outputs/photos"))
"""

from .config import ImageClassificationConfig
from .data import ImageData, load_image_data
from .datasets import ImageDataset, load_fashion_mnist, parse_idx
from .experiment import run_fashion_mnist_transfer, run_image_task
from .models import ImageModelConfig, ResNetClassifier, is_image_model
from .predict import evaluate_image_folder, predict_images
from .run import run_image_classification
from .weights import load_initial_weights

__all__ = [
    "ImageClassificationConfig",
    "ImageData",
    "ImageDataset",
    "ImageModelConfig",
    "ResNetClassifier",
    "evaluate_image_folder",
    "is_image_model",
    "load_fashion_mnist",
    "load_image_data",
    "load_initial_weights",
    "parse_idx",
    "predict_images",
    "run_fashion_mnist_transfer",
    "run_image_classification",
    "run_image_task",
]
