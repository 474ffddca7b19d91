"""Explicit block layouts, per Hugging Face ``model_type`` and per torchvision class.

A layout names, as attribute paths from the task model, the bottom block (embeddings), the
repeated layers and the head. Paths that a particular configuration lacks (DeBERTa's relative
embeddings when ``relative_attention=False``, its ``conv`` layer when ``conv_kernel_size=0``)
are skipped; the coverage check in :func:`~nlp_transfer.models.blocks.block_view_from_layout`
still proves that every parameter is in exactly one block or the head.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BlockLayout:
    """Where a family keeps its blocks, as attribute paths from the task model.

    Attributes:
        embeddings: Paths making up the bottom block (token embeddings and what belongs with
            them: a projection, position embeddings or biases shared by every layer, GPT-2's
            embedding dropout; or a ResNet's stem ``conv1``, ``bn1``).
        layers: Path of the ``nn.ModuleList`` of encoder layers, each one block named
            ``<layer_name>_<i>``; or a tuple of paths, each one block named by its path (a
            ResNet's ``layer1`` ... ``layer4``).
        head: Paths of the task head (pooler, final norm, classifier...), trained in every
            strategy.
        new: The part of ``head`` that is newly initialised for the task (not pretrained):
            L2-SP pulls pretrained weights towards their start and these towards zero.
        bottom_name: Name of the bottom block (``embeddings``, ``stem``).
        layer_extras: ``(i, path)`` pairs: modules that belong to layer ``i``'s block although
            they live outside the layer list (DeBERTa-v2's ``conv`` applied after layer 0).
        layer_name: Prefix of the layer blocks' names.
        note: What ``--freeze_layers`` counts for this family, when it is not plain layers;
            shown in range errors.
    """

    embeddings: tuple[str, ...]
    layers: str | tuple[str, ...]
    head: tuple[str, ...]
    new: tuple[str, ...] = ("classifier",)
    bottom_name: str = "embeddings"
    layer_extras: tuple[tuple[int, str], ...] = ()
    layer_name: str = "layer"
    note: str = ""


_ROBERTA = BlockLayout(("roberta.embeddings",), "roberta.encoder.layer", ("classifier",))


def _decoder(base: str, embeddings: tuple[str, ...], layers: str, norm: str) -> BlockLayout:
    """A decoder-only ``...ForSequenceClassification``: pools the last non-pad token, ``score``."""
    return BlockLayout(
        tuple(f"{base}.{p}" for p in embeddings),
        f"{base}.{layers}",
        (f"{base}.{norm}", "score"),
        new=("score",),
    )


ALBERT_NOTE = (
    "ALBERT shares one set of layer weights across all its layer applications "
    "(config.num_hidden_groups sets, 1 in every released ALBERT), so --freeze_layers counts "
    "those shared layer groups: 0 trains everything, 1 freezes the embeddings and the shared "
    "layer (only the pooler and classifier train)."
)

TEXT_LAYOUTS: dict[str, BlockLayout] = {
    "bert": BlockLayout(("bert.embeddings",), "bert.encoder.layer", ("bert.pooler", "classifier")),
    "roberta": _ROBERTA,
    "xlm-roberta": _ROBERTA,
    "camembert": _ROBERTA,
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
    # DeBERTa-v2 is also DeBERTa-v3's model_type. The relative position embeddings (and their
    # LayerNorm) are read by every layer, like BERT's position embeddings: bottom block. The
    # pooler is not in the pretrained (MLM) checkpoints: new.
    "deberta-v2": BlockLayout(
        (
            "deberta.embeddings",
            "deberta.encoder.rel_embeddings",
            "deberta.encoder.LayerNorm",
        ),
        "deberta.encoder.layer",
        ("pooler", "classifier"),
        new=("pooler", "classifier"),
        layer_extras=((0, "deberta.encoder.conv"),),
    ),
    # MPNet's relative attention bias is shared by every layer: bottom block.
    "mpnet": BlockLayout(
        ("mpnet.embeddings", "mpnet.encoder.relative_attention_bias"),
        "mpnet.encoder.layer",
        ("classifier",),
    ),
    # ModernBERT's prediction head ``head`` is pretrained (it is the MLM head's transform).
    "modernbert": BlockLayout(
        ("model.embeddings",),
        "model.layers",
        ("model.final_norm", "head", "classifier"),
    ),
    "albert": BlockLayout(
        ("albert.embeddings", "albert.encoder.embedding_hidden_mapping_in"),
        "albert.encoder.albert_layer_groups",
        ("albert.pooler", "classifier"),
        layer_name="layer_group",
        note=ALBERT_NOTE,
    ),
    "gpt2": _decoder("transformer", ("wte", "wpe", "drop"), "h", "ln_f"),
    "llama": _decoder("model", ("embed_tokens",), "layers", "norm"),
    "qwen2": _decoder("model", ("embed_tokens",), "layers", "norm"),
    "mistral": _decoder("model", ("embed_tokens",), "layers", "norm"),
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
