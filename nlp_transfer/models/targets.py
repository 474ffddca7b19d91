"""Where each model family's adapters go: the default target modules of LoRA and IA3.

Next to the block layouts (:mod:`nlp_transfer.models.blocks`): a layout says which modules make
up a block, this table says which modules inside a block an adapter wraps. Names are relative
to a block (an encoder layer, a ResNet stage); a name without a dot matches any module whose
last name part it is (``query`` matches ``attention.self.query``), a dotted name matches that
relative path exactly (``output.dense`` is the feed-forward output, not ``attention.output.dense``).

Sources: LoRA on the query and value projections (Hu et al. 2021, section 7.1); IA3 on keys,
values and the feed-forward's inner activations (Liu et al. 2022, "Few-Shot
Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context Learning"), as in peft's
own per-model defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class AdapterTargets:
    """A family's default adapter targets, relative to a block.

    Attributes:
        lora: Modules LoRA wraps (``--lora_target_modules`` overrides them).
        ia3: Modules IA3 rescales.
        ia3_feedforward: The part of ``ia3`` whose *input* is rescaled (feed-forward layers).
    """

    lora: tuple[str, ...]
    ia3: tuple[str, ...]
    ia3_feedforward: tuple[str, ...] = ()


_BERT_LIKE = AdapterTargets(
    lora=("query", "value"), ia3=("key", "value", "output.dense"), ia3_feedforward=("output.dense",)
)

# By ``config.model_type`` (text) or class name (torchvision), as the block layouts.
ADAPTER_TARGETS: dict[str, AdapterTargets] = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "camembert": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "distilbert": AdapterTargets(
        lora=("q_lin", "v_lin"), ia3=("k_lin", "v_lin", "ffn.lin2"), ia3_feedforward=("ffn.lin2",)
    ),
    # The residual blocks' convolutions (peft wraps nn.Conv2d); not the downsampling shortcut.
    "ResNet": AdapterTargets(lora=("conv1", "conv2", "conv3"), ia3=("conv1", "conv2", "conv3")),
}


def adapter_targets_for(model: nn.Module) -> AdapterTargets:
    """The default targets of ``model``'s family.

    Raises:
        ValueError: The family has no entry (the message names ``--lora_target_modules``).
    """
    config = getattr(model, "config", None)
    keys = [getattr(config, "model_type", None)] + [c.__name__ for c in type(model).__mro__]
    for key in keys:
        if key in ADAPTER_TARGETS:
            return ADAPTER_TARGETS[key]
    raise ValueError(
        f"No default adapter targets for {type(model).__name__}; set --lora_target_modules "
        f"(module names inside a layer) or add it to nlp_transfer.models.targets.ADAPTER_TARGETS "
        f"(known: {', '.join(ADAPTER_TARGETS)})."
    )


def matches(relative_name: str, targets: tuple[str, ...]) -> bool:
    """Whether a module at ``relative_name`` (inside a block) is one of ``targets``."""
    for target in targets:
        if "." in target:
            if relative_name == target:
                return True
        elif relative_name.rsplit(".", 1)[-1] == target:
            return True
    return False
