"""The text tasks of the recipes and ``nlp-transfer train --task``: their config defaults.

A text task is a :class:`~nlp_transfer.config.TextClassificationConfig` subclass that changes
defaults only, so ``accelerate launch recipes/spam.py`` and ``nlp-transfer train --task spam``
parse the same flags into the same config and train the same model. The ``image`` task is the
image recipe's :class:`~nlp_transfer.vision.config.ImageClassificationConfig` and its run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..training.arguments import TrainingConfig
from .config import TextClassificationConfig

_PATIENCE_HELP = next(  # the shared help text (it selects the --help section)
    f.metadata["help"]
    for f in dataclasses.fields(TrainingConfig)
    if f.name == "early_stopping_patience"
)


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
    # the recipe's fixed budget (not the data-sized defaults of TextClassificationConfig)
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak AdamW learning rate."})
    num_train_epochs: int = field(
        default=2, metadata={"help": "Number of training epochs (2 take ~6 min on a 2-core CPU)."}
    )
    early_stopping_patience: int | None = field(default=None, metadata={"help": _PATIENCE_HELP})
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
    early_stopping_patience: int | None = field(default=None, metadata={"help": _PATIENCE_HELP})
    metric_for_best_model: str = field(
        default="f1_spam", metadata={"help": "Validation metric that selects the best epoch."}
    )
    output_dir: str = field(
        default="outputs/spam",
        metadata={"help": "Where the model, metrics.json, plots/ and config.yaml go."},
    )


# name -> (config class, title of the printed summary)
TEXT_TASKS: dict[str, tuple[type[TextClassificationConfig], str]] = {
    "text": (TextClassificationConfig, "text classification"),
    "sentiment": (SentimentConfig, "sentiment"),
    "spam": (SpamConfig, "spam"),
}
