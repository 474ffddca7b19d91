"""The few-shot default of a text run: with ``--contrastive`` unset, few-shot single-label data
that the user left to the defaults gets contrastive transfer and a head on the tuned embeddings
(:mod:`nlp_transfer.transfer.strategies.contrastive`), SetFit's recipe; anything else gets
``none``. Called by :func:`nlp_transfer.text.defaults.resolve_data_sized`."""

from __future__ import annotations

import dataclasses

from accelerate.logging import get_logger
from datasets import ClassLabel, Dataset

logger = get_logger(__name__)

# At most this many training examples per class: contrastive tuning and a head on the tuned
# embeddings by default (benchmarks/results/few_shot_contrastive: 8 to 64 per class).
FEW_SHOT_PER_CLASS = 64


def strategy_flags_set(config) -> list[str]:
    """The flags a user set that say how to transfer, so that the few-shot default leaves the run
    alone: a transfer strategy's, fine-tuning's own budget (``--learning_rate``,
    ``--num_train_epochs``: the recipes set both), and reading texts as windows (a head on one
    embedding per text cannot pool windows)."""
    flags = [
        ("--feature_extraction", config.feature_extraction != "none"),
        ("--freeze_layers", config.freeze_layers != 0),
        ("--peft", getattr(config, "peft", "none") != "none"),
        ("--bitfit", getattr(config, "bitfit", False)),
        ("--gradual_unfreezing", getattr(config, "gradual_unfreezing", False)),
        ("--layer_lr_decay", getattr(config, "layer_lr_decay", 1.0) != 1.0),
        ("--l2sp_alpha", getattr(config, "l2sp_alpha", 0.0) != 0.0),
        ("--init_from", getattr(config, "init_from", None) is not None),
        ("--long_text_strategy chunks", getattr(config, "long_text_strategy", None) == "chunks"),
        ("--learning_rate", getattr(config, "learning_rate", None) is not None),
        ("--num_train_epochs", getattr(config, "num_train_epochs", None) is not None),
    ]
    return [name for name, is_set in flags if is_set]


def resolve_contrastive(config, train: Dataset, num_labels: int):
    """``config`` with an unset ``--contrastive`` chosen from the data: few-shot single-label data
    (at most :data:`FEW_SHOT_PER_CLASS` training examples per class on average) with none of
    :func:`strategy_flags_set`'s flags set gets contrastive tuning (``cosine``) and a
    logistic-regression head on the tuned embeddings, SetFit's recipe
    (:mod:`nlp_transfer.transfer.contrastive`); anything else gets ``none``. Logged with the
    reason.

    Returns:
        The same config when ``contrastive`` is set, else a copy with the choice.
    """
    if getattr(config, "contrastive", "none") is not None:
        return config
    single_label = isinstance(train.features.get("label"), ClassLabel)
    per_class = len(train) / max(1, num_labels)
    chosen = strategy_flags_set(config)
    if not single_label or per_class > FEW_SHOT_PER_CLASS or chosen:
        if single_label and per_class <= FEW_SHOT_PER_CLASS:
            logger.info(
                f"--contrastive auto: none ({per_class:.0f} examples per class is few-shot, but "
                f"{', '.join(chosen)} chose the strategy)"
            )
        return dataclasses.replace(config, contrastive="none")
    logger.info(
        f"--contrastive auto: cosine, then --feature_extraction logistic_regression on the tuned "
        f"embeddings ({per_class:.0f} training examples per class <= {FEW_SHOT_PER_CLASS}: "
        "few-shot, where contrastive tuning beat fine-tuning and feature extraction, "
        "benchmarks/results/few_shot_contrastive)"
    )
    return dataclasses.replace(
        config, contrastive="cosine", feature_extraction="logistic_regression"
    )
