"""The training arguments every task shares, in the vocabulary of ``transformers.TrainingArguments``.

:class:`TrainingConfig` holds what the one training loop needs whatever the task: optimisation,
schedule, precision, evaluation and best-epoch selection, checkpoints, tracking, outputs and the
seed, each validated once, here. A task's config (text, image, domain adaptation) subclasses it
(through :class:`TransferConfig`, which adds the flags of every registered transfer strategy,
or :class:`FrozenPrefixConfig`, freezing only) and adds only its own fields; a recipe's config
subclasses that to change defaults.

Every field is made by :func:`arg`: its default, the help string of its ``--flag`` and the
``--help`` section it is listed under.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from ..args import (
    arg,
    check_choice,
    check_non_negative,
    check_optional_positive,
    check_positive,
)
from ..transfer.strategies import arguments_classes, check_strategies
from ..transfer.strategies.freeze import FreezeArguments
from .checkpoint import SAVE_STRATEGIES

MIXED_PRECISION_CHOICES = ("no", "fp16", "bf16", "auto")
TRACKERS = ("tensorboard", "wandb", "mlflow")

# --help sections, in the order they are listed (a task's own sections come first).
OPTIMISATION = "Optimisation"
EVALUATION = "Evaluation and outputs"
CHECKPOINTS = "Checkpoints and resuming"
TRACKING = "Tracking and sharing"


def parse_report_to(report_to: str) -> list[str]:
    """``--report_to`` (``none``, ``all`` or a comma list) as Accelerate tracker names.

    Returns:
        The names, ``[]`` for none.

    Raises:
        ValueError: An unknown tracker name.
    """
    names = [n.strip() for n in report_to.split(",") if n.strip()]
    if names in ([], ["none"]):
        return []
    if names == ["all"]:
        return list(TRACKERS)
    unknown = sorted(set(names) - set(TRACKERS))
    if unknown:
        raise ValueError(
            f"--report_to {report_to!r}: unknown tracker(s) {', '.join(unknown)}; use "
            f"none, all, or a comma list of {', '.join(TRACKERS)}."
        )
    return names


@dataclass
class TrainingConfig:
    """What every run of the shared training loop needs. Names follow ``transformers.TrainingArguments``.

    Subclasses add their task's fields, change defaults by redeclaring a field, and extend
    :meth:`validate` (calling ``super().validate()``).

    Raises:
        ValueError: A value out of range or not among a flag's choices; the message names the flag.
    """

    #: Fields a subclass may leave unset (None, "auto") for its run to choose at start.
    auto_fields: ClassVar[tuple[str, ...]] = ()

    # Optimisation
    learning_rate: float = arg(5e-5, "Peak AdamW learning rate.", OPTIMISATION)
    weight_decay: float = arg(
        0.01,
        "AdamW decoupled weight decay (not on biases and normalisation weights).",
        OPTIMISATION,
    )
    warmup_ratio: float = arg(0.1, "Fraction of optimizer steps of linear warm-up.", OPTIMISATION)
    lr_scheduler_type: str = arg(
        "linear", "Learning-rate schedule (any transformers.get_scheduler name).", OPTIMISATION
    )
    num_train_epochs: int = arg(3, "Number of training epochs.", OPTIMISATION)
    per_device_train_batch_size: int = arg(32, "Training batch size per process.", OPTIMISATION)
    per_device_eval_batch_size: int = arg(128, "Evaluation batch size per process.", OPTIMISATION)
    gradient_accumulation_steps: int = arg(1, "Batches per optimizer step.", OPTIMISATION)
    max_grad_norm: float = arg(1.0, "Gradient clipping norm; 0 disables clipping.", OPTIMISATION)
    mixed_precision: str | None = arg(
        None,
        "no | fp16 | bf16 | auto (bf16 where the CPU or GPU computes it natively, else no); "
        "unset: Accelerate's launch config, else no.",
        OPTIMISATION,
    )
    seed: int = arg(42, "Seed for splits, initialisation and shuffling.", OPTIMISATION)
    # Evaluation and outputs
    metric_for_best_model: str = arg(
        "accuracy",
        "Validation metric that selects the best epoch (accuracy, f1_macro, roc_auc, loss...).",
        EVALUATION,
    )
    load_best_model_at_end: bool = arg(
        True, "Keep the weights of the best epoch, not the last.", EVALUATION
    )
    early_stopping_patience: int | None = arg(
        None,
        "Stop after this many epochs without a better --metric_for_best_model on validation; "
        "unset trains every epoch.",
        EVALUATION,
    )
    output_dir: str = arg(
        "outputs/run", "Where the model, metrics.json and config.yaml go.", EVALUATION
    )
    overwrite_output_dir: bool = arg(False, "Write into a non-empty output_dir.", EVALUATION)
    use_cpu: bool = arg(False, "Train on the CPU even when a GPU is available.", EVALUATION)
    dataloader_num_workers: int = arg(0, "DataLoader worker processes.", EVALUATION)
    logging_steps: int = arg(
        50,
        "Batches between progress updates (tracker logs: optimizer steps).",
        EVALUATION,
    )
    # Checkpointing and resumption
    save_strategy: str = arg(
        "epoch",
        "Checkpoints (output_dir/checkpoints) for --resume_from_checkpoint: no, epoch or steps "
        "(every --save_steps). Ctrl-C/SIGTERM save one unless no.",
        CHECKPOINTS,
    )
    save_steps: int = arg(
        500, "Optimizer steps between checkpoints under --save_strategy steps.", CHECKPOINTS
    )
    save_total_limit: int | None = arg(
        1,
        "Keep at most this many checkpoints, newest first (the best epoch's weights travel "
        "inside each); unset keeps all.",
        CHECKPOINTS,
    )
    resume_from_checkpoint: str | None = arg(
        None,
        "Continue an interrupted run exactly where it stopped: a checkpoint directory, or latest "
        "(the newest in output_dir/checkpoints). Use the interrupted run's settings.",
        CHECKPOINTS,
    )
    # Tracking
    report_to: str = arg(
        "none",
        "Experiment tracking (Accelerate): none, tensorboard, wandb, mlflow, all or a comma list: "
        "config, loss and LR every --logging_steps, metrics per epoch.",
        TRACKING,
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every value; subclasses extend this (calling ``super().validate()``).

        Raises:
            ValueError: A value out of range; the message names the flag.
        """
        required = (
            "learning_rate",
            "num_train_epochs",
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
            "logging_steps",
            "save_steps",
        )
        check_positive(self, *(n for n in required if n not in self.auto_fields))
        check_optional_positive(self, *self.auto_fields)
        check_non_negative(self, "weight_decay", "max_grad_norm", "dataloader_num_workers")
        check_optional_positive(self, "save_total_limit", "early_stopping_patience")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        check_choice(self, "save_strategy", SAVE_STRATEGIES)
        check_choice(self, "mixed_precision", MIXED_PRECISION_CHOICES, optional=True)
        self.report_to_list()  # validates --report_to

    def report_to_list(self) -> list[str]:
        """``--report_to`` as a list of Accelerate tracker names: :func:`parse_report_to`."""
        return parse_report_to(self.report_to)

    @property
    def find_unused_parameters(self) -> bool:
        """Whether DDP must expect parameters without gradients (e.g. gradual unfreezing)."""
        return False

    @classmethod
    def field_names(cls) -> list[str]:
        """The names of every field (every ``--flag``)."""
        return [f.name for f in dataclasses.fields(cls)]


@dataclass
class FrozenPrefixConfig(FreezeArguments, TrainingConfig):
    """Training arguments plus freezing the lower blocks, caching their output and the head's
    learning rate (:mod:`~nlp_transfer.transfer.strategies.freeze`): what a task offers when it
    has no other transfer strategy (domain adaptation).

    Raises:
        ValueError: A value out of range or not among a flag's choices; the message names the flag.
    """

    def validate(self) -> None:
        super().validate()
        check_strategies(self)


@dataclass
class TransferConfig(
    *reversed([c for c in arguments_classes() if c not in FrozenPrefixConfig.__mro__]),
    FrozenPrefixConfig,
):
    """Training arguments plus the flags of every registered transfer strategy
    (:mod:`nlp_transfer.transfer.strategies`: freezing and its cache, feature extraction, peft
    adapters, BitFit, layer-wise LR decay, L2-SP, gradual unfreezing).

    Raises:
        ValueError: A value out of range, or strategies that do not combine (the message names
            the flags).
    """

    @property
    def find_unused_parameters(self) -> bool:
        return self.gradual_unfreezing
