"""Discriminative learning rates: layer-wise LR decay and a separate head learning rate."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..models.blocks import BlockView, get_block_view


@dataclass
class ParamGroupSpec:
    """One optimizer parameter group, named after its block."""

    name: str
    params: list[nn.Parameter]
    lr: float
    weight_decay: float


def layerwise_lr_param_groups(
    model: nn.Module,
    learning_rate: float,
    *,
    layer_lr_decay: float = 1.0,
    head_learning_rate: float | None = None,
    weight_decay: float = 0.0,
    no_decay_for: set[int] | None = None,
    view: BlockView | None = None,
) -> list[dict]:
    """AdamW parameter groups with a learning rate per block (discriminative fine-tuning).

    The head trains at ``head_learning_rate`` (default ``learning_rate``); the top block at
    ``learning_rate * layer_lr_decay``, and each block below at ``layer_lr_decay`` times the one
    above, down to the embeddings at ``learning_rate * layer_lr_decay ** num_blocks``. With
    ``layer_lr_decay = 1`` every block trains at ``learning_rate``. Layer-wise LR decay is from
    Sun et al. (2019), "How to Fine-Tune BERT for Text Classification?" (xi = 0.95); the idea of
    discriminative learning rates from Howard & Ruder (2018), ULMFiT. Frozen parameters are left
    out; 1-D parameters (biases, LayerNorm) get no weight decay.

    Args:
        model: A model :func:`~nlp_transfer.models.blocks.get_block_view` supports.
        learning_rate: Base learning rate (the head's, unless ``head_learning_rate`` is given).
        layer_lr_decay: ``xi`` in (0, 1].
        head_learning_rate: Learning rate of the head; None means ``learning_rate``.
        weight_decay: Decoupled weight decay of matrices.
        no_decay_for: ``id()`` of parameters that must get no weight decay (e.g. those under
            an L2-SP penalty, which replaces weight decay).
        view: A precomputed block view.

    Returns:
        Groups for ``torch.optim.AdamW``: dicts with ``params``, ``lr``, ``weight_decay`` and
        ``name`` (``"head"``, ``"layer_5"``, ... top first; ``"/no_decay"`` appended for the
        1-D part).

    Raises:
        ValueError: If ``layer_lr_decay`` is not in (0, 1] or a learning rate is not positive.
    """
    if not 0 < layer_lr_decay <= 1:
        raise ValueError(f"--layer_lr_decay must be in (0, 1], got {layer_lr_decay}.")
    head_lr = learning_rate if head_learning_rate is None else head_learning_rate
    if learning_rate <= 0 or head_lr <= 0:
        raise ValueError("--learning_rate and --head_learning_rate must be positive.")
    view = view or get_block_view(model)
    no_decay_for = no_decay_for or set()
    n = view.num_blocks
    blocks = [(view.head.name, view.head, head_lr)] + [
        (block.name, block, learning_rate * layer_lr_decay ** (n - i))
        for i, block in reversed(list(enumerate(view.blocks)))
    ]
    groups = []
    for name, block, lr in blocks:
        params = [p for p in block.parameters() if p.requires_grad]
        decayed = [p for p in params if p.ndim >= 2 and id(p) not in no_decay_for]
        plain = [p for p in params if p.ndim < 2 or id(p) in no_decay_for]
        if decayed:
            groups.append({"name": name, "params": decayed, "lr": lr, "weight_decay": weight_decay})
        if plain:
            groups.append(
                {"name": f"{name}/no_decay", "params": plain, "lr": lr, "weight_decay": 0.0}
            )
    return groups


def describe_lrs(groups: list[dict]) -> str:
    """One line: the learning rate of each block, top first, e.g. ``head 1e-03, layer_5 5e-05``."""
    seen: dict[str, float] = {}
    for group in groups:
        seen.setdefault(group["name"].split("/")[0], group["lr"])
    return ", ".join(f"{name} {lr:.2e}" for name, lr in seen.items())
