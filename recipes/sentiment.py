"""Sentiment classification: fine-tune a pretrained BERT-family encoder on movie-review sentences.

    accelerate launch recipes/sentiment.py                      # embedded defaults
    accelerate launch recipes/sentiment.py --freeze_layers 4    # train only the top 2 layers
    accelerate launch recipes/sentiment.py --config recipes/configs/sentiment.yaml
    accelerate launch recipes/sentiment.py --train_file reviews.csv --text_column review \\
        --label_column stars --output_dir outputs/reviews

Runs on a CPU, one GPU, several GPUs or several CPU processes, as ``accelerate launch`` decides.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from accelerate.logging import get_logger
from accelerate.utils import set_seed

from nlp_transfer.baselines import tfidf_logreg_baseline
from nlp_transfer.config import TextClassificationConfig, parse_config
from nlp_transfer.models.text import DEFAULT_MODEL_NAME, build_text_classifier, resolve_model_path
from nlp_transfer.text_classification import load_data, train_text_classifier
from nlp_transfer.training.outputs import format_summary, run_metrics, save_run
from nlp_transfer.training.setup import build_accelerator, check_output_dir
from nlp_transfer.transfer.freeze import freeze_encoder_layers

logger = get_logger(__name__)


@dataclass
class SentimentConfig(TextClassificationConfig):
    """Defaults of the sentiment recipe: built-in Rotten Tomatoes sentences, full fine-tuning."""

    dataset_name: str | None = field(
        default="rotten_tomatoes_sentences",
        metadata={"help": "A built-in dataset (e.g. rotten_tomatoes_sentences) or a Hub dataset."},
    )
    num_train_epochs: int = field(
        default=2,
        metadata={"help": "Number of training epochs (2 fits in ~6 min on a 2-core CPU)."},
    )
    output_dir: str = field(
        default="outputs/sentiment",
        metadata={"help": "Where the model, metrics.json and config.yaml go."},
    )

    def __post_init__(self) -> None:
        if self.train_file is not None and self.dataset_name == "rotten_tomatoes_sentences":
            self.dataset_name = None  # a user's file replaces the built-in default
        super().__post_init__()


def main(argv: list[str] | None = None) -> dict:
    """Run the recipe; returns the metrics it writes to ``output_dir/metrics.json``."""
    start = time.perf_counter()
    config = parse_config(SentimentConfig, argv)
    accelerator = build_accelerator(
        config.mixed_precision, config.gradient_accumulation_steps, config.use_cpu
    )
    check_output_dir(config.output_dir, config.overwrite_output_dir)
    set_seed(config.seed)
    with accelerator.main_process_first():
        dataset = load_data(config)
    labels = dataset["train"].features["label"].names
    model, tokenizer = build_text_classifier(
        config.model_name_or_path, label_names=labels, trust_remote_code=config.trust_remote_code
    )
    freeze = freeze_encoder_layers(model, config.freeze_layers)
    logger.info(f"Transfer strategy: {freeze}")
    outcome = train_text_classifier(model, tokenizer, dataset, accelerator, config)
    baseline = None
    if config.run_baseline and accelerator.is_main_process:
        baseline = tfidf_logreg_baseline(dataset, seed=config.seed)
    model_path = resolve_model_path(config.model_name_or_path)[0]
    metrics = run_metrics(
        outcome.fit,
        outcome.test_metrics,
        freeze,
        baseline,
        model_name=config.model_name_or_path or DEFAULT_MODEL_NAME,
        output_dir=config.output_dir,
        metric_for_best_model=config.metric_for_best_model,
        accelerator=accelerator,
        start_time=start,
    )
    save_run(
        config.output_dir,
        accelerator,
        outcome.model,
        metrics,
        config,
        tokenizer,
        resolved_model_path=model_path,
    )
    accelerator.print(format_summary(metrics, "sentiment"))
    accelerator.end_training()
    return metrics


if __name__ == "__main__":
    main()
