"""The text tasks of the recipes and ``nlp-transfer train --task``: their config defaults.

A text task is a :class:`~nlp_transfer.config.TextClassificationConfig` subclass that changes
defaults only, so ``accelerate launch recipes/spam.py`` and ``nlp-transfer train --task spam``
parse the same flags into the same config and train the same model. The ``image`` task is the
image recipe's :class:`~nlp_transfer.vision.config.ImageClassificationConfig` and its run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import TextClassificationConfig


@dataclass
class SentimentConfig(TextClassificationConfig):
    """Defaults of the sentiment recipe: built-in Rotten Tomatoes sentences, full fine-tuning."""

    dataset_name: str | None = field(
        default="rotten_tomatoes_sentences",
        metadata={
            "help": "A built-in dataset (e.g. rotten_tomatoes_sentences) or a Hub dataset; "
            "ignored when --train_file is given."
        },
    )
    num_train_epochs: int = field(
        default=2, metadata={"help": "Number of training epochs (2 take ~6 min on a 2-core CPU)."}
    )
    output_dir: str = field(
        default="outputs/sentiment",
        metadata={"help": "Where the model, metrics.json and config.yaml go."},
    )


@dataclass
class SpamConfig(TextClassificationConfig):
    """Defaults of the spam recipe: built-in SMS Spam Collection, best epoch by spam F1."""

    dataset_name: str | None = field(
        default="sms_spam",
        metadata={
            "help": "A built-in dataset (e.g. sms_spam) or a Hub dataset; ignored when --train_file is given."
        },
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak AdamW learning rate."})
    num_train_epochs: int = field(default=3, metadata={"help": "Number of training epochs."})
    metric_for_best_model: str = field(
        default="f1_spam", metadata={"help": "Validation metric that selects the best epoch."}
    )
    output_dir: str = field(
        default="outputs/spam",
        metadata={"help": "Where the model, metrics.json, plots/ and config.yaml go."},
    )


@dataclass
class TopicsConfig(TextClassificationConfig):
    """Defaults of the topics recipe: built-in 20 Newsgroups (20 classes, long posts).

    Longer inputs than the sentence tasks (posts run to hundreds of words), a higher learning
    rate and more epochs, chosen to beat the TF-IDF baseline, which is strong on this corpus.
    """

    dataset_name: str | None = field(
        default="20_newsgroups",
        metadata={
            "help": "A built-in dataset (e.g. 20_newsgroups) or a Hub dataset; ignored when "
            "--train_file is given."
        },
    )
    max_seq_length: int = field(
        default=256, metadata={"help": "Truncate texts to this many tokens (posts are long)."}
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak AdamW learning rate."})
    num_train_epochs: int = field(default=4, metadata={"help": "Number of training epochs."})
    per_device_train_batch_size: int = field(
        default=16, metadata={"help": "Training batch size per process."}
    )
    metric_for_best_model: str = field(
        default="f1_macro", metadata={"help": "Validation metric that selects the best epoch."}
    )
    output_dir: str = field(
        default="outputs/topics",
        metadata={"help": "Where the model, metrics.json, plots/ and config.yaml go."},
    )


# name -> (config class, title of the printed summary)
TEXT_TASKS: dict[str, tuple[type[TextClassificationConfig], str]] = {
    "text": (TextClassificationConfig, "text classification"),
    "sentiment": (SentimentConfig, "sentiment"),
    "spam": (SpamConfig, "spam"),
    "topics": (TopicsConfig, "topics"),
}
