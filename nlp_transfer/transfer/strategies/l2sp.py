"""L2-SP (Li, Grandvalet & Davoine 2018, "Explicit Inductive Bias for Transfer Learning with
Convolutional Networks"): pull the trainable pretrained weights towards their starting point."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ...args import arg, check_non_negative
from ..l2sp import L2SPRegularizer
from .base import TransferStrategy, register_strategy
from .freeze import TRANSFER

logger = logging.getLogger(__name__)


@dataclass
class L2SPArguments:
    l2sp_alpha: float = arg(
        0.0,
        "L2-SP: alpha/2 * ||w - w0||^2 on trainable pretrained weights (Li et al. 2018); 0 = off. "
        "Replaces weight decay there.",
        TRANSFER,
    )
    l2sp_beta: float = arg(
        0.0, "L2-SP: beta/2 * ||w||^2 on the new head (used when --l2sp_alpha > 0).", TRANSFER
    )


class L2SP(TransferStrategy):
    """The L2-SP loss term (:class:`~nlp_transfer.transfer.l2sp.L2SPRegularizer`); its weights
    get no weight decay."""

    name = "l2sp"
    arguments = L2SPArguments
    uses_param_groups = True

    def enabled(self, config) -> bool:
        return config.l2sp_alpha > 0

    def flags_set(self, config) -> list[str]:
        return ["--l2sp_alpha"] if config.l2sp_alpha else []

    def needs_block_view(self, config) -> bool:
        return False  # checked when the optimizer is built

    def check(self, config) -> None:
        check_non_negative(config, "l2sp_alpha", "l2sp_beta")

    def regularizer(self, model, view, config) -> L2SPRegularizer:
        regularizer = L2SPRegularizer(model, config.l2sp_alpha, config.l2sp_beta, view=view)
        logger.info(
            f"L2-SP: alpha {config.l2sp_alpha} on {len(regularizer.pretrained)} pretrained "
            f"tensors, beta {config.l2sp_beta} on {len(regularizer.new_params)} new-head tensors "
            "(no weight decay there)"
        )
        return regularizer

    def describe(self, config, plan) -> dict:
        return {"l2sp": {"alpha": config.l2sp_alpha, "beta": config.l2sp_beta}}


register_strategy(L2SP())
