"""Sentiment classification: fine-tune a pretrained BERT-family encoder on movie-review sentences.

    accelerate launch recipes/sentiment.py                      # embedded defaults
    accelerate launch recipes/sentiment.py --freeze_layers 4    # train only the top 2 layers
    accelerate launch recipes/sentiment.py --config recipes/configs/sentiment.yaml
    accelerate launch recipes/sentiment.py --train_file reviews.csv --text_column review \\
        --label_column stars --output_dir outputs/reviews

Runs on a CPU, one GPU, several GPUs or several CPU processes, as ``accelerate launch`` decides.
The steps (data -> model -> freezing -> train -> evaluate -> baseline -> save) are
``nlp_transfer.run_text_classification``; this recipe sets the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nlp_transfer.config import TextClassificationConfig, parse_config
from nlp_transfer.text_classification import run_text_classification
from nlp_transfer.training.checkpoint import exit_on_interrupt


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


def main(argv: list[str] | None = None) -> dict:
    """Run the recipe; returns the metrics it writes to ``output_dir/metrics.json``."""
    config = parse_config(SentimentConfig, argv)
    return run_text_classification(config, task_name="sentiment")


if __name__ == "__main__":
    with exit_on_interrupt():
        main()
