"""The block view of a model: an ordered list of blocks, bottom to top, plus a named head.

Freezing the lower k blocks, layer-wise learning-rate decay, gradual unfreezing and caching the
output of a frozen prefix are each one mechanism over this view, for every supported family.

- BERT family: ``[embeddings, layer_0, ..., layer_{L-1}]`` + head (pooler, classifier)
- ResNet: ``[stem, layer1, layer2, layer3, layer4]`` + head (``fc``)

Layouts are explicit per ``model_type`` (:mod:`nlp_transfer.models.layouts`): the head is named,
never guessed. Other families are discovered (:mod:`nlp_transfer.models.discover`). Building a
view always checks that every parameter belongs to exactly one block or to the head.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import nn

from .discover import discover_layout
from .layouts import CLASS_LAYOUTS, TEXT_LAYOUTS, BlockLayout

__all__ = [
    "CLASS_LAYOUTS",
    "TEXT_LAYOUTS",
    "Block",
    "BlockLayout",
    "BlockView",
    "NoBlockViewError",
    "block_view_from_layout",
    "find_block_view",
    "get_block_view",
    "model_type_of",
]

logger = logging.getLogger(__name__)

# The flags whose strategies need a block view (full fine-tuning does not).
VIEW_FLAGS = (
    "--freeze_layers > 0, --layer_lr_decay, --gradual_unfreezing, --l2sp_alpha, "
    "--cache_frozen_prefix, --feature_extraction"
)


class NoBlockViewError(ValueError):
    """No block view can be had for a model (no explicit layout, and discovery failed)."""


@dataclass
class Block:
    """One block: a display name and the modules it is made of."""

    name: str
    modules: list[nn.Module]

    def parameters(self) -> list[nn.Parameter]:
        return [p for m in self.modules for p in m.parameters()]


@dataclass
class BlockView:
    """A model seen as ``blocks`` (bottom to top) and a ``head``.

    Attributes:
        blocks: Ordered bottom (embeddings/stem) to top (last layer).
        head: The task head; never frozen by block strategies.
        new: The newly initialised part of the head (a subset of ``head``'s modules).
        discovered: True when the view was read off the module tree
            (:func:`~nlp_transfer.models.discover.discover_layout`), not an explicit layout.
        note: What ``--freeze_layers`` counts for this family when it is not plain layers.
    """

    blocks: list[Block]
    head: Block
    new: Block | None = None
    discovered: bool = False
    note: str = ""

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)


def _get(model: nn.Module, path: str) -> nn.Module | None:
    obj: object = model
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    if not isinstance(obj, nn.Module):
        raise TypeError(f"{path} is a {type(obj).__name__}, not a module")
    return obj


def model_type_of(model: nn.Module) -> str:
    """The Hugging Face ``config.model_type`` of a model, or its class name."""
    config = getattr(model, "config", None)
    return getattr(config, "model_type", None) or type(model).__name__


def block_view_from_layout(
    model: nn.Module, layout: BlockLayout, *, discovered: bool = False
) -> BlockView:
    """Build the view of ``model`` described by ``layout`` and check it covers every parameter.

    Raises:
        ValueError: If a path is missing, or a parameter is in no block/head or in two.
    """
    if isinstance(layout.layers, str):
        layers = _get(model, layout.layers)
        if layers is None:
            raise ValueError(f"{type(model).__name__} has no {layout.layers}")
        named = [(f"{layout.layer_name}_{i}", [layer]) for i, layer in enumerate(layers)]
    else:
        named = [(path, [_get(model, path)]) for path in layout.layers]
        missing = [path for path, layer in named if layer[0] is None]
        if missing:
            raise ValueError(f"{type(model).__name__} has no {', '.join(missing)}")
    for i, path in layout.layer_extras:
        extra = _get(model, path)
        if extra is not None:
            named[i][1].append(extra)
    embeddings = [m for m in (_get(model, p) for p in layout.embeddings) if m is not None]
    head = [m for m in (_get(model, p) for p in layout.head) if m is not None]
    blocks = [Block(layout.bottom_name, embeddings)] + [
        Block(name, modules) for name, modules in named
    ]
    new = [m for m in (_get(model, p) for p in layout.new) if m is not None]
    view = BlockView(
        blocks=blocks,
        head=Block("head", head),
        new=Block("new", new),
        discovered=discovered,
        note=layout.note,
    )
    _check_coverage(model, view)
    return view


def _check_coverage(model: nn.Module, view: BlockView) -> None:
    owner: dict[int, str] = {}
    for block in [*view.blocks, view.head]:
        for p in block.parameters():
            if id(p) in owner and owner[id(p)] != block.name:
                raise ValueError(f"A parameter is in both {owner[id(p)]} and {block.name}.")
            owner[id(p)] = block.name
    stray = [n for n, p in model.named_parameters() if id(p) not in owner]
    if stray:
        raise ValueError(
            f"The block layout of {type(model).__name__} misses parameters {stray[:4]}; "
            "this architecture is not supported by the block view."
        )


def get_block_view(model: nn.Module) -> BlockView:
    """Return the block view of a model: explicit layout, else discovered.

    Explicit layouts (``config.model_type``): BERT, RoBERTa, XLM-R, CamemBERT, DistilBERT,
    ELECTRA, DeBERTa-v2/v3, MPNet, ModernBERT, ALBERT, and the decoder classifiers GPT-2, Llama,
    Qwen2, Mistral; torchvision ResNets by class (subclasses included):
    ``[stem, layer1, layer2, layer3, layer4]`` + ``fc``. Any other model is read off its module
    tree by :func:`~nlp_transfer.models.discover.discover_layout` and coverage-checked the same
    way.

    Args:
        model: The task model (e.g. from ``AutoModelForSequenceClassification``, or
            :func:`~nlp_transfer.vision.models.build_image_classifier`).

    Returns:
        Its :class:`BlockView`.

    Raises:
        NoBlockViewError: (a ``ValueError``) No explicit layout and none can be discovered; the
            message names the model type and the flags that need a view.
        ValueError: An explicit layout does not fit the model (a path is missing, or the
            coverage check fails).
    """
    model_type = model_type_of(model)
    layout = TEXT_LAYOUTS.get(model_type)
    if layout is None:
        layout = next(
            (CLASS_LAYOUTS[c.__name__] for c in type(model).__mro__ if c.__name__ in CLASS_LAYOUTS),
            None,
        )
    if layout is not None:
        return block_view_from_layout(model, layout)
    layout, reason = discover_layout(model)
    if layout is not None:
        try:
            view = block_view_from_layout(model, layout, discovered=True)
        except ValueError as err:
            reason = str(err)
        else:
            logger.debug(f"Discovered block view of {model_type!r}: {layout}")
            return view
    raise NoBlockViewError(
        f"No block view for model type {model_type!r}: it has no explicit layout and "
        f"discovery failed ({reason}). Full fine-tuning (--freeze_layers 0, no other transfer "
        f"strategy) works without one; {VIEW_FLAGS} need one. Add a BlockLayout to "
        "nlp_transfer.models.layouts.TEXT_LAYOUTS."
    )


def find_block_view(model: nn.Module) -> BlockView | None:
    """:func:`get_block_view`, or None when no view can be had (not an error for full training)."""
    try:
        return get_block_view(model)
    except NoBlockViewError:
        return None
