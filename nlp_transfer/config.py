"""Typed run configuration: one dataclass, Hugging Face names, a YAML file overridden by flags."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml
from transformers import HfArgumentParser

from .data.custom import EMPTY_TEXT_CHOICES
from .data.samplers import SAMPLING_CHOICES
from .training.checkpoint import SAVE_STRATEGIES
from .transfer.cache import CACHE_CHOICES, CACHE_DTYPES
from .transfer.features import HEAD_CHOICES, POOLING_CHOICES

MIXED_PRECISION_CHOICES = ("no", "fp16", "bf16")


def _help(text: str, **kwargs) -> dict:
    return {"metadata": {"help": text}, **kwargs}


@dataclass
class TextClassificationConfig:
    """Every setting of a text-classification run. Names follow ``transformers.TrainingArguments``."""

    # Data
    dataset_name: str | None = field(
        default=None,
        **_help(
            "A built-in dataset (e.g. rotten_tomatoes_sentences) or a Hugging Face Hub dataset."
        ),
    )
    train_file: str | None = field(
        default=None, **_help("Training data: .csv, .tsv, .jsonl, .json or .parquet.")
    )
    validation_file: str | None = field(
        default=None, **_help("Validation data; split off the training data if unset.")
    )
    test_file: str | None = field(
        default=None, **_help("Test data; split off the training data if unset.")
    )
    text_column: str = field(default="text", **_help("Column holding the text."))
    label_column: str = field(
        default="label", **_help("Column holding the label (strings or integers).")
    )
    validation_size: float = field(
        default=0.1,
        **_help("Fraction of the data split off for validation when there is no validation file."),
    )
    test_size: float = field(
        default=0.1, **_help("Fraction of the data split off for test when there is no test file.")
    )
    file_encoding: str = field(
        default="utf-8",
        **_help(
            "Text encoding of --train_file/--validation_file/--test_file (CSV/TSV/JSON), e.g. cp1252 or latin-1 for files from Excel."
        ),
    )
    empty_texts: str = field(
        default="drop",
        **_help(
            "Rows whose text is missing, empty or whitespace only: drop (the count is logged) or error."
        ),
    )
    max_train_samples: int | None = field(
        default=None, **_help("Keep only this many training examples (quick runs).")
    )
    max_eval_samples: int | None = field(
        default=None, **_help("Keep only this many validation and test examples (quick runs).")
    )
    cache_dir: str | None = field(
        default=None,
        **_help(
            "Where built-in datasets are downloaded (default: $NLP_TRANSFER_CACHE or ~/.cache/nlp_transfer)."
        ),
    )
    # Model and transfer strategy
    model_name_or_path: str | None = field(
        default=None,
        **_help(
            "Hub id or local directory of a BERT-family model; unset: the packaged all-MiniLM-L6-v2."
        ),
    )
    freeze_layers: int = field(
        default=0,
        **_help("Freeze the embeddings and the lower k encoder layers; 0 = full fine-tuning."),
    )
    max_seq_length: int = field(default=128, **_help("Truncate texts to this many tokens."))
    trust_remote_code: bool = field(default=False, **_help("Allow custom model code from the Hub."))
    layer_lr_decay: float = field(
        default=1.0,
        **_help(
            "Layer-wise LR decay xi in (0, 1]: each block trains at xi times the LR of the block above (Sun et al. 2019); 1 = off."
        ),
    )
    head_learning_rate: float | None = field(
        default=None,
        **_help(
            "Learning rate of the classification head; unset: --learning_rate. A frozen encoder wants a much larger one."
        ),
    )
    l2sp_alpha: float = field(
        default=0.0,
        **_help(
            "L2-SP: alpha/2 * ||w - w0||^2 on trainable pretrained weights (Li et al. 2018); 0 = off. Replaces weight decay there."
        ),
    )
    l2sp_beta: float = field(
        default=0.0,
        **_help("L2-SP: beta/2 * ||w||^2 on the new head (used when --l2sp_alpha > 0)."),
    )
    feature_extraction: str = field(
        default="none",
        **_help(
            "Feature extraction: freeze the whole encoder, compute pooled features once, and fit a head on them: linear, mlp (torch, trained for num_train_epochs at head_learning_rate, default 1e-3) or logistic_regression (scikit-learn); none = fine-tuning."
        ),
    )
    pooling: str = field(
        default="mean",
        **_help(
            "Feature extraction pooling: mean (what sentence-transformers models such as all-MiniLM-L6-v2 were trained for) or cls."
        ),
    )
    gradual_unfreezing: bool = field(
        default=False,
        **_help(
            "Gradual unfreezing (Howard & Ruder 2018, ULMFiT): the head trains alone, then one more block from the top each epoch (or every --unfreeze_every_n_steps)."
        ),
    )
    unfreeze_every_n_steps: int = field(
        default=0,
        **_help(
            "Gradual unfreezing: unfreeze the next block every N optimizer steps; 0 = every epoch."
        ),
    )
    init_from: str | None = field(
        default=None,
        **_help(
            "Weight transfer: start from a model fine-tuned on a source task (its output_dir); the encoder is kept, the head is new for this task's labels."
        ),
    )
    cache_frozen_prefix: str = field(
        default="auto",
        **_help(
            "Frozen-prefix caching with --freeze_layers k: compute the frozen embeddings and lower k layers once and train only the layers above: auto (memory, or a memory-mapped file when large or with several processes), memory, disk, or no."
        ),
    )
    cache_dtype: str = field(
        default="float16",
        **_help(
            "Storage type of the frozen-prefix cache: float16, bfloat16 (memory only) or float32."
        ),
    )
    # Optimisation
    learning_rate: float = field(default=5e-5, **_help("Peak AdamW learning rate."))
    weight_decay: float = field(
        default=0.01, **_help("AdamW decoupled weight decay (not on biases and LayerNorm).")
    )
    warmup_ratio: float = field(
        default=0.1, **_help("Fraction of optimizer steps of linear warm-up.")
    )
    lr_scheduler_type: str = field(
        default="linear", **_help("Learning-rate schedule (any transformers.get_scheduler name).")
    )
    num_train_epochs: int = field(default=3, **_help("Number of training epochs."))
    per_device_train_batch_size: int = field(
        default=32, **_help("Training batch size per process.")
    )
    per_device_eval_batch_size: int = field(
        default=128, **_help("Evaluation batch size per process.")
    )
    group_by_length: bool = field(
        default=True,
        **_help("Batch examples of similar length together (still shuffled): far less padding."),
    )
    gradient_accumulation_steps: int = field(default=1, **_help("Batches per optimizer step."))
    max_grad_norm: float = field(
        default=1.0, **_help("Gradient clipping norm; 0 disables clipping.")
    )
    mixed_precision: str | None = field(
        default=None, **_help("no | fp16 | bf16; unset: Accelerate's launch config, else no.")
    )
    seed: int = field(default=42, **_help("Seed for splits, initialisation and shuffling."))
    # Class imbalance
    class_weights: str = field(
        default="none",
        **_help(
            "Weighted cross-entropy: none, balanced (n / (C * n_c), as scikit-learn), or a comma list in label-id order."
        ),
    )
    sampling: str = field(
        default="none", **_help("Class-balanced training batches: none, oversample or undersample.")
    )
    decision_threshold: float = field(
        default=0.5,
        **_help(
            "Binary tasks: predict the positive class (label id 1) when its probability is >= this."
        ),
    )
    tune_decision_threshold: bool = field(
        default=False,
        **_help(
            "Binary tasks: choose the threshold that maximises the positive class's F1 on validation; saved with the model."
        ),
    )
    # Evaluation and outputs
    metric_for_best_model: str = field(
        default="accuracy",
        **_help(
            "Validation metric that selects the best epoch (accuracy, f1_macro, roc_auc, loss...)."
        ),
    )
    load_best_model_at_end: bool = field(
        default=True, **_help("Keep the weights of the best epoch, not the last.")
    )
    run_baseline: bool = field(
        default=True, **_help("Also fit TF-IDF + logistic regression on the same split.")
    )
    output_dir: str = field(
        default="outputs/text_classification",
        **_help("Where the model, metrics.json and config.yaml go."),
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
        **_help(
            "Checkpoints in output_dir/checkpoints for --resume_from_checkpoint: no, epoch (after each epoch's validation) or steps (every --save_steps optimizer steps and after each epoch). Ctrl-C/SIGTERM save one before stopping unless no."
        ),
    )
    save_steps: int = field(
        default=500, **_help("Optimizer steps between checkpoints under --save_strategy steps.")
    )
    save_total_limit: int | None = field(
        default=1,
        **_help(
            "Keep at most this many checkpoints, newest first (the best epoch's weights travel inside each); unset keeps all."
        ),
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        **_help(
            "Continue an interrupted run exactly where it stopped: a checkpoint directory, or latest (the newest in output_dir/checkpoints). Use the interrupted run's settings."
        ),
    )
    # Tracking and sharing
    report_to: str = field(
        default="none",
        **_help(
            "Experiment tracking through Accelerate: none, tensorboard, wandb, mlflow, all, or a comma list. Logs the config, loss and learning rate every --logging_steps, and metrics per epoch."
        ),
    )
    push_to_hub: bool = field(
        default=False,
        **_help("Upload the saved model (with its model card) to the Hugging Face Hub."),
    )
    hub_model_id: str | None = field(
        default=None,
        **_help("Hub repository for --push_to_hub (user/name); default: the output_dir's name."),
    )
    early_stopping_patience: int | None = field(
        default=None,
        **_help(
            "Stop after this many epochs without a better --metric_for_best_model on validation; unset trains every epoch."
        ),
    )

    def __post_init__(self) -> None:
        # A recipe's built-in default dataset gives way to a user's --train_file.
        recipe_default = next(
            f.default for f in dataclasses.fields(self) if f.name == "dataset_name"
        )
        if self.train_file is not None and recipe_default and self.dataset_name == recipe_default:
            self.dataset_name = None
        positive = {
            "learning_rate": self.learning_rate,
            "num_train_epochs": self.num_train_epochs,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "per_device_eval_batch_size": self.per_device_eval_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "max_seq_length": self.max_seq_length,
            "logging_steps": self.logging_steps,
            "save_steps": self.save_steps,
        }
        for name, value in positive.items():
            if value is None or value <= 0:
                raise ValueError(f"--{name} must be positive, got {value}.")
        if not 0 < self.layer_lr_decay <= 1:
            raise ValueError(f"--layer_lr_decay must be in (0, 1], got {self.layer_lr_decay}.")
        if self.head_learning_rate is not None and self.head_learning_rate <= 0:
            raise ValueError(
                f"--head_learning_rate must be positive, got {self.head_learning_rate}."
            )
        for name in (
            "weight_decay",
            "max_grad_norm",
            "freeze_layers",
            "dataloader_num_workers",
            "l2sp_alpha",
            "l2sp_beta",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}.")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        if self.save_strategy not in SAVE_STRATEGIES:
            raise ValueError(
                f"--save_strategy must be one of {', '.join(SAVE_STRATEGIES)}, "
                f"got {self.save_strategy!r}."
            )
        for name in (
            "max_train_samples",
            "max_eval_samples",
            "save_total_limit",
            "early_stopping_patience",
        ):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}.")
        if not 0 < self.decision_threshold < 1:
            raise ValueError(
                f"--decision_threshold must be in (0, 1), got {self.decision_threshold}."
            )
        self.report_to_list()  # validates --report_to
        if self.cache_frozen_prefix not in CACHE_CHOICES:
            raise ValueError(
                f"--cache_frozen_prefix must be one of {', '.join(CACHE_CHOICES)}, "
                f"got {self.cache_frozen_prefix!r}."
            )
        if self.cache_dtype not in CACHE_DTYPES:
            raise ValueError(
                f"--cache_dtype must be one of {', '.join(CACHE_DTYPES)}, got {self.cache_dtype!r}."
            )
        if self.cache_dtype == "bfloat16" and self.cache_frozen_prefix == "disk":
            raise ValueError("--cache_dtype bfloat16 works only in memory; use float16 on disk.")
        if self.empty_texts not in EMPTY_TEXT_CHOICES:
            raise ValueError(
                f"--empty_texts must be one of {', '.join(EMPTY_TEXT_CHOICES)}, "
                f"got {self.empty_texts!r}."
            )
        if self.sampling not in SAMPLING_CHOICES:
            raise ValueError(
                f"--sampling must be one of {', '.join(SAMPLING_CHOICES)}, got {self.sampling!r}."
            )
        if self.mixed_precision is not None and self.mixed_precision not in MIXED_PRECISION_CHOICES:
            raise ValueError(
                f"--mixed_precision must be one of {', '.join(MIXED_PRECISION_CHOICES)}, "
                f"got {self.mixed_precision!r}."
            )
        if self.feature_extraction not in ("none", *HEAD_CHOICES):
            raise ValueError(
                f"--feature_extraction must be one of none, {', '.join(HEAD_CHOICES)}, "
                f"got {self.feature_extraction!r}."
            )
        if self.pooling not in POOLING_CHOICES:
            raise ValueError(
                f"--pooling must be one of {', '.join(POOLING_CHOICES)}, got {self.pooling!r}."
            )
        if self.feature_extraction != "none":
            clashes = {
                "--freeze_layers": self.freeze_layers,
                "--gradual_unfreezing": self.gradual_unfreezing,
                "--layer_lr_decay": self.layer_lr_decay != 1.0,
                "--l2sp_alpha": self.l2sp_alpha,
            }
            used = [flag for flag, value in clashes.items() if value]
            if used:
                raise ValueError(
                    f"--feature_extraction freezes the whole encoder; it does not combine with "
                    f"{', '.join(used)}."
                )
        if self.feature_extraction != "none" and self.resume_from_checkpoint:
            raise ValueError(
                "--resume_from_checkpoint: feature-extraction runs write no checkpoints (the "
                "head trains in seconds on features computed once); run it again instead."
            )
        if self.unfreeze_every_n_steps < 0:
            raise ValueError(
                f"--unfreeze_every_n_steps must be >= 0, got {self.unfreeze_every_n_steps}."
            )
        if (
            self.init_from is not None
            and not (Path(self.init_from).expanduser() / "config.json").exists()
        ):
            raise FileNotFoundError(
                f"--init_from {self.init_from}: no saved model there (config.json missing); "
                "point it at the output_dir of a finished run."
            )
        if self.init_from is not None and self.model_name_or_path is not None:
            raise ValueError(
                "Give either --init_from (a fine-tuned source model) or --model_name_or_path, not both."
            )
        if self.dataset_name is not None and self.train_file is not None:
            raise ValueError("Give either --dataset_name or --train_file, not both.")

    def report_to_list(self) -> list[str]:
        """``--report_to`` as a list of Accelerate tracker names: :func:`parse_report_to`."""
        return parse_report_to(self.report_to)


TRACKERS = ("tensorboard", "wandb", "mlflow")


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


# --help groups: the first field of each group, in the dataclass's order.
HELP_GROUPS = {
    "dataset_name": "Data",
    "model_name_or_path": "Model and transfer strategy",
    "source_num_train_epochs": "Transfer experiment (fashion_mnist_transfer)",
    "architecture": "Model and transfer strategy",
    "learning_rate": "Optimisation",
    "class_weights": "Class imbalance",
    "metric_for_best_model": "Evaluation and outputs",
    "save_strategy": "Checkpoints and resuming",
    "report_to": "Tracking and sharing",
}

ConfigT = TypeVar("ConfigT")


def build_config_parser(config_cls: type, prog: str | None = None) -> HfArgumentParser:
    """An ``HfArgumentParser`` for ``config_cls`` plus ``--config``, its ``--help`` grouped by topic.

    The groups start at the fields named in ``config_cls.help_groups`` when the class has that
    attribute (a ``{first field: title}`` mapping), else at those of :data:`HELP_GROUPS`.
    """
    help_groups = getattr(config_cls, "help_groups", HELP_GROUPS)
    parser = HfArgumentParser(config_cls, prog=prog)
    parser.add_argument("--config", default=None, help="YAML file of settings; flags override it.")
    default_group = next(
        g for g in parser._action_groups if g.title in ("options", "optional arguments")
    )
    groups, current = {}, None
    for f in dataclasses.fields(config_cls):
        if f.name in help_groups:
            current = parser.add_argument_group(help_groups[f.name])
        if current is not None:
            groups[f.name] = current
    for action in list(default_group._group_actions):
        group = groups.get(action.dest)
        if group is not None:
            default_group._group_actions.remove(action)
            group._group_actions.append(action)
    return parser


def _yaml_to_argv(path: str, valid: Sequence[str]) -> list[str]:
    config_path = Path(path).expanduser()
    if not config_path.is_file():
        raise FileNotFoundError(f"--config {path}: no such file.")
    values = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ValueError(f"--config {path} must hold a mapping of setting: value.")
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ValueError(
            f"--config {path} has unknown key(s) {', '.join(unknown)}; valid keys: "
            f"{', '.join(sorted(valid))}."
        )
    argv = []
    for key, value in values.items():
        if value is not None:
            argv += [f"--{key}", str(value)]
    return argv


def parse_config(
    config_cls: type[ConfigT], argv: Sequence[str] | None = None, prog: str | None = None
) -> ConfigT:
    """Parse ``--config file.yaml`` and flags into ``config_cls``; flags override the file.

    Built on ``transformers.HfArgumentParser``: every dataclass field is a ``--flag`` with its
    help string; booleans take ``--flag`` / ``--flag false``.

    Args:
        config_cls: A dataclass type such as :class:`TextClassificationConfig`.
        argv: Arguments without the program name; None reads ``sys.argv``.
        prog: Program name shown by ``--help``.

    Returns:
        The populated, validated dataclass.

    Raises:
        FileNotFoundError: The ``--config`` file does not exist.
        ValueError: The YAML has unknown keys (the message lists the valid ones) or a value is
            invalid.
        SystemExit: On ``--help`` or an unknown flag (argparse's behaviour).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_config_parser(config_cls, prog)
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        valid = [f.name for f in dataclasses.fields(config_cls)]
        argv = _yaml_to_argv(pre.config, valid) + argv
    namespace = vars(parser.parse_args(argv))
    namespace.pop("config")
    return config_cls(**namespace)


def save_config(config, path: str | Path, **extra) -> None:
    """Write the resolved config (plus ``extra`` resolved values) to a YAML file."""
    values = dataclasses.asdict(config) | extra
    Path(path).write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
