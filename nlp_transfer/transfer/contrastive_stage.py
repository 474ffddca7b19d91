"""The contrastive stage of a run (``--contrastive``): what it reads from the task, how many
pairs it sees when ``--contrastive_pairs_per_example`` is unset, and the call of
:func:`~nlp_transfer.transfer.contrastive.contrastive_tune` with the run's settings."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from .contrastive import CONTRASTIVE_BATCH_SIZE, contrastive_tune

logger = logging.getLogger(__name__)

# The auto rule's bounds, in epochs of batches of 16 (each example meets 15 partners an epoch):
# n / 2 epochs for n training examples, within [16, 32]. Measured on sentiment and SMS spam at 8
# to 64 examples per class (issue 33): at 8 per class, 8 epochs (120 partners) gave 10 to 22
# points less spam F1 than 16 (CoSENT, 5e-5); at 64 per class, 64 epochs gave the same
# sentiment accuracy as 32 (0.7758 both, seed 0) in twice the time. Under SetFit's budget.
AUTO_MIN_EPOCHS = 16
AUTO_MAX_EPOCHS = 32


def auto_pairs_per_example(num_examples: int) -> int:
    """In-batch partners per example when ``--contrastive_pairs_per_example`` is unset:
    ``15 x clip(ceil(n / 2), 16, 32)``, i.e. ``n / 2`` epochs of batches of 16 (240 for 32 or
    fewer examples, 480 from 64): the pairs grow with the data, as SetFit's do."""
    epochs = min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS, math.ceil(num_examples / 2)))
    return 15 * epochs


def contrastive_epochs(num_examples: int, batch_size: int, pairs_per_example: int | None) -> int:
    """Epochs for each training example to meet about ``pairs_per_example`` partners in a batch
    (None: :func:`auto_pairs_per_example`).

    An epoch puts each example in one batch with ``batch_size - 1`` others, so the run needs
    ``ceil(pairs_per_example / (batch_size - 1))`` epochs, at least 1.
    """
    if pairs_per_example is None:
        pairs_per_example = auto_pairs_per_example(num_examples)
    return max(1, math.ceil(pairs_per_example / max(1, batch_size - 1)))


@dataclass
class StageInputs:
    """What a stage before training gets from its task (text: the training split, read only when
    a stage runs, tokenized on the fly).

    Attributes:
        train: The training split (``text``, optional ``text_pair``, ``label``: class ids, or
            label-id lists for multi-label data).
        tokenizer: The model's tokenizer.
        num_labels: Number of labels (multi-label rows become multi-hot of this width).
        device: Where the model trains.
        autocast: Mixed-precision context factory (``accelerator.autocast``), or None.
        show_progress: Show progress bars (the main process).
        problem_type: ``single_label_classification``, ``multi_label_classification`` or
            ``regression``.
    """

    train: object
    tokenizer: PreTrainedTokenizerBase
    num_labels: int
    device: torch.device | str = "cpu"
    autocast: object = None
    show_progress: bool = True
    problem_type: str = "single_label_classification"

    @classmethod
    def of_run(cls, train, tokenizer, num_labels: int, accelerator, problem_type: str):
        """A run's inputs: its training split, on its ``accelerate.Accelerator``'s device."""
        return cls(
            train, tokenizer, num_labels, accelerator.device, accelerator.autocast,
            accelerator.is_local_main_process, problem_type,
        )  # fmt: skip

    @property
    def texts(self) -> list:
        """Training texts, or ``(text, text_pair)`` tuples."""
        texts = list(self.train["text"])
        if "text_pair" in self.train.column_names:
            return list(zip(texts, self.train["text_pair"], strict=True))
        return texts

    @property
    def labels(self) -> list:
        """Class ids, or label-id lists (multi-label)."""
        return list(self.train["label"])


def run_contrastive_stage(model: nn.Module, config, stage: StageInputs) -> dict:
    """The contrastive stage of a run: ``model``'s encoder (``model.base_model``) tuned in place
    with ``config``'s ``--contrastive`` loss, ``--contrastive_pairs_per_example`` (unset:
    :func:`auto_pairs_per_example`) and ``--contrastive_learning_rate``, batches of at most 16
    examples (or ``--per_device_train_batch_size`` when smaller; even, at most the number of
    examples). Logged.

    Returns:
        ``{"contrastive": report}`` for the strategy description (``metrics.json``).

    Raises:
        ValueError: Regression data (no labels to pair), or what :func:`contrastive_tune`
            raises.
    """
    if stage.problem_type == "regression":
        raise ValueError(
            "--contrastive pairs examples by their labels; regression targets have none. Leave "
            "--contrastive unset (or none) for regression."
        )
    texts, labels = stage.texts, stage.labels
    if stage.problem_type == "multi_label_classification":
        labels = [
            [1.0 if j in set(ids) else 0.0 for j in range(stage.num_labels)] for ids in labels
        ]
    batch_size = min(CONTRASTIVE_BATCH_SIZE, config.per_device_train_batch_size, len(labels))
    batch_size = max(4, batch_size - batch_size % 2)
    epochs = contrastive_epochs(len(labels), batch_size, config.contrastive_pairs_per_example)
    encoder = getattr(model, "base_model", model)
    encoder.to(stage.device)
    report = contrastive_tune(
        encoder,
        stage.tokenizer,
        texts,
        labels,
        loss_name=config.contrastive,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=config.contrastive_learning_rate,
        max_seq_length=config.max_seq_length,
        pooling=getattr(config, "pooling", "mean"),
        seed=config.seed,
        device=stage.device,
        autocast=stage.autocast,
        show_progress=stage.show_progress,
    )
    left_out = len(labels) - report.examples_used
    logger.info(
        f"Contrastive tuning ({report.loss} loss, sentence-transformers): {report.epochs} "
        f"epoch(s), {report.steps} steps of {batch_size} examples, {report.pairs_seen:,} "
        f"in-batch pairs, loss {report.loss_first:.4f} -> {report.loss_last:.4f}, "
        f"{report.seconds:.1f} s"
        + (f"; {left_out} example(s) of labels seen once left out of the pairs" if left_out else "")
    )
    return {"contrastive": report.describe()}
