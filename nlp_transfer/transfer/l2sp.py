"""L2-SP: regularise fine-tuned weights towards their pretrained starting point."""

from __future__ import annotations

import torch
from torch import nn

from ..models.blocks import BlockView, get_block_view


class L2SPRegularizer:
    """The L2-SP penalty of Li, Grandvalet & Davoine (2018), "Explicit Inductive Bias for
    Transfer Learning with Convolutional Networks" (ICML):

    ``alpha / 2 * ||w - w0||^2`` over the trainable pretrained parameters (``w0`` = their values
    when this object is made) ``+ beta / 2 * ||w||^2`` over the newly initialised head.

    It replaces weight decay on those parameters (give them ``weight_decay=0`` in the optimizer:
    :func:`~nlp_transfer.transfer.lr.layerwise_lr_param_groups` does with ``no_decay_for``). A
    copy of ``w0`` is kept only for trainable pretrained parameters: frozen ones cannot move.

    Args:
        model: The model, with its freezing already applied.
        alpha: Strength of the pull towards the pretrained weights (> 0).
        beta: Strength of the L2 penalty on the new head (>= 0).
        view: A precomputed block view.

    Raises:
        ValueError: If ``alpha <= 0`` or ``beta < 0``.
    """

    def __init__(
        self, model: nn.Module, alpha: float, beta: float = 0.0, view: BlockView | None = None
    ):
        if alpha <= 0 or beta < 0:
            raise ValueError(
                f"--l2sp_alpha must be > 0 and --l2sp_beta >= 0, got {alpha} and {beta}."
            )
        view = view or get_block_view(model)
        new_ids = {id(p) for p in (view.new.parameters() if view.new else [])}
        self.alpha, self.beta = alpha, beta
        self.new_params = [p for p in model.parameters() if id(p) in new_ids and p.requires_grad]
        self.pretrained = [
            p for p in model.parameters() if id(p) not in new_ids and p.requires_grad
        ]
        self.anchors = [p.detach().clone() for p in self.pretrained]

    @property
    def parameter_ids(self) -> set[int]:
        """``id()`` of every parameter the penalty covers (they need no weight decay)."""
        return {id(p) for p in self.pretrained + self.new_params}

    def __call__(self) -> torch.Tensor:
        """The penalty, a scalar tensor differentiable w.r.t. the covered parameters."""
        device = self.pretrained[0].device if self.pretrained else self.new_params[0].device
        penalty = torch.zeros((), device=device)
        for p, p0 in zip(self.pretrained, self.anchors, strict=True):
            if p0.device != p.device:  # the model moved (accelerator.prepare) after creation
                p0.data = p0.data.to(p.device)
            penalty = penalty + 0.5 * self.alpha * (p - p0).pow(2).sum()
        for p in self.new_params:
            penalty = penalty + 0.5 * self.beta * p.pow(2).sum()
        return penalty
