"""Layer-wise learning-rate decay (Sun et al. 2019, "How to Fine-Tune BERT for Text
Classification?"): each block trains at ``xi`` times the learning rate of the block above."""

from __future__ import annotations

from dataclasses import dataclass

from ...args import arg
from .base import TransferStrategy, register_strategy
from .freeze import TRANSFER


@dataclass
class LayerLRDecayArguments:
    layer_lr_decay: float = arg(
        1.0,
        "Layer-wise LR decay xi in (0, 1]: each block trains at xi times the LR of the block "
        "above (Sun et al. 2019); 1 = off.",
        TRANSFER,
    )


class LayerLRDecay(TransferStrategy):
    """Per-block learning rates (:func:`~nlp_transfer.transfer.lr.layerwise_lr_param_groups`)."""

    name = "layer_lr_decay"
    arguments = LayerLRDecayArguments
    uses_param_groups = True

    def enabled(self, config) -> bool:
        return config.layer_lr_decay != 1.0

    def flags_set(self, config) -> list[str]:
        return ["--layer_lr_decay"] if self.enabled(config) else []

    def needs_block_view(self, config) -> bool:
        return False  # checked when the optimizer is built

    def check(self, config) -> None:
        if not 0 < config.layer_lr_decay <= 1:
            raise ValueError(f"--layer_lr_decay must be in (0, 1], got {config.layer_lr_decay}.")

    def optimizer_settings(self, config) -> dict:
        return {"layer_lr_decay": config.layer_lr_decay}

    def describe(self, config, plan) -> dict:
        return {"layer_lr_decay": config.layer_lr_decay}


register_strategy(LayerLRDecay())
