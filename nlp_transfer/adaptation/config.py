"""The configuration of a domain-adaptation run: one dataclass, Hugging Face names where they apply."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.custom import EMPTY_TEXT_CHOICES
from ..training.arguments import HELP_SECTIONS, check_choice, check_non_negative, check_positive
from ..transfer.arguments import FrozenPrefixConfig
from ..transfer.features import POOLING_CHOICES

METHODS = ("source_only", "dann", "coral", "mmd")
SCHEDULES = ("ramp", "constant")
# Short names for the built-in target domains (all from the same VADER archive as the source).
TARGET_DOMAINS = {
    "amazon": "amazon_review_snippets",
    "tweets": "tweets",
    "nyt": "nyt_editorial_snippets",
}


def _help(text: str, group: str = "Data", **kwargs) -> dict:
    HELP_SECTIONS[text] = group
    return {"metadata": {"help": text}, **kwargs}


@dataclass
class DomainAdaptationConfig(FrozenPrefixConfig):
    """Every setting of a domain-adaptation run (``recipes/domain_adaptation.py``).

    The training arguments, ``--freeze_layers`` and the prefix cache come from
    :class:`~nlp_transfer.transfer.arguments.FrozenPrefixConfig`; these are the task's own
    fields and defaults.

    Raises:
        ValueError: Missing data, an unknown method or a value out of range (the message names
            the flag).
    """

    # Data
    source_dataset: str | None = field(
        default="rotten_tomatoes_sentences",
        **_help("Labelled source domain: a built-in dataset; ignored when --source_file is given."),
    )
    source_file: str | None = field(
        default=None, **_help("Labelled source data instead: .csv, .tsv, .jsonl or .parquet.")
    )
    target_domain: str | None = field(
        default="amazon",
        **_help(
            "Built-in target domain: amazon, tweets or nyt (or a built-in dataset name). Its "
            "training split is used without labels; its labels serve only the test split and "
            "the in-domain oracle. Ignored when --target_train_file is given."
        ),
    )
    target_train_file: str | None = field(
        default=None,
        **_help(
            "Unlabelled target-domain texts (.csv/.tsv/.jsonl/.parquet with --text_column; any "
            "label column is ignored). Needs --target_test_file."
        ),
    )
    target_test_file: str | None = field(
        default=None,
        **_help("Labelled target-domain test data (same label names as the source)."),
    )
    text_column: str = field(default="text", **_help("Column holding the text (files)."))
    label_column: str = field(default="label", **_help("Column holding the label (files)."))
    file_encoding: str = field(default="utf-8", **_help("Text encoding of the files."))
    empty_texts: str = field(
        default="drop", **_help("Rows with an empty text: drop (counted in the log) or error.")
    )
    source_validation_size: float = field(
        default=0.1,
        **_help("Fraction of the source split off for validation (model selection) and test."),
    )
    target_validation_size: float = field(
        default=0.1,
        **_help("Fraction of a built-in target domain for validation (used by the oracle only)."),
    )
    target_test_size: float = field(
        default=0.4,
        **_help(
            "Fraction of a built-in target domain held out for the test (the reported result)."
        ),
    )
    max_source_samples: int | None = field(
        default=None, **_help("Train on at most this many source examples.")
    )
    max_target_samples: int | None = field(
        default=None, **_help("Use at most this many unlabelled target training texts.")
    )
    cache_dir: str | None = field(
        default=None,
        **_help("Where built-in data are downloaded (default: $NLP_TRANSFER_CACHE or ~/.cache)."),
    )
    # Model and adaptation
    model_name_or_path: str | None = field(
        default=None,
        **_help(
            group="Model and adaptation methods",
            text="Hub id or local directory of a BERT-family model; unset: packaged all-MiniLM-L6-v2.",
        ),
    )
    freeze_layers: int = field(
        default=4,
        **_help(
            group="Model and adaptation methods",
            text="Freeze the embeddings and the lower k encoder layers; only the layers above (and the "
            "heads) adapt. Their output is cached once and shared by every method.",
        ),
    )
    max_seq_length: int = field(
        default=128,
        **_help(group="Model and adaptation methods", text="Truncate texts to this many tokens."),
    )
    pooling: str = field(
        default="mean",
        **_help(
            group="Model and adaptation methods",
            text="Pooling of the encoder output into the shared features: mean or cls.",
        ),
    )
    methods: str = field(
        default="source_only,dann,coral,mmd",
        **_help(
            group="Model and adaptation methods",
            text=f"Comma list of methods to run, from {', '.join(METHODS)}.",
        ),
    )
    oracle: bool = field(
        default=True,
        **_help(
            group="Model and adaptation methods",
            text="Also train on the target's labelled training split (the in-domain upper reference); "
            "needs a labelled target (built-in domains).",
        ),
    )
    dann_weight: float = field(
        default=1.0,
        **_help(
            group="Model and adaptation methods",
            text="DANN: scale of the reversed domain-classifier gradient (lambda).",
        ),
    )
    coral_weight: float = field(
        default=1e4,
        **_help(
            group="Model and adaptation methods",
            text="Weight of the Deep CORAL loss. Its raw value is tiny on 384-dim sentence features "
            "(~3e-5 movie vs amazon, 1/(4 d^2) normalisation), hence the large default.",
        ),
    )
    mmd_weight: float = field(
        default=1.0,
        **_help(group="Model and adaptation methods", text="Weight of the multi-kernel MMD loss."),
    )
    adaptation_schedule: str = field(
        default="ramp",
        **_help(
            group="Model and adaptation methods",
            text="Weight schedule of every alignment loss over training progress p: ramp "
            "(2/(1+exp(-10p)) - 1, Ganin et al. 2016) or constant.",
        ),
    )
    mmd_kernels: int = field(
        default=5,
        **_help(group="Model and adaptation methods", text="MK-MMD: number of Gaussian kernels."),
    )
    mmd_kernel_mul: float = field(
        default=2.0,
        **_help(group="Model and adaptation methods", text="MK-MMD: ratio between bandwidths."),
    )
    trust_remote_code: bool = field(
        default=False,
        **_help(group="Model and adaptation methods", text="Allow custom model code from the Hub."),
    )
    # Optimisation
    learning_rate: float = field(
        default=1e-4, **_help(group="Optimisation", text="Peak AdamW learning rate of the encoder.")
    )
    head_learning_rate: float = field(
        default=1e-3,
        **_help(
            group="Optimisation",
            text="Learning rate of the new heads (classifier, DANN domain classifier).",
        ),
    )
    num_train_epochs: int = field(
        default=2, **_help(group="Optimisation", text="Epochs over the source training data.")
    )
    oracle_num_train_epochs: int = field(
        default=3,
        **_help(
            group="Optimisation",
            text="Epochs of the oracle over the (smaller) target training split.",
        ),
    )
    per_device_train_batch_size: int = field(
        default=32,
        **_help(
            group="Optimisation",
            text="Source examples per batch and process; adaptation adds as many target texts.",
        ),
    )
    group_by_length: bool = field(
        default=True,
        **_help(group="Optimisation", text="Batches of similar length (source and target alike)."),
    )
    # Outputs
    output_dir: str = field(
        default="outputs/domain_adaptation",
        **_help(
            group="Evaluation and outputs",
            text="Where metrics.json and config.yaml (and --save_models) go.",
        ),
    )
    save_models: bool = field(
        default=False,
        **_help(
            group="Evaluation and outputs",
            text="Also save each trained model to output_dir/<method>/ (loadable by nlp-transfer "
            "predict and nlp_transfer.predict).",
        ),
    )

    def __post_init__(self) -> None:
        if self.source_file is not None:
            self.source_dataset = None
        if self.target_train_file is not None:
            self.target_domain = None
        self.target_domain = TARGET_DOMAINS.get(self.target_domain, self.target_domain)
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        if self.source_dataset is None and self.source_file is None:
            raise ValueError("Give the labelled source data: --source_dataset or --source_file.")
        if self.target_domain is None and self.target_train_file is None:
            raise ValueError(
                "Give the target domain: --target_domain amazon|tweets|nyt, or "
                "--target_train_file (unlabelled) with --target_test_file (labelled)."
            )
        if self.target_train_file is not None and self.target_test_file is None:
            raise ValueError(
                "--target_train_file needs --target_test_file: labelled target texts to measure "
                "the adaptation on."
            )
        unknown = [m for m in self.method_list() if m not in METHODS]
        if unknown or not self.method_list():
            raise ValueError(
                f"--methods must be a comma list of {', '.join(METHODS)}, got {self.methods!r}."
            )
        self._check_ranges()

    def _check_ranges(self) -> None:
        check_positive(
            self, "oracle_num_train_epochs", "max_seq_length", "mmd_kernels", "mmd_kernel_mul"
        )
        if self.per_device_train_batch_size < 2:
            raise ValueError("--per_device_train_batch_size must be >= 2 (batch statistics).")
        check_non_negative(self, "dann_weight", "coral_weight", "mmd_weight")
        for name in ("max_source_samples", "max_target_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 2:
                raise ValueError(f"--{name} must be >= 2, got {getattr(self, name)}.")
        check_choice(self, "adaptation_schedule", SCHEDULES)
        check_choice(self, "pooling", POOLING_CHOICES)
        check_choice(self, "empty_texts", EMPTY_TEXT_CHOICES)

    def method_list(self) -> list[str]:
        """``--methods`` as a list, in the given order, without repeats."""
        return list(dict.fromkeys(m.strip() for m in self.methods.split(",") if m.strip()))

    def method_weight(self, method: str) -> float:
        """The flag-set weight of an alignment method (0 for ``source_only``)."""
        return {"dann": self.dann_weight, "coral": self.coral_weight, "mmd": self.mmd_weight}.get(
            method, 0.0
        )
