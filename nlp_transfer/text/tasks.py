"""The text tasks of the recipes and ``nlp-transfer train --task``: their config defaults.

A text task is a :class:`~nlp_transfer.text.config.TextClassificationConfig` subclass that changes
defaults only, so ``accelerate launch recipes/spam.py`` and ``nlp-transfer train --task spam``
parse the same flags into the same config and train the same model. The ``image`` task is the
image recipe's :class:`~nlp_transfer.vision.config.ImageClassificationConfig` and its run.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..training.arguments import EVALUATION, OPTIMISATION, arg
from .config import DATA, TextClassificationConfig

# The recipes keep a fixed budget, not the data-sized defaults of TextClassificationConfig.
NO_EARLY_STOPPING = "Stop after this many epochs without a better --metric_for_best_model on validation; unset (the recipe's default) trains every epoch."


@dataclass
class SentimentConfig(TextClassificationConfig):
    """Defaults of the sentiment recipe: built-in Rotten Tomatoes sentences, full fine-tuning."""

    dataset_name: str | None = arg(
        "rotten_tomatoes_sentences",
        "A built-in dataset (e.g. rotten_tomatoes_sentences) or a Hub dataset; ignored when "
        "--train_file is given.",
        DATA,
    )
    learning_rate: float = arg(5e-5, "Peak AdamW learning rate.", OPTIMISATION)
    num_train_epochs: int = arg(
        3, "Number of training epochs (3 take ~7 min on a 2-core CPU).", OPTIMISATION
    )
    early_stopping_patience: int | None = arg(None, NO_EARLY_STOPPING, EVALUATION)
    output_dir: str = arg(
        "outputs/sentiment", "Where the model, metrics.json and config.yaml go.", EVALUATION
    )


@dataclass
class SpamConfig(TextClassificationConfig):
    """Defaults of the spam recipe: built-in SMS Spam Collection, best epoch by spam F1."""

    dataset_name: str | None = arg(
        "sms_spam",
        "A built-in dataset (e.g. sms_spam) or a Hub dataset; ignored when --train_file is given.",
        DATA,
    )
    learning_rate: float = arg(1e-4, "Peak AdamW learning rate.", OPTIMISATION)
    num_train_epochs: int = arg(3, "Number of training epochs.", OPTIMISATION)
    early_stopping_patience: int | None = arg(None, NO_EARLY_STOPPING, EVALUATION)
    metric_for_best_model: str = arg(
        "f1_spam", "Validation metric that selects the best epoch.", EVALUATION
    )
    output_dir: str = arg(
        "outputs/spam", "Where the model, metrics.json, plots/ and config.yaml go.", EVALUATION
    )


@dataclass
class TopicsConfig(TextClassificationConfig):
    """Defaults of the topics recipe: built-in 20 Newsgroups (20 classes, long posts).

    Longer inputs than the sentence tasks (posts run to hundreds of words), a higher learning
    rate and more epochs, chosen to beat the TF-IDF baseline, which is strong on this corpus.
    """

    dataset_name: str | None = arg(
        "20_newsgroups",
        "A built-in dataset (e.g. 20_newsgroups) or a Hub dataset; ignored when --train_file is "
        "given.",
        DATA,
    )
    max_seq_length: int = arg(256, "Truncate texts to this many tokens (posts are long).", "Model")
    learning_rate: float = arg(1e-4, "Peak AdamW learning rate.", OPTIMISATION)
    num_train_epochs: int = arg(4, "Number of training epochs.", OPTIMISATION)
    early_stopping_patience: int | None = arg(None, NO_EARLY_STOPPING, EVALUATION)
    per_device_train_batch_size: int = arg(16, "Training batch size per process.", OPTIMISATION)
    metric_for_best_model: str = arg(
        "f1_macro", "Validation metric that selects the best epoch.", EVALUATION
    )
    output_dir: str = arg(
        "outputs/topics", "Where the model, metrics.json, plots/ and config.yaml go.", EVALUATION
    )


# name -> (config class, title of the printed summary)
TEXT_TASKS: dict[str, tuple[type[TextClassificationConfig], str]] = {
    "text": (TextClassificationConfig, "text classification"),
    "sentiment": (SentimentConfig, "sentiment"),
    "spam": (SpamConfig, "spam"),
    "topics": (TopicsConfig, "topics"),
}
