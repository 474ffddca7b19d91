"""Freezing the lower blocks of a model, and keeping frozen blocks in eval mode."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from torch import nn

from ..models.blocks import BlockView, find_block_view, get_block_view

# Parameter-free modules of a block (GPT-2's embedding dropout ``transformer.drop``) -> that
# block's parameters: set_train_mode puts them in eval mode while those are all frozen.
_STATELESS_IN_BLOCK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class FreezeReport:
    """What a freezing strategy did, for logs and ``metrics.json``.

    Attributes:
        frozen_blocks: Names of frozen blocks, bottom first.
        trainable_blocks: Names of trainable blocks (the head is always trainable).
        trainable_params: Number of parameters with ``requires_grad=True``.
        total_params: Number of parameters in the model.
    """

    frozen_blocks: list[str] = field(default_factory=list)
    trainable_blocks: list[str] = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0

    def __str__(self) -> str:
        frozen = ", ".join(self.frozen_blocks) if self.frozen_blocks else "nothing"
        share = self.trainable_params / max(self.total_params, 1)
        return (
            f"frozen: {frozen} | trainable params: {self.trainable_params:,} / "
            f"{self.total_params:,} ({share:.1%})"
        )


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Return ``(trainable, total)`` parameter counts (shared parameters counted once)."""
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def freeze_lower_blocks(
    model: nn.Module, num_blocks: int, view: BlockView | None = None
) -> FreezeReport:
    """Freeze the lower ``num_blocks`` blocks of the block view; everything above trains.

    Frozen parameters get ``requires_grad=False``: no gradients, no optimizer state, and since
    their inputs need no gradient either, no autograd graph is recorded for the frozen prefix.
    Use :func:`set_train_mode` to keep frozen blocks in eval mode (no dropout, BatchNorm
    statistics fixed) while training.

    Args:
        model: A model :func:`get_block_view` supports.
        num_blocks: How many blocks to freeze from the bottom, ``0 <= num_blocks <= len(blocks)``.
        view: A precomputed view (defaults to ``get_block_view(model)``).

    Returns:
        A :class:`FreezeReport`.

    Raises:
        ValueError: If ``num_blocks`` is out of range.
    """
    view = view or get_block_view(model)
    if not 0 <= num_blocks <= view.num_blocks:
        raise ValueError(f"Can freeze 0..{view.num_blocks} blocks of this model, not {num_blocks}.")
    for i, block in enumerate(view.blocks):
        for p in block.parameters():
            p.requires_grad_(i >= num_blocks)
        for module in block.modules:
            if next(module.parameters(), None) is None:
                _STATELESS_IN_BLOCK[module] = block.parameters()
    for p in view.head.parameters():
        p.requires_grad_(True)
    trainable, total = count_parameters(model)
    return FreezeReport(
        frozen_blocks=[b.name for b in view.blocks[:num_blocks]],
        trainable_blocks=[b.name for b in view.blocks[num_blocks:]] + [view.head.name],
        trainable_params=trainable,
        total_params=total,
    )


def freeze_encoder_layers(
    model: nn.Module, num_layers: int, view: BlockView | None = None
) -> FreezeReport:
    """Freeze the embeddings and the lower ``num_layers`` encoder layers (``--freeze_layers``).

    ``num_layers=0`` is full fine-tuning (nothing frozen); ``num_layers=L`` (all layers) leaves
    only the head to train. In block terms this freezes ``num_layers + 1`` blocks when
    ``num_layers > 0``. For a ResNet the layers are its stages: ``--freeze_layers 2`` freezes
    the stem, ``layer1`` and ``layer2``.

    ``num_layers=0`` works for any model, with or without a block view (every parameter
    trains). For ALBERT the layers are its shared layer groups (see the layout's note).

    Args:
        model: A classification model (any ``AutoModelForSequenceClassification`` for 0; one
            with a block view for more) or a torchvision ResNet.
        num_layers: Number of encoder layers to freeze, ``0 <= num_layers <= L``.
        view: A precomputed view (defaults to ``get_block_view(model)``).

    Returns:
        A :class:`FreezeReport`.

    Raises:
        ValueError: If ``num_layers`` is out of range (names ``--freeze_layers``).
        NoBlockViewError: ``num_layers > 0`` for a model without a block view.
    """
    view = view or find_block_view(model)
    if view is None and num_layers == 0:
        for p in model.parameters():
            p.requires_grad_(True)
        trainable, total = count_parameters(model)
        return FreezeReport([], ["all parameters"], trainable, total)
    view = view or get_block_view(model)  # raises, naming the model type and the flags
    num_layers_total = view.num_blocks - 1
    if not 0 <= num_layers <= num_layers_total:
        raise ValueError(
            f"--freeze_layers must be between 0 (full fine-tuning) and {num_layers_total} (all "
            f"encoder layers of this model), got {num_layers}. {view.note}".rstrip()
        )
    return freeze_lower_blocks(model, num_layers + 1 if num_layers else 0, view)


def set_train_mode(model: nn.Module) -> nn.Module:
    """``model.train()``, then put every fully frozen submodule back in eval mode.

    A submodule whose parameters all have ``requires_grad=False`` is a frozen part of the model:
    it must behave as at inference (no dropout; BatchNorm uses and keeps its running statistics),
    otherwise "frozen" layers would still change their outputs and statistics. A
    parameter-free module of a block (GPT-2's embedding dropout) goes to eval mode while its
    block is frozen.

    Args:
        model: Any module (a DDP-wrapped one too).

    Returns:
        ``model``, for chaining.
    """
    model.train()
    _eval_frozen_children(model)
    for module in model.modules():
        params = _STATELESS_IN_BLOCK.get(module)
        if params and not any(p.requires_grad for p in params):
            module.eval()
    return model


def _eval_frozen_children(module: nn.Module) -> None:
    for child in module.children():
        params = list(child.parameters())
        if params and not any(p.requires_grad for p in params):
            child.eval()
        else:
            _eval_frozen_children(child)
