"""Freezing the lower blocks (``--freeze_layers k``), with their output cached, and the head's own
learning rate. With ``k = 0`` this is full fine-tuning: the strategy that applies when no other
decides what trains."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...args import arg, check_choice, check_non_negative
from ..freeze import FreezeReport, count_parameters, freeze_encoder_layers
from .base import TransferStrategy, register_strategy

TRANSFER = "Transfer strategy"
CACHE_CHOICES = ("auto", "memory", "disk", "no")
CACHE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass
class FreezeArguments:
    """Freezing the lower blocks and caching their output; the head's learning rate."""

    freeze_layers: int = arg(
        0,
        "Freeze the embeddings (the stem, for images) and the lower k encoder layers (stages); "
        "0 = full fine-tuning.",
        TRANSFER,
    )
    head_learning_rate: float | None = arg(
        None,
        "The head's learning rate; unset: --learning_rate.",
        TRANSFER,
    )
    cache_frozen_prefix: str = arg(
        "auto",
        "With --freeze_layers k: compute the frozen blocks once, train only those above: auto "
        "(memory; memory-mapped when large or with several processes), memory, disk or no.",
        TRANSFER,
    )
    cache_dtype: str = arg(
        "float16",
        "Storage type of the frozen-prefix cache: float16, bfloat16 (memory only) or float32.",
        TRANSFER,
    )

    # The cache storages a task supports (images: no disk cache).
    cache_choices: ClassVar[tuple[str, ...]] = CACHE_CHOICES


def fine_tuning_description(config, plan) -> dict:
    """The description's entries of every fine-tuning strategy: what is frozen and cached."""
    return {
        "name": "fine_tuning",
        "freeze_layers": config.freeze_layers,
        "prefix_cache": plan.cache,
    }


class Freeze(TransferStrategy):
    """Freeze the embeddings and the lower ``k`` blocks (:func:`~nlp_transfer.transfer.freeze.
    freeze_encoder_layers`); frozen blocks run in eval mode, and their output can be cached."""

    name = "freeze"
    arguments = FreezeArguments
    selects_parameters = True
    priority = 100  # the fallback: applies when no other strategy decides what trains

    def enabled(self, config) -> bool:
        return True  # the default: full fine-tuning with --freeze_layers 0

    def flags_set(self, config) -> list[str]:
        return ["--freeze_layers"] if config.freeze_layers else []

    def needs_block_view(self, config) -> bool:
        return config.freeze_layers > 0

    def check(self, config) -> None:
        check_non_negative(config, "freeze_layers")
        check_choice(config, "cache_frozen_prefix", config.cache_choices)
        check_choice(config, "cache_dtype", tuple(CACHE_DTYPES))
        if config.cache_dtype == "bfloat16" and config.cache_frozen_prefix == "disk":
            raise ValueError("--cache_dtype bfloat16 works only in memory; use float16 on disk.")

    def apply(self, model, view, config):
        if view is None:  # a family without a block view: full fine-tuning only
            trainable, total = count_parameters(model)
            return FreezeReport([], ["all"], trainable, total), None, view
        return freeze_encoder_layers(model, config.freeze_layers, view=view), None, view

    def describe(self, config, plan) -> dict:
        return fine_tuning_description(config, plan)


class HeadLearningRate(TransferStrategy):
    """The new head trains at its own learning rate (``--head_learning_rate``), usually far
    larger than the pretrained blocks' (discriminative learning rates, Howard & Ruder 2018)."""

    name = "head_learning_rate"
    arguments = FreezeArguments
    uses_param_groups = True

    def enabled(self, config) -> bool:
        return bool(config.head_learning_rate)

    def flags_set(self, config) -> list[str]:
        return ["--head_learning_rate"] if config.head_learning_rate else []

    def needs_block_view(self, config) -> bool:
        return False  # checked when the optimizer is built

    def check(self, config) -> None:
        if config.head_learning_rate is not None and config.head_learning_rate <= 0:
            raise ValueError(
                f"--head_learning_rate must be positive, got {config.head_learning_rate}."
            )

    def optimizer_settings(self, config) -> dict:
        return {"head_learning_rate": config.head_learning_rate}

    def describe(self, config, plan) -> dict:
        return {"head_learning_rate": config.head_learning_rate}


register_strategy(Freeze())
register_strategy(HeadLearningRate())
