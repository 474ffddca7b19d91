"""The optimizer of a transfer plan: fused AdamW over the trainable parameters only, with no weight
decay on biases and normalisation weights (the parameter groups of layer-wise LR decay and
L2-SP: :mod:`~nlp_transfer.transfer.lr`, :mod:`~nlp_transfer.transfer.l2sp`)."""

from __future__ import annotations

import torch
from torch import nn


def create_optimizer(
    model: nn.Module, learning_rate: float, weight_decay: float = 0.0
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters only (frozen ones get no optimizer state).

    Biases and normalisation weights (1-D tensors) get no weight decay, as in BERT and the
    Hugging Face ``Trainer`` (Loshchilov & Hutter 2019, decoupled weight decay).

    Args:
        model: The model, with frozen parameters already set to ``requires_grad=False``.
        learning_rate: Peak learning rate.
        weight_decay: Decoupled weight decay for matrices.

    Returns:
        The optimizer.

    Raises:
        ValueError: If no parameter is trainable.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters; nothing to optimise.")
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    return adamw(groups, learning_rate)


def adamw(param_groups: list[dict], learning_rate: float) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over parameter groups, fused where PyTorch supports it.

    The fused implementation (one kernel over all tensors; CPU and CUDA, floating-point
    parameters) is the Hugging Face Trainer's default (``adamw_torch_fused``). On the default
    model's 22.7M parameters it took 0.05-0.06 s per step on a 2-core CPU against 0.28-0.38 s for
    the ``foreach`` implementation, a large share of a training step. Elsewhere: ``foreach``.

    Args:
        param_groups: Groups with ``params`` (and optionally ``lr``, ``weight_decay``).
        learning_rate: Default learning rate of groups that set none.

    Returns:
        The optimizer.
    """
    params = [p for group in param_groups for p in group["params"]]
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    if fused:
        return torch.optim.AdamW(param_groups, lr=learning_rate, fused=True)
    return torch.optim.AdamW(param_groups, lr=learning_rate, foreach=True)
