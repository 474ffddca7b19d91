"""Topic classification with many classes: fine-tune a pretrained encoder on 20 Newsgroups.

    accelerate launch recipes/topics.py                                   # embedded defaults
    accelerate launch recipes/topics.py --max_seq_length 128 --num_train_epochs 2   # faster
    accelerate launch recipes/topics.py --freeze_layers 4                 # cache the lower layers
    accelerate launch recipes/topics.py --train_file posts.csv --label_column forum

The same steps as the sentiment recipe (``nlp_transfer.run_text_classification``); only the
defaults differ: the built-in ``20_newsgroups`` data (20 classes, 11,314 training posts, 7,532
test posts split by date), longer inputs (256 tokens: posts are long), a higher learning rate
and more epochs, and the best epoch chosen by validation macro-F1. TF-IDF + logistic regression
is strong on this corpus; the summary prints both.

Multi-label, regression and sentence-pair data run through the same recipe with
``--problem_type``, ``--label_separator`` and ``--text_pair_column`` (see recipes/configs/).
"""

from __future__ import annotations

from nlp_transfer.cli.config import parse_config
from nlp_transfer.race import run_or_race
from nlp_transfer.text import TopicsConfig
from nlp_transfer.training.checkpoint import exit_on_interrupt

__all__ = ["TopicsConfig", "main"]


def main(argv: list[str] | None = None) -> dict:
    """Run the recipe; returns the metrics it writes to ``output_dir/metrics.json``."""
    config = parse_config(TopicsConfig, argv)
    return run_or_race(config, task_name="topics")  # --strategy auto: the race


if __name__ == "__main__":
    with exit_on_interrupt():
        main()
