"""The block view of a model: an ordered list of blocks, bottom to top, plus a named head.

Freezing the lower k blocks, layer-wise learning-rate decay, gradual unfreezing and caching the
output of a frozen prefix are each one mechanism over this view, for every supported family.

- BERT family: ``[embeddings, layer_0, ..., layer_{L-1}]`` + head (pooler, classifier)
- ResNet: ``[stem, layer1, layer2, layer3, layer4]`` + head (``fc``)

Layouts are explicit per ``model_type``: the head is named, never guessed, and building a view
checks that every parameter belongs to exactly one block or to the head.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class BlockLayout:
    """Where a family keeps its blocks, as attribute paths from the task model.

    Attributes:
        embeddings: Paths making up the bottom block (e.g. token embeddings and a projection,
            or a ResNet's stem ``conv1``, ``bn1``).
        layers: Path of the ``nn.ModuleList`` of encoder layers, each one block named
            ``layer_<i>``; or a tuple of paths, each one block named by its path (a ResNet's
            ``layer1`` ... ``layer4``).
        head: Paths of the task head (pooler, classifier...), trained in every strategy.
        new: The part of ``head`` that is newly initialised for the task (not pretrained):
            L2-SP pulls pretrained weights towards their start and these towards zero.
        bottom_name: Name of the bottom block (``embeddings``, ``stem``).
    """

    embeddings: tuple[str, ...]
    layers: str | tuple[str, ...]
    head: tuple[str, ...]
    new: tuple[str, ...] = ("classifier",)
    bottom_name: str = "embeddings"


TEXT_LAYOUTS: dict[str, BlockLayout] = {
    "bert": BlockLayout(("bert.embeddings",), "bert.encoder.layer", ("bert.pooler", "classifier")),
    "roberta": BlockLayout(("roberta.embeddings",), "roberta.encoder.layer", ("classifier",)),
    "xlm-roberta": BlockLayout(("roberta.embeddings",), "roberta.encoder.layer", ("classifier",)),
    "camembert": BlockLayout(("roberta.embeddings",), "roberta.encoder.layer", ("classifier",)),
    "distilbert": BlockLayout(
        ("distilbert.embeddings",),
        "distilbert.transformer.layer",
        ("pre_classifier", "classifier"),
        new=("pre_classifier", "classifier"),
    ),
    "electra": BlockLayout(
        ("electra.embeddings", "electra.embeddings_project"),
        "electra.encoder.layer",
        ("classifier",),
    ),
}

# torchvision models have no ``config.model_type``: their layout is found by class (and base
# class) name, so a user's own ``torchvision.models.resnet50()`` has a block view too.
CLASS_LAYOUTS: dict[str, BlockLayout] = {
    "ResNet": BlockLayout(
        ("conv1", "bn1"),
        ("layer1", "layer2", "layer3", "layer4"),
        ("fc",),
        new=("fc",),
        bottom_name="stem",
    ),
}


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
    """

    blocks: list[Block]
    head: Block
    new: Block | None = None

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


def block_view_from_layout(model: nn.Module, layout: BlockLayout) -> BlockView:
    """Build the view of ``model`` described by ``layout`` and check it covers every parameter.

    Raises:
        ValueError: If a path is missing, or a parameter is in no block/head or in two.
    """
    if isinstance(layout.layers, str):
        layers = _get(model, layout.layers)
        if layers is None:
            raise ValueError(f"{type(model).__name__} has no {layout.layers}")
        named = [(f"layer_{i}", layer) for i, layer in enumerate(layers)]
    else:
        named = [(path, _get(model, path)) for path in layout.layers]
        missing = [path for path, layer in named if layer is None]
        if missing:
            raise ValueError(f"{type(model).__name__} has no {', '.join(missing)}")
    embeddings = [m for m in (_get(model, p) for p in layout.embeddings) if m is not None]
    head = [m for m in (_get(model, p) for p in layout.head) if m is not None]
    blocks = [Block(layout.bottom_name, embeddings)] + [
        Block(name, [layer]) for name, layer in named
    ]
    new = [m for m in (_get(model, p) for p in layout.new) if m is not None]
    view = BlockView(blocks=blocks, head=Block("head", head), new=Block("new", new))
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
    """Return the block view of a supported model.

    Supported: Hugging Face BERT, RoBERTa (and XLM-R, CamemBERT), DistilBERT and ELECTRA
    sequence-classification models (by ``config.model_type``), and torchvision ResNets (by
    class, subclasses included): ``[stem, layer1, layer2, layer3, layer4]`` + ``fc``.

    Args:
        model: The task model (e.g. from ``AutoModelForSequenceClassification``, or
            :func:`~nlp_transfer.vision.models.build_image_classifier`).

    Returns:
        Its :class:`BlockView`.

    Raises:
        ValueError: If the family is not supported (the message lists those that are).
    """
    model_type = model_type_of(model)
    layout = TEXT_LAYOUTS.get(model_type)
    if layout is None:
        layout = next(
            (CLASS_LAYOUTS[c.__name__] for c in type(model).__mro__ if c.__name__ in CLASS_LAYOUTS),
            None,
        )
    if layout is None:
        raise ValueError(
            f"No block layout for model type {model_type!r}; supported: "
            f"{', '.join(sorted(TEXT_LAYOUTS))}, and torchvision {', '.join(CLASS_LAYOUTS)}. "
            "Use --freeze_layers 0 (full fine-tuning) or add a BlockLayout to "
            "nlp_transfer.models.blocks.TEXT_LAYOUTS."
        )
    return block_view_from_layout(model, layout)
