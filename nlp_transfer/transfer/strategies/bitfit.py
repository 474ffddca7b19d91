"""BitFit (Ben Zaken et al. 2022, "BitFit: Simple Parameter-efficient Fine-tuning for
Transformer-based Masked Language-models"): only the bias terms and the head train."""

from __future__ import annotations

from dataclasses import dataclass

from ...args import arg
from ..adapters import apply_bitfit
from .base import TransferStrategy, register_strategy
from .freeze import TRANSFER, fine_tuning_description


@dataclass
class BitFitArguments:
    bitfit: bool = arg(
        False,
        "BitFit (Ben Zaken et al. 2022): train only biases and the head (biases of layers "
        ">= --freeze_layers).",
        TRANSFER,
    )


class BitFit(TransferStrategy):
    """Biases and head trainable (:func:`~nlp_transfer.transfer.adapters.apply_bitfit`)."""

    name = "bitfit"
    arguments = BitFitArguments
    selects_parameters = True
    priority = 30

    def enabled(self, config) -> bool:
        return bool(config.bitfit)

    def flags_set(self, config) -> list[str]:
        return ["--bitfit"] if config.bitfit else []

    def label(self, config) -> str:
        return "BitFit (biases and head)"

    def apply(self, model, view, config):
        return apply_bitfit(model, config.freeze_layers, view), None, view

    def describe(self, config, plan) -> dict:
        entry = fine_tuning_description(config, plan)
        return entry | {"name": "bitfit", "trainable_params": plan.freeze.trainable_params}


register_strategy(BitFit())
