"""Gradual unfreezing (Howard & Ruder 2018, ULMFiT): the head trains alone first, then one more
block from the top each epoch or every ``--unfreeze_every_n_steps`` optimizer steps."""

from __future__ import annotations

from dataclasses import dataclass

from ...args import arg, check_non_negative
from ..gradual import GradualUnfreezer
from .base import TransferStrategy, register_strategy
from .freeze import TRANSFER


@dataclass
class GradualUnfreezingArguments:
    gradual_unfreezing: bool = arg(
        False,
        "Gradual unfreezing (ULMFiT, Howard & Ruder 2018): head first, then a block more from "
        "the top each epoch or --unfreeze_every_n_steps.",
        TRANSFER,
    )
    unfreeze_every_n_steps: int = arg(
        0,
        "Gradual unfreezing: unfreeze the next block every N optimizer steps; 0 = every epoch.",
        TRANSFER,
    )


class GradualUnfreezing(TransferStrategy):
    """A :class:`~nlp_transfer.transfer.gradual.GradualUnfreezer`, moved through its stages by
    the Trainer's :class:`~nlp_transfer.training.unfreezing.GradualUnfreezingCallback`."""

    name = "gradual_unfreezing"
    arguments = GradualUnfreezingArguments

    def enabled(self, config) -> bool:
        return bool(config.gradual_unfreezing)

    def flags_set(self, config) -> list[str]:
        return ["--gradual_unfreezing"] if config.gradual_unfreezing else []

    def check(self, config) -> None:
        check_non_negative(config, "unfreeze_every_n_steps")

    def unfreezer(self, model, view, config) -> GradualUnfreezer:
        return GradualUnfreezer(model, config.unfreeze_every_n_steps, view=view)

    def describe(self, config, plan) -> dict:
        return {"gradual_unfreezing": {"unfreeze_every_n_steps": config.unfreeze_every_n_steps}}


register_strategy(GradualUnfreezing())
