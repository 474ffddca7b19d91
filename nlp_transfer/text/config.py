"""The typed configuration of a text-classification run: the shared arguments plus text's own."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..args import parse_duration
from ..data.encode import PROBLEM_TYPES
from ..data.pipeline import EMPTY_TEXT_CHOICES
from ..data.samplers import SAMPLING_CHOICES
from ..training.arguments import (
    EVALUATION,
    OPTIMISATION,
    TRACKING,
    TransferConfig,
    arg,
    check_choice,
    check_optional_positive,
)
from ..training.calibration import CALIBRATION_METHODS
from ..transfer.features import POOLING_CHOICES
from ..transfer.strategies.contrastive import ContrastiveArguments
from ..transfer.strategies.freeze import TRANSFER
from .windows import DEFAULT_MAX_CHUNKS, LongTextSettings

DATA = "Data"
# manual: the strategy the flags describe; auto: the race of nlp_transfer.race picks one.
STRATEGY_CHOICES = ("manual", "auto")
MODEL = "Model"
IMBALANCE = "Class imbalance"


@dataclass
class TextClassificationConfig(ContrastiveArguments, TransferConfig):
    """Every setting of a text-classification run. Names follow ``transformers.TrainingArguments``.

    The training and transfer-strategy fields come from
    :class:`~nlp_transfer.training.arguments.TransferConfig`, plus text's own strategy,
    contrastive transfer (:class:`~nlp_transfer.transfer.strategies.contrastive.ContrastiveArguments`);
    these are text's own.

    Raises:
        ValueError: A value out of range, or settings that do not combine (the message names
            the flags).
        FileNotFoundError: ``--init_from`` is not a saved model.
    """

    auto_fields: ClassVar[tuple[str, ...]] = ("learning_rate", "num_train_epochs")

    # Optimisation: unset = chosen from the data at the start of the run (text/defaults.py)
    learning_rate: float | None = arg(
        None,
        "Peak AdamW learning rate; unset: 5e-5, 1e-4 for < 5,000 training examples or >= 5 "
        "classes, halved for large encoders, 1e-3 with the whole encoder frozen (logged).",
        OPTIMISATION,
    )
    num_train_epochs: int | None = arg(
        None,
        "Maximum epochs; unset: about 1,000 optimizer steps, 3 to 10 epochs (logged); early "
        "stopping may end sooner.",
        OPTIMISATION,
    )
    early_stopping_patience: int | None = arg(
        2,
        "Stop after this many epochs without a better validation --metric_for_best_model.",
        EVALUATION,
    )

    # Data
    dataset_name: str | None = arg(
        None,
        "A built-in dataset (e.g. rotten_tomatoes_sentences) or a Hugging Face Hub dataset.",
        DATA,
    )
    train_file: str | None = arg(
        None, "Training data: .csv, .tsv, .jsonl, .json or .parquet.", DATA
    )
    validation_file: str | None = arg(
        None, "Validation data; split off the training data if unset.", DATA
    )
    test_file: str | None = arg(None, "Test data; split off the training data if unset.", DATA)
    text_column: str = arg("text", "Column holding the text.", DATA)
    label_column: str = arg(
        "label",
        "Column holding the label (strings or integers), the labels (lists, or strings joined by "
        "--label_separator) or the regression target (numbers).",
        DATA,
    )
    text_pair_column: str | None = arg(
        None,
        "Column holding the second text of a sentence pair (NLI, paraphrase): both are "
        "encoded together.",
        DATA,
    )
    problem_type: str | None = arg(
        None,
        "single_label_classification, multi_label_classification or regression; unset: "
        "inferred from the label column (lists, or strings holding --label_separator, are "
        "multi-label; regression is only ever asked for).",
        DATA,
    )
    label_separator: str | None = arg(
        None, "Multi-label: the separator of labels within a string, e.g. ','.", DATA
    )
    standardize_targets: bool | None = arg(
        None,
        "Regression: train on standardised targets (mean 0, std 1 on train); the saved model "
        "predicts in the targets' units. Unset: on for regression.",
        DATA,
    )
    validation_size: float = arg(
        0.1, "Fraction of the data split off for validation when there is no validation file.", DATA
    )
    test_size: float = arg(
        0.1, "Fraction of the data split off for test when there is no test file.", DATA
    )
    file_encoding: str = arg(
        "utf-8",
        "Encoding of the data files (CSV/TSV/JSON), e.g. cp1252 or latin-1 from Excel.",
        DATA,
    )
    empty_texts: str = arg(
        "drop",
        "Rows whose text is missing, empty or whitespace only: drop (the count is logged) or error.",
        DATA,
    )
    max_train_samples: int | None = arg(
        None, "Keep only this many training examples (quick runs).", DATA
    )
    max_eval_samples: int | None = arg(
        None, "Keep only this many validation and test examples (quick runs).", DATA
    )
    preprocessing_num_workers: int | None = arg(
        None,
        "Processes that tokenize (datasets' num_proc); unset: this one. A file's tokens are "
        "cached and reused.",
        DATA,
    )
    cache_dir: str | None = arg(
        None,
        "Downloads, frozen-prefix and feature caches (default: $NLP_TRANSFER_CACHE or "
        "~/.cache/nlp_transfer); when set, also datasets' Arrow cache of your files.",
        DATA,
    )
    # Model
    model_name_or_path: str | None = arg(
        None,
        "Hub id or local directory of a BERT-family model; unset: the packaged all-MiniLM-L6-v2.",
        MODEL,
    )
    max_seq_length: int | None = arg(
        None,
        "Truncate texts to this many tokens; unset: sized to the training texts (logged).",
        MODEL,
    )
    long_text_strategy: str | None = arg(
        None,
        "Texts over --max_seq_length: truncate, head_tail or chunks (windows, pooled); unset: "
        "from the data.",
        MODEL,
    )
    stride: int | None = arg(
        None, "chunks: tokens shared by consecutive windows (unset: a quarter).", MODEL
    )
    max_chunks: int = arg(DEFAULT_MAX_CHUNKS, "chunks: most windows per text.", MODEL)
    chunk_pooling: str = arg("mean", "chunks: mean or max of the windows' logits.", MODEL)
    trust_remote_code: bool = arg(False, "Allow custom model code from the Hub.", MODEL)
    prefix_cache_memory_gb: float | None = arg(
        None,
        "--cache_frozen_prefix auto: the cache stays in memory up to this many GB, else is "
        "memory-mapped; unset: a quarter of the RAM.",
        TRANSFER,
    )
    pooling: str = arg(
        "mean",
        "Feature pooling: mean (all-MiniLM-L6-v2's) or cls.",
        TRANSFER,
    )
    init_from: str | None = arg(
        None,
        "Weight transfer: the encoder of a model fine-tuned on a source task (its output_dir), "
        "a new head.",
        TRANSFER,
    )
    group_by_length: bool = arg(
        True,
        "Batch examples of similar length together (still shuffled): far less padding.",
        OPTIMISATION,
    )
    # Class imbalance
    class_weights: str | None = arg(
        None,
        "none, balanced (n / (C * n_c); multi-label: pos_weight) or a comma list by label id; "
        "unset: balanced for multi-label only.",
        IMBALANCE,
    )
    sampling: str = arg(
        "none", "Class-balanced training batches: none, oversample or undersample.", IMBALANCE
    )
    decision_threshold: float = arg(
        0.5,
        "Binary: predict label id 1 when its probability is >= this; multi-label: each label's.",
        IMBALANCE,
    )
    tune_decision_threshold: bool | None = arg(
        None,
        "Tune the binary (multi-label: each label's) threshold for F1 on validation; unset: "
        "multi-label only.",
        IMBALANCE,
    )
    calibration: str = arg(
        "auto",
        "auto (temperature scaling, Guo et al. 2017; binary: then an isotonic map if it "
        "helps), temperature or none.",
        EVALUATION,
    )
    calibration_split_size: float = arg(
        0.5,
        "Validation share held out for the conformal scores only (docs/calibration.md).",
        EVALUATION,
    )
    abstain_below_precision: float | None = arg(
        None,
        "Single-label: flag predictions abstain below the confidence that keeps validation "
        "precision at this (e.g. 0.95).",
        EVALUATION,
    )
    # Outputs and sharing
    strategy: str = arg("manual", "auto: race strategies, keep the best.", TRANSFER)
    time_budget: str | None = arg(None, "auto: time for the whole race (90s, 20m, 1h).", TRANSFER)
    race_candidates: str | None = arg(
        None, "auto: the strategies raced (comma list); unset: all that apply.", TRANSFER
    )
    audit: bool = arg(
        False,
        "First audit the training data (nlp-transfer audit); report in <output_dir>/audit.",
        EVALUATION,
    )
    run_baseline: bool = arg(
        True, "Also fit TF-IDF + logistic regression on the same split.", EVALUATION
    )
    output_dir: str = arg(
        "outputs/text_classification",
        "Where the model, metrics.json and config.yaml go.",
        EVALUATION,
    )
    push_to_hub: bool = arg(
        False, "Upload the saved model (with its model card) to the Hugging Face Hub.", TRACKING
    )
    hub_model_id: str | None = arg(
        None,
        "Hub repository for --push_to_hub (user/name); default: the output_dir's name.",
        TRACKING,
    )

    def __post_init__(self) -> None:
        # A recipe's built-in default dataset gives way to a user's --train_file.
        recipe_default = next(
            f.default for f in dataclasses.fields(self) if f.name == "dataset_name"
        )
        if self.train_file is not None and recipe_default and self.dataset_name == recipe_default:
            self.dataset_name = None
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        check_optional_positive(
            self,
            "max_seq_length",
            "max_train_samples",
            "max_eval_samples",
            "preprocessing_num_workers",
        )
        if self.prefix_cache_memory_gb is not None and self.prefix_cache_memory_gb < 0:
            raise ValueError(
                f"--prefix_cache_memory_gb must be >= 0, got {self.prefix_cache_memory_gb}."
            )
        if not 0 < self.decision_threshold < 1:
            raise ValueError(
                f"--decision_threshold must be in (0, 1), got {self.decision_threshold}."
            )
        check_choice(self, "empty_texts", EMPTY_TEXT_CHOICES)
        if self.problem_type is not None:
            check_choice(self, "problem_type", PROBLEM_TYPES)
        check_choice(self, "sampling", SAMPLING_CHOICES)
        check_choice(self, "calibration", CALIBRATION_METHODS)
        if not 0.0 <= self.calibration_split_size < 1.0:
            raise ValueError(
                f"--calibration_split_size must be in [0, 1), got {self.calibration_split_size}."
            )
        target = self.abstain_below_precision
        if target is not None and not 0.0 < target <= 1.0:
            raise ValueError(f"--abstain_below_precision must be in (0, 1], got {target}.")
        check_choice(self, "pooling", POOLING_CHOICES)
        self._check_race()
        settings = self.long_text_settings()  # bad values fail now
        if self.max_seq_length is not None and settings.windowed:
            settings.stride_for(self.max_seq_length)
        if settings.windowed and self.feature_extraction != "none":
            raise ValueError(
                "--long_text_strategy chunks trains on windows, which --feature_extraction "
                f"{self.feature_extraction} does not do: use --long_text_strategy head_tail, or "
                "fine-tune (--feature_extraction none)."
            )
        self._check_sources()

    def _check_race(self) -> None:
        check_choice(self, "strategy", STRATEGY_CHOICES)
        if self.strategy != "auto" and (self.time_budget or self.race_candidates):
            raise ValueError("--time_budget and --race_candidates need --strategy auto.")
        if self.time_budget:
            parse_duration(self.time_budget)

    def long_text_settings(self) -> LongTextSettings:
        """``--long_text_strategy``, ``--stride``, ``--max_chunks`` and ``--chunk_pooling``.

        Raises:
            ValueError: An unknown strategy or pooling, or a bad ``--max_chunks``/``--stride``.
        """
        return LongTextSettings.from_config(self)

    def _check_sources(self) -> None:
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
                "Give either --init_from (a fine-tuned source model) or --model_name_or_path, "
                "not both."
            )
        if self.dataset_name is not None and self.train_file is not None:
            raise ValueError("Give either --dataset_name or --train_file, not both.")
