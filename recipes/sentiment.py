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

from nlp_transfer.cli.config import parse_config
from nlp_transfer.race import run_or_race
from nlp_transfer.text import SentimentConfig
from nlp_transfer.training.checkpoint import exit_on_interrupt

__all__ = ["SentimentConfig", "main"]


def main(argv: list[str] | None = None) -> dict:
    """Run the recipe; returns the metrics it writes to ``output_dir/metrics.json``."""
    config = parse_config(SentimentConfig, argv)
    return run_or_race(config, task_name="sentiment")  # --strategy auto: the race


if __name__ == "__main__":
    with exit_on_interrupt():
        main()
