"""The configuration of a domain-adaptation run: one dataclass, Hugging Face names where they apply."""

from __future__ import annotations

from dataclasses import dataclass

from ..data.pipeline import EMPTY_TEXT_CHOICES
from ..training.arguments import (
    FrozenPrefixConfig,
    arg,
    check_choice,
    check_non_negative,
    check_positive,
)
from ..transfer.features import POOLING_CHOICES

METHODS = ("source_only", "dann", "coral", "mmd")
SCHEDULES = ("ramp", "constant")
# Short names for the built-in target domains (all from the same VADER archive as the source).
TARGET_DOMAINS = {
    "amazon": "amazon_review_snippets",
    "tweets": "tweets",
    "nyt": "nyt_editorial_snippets",
}


@dataclass
class DomainAdaptationConfig(FrozenPrefixConfig):
    """Every setting of a domain-adaptation run (``recipes/domain_adaptation.py``).

    The training arguments, ``--freeze_layers`` and the prefix cache come from
    :class:`~nlp_transfer.training.arguments.FrozenPrefixConfig`; these are the task's own
    fields and defaults.

    Raises:
        ValueError: Missing data, an unknown method or a value out of range (the message names
            the flag).
    """

    # Data
    source_dataset: str | None = arg(
        "rotten_tomatoes_sentences",
        "Labelled source domain: a built-in dataset; ignored when --source_file is given.",
        "Data",
    )
    source_file: str | None = arg(
        None, "Labelled source data instead: .csv, .tsv, .jsonl or .parquet.", "Data"
    )
    target_domain: str | None = arg(
        "amazon",
        "Built-in target domain: amazon, tweets or nyt (or a built-in dataset name). Its "
        "training split is used without labels; its labels serve only the test split and "
        "the in-domain oracle. Ignored when --target_train_file is given.",
        "Data",
    )
    target_train_file: str | None = arg(
        None,
        "Unlabelled target-domain texts (.csv/.tsv/.jsonl/.parquet with --text_column; any "
        "label column is ignored). Needs --target_test_file.",
        "Data",
    )
    target_test_file: str | None = arg(
        None, "Labelled target-domain test data (same label names as the source).", "Data"
    )
    text_column: str = arg("text", "Column holding the text (files).", "Data")
    label_column: str = arg("label", "Column holding the label (files).", "Data")
    file_encoding: str = arg("utf-8", "Text encoding of the files.", "Data")
    empty_texts: str = arg(
        "drop", "Rows with an empty text: drop (counted in the log) or error.", "Data"
    )
    source_validation_size: float = arg(
        0.1, "Fraction of the source split off for validation (model selection) and test.", "Data"
    )
    target_validation_size: float = arg(
        0.1,
        "Fraction of a built-in target domain for validation (used by the oracle only).",
        "Data",
    )
    target_test_size: float = arg(
        0.4,
        "Fraction of a built-in target domain held out for the test (the reported result).",
        "Data",
    )
    max_source_samples: int | None = arg(
        None, "Train on at most this many source examples.", "Data"
    )
    max_target_samples: int | None = arg(
        None, "Use at most this many unlabelled target training texts.", "Data"
    )
    cache_dir: str | None = arg(
        None,
        "Where built-in data are downloaded (default: $NLP_TRANSFER_CACHE or ~/.cache).",
        "Data",
    )
    # Model and adaptation
    model_name_or_path: str | None = arg(
        None,
        "Hub id or local directory of a BERT-family model; unset: packaged all-MiniLM-L6-v2.",
        "Model and adaptation methods",
    )
    freeze_layers: int = arg(
        4,
        "Freeze the embeddings and the lower k encoder layers; only the layers above (and the "
        "heads) adapt. Their output is cached once and shared by every method.",
        "Model and adaptation methods",
    )
    max_seq_length: int = arg(
        128, "Truncate texts to this many tokens.", "Model and adaptation methods"
    )
    pooling: str = arg(
        "mean",
        "Pooling of the encoder output into the shared features: mean or cls.",
        "Model and adaptation methods",
    )
    methods: str = arg(
        "source_only,dann,coral,mmd",
        f"Comma list of methods to run, from {', '.join(METHODS)}.",
        "Model and adaptation methods",
    )
    oracle: bool = arg(
        True,
        "Also train on the target's labelled training split (the in-domain upper reference); "
        "needs a labelled target (built-in domains).",
        "Model and adaptation methods",
    )
    dann_weight: float = arg(
        1.0,
        "DANN: scale of the reversed domain-classifier gradient (lambda).",
        "Model and adaptation methods",
    )
    coral_weight: float = arg(
        1e4,
        "Weight of the Deep CORAL loss. Its raw value is tiny on 384-dim sentence features "
        "(~3e-5 movie vs amazon, 1/(4 d^2) normalisation), hence the large default.",
        "Model and adaptation methods",
    )
    mmd_weight: float = arg(
        1.0, "Weight of the multi-kernel MMD loss.", "Model and adaptation methods"
    )
    adaptation_schedule: str = arg(
        "ramp",
        "Weight schedule of every alignment loss over training progress p: ramp "
        "(2/(1+exp(-10p)) - 1, Ganin et al. 2016) or constant.",
        "Model and adaptation methods",
    )
    mmd_kernels: int = arg(5, "MK-MMD: number of Gaussian kernels.", "Model and adaptation methods")
    mmd_kernel_mul: float = arg(
        2.0, "MK-MMD: ratio between bandwidths.", "Model and adaptation methods"
    )
    trust_remote_code: bool = arg(
        False, "Allow custom model code from the Hub.", "Model and adaptation methods"
    )
    # Optimisation
    learning_rate: float = arg(1e-4, "Peak AdamW learning rate of the encoder.", "Optimisation")
    head_learning_rate: float = arg(
        1e-3, "Learning rate of the new heads (classifier, DANN domain classifier).", "Optimisation"
    )
    num_train_epochs: int = arg(2, "Epochs over the source training data.", "Optimisation")
    oracle_num_train_epochs: int = arg(
        3, "Epochs of the oracle over the (smaller) target training split.", "Optimisation"
    )
    per_device_train_batch_size: int = arg(
        32,
        "Source examples per batch and process; adaptation adds as many target texts.",
        "Optimisation",
    )
    group_by_length: bool = arg(
        True, "Batches of similar length (source and target alike).", "Optimisation"
    )
    # Outputs
    output_dir: str = arg(
        "outputs/domain_adaptation",
        "Where metrics.json and config.yaml (and --save_models) go.",
        "Evaluation and outputs",
    )
    save_models: bool = arg(
        False,
        "Also save each trained model to output_dir/<method>/ (loadable by nlp-transfer "
        "predict and nlp_transfer.predict).",
        "Evaluation and outputs",
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
