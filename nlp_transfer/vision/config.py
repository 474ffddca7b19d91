"""The typed configuration of an image-classification run (recipe, CLI and Python API alike)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import MIXED_PRECISION_CHOICES, parse_report_to
from ..training.checkpoint import SAVE_STRATEGIES
from ..transfer.cache import CACHE_DTYPES
from ..transfer.features import HEAD_CHOICES
from .folder import BAD_IMAGE_CHOICES
from .models import ARCHITECTURES, SMALL_IMAGE_SIZE

IMAGE_DATASETS = ("fashion_mnist_transfer", "fashion_mnist", "cifar10")
IMAGE_CACHE_CHOICES = ("auto", "memory", "no")
STEM_MAXPOOL_CHOICES = ("auto", "true", "false")


def _help(text: str, **kwargs) -> dict:
    return {"metadata": {"help": text}, **kwargs}


@dataclass
class ImageClassificationConfig:
    """Every setting of an image-classification run. Names follow ``transformers.TrainingArguments``."""

    # Data
    dataset_name: str | None = field(
        default="fashion_mnist_transfer",
        **_help(
            "fashion_mnist_transfer (the default experiment: a ResNet trained from scratch on Fashion-MNIST classes 0-4, transferred to classes 5-9 with few labels, compared with training from scratch), fashion_mnist (all 10 classes), or cifar10 (torchvision; needs its download host or a copy in --cache_dir). Ignored when --train_dir is given."
        ),
    )
    train_dir: str | None = field(
        default=None,
        **_help(
            "An ImageFolder: <dir>/<class>/*.png, or <dir>/train/<class>/... with optional val/ (or validation/) and test/ beside it."
        ),
    )
    validation_dir: str | None = field(
        default=None, **_help("Validation ImageFolder; split off the training data if unset.")
    )
    test_dir: str | None = field(
        default=None, **_help("Test ImageFolder; split off the training data if unset.")
    )
    validation_size: float = field(
        default=0.1,
        **_help(
            "Fraction of the images split off for validation when there is no validation folder."
        ),
    )
    test_size: float = field(
        default=0.1,
        **_help("Fraction of the images split off for test when there is no test folder."),
    )
    bad_images: str = field(
        default="skip",
        **_help(
            "ImageFolder files that are not images or cannot be decoded: skip (count and names logged) or error."
        ),
    )
    image_size: int | None = field(
        default=None,
        **_help(
            "Side of the square model input, pixels; unset: the weights' preset (224 for ImageNet weights), the saved model's, or the data's own size (28 for Fashion-MNIST, 32 for CIFAR-10; 224 for folders)."
        ),
    )
    augment: bool = field(
        default=False,
        **_help(
            "Random crop (padding 1/8 of the size) and horizontal flip of training images; turns frozen-prefix caching off."
        ),
    )
    max_train_samples: int | None = field(
        default=None, **_help("Keep only this many training images, drawn at random (quick runs).")
    )
    max_eval_samples: int | None = field(
        default=None,
        **_help("Keep only this many validation and test images, drawn at random (quick runs)."),
    )
    cache_dir: str | None = field(
        default=None,
        **_help(
            "Where built-in data is downloaded (default: $NLP_TRANSFER_CACHE or ~/.cache/nlp_transfer)."
        ),
    )
    # Transfer experiment (fashion_mnist_transfer)
    source_num_train_epochs: int = field(
        default=1,
        **_help("fashion_mnist_transfer: epochs of the source run (classes 0-4, 30,000 images)."),
    )
    transfer_samples_per_class: int = field(
        default=100,
        **_help("fashion_mnist_transfer: labelled training images per target class (classes 5-9)."),
    )
    transfer_validation_per_class: int = field(
        default=20,
        **_help(
            "fashion_mnist_transfer: further labelled target images per class, used only to pick the best epoch."
        ),
    )
    transfer_freeze_layers: int = field(
        default=2,
        **_help(
            "fashion_mnist_transfer: stages frozen (with the stem) in the 'transferred, lower stages frozen' run."
        ),
    )
    # Model and transfer strategy
    architecture: str = field(
        default="resnet18", **_help(f"torchvision ResNet: {', '.join(ARCHITECTURES)}.")
    )
    weights: str = field(
        default="none",
        **_help(
            "Starting weights: none (from scratch), a torchvision weights name (IMAGENET1K_V1, DEFAULT: from the torch hub cache, or downloaded when reachable), or a local path (an image run's output_dir, a .safetensors file or a torch.save'd state_dict). The head is always new."
        ),
    )
    stem_maxpool: str = field(
        default="auto",
        **_help(
            "Keep the stem's max-pool: true, false, or auto (false below 112 pixels, so small images are downsampled 16x, not 32x; a saved model's choice when --weights is one)."
        ),
    )
    freeze_layers: int = field(
        default=0,
        **_help(
            "Freeze the stem and the lower k stages (layer1..layerk), 0..4; 0 = full fine-tuning."
        ),
    )
    layer_lr_decay: float = field(
        default=1.0,
        **_help(
            "Layer-wise LR decay xi in (0, 1]: each block trains at xi times the LR of the block above (Sun et al. 2019); 1 = off."
        ),
    )
    head_learning_rate: float | None = field(
        default=None, **_help("Learning rate of the head (fc); unset: --learning_rate.")
    )
    l2sp_alpha: float = field(
        default=0.0,
        **_help(
            "L2-SP: alpha/2 * ||w - w0||^2 on trainable pretrained weights (Li et al. 2018); 0 = off."
        ),
    )
    l2sp_beta: float = field(
        default=0.0, **_help("L2-SP: beta/2 * ||w||^2 on the new head (with --l2sp_alpha > 0).")
    )
    feature_extraction: str = field(
        default="none",
        **_help(
            "Feature extraction: freeze the whole network, compute pooled layer4 features once, fit a head on them: linear, mlp (trained for num_train_epochs at head_learning_rate, default 1e-3) or logistic_regression (scikit-learn, turned into the fc layer); none = fine-tuning."
        ),
    )
    gradual_unfreezing: bool = field(
        default=False,
        **_help(
            "Gradual unfreezing (ULMFiT): the head trains alone, then one more block from the top each epoch (or every --unfreeze_every_n_steps)."
        ),
    )
    unfreeze_every_n_steps: int = field(
        default=0, **_help("Gradual unfreezing: a block every N optimizer steps; 0 = every epoch.")
    )
    cache_frozen_prefix: str = field(
        default="auto",
        **_help(
            "With --freeze_layers k: compute the frozen stem and stages once per image and train only the stages above: auto (on unless --augment, which changes the input every epoch), memory, or no."
        ),
    )
    cache_dtype: str = field(
        default="float16",
        **_help("Storage type of the frozen-prefix cache: float16, bfloat16 or float32."),
    )
    # Optimisation
    learning_rate: float = field(default=1e-3, **_help("Peak AdamW learning rate."))
    weight_decay: float = field(
        default=0.05, **_help("AdamW decoupled weight decay (not on biases and BatchNorm).")
    )
    warmup_ratio: float = field(
        default=0.1, **_help("Fraction of optimizer steps of linear warm-up.")
    )
    lr_scheduler_type: str = field(
        default="cosine", **_help("Learning-rate schedule (any transformers.get_scheduler name).")
    )
    num_train_epochs: int = field(default=15, **_help("Number of training epochs."))
    per_device_train_batch_size: int = field(
        default=64, **_help("Training batch size per process.")
    )
    per_device_eval_batch_size: int = field(
        default=256, **_help("Evaluation batch size per process.")
    )
    gradient_accumulation_steps: int = field(default=1, **_help("Batches per optimizer step."))
    max_grad_norm: float = field(
        default=1.0, **_help("Gradient clipping norm; 0 disables clipping.")
    )
    mixed_precision: str | None = field(
        default=None, **_help("no | fp16 | bf16; unset: Accelerate's launch config, else no.")
    )
    seed: int = field(
        default=42, **_help("Seed for data subsets and splits, initialisation and shuffling.")
    )
    # Evaluation and outputs
    metric_for_best_model: str = field(
        default="accuracy",
        **_help("Validation metric that selects the best epoch (accuracy, f1_macro, loss...)."),
    )
    load_best_model_at_end: bool = field(
        default=True, **_help("Keep the weights of the best epoch, not the last.")
    )
    output_dir: str = field(
        default="outputs/image_classification",
        **_help("Where the model, metrics.json, plots/ and config.yaml go."),
    )
    overwrite_output_dir: bool = field(default=False, **_help("Write into a non-empty output_dir."))
    use_cpu: bool = field(default=False, **_help("Train on the CPU even when a GPU is available."))
    dataloader_num_workers: int = field(default=0, **_help("DataLoader worker processes."))
    logging_steps: int = field(
        default=50, **_help("Refresh the progress bar's loss every this many batches.")
    )
    # Checkpointing and resumption
    save_strategy: str = field(
        default="epoch",
        **_help("Checkpoints in output_dir/checkpoints: no, epoch or steps (every --save_steps)."),
    )
    save_steps: int = field(default=500, **_help("Optimizer steps between checkpoints (steps)."))
    save_total_limit: int | None = field(
        default=1, **_help("Keep at most this many checkpoints, newest first; unset keeps all.")
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        **_help("Continue an interrupted run: a checkpoint directory, or latest."),
    )
    # Tracking
    report_to: str = field(
        default="none",
        **_help("Experiment tracking: none, tensorboard, wandb, mlflow, all, or a comma list."),
    )
    early_stopping_patience: int | None = field(
        default=None,
        **_help("Stop after this many epochs without a better --metric_for_best_model."),
    )

    def __post_init__(self) -> None:
        if self.train_dir is not None and self.dataset_name == "fashion_mnist_transfer":
            self.dataset_name = None  # a user's folder replaces the default experiment
        if self.train_dir is not None and self.dataset_name is not None:
            raise ValueError("Give either --dataset_name or --train_dir, not both.")
        if self.dataset_name is None and self.train_dir is None:
            raise ValueError("Give the data: --train_dir (an ImageFolder) or --dataset_name.")
        positive = (
            "learning_rate", "num_train_epochs", "source_num_train_epochs",
            "per_device_train_batch_size", "per_device_eval_batch_size",
            "gradient_accumulation_steps", "logging_steps", "save_steps",
            "transfer_samples_per_class", "transfer_validation_per_class",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) is None or getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}.")
        optional_positive = (
            "image_size", "max_train_samples", "max_eval_samples", "save_total_limit",
            "early_stopping_patience", "head_learning_rate",
        )  # fmt: skip
        for name in optional_positive:
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}.")
        non_negative = (
            "weight_decay", "max_grad_norm", "freeze_layers", "dataloader_num_workers",
            "l2sp_alpha", "l2sp_beta", "unfreeze_every_n_steps", "transfer_freeze_layers",
        )  # fmt: skip
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}.")
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
        if not 0 < self.layer_lr_decay <= 1:
            raise ValueError(f"--layer_lr_decay must be in (0, 1], got {self.layer_lr_decay}.")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        choices = {
            "dataset_name": (self.dataset_name, (None, *IMAGE_DATASETS)),
            "architecture": (self.architecture, tuple(ARCHITECTURES)),
            "bad_images": (self.bad_images, BAD_IMAGE_CHOICES),
            "stem_maxpool": (self.stem_maxpool, STEM_MAXPOOL_CHOICES),
            "feature_extraction": (self.feature_extraction, ("none", *HEAD_CHOICES)),
            "cache_frozen_prefix": (self.cache_frozen_prefix, IMAGE_CACHE_CHOICES),
            "cache_dtype": (self.cache_dtype, tuple(CACHE_DTYPES)),
            "save_strategy": (self.save_strategy, SAVE_STRATEGIES),
            "mixed_precision": (self.mixed_precision, (None, *MIXED_PRECISION_CHOICES)),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                shown = ", ".join(str(a) for a in allowed if a is not None)
                raise ValueError(f"--{name} must be one of {shown}, got {value!r}.")
        if self.augment and self.cache_frozen_prefix == "memory":
            raise ValueError(
                "--cache_frozen_prefix memory is exact only without --augment (augmentation "
                "changes each image every epoch); use auto or no."
            )
        if self.feature_extraction != "none":
            clashes = {
                "--freeze_layers": self.freeze_layers,
                "--gradual_unfreezing": self.gradual_unfreezing,
                "--layer_lr_decay": self.layer_lr_decay != 1.0,
                "--l2sp_alpha": self.l2sp_alpha,
                "--augment": self.augment,
                "--resume_from_checkpoint": self.resume_from_checkpoint,
            }
            used = [flag for flag, value in clashes.items() if value]
            if used:
                raise ValueError(
                    "--feature_extraction freezes the whole network and computes its features "
                    f"once; it does not combine with {', '.join(used)}."
                )
        self.report_to_list()

    def report_to_list(self) -> list[str]:
        """``--report_to`` as a list of Accelerate tracker names: :func:`parse_report_to`."""
        return parse_report_to(self.report_to)

    def resolved_stem_maxpool(self, image_size: int, saved: bool | None = None) -> bool:
        """``--stem_maxpool`` as a bool: explicit, else the saved model's, else by image size."""
        if self.stem_maxpool != "auto":
            return self.stem_maxpool == "true"
        if saved is not None:
            return saved
        return image_size >= SMALL_IMAGE_SIZE
