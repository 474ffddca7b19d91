"""Image classification with a torchvision ResNet: the source -> target transfer experiment by default.

    accelerate launch recipes/image_classification.py                  # Fashion-MNIST transfer experiment
    accelerate launch recipes/image_classification.py --seed 1 --transfer_freeze_layers 3
    accelerate launch recipes/image_classification.py --train_dir photos/ --weights IMAGENET1K_V1 \\
        --freeze_layers 3 --output_dir outputs/photos                    # your own ImageFolder
    accelerate launch recipes/image_classification.py --dataset_name fashion_mnist --augment

The default (``--dataset_name fashion_mnist_transfer``) trains a ResNet-18 from scratch on
Fashion-MNIST classes 0-4, then compares three runs on classes 5-9 with 100 labelled images per
class: from scratch, transferred with the lower stages frozen, transferred and fully
fine-tuned (``nlp_transfer.vision.experiment``). Any other data is one run
(``nlp_transfer.vision.run_image_classification``): the same loop, strategies, checkpoints,
report and outputs as the text recipes.
"""

from __future__ import annotations

from nlp_transfer.cli.config import parse_config
from nlp_transfer.training.checkpoint import exit_on_interrupt
from nlp_transfer.vision.config import ImageClassificationConfig
from nlp_transfer.vision.experiment import run_image_task

__all__ = ["ImageClassificationConfig", "main"]


def main(argv: list[str] | None = None) -> dict:
    """Run the recipe; returns the metrics it writes to ``output_dir/metrics.json``."""
    config = parse_config(ImageClassificationConfig, argv)
    return run_image_task(config)


if __name__ == "__main__":
    with exit_on_interrupt():
        main()
