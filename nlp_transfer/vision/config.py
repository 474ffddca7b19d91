"""The typed configuration of an image-classification run (recipe, CLI and Python API alike)."""

from __future__ import annotations

from dataclasses import dataclass

from ..training.arguments import (
    EVALUATION,
    OPTIMISATION,
    TransferConfig,
    arg,
    check_choice,
    check_non_negative,
    check_optional_positive,
    check_positive,
)
from ..training.calibration import CALIBRATION_METHODS
from ..transfer.strategies.freeze import TRANSFER
from .folder import BAD_IMAGE_CHOICES
from .models import ARCHITECTURES, SMALL_IMAGE_SIZE

IMAGE_DATASETS = ("fashion_mnist_transfer", "fashion_mnist", "cifar10")
IMAGE_CACHE_CHOICES = ("auto", "memory", "disk", "no")
STEM_MAXPOOL_CHOICES = ("auto", "true", "false")


@dataclass
class ImageClassificationConfig(TransferConfig):
    """Every setting of an image-classification run. Names follow ``transformers.TrainingArguments``.

    The training and transfer-strategy fields come from
    :class:`~nlp_transfer.training.arguments.TransferConfig`; these are the image task's own,
    and its defaults (a higher learning rate, a cosine schedule, 15 epochs).

    Raises:
        ValueError: A value out of range, or settings that do not combine (the message names
            the flags).
    """

    # Data
    dataset_name: str | None = arg(
        "fashion_mnist_transfer",
        "fashion_mnist_transfer (the default experiment: a ResNet trained from scratch on Fashion-MNIST classes 0-4, transferred to classes 5-9 with few labels, compared with training from scratch), fashion_mnist (all 10 classes), or cifar10 (torchvision; needs its download host or a copy in --cache_dir). Ignored when --train_dir is given.",
        "Data",
    )
    train_dir: str | None = arg(
        None,
        "An ImageFolder: <dir>/<class>/*.png, or <dir>/train/<class>/... with optional val/ (or validation/) and test/ beside it.",
        "Data",
    )
    validation_dir: str | None = arg(
        None, "Validation ImageFolder; split off the training data if unset.", "Data"
    )
    test_dir: str | None = arg(
        None, "Test ImageFolder; split off the training data if unset.", "Data"
    )
    validation_size: float = arg(
        0.1,
        "Fraction of the images split off for validation when there is no validation folder.",
        "Data",
    )
    test_size: float = arg(
        0.1, "Fraction of the images split off for test when there is no test folder.", "Data"
    )
    bad_images: str = arg(
        "skip",
        "ImageFolder files that are not images or cannot be decoded: skip (count and names logged) or error.",
        "Data",
    )
    image_size: int | None = arg(
        None,
        "Side of the square model input, pixels; unset: the weights' preset (224 for ImageNet weights), the saved model's, or the data's own size (28 for Fashion-MNIST, 32 for CIFAR-10; a folder's images' size, or their median shorter side up to 224 when sizes differ).",
        "Data",
    )
    augment: bool = arg(
        False,
        "Random crop (padding 1/8 of the size) and horizontal flip of training images; turns frozen-prefix caching off.",
        "Data",
    )
    image_cache_memory_gb: float | None = arg(
        None,
        "Memory budget for the images, GB (10^9 bytes): folder images whose decoded size (images x 3 x image_size^2 bytes) fits are decoded once and kept in memory, else streamed from disk and decoded in the --dataloader_num_workers workers each epoch; the frozen-prefix cache (--cache_frozen_prefix auto) is memory-mapped on disk past what is left of it. Unset: a quarter of the RAM available when the run starts.",
        "Data",
    )
    max_train_samples: int | None = arg(
        None, "Keep only this many training images, drawn at random (quick runs).", "Data"
    )
    max_eval_samples: int | None = arg(
        None,
        "Keep only this many validation and test images, drawn at random (quick runs).",
        "Data",
    )
    cache_dir: str | None = arg(
        None,
        "Where built-in data is downloaded (default: $NLP_TRANSFER_CACHE or ~/.cache/nlp_transfer).",
        "Data",
    )
    # Transfer experiment (fashion_mnist_transfer)
    source_num_train_epochs: int = arg(
        1,
        "fashion_mnist_transfer: epochs of the source run (classes 0-4, 30,000 images).",
        "Transfer experiment (fashion_mnist_transfer)",
    )
    transfer_samples_per_class: int = arg(
        100,
        "fashion_mnist_transfer: labelled training images per target class (classes 5-9).",
        "Transfer experiment (fashion_mnist_transfer)",
    )
    transfer_validation_per_class: int = arg(
        20,
        "fashion_mnist_transfer: further labelled target images per class, used only to pick the best epoch.",
        "Transfer experiment (fashion_mnist_transfer)",
    )
    transfer_freeze_layers: int = arg(
        2,
        "fashion_mnist_transfer: stages frozen (with the stem) in the 'transferred, lower stages frozen' run.",
        "Transfer experiment (fashion_mnist_transfer)",
    )
    # Model
    architecture: str = arg("resnet18", f"torchvision ResNet: {', '.join(ARCHITECTURES)}.", "Model")
    weights: str = arg(
        "none",
        "Starting weights: none (from scratch), a torchvision weights name (IMAGENET1K_V1, DEFAULT: from the torch hub cache, or downloaded when reachable), or a local path (an image run's output_dir, a .safetensors file or a torch.save'd state_dict). The head is always new.",
        "Model",
    )
    stem_maxpool: str = arg(
        "auto",
        "Keep the stem's max-pool: true, false, or auto (false below 112 pixels, so small images are downsampled 16x, not 32x; a saved model's choice when --weights is one).",
        "Model",
    )
    freeze_layers: int = arg(
        0,
        "Freeze the stem and the lower k stages (layer1..layerk), 0..4; 0 = full fine-tuning.",
        TRANSFER,
    )
    cache_frozen_prefix: str = arg(
        "auto",
        "With --freeze_layers k: compute the frozen stem and stages once per image and train only "
        "the stages above: auto (on unless --augment, which changes the input every epoch; in "
        "memory, or memory-mapped on disk past --image_cache_memory_gb), memory, disk, or no.",
        TRANSFER,
    )
    # Optimisation: the image task's defaults
    learning_rate: float = arg(1e-3, "Peak AdamW learning rate.", OPTIMISATION)
    weight_decay: float = arg(
        0.05, "AdamW decoupled weight decay (not on biases and BatchNorm).", OPTIMISATION
    )
    lr_scheduler_type: str = arg(
        "cosine", "Learning-rate schedule (any transformers.get_scheduler name).", OPTIMISATION
    )
    num_train_epochs: int = arg(15, "Number of training epochs.", OPTIMISATION)
    per_device_train_batch_size: int = arg(64, "Training batch size per process.", OPTIMISATION)
    per_device_eval_batch_size: int = arg(256, "Evaluation batch size per process.", OPTIMISATION)
    calibration: str = arg(
        "auto",
        "After training: temperature scaling fitted on validation (Guo et al. 2017, folded "
        "into fc; labels unchanged): auto or temperature (the same for images), or none.",
        EVALUATION,
    )
    output_dir: str = arg(
        "outputs/image_classification",
        "Where the model, metrics.json, plots/ and config.yaml go.",
        EVALUATION,
    )

    cache_choices = IMAGE_CACHE_CHOICES

    def __post_init__(self) -> None:
        if self.train_dir is not None and self.dataset_name == "fashion_mnist_transfer":
            self.dataset_name = None  # a user's folder replaces the default experiment
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        if self.train_dir is not None and self.dataset_name is not None:
            raise ValueError("Give either --dataset_name or --train_dir, not both.")
        if self.dataset_name is None and self.train_dir is None:
            raise ValueError("Give the data: --train_dir (an ImageFolder) or --dataset_name.")
        check_positive(
            self, "source_num_train_epochs", "transfer_samples_per_class",
            "transfer_validation_per_class",
        )  # fmt: skip
        check_optional_positive(
            self, "image_size", "max_train_samples", "max_eval_samples", "image_cache_memory_gb"
        )
        check_non_negative(self, "transfer_freeze_layers")
        if self.freeze_layers > 4:
            raise ValueError(
                f"--freeze_layers must be between 0 and 4 (a ResNet has 4 stages), "
                f"got {self.freeze_layers}."
            )
        if not 1 <= self.transfer_freeze_layers <= 4:
            raise ValueError(
                f"--transfer_freeze_layers must be between 1 and 4 (stages frozen with the stem), "
                f"got {self.transfer_freeze_layers}."
            )
        check_choice(self, "dataset_name", IMAGE_DATASETS, optional=True)
        check_choice(self, "architecture", tuple(ARCHITECTURES))
        check_choice(self, "bad_images", BAD_IMAGE_CHOICES)
        check_choice(self, "calibration", CALIBRATION_METHODS)
        check_choice(self, "stem_maxpool", STEM_MAXPOOL_CHOICES)
        if self.augment and self.feature_extraction != "none":
            raise ValueError(
                "--feature_extraction freezes the whole encoder and computes its features once; "
                "it does not combine with --augment."
            )
        if self.augment and self.cache_frozen_prefix in ("memory", "disk"):
            raise ValueError(
                f"--cache_frozen_prefix {self.cache_frozen_prefix} is exact only without "
                "--augment (augmentation changes each image every epoch); use auto or no."
            )

    def resolved_stem_maxpool(self, image_size: int, saved: bool | None = None) -> bool:
        """``--stem_maxpool`` as a bool: explicit, else the saved model's, else by image size."""
        if self.stem_maxpool != "auto":
            return self.stem_maxpool == "true"
        if saved is not None:
            return saved
        return image_size >= SMALL_IMAGE_SIZE
