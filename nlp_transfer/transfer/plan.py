"""The transfer plan: one decision, from a model's block view and the run's arguments, of how
knowledge is transferred.

Every task (text, images, domain adaptation) calls :func:`plan_transfer` once, after building
its model. The plan

- freezes what the arguments say (``--freeze_layers``, or everything for feature extraction),
- decides whether the frozen prefix is cached (:attr:`TransferPlan.cache_prefix`),
- builds the optimizer's parameter groups (layer-wise LR decay, head LR, no weight decay on
  biases and norms) and the L2-SP regulariser (:meth:`TransferPlan.optimizer`),
- builds the gradual-unfreezing schedule (:meth:`TransferPlan.unfreezer`), and
- describes itself for the log, ``metrics.json`` and the model card
  (:meth:`TransferPlan.describe`).

The block view is built once here and shared by all of it. A new strategy is one more field
of the arguments and one more branch here; a new model family is one layout in
:mod:`nlp_transfer.models.blocks`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from ..models.blocks import BlockView, get_block_view
from ..training.loop import adamw, create_optimizer
from .adapters import apply_adapter, apply_bitfit, describe_adapter
from .arguments import FrozenPrefixConfig, TransferConfig
from .freeze import FreezeReport, count_parameters, freeze_encoder_layers
from .gradual import GradualUnfreezer
from .l2sp import L2SPRegularizer
from .lr import describe_lrs, layerwise_lr_param_groups
from .prefix_model import caching_unsupported_reason

logger = logging.getLogger(__name__)


def block_view_of(model: nn.Module) -> BlockView:
    """The model's block view: its own ``block_view()`` when it has one (a wrapper such as the
    domain-adaptation model), else :func:`~nlp_transfer.models.blocks.get_block_view`.

    Raises:
        ValueError: The model family has no block view (the message lists those supported).
    """
    own = getattr(model, "block_view", None)
    return own() if callable(own) else get_block_view(model)


@dataclass
class TransferPlan:
    """How one run transfers: what is frozen, cached, optimised and unfrozen, and at what LR.

    Attributes:
        config: The run's arguments.
        view: The model's block view (None for a family without one: full fine-tuning only).
        freeze: What freezing did (counts after it).
        cache_prefix: Whether the frozen prefix's output is computed once and cached.
        details: Task-specific entries for :meth:`describe` (e.g. ``weights``, ``augment``).
        adapter: The ``peft`` model wrapping the task model (``--peft``), or None. LoRA and IA3
            live inside the task model, which trains as before; prompt tuning trains this.
    """

    config: FrozenPrefixConfig
    view: BlockView | None
    freeze: FreezeReport
    cache_prefix: bool
    details: dict = field(default_factory=dict)
    adapter: nn.Module | None = None

    def training_model(self, model: nn.Module) -> nn.Module:
        """What the run trains: ``model``, or the peft wrapper for prompt tuning (whose forward
        prepends the virtual tokens)."""
        if self.adapter is not None and getattr(self.config, "peft", "none") == "prompt_tuning":
            return self.adapter
        return model

    @property
    def feature_extraction(self) -> str:
        """``--feature_extraction`` (``none`` for configs without it)."""
        return getattr(self.config, "feature_extraction", "none")

    def uses_block_strategies(self) -> bool:
        """Whether the optimizer needs per-block groups (LR decay, head LR, L2-SP)."""
        c = self.config
        return bool(
            getattr(c, "layer_lr_decay", 1.0) != 1.0
            or c.head_learning_rate
            or getattr(c, "l2sp_alpha", 0.0) > 0
        )

    def optimizer(self, model: nn.Module) -> tuple[torch.optim.Optimizer, L2SPRegularizer | None]:
        """Fused AdamW over the trainable parameters with the plan's groups, and L2-SP if asked.

        Plain AdamW (no weight decay on 1-D tensors) unless ``--layer_lr_decay``,
        ``--head_learning_rate`` or ``--l2sp_alpha`` ask for per-block groups. Logs the
        learning rate of every block.

        Raises:
            ValueError: No trainable parameter, or a strategy needs a block view this model
                family lacks.
        """
        c = self.config
        if not self.uses_block_strategies():
            return create_optimizer(model, c.learning_rate, c.weight_decay), None
        view = self._require_view("--layer_lr_decay, --head_learning_rate and --l2sp_alpha")
        regularizer = None
        if getattr(c, "l2sp_alpha", 0.0) > 0:
            regularizer = L2SPRegularizer(model, c.l2sp_alpha, c.l2sp_beta, view=view)
            logger.info(
                f"L2-SP: alpha {c.l2sp_alpha} on {len(regularizer.pretrained)} pretrained "
                f"tensors, beta {c.l2sp_beta} on {len(regularizer.new_params)} new-head tensors "
                "(no weight decay there)"
            )
        groups = layerwise_lr_param_groups(
            model,
            c.learning_rate,
            layer_lr_decay=getattr(c, "layer_lr_decay", 1.0),
            head_learning_rate=c.head_learning_rate,
            weight_decay=c.weight_decay,
            no_decay_for=regularizer.parameter_ids if regularizer else None,
            view=view,
        )
        logger.info(f"Learning rate per block: {describe_lrs(groups)}")
        return adamw(groups, c.learning_rate), regularizer

    def unfreezer(self, model: nn.Module) -> GradualUnfreezer | None:
        """The gradual-unfreezing schedule (ULMFiT), or None; make it before the optimizer,
        which must hold every block, and call its ``start()`` after ``accelerator.prepare``."""
        if not getattr(self.config, "gradual_unfreezing", False):
            return None
        view = self._require_view("--gradual_unfreezing")
        return GradualUnfreezer(model, self.config.unfreeze_every_n_steps, view=view)

    def describe(self) -> dict:
        """The strategy as a dict for ``metrics.json``, trackers and the model card."""
        c = self.config
        if self.feature_extraction != "none":
            return {"name": "feature_extraction", "head": self.feature_extraction, **self.details}
        strategy: dict = {"name": "fine_tuning", "freeze_layers": c.freeze_layers}
        strategy["prefix_cache"] = self.cache_prefix
        if self.adapter is not None:
            strategy["name"] = c.peft
            strategy["peft"] = describe_adapter(c, self.adapter)
        if getattr(c, "bitfit", False):
            strategy["name"] = "bitfit"
            strategy["trainable_params"] = self.freeze.trainable_params
        strategy |= self.details
        if getattr(c, "gradual_unfreezing", False):
            strategy["gradual_unfreezing"] = {"unfreeze_every_n_steps": c.unfreeze_every_n_steps}
        if getattr(c, "layer_lr_decay", 1.0) != 1.0:
            strategy["layer_lr_decay"] = c.layer_lr_decay
        if c.head_learning_rate:
            strategy["head_learning_rate"] = c.head_learning_rate
        if getattr(c, "l2sp_alpha", 0.0):
            strategy["l2sp"] = {"alpha": c.l2sp_alpha, "beta": c.l2sp_beta}
        return strategy

    def _require_view(self, flags: str) -> BlockView:
        if self.view is None:
            raise ValueError(
                f"{flags} need the model's block view, which this model family does not have; "
                "train it with full fine-tuning (none of these flags)."
            )
        return self.view


def plan_transfer(
    model: nn.Module,
    config: FrozenPrefixConfig,
    *,
    cacheable: bool = True,
    details: dict | None = None,
) -> TransferPlan:
    """Apply the run's freezing to ``model`` and decide the rest of its transfer strategy.

    Args:
        model: The task model, freshly built (a block-view family, or any model for plain full
            fine-tuning).
        config: The run's arguments (:class:`~nlp_transfer.transfer.arguments.TransferConfig`
            or the narrower :class:`~nlp_transfer.transfer.arguments.FrozenPrefixConfig`).
        cacheable: Whether the task's inputs allow a prefix cache at all (False for images
            with ``--augment``, whose input changes every epoch).
        details: Task-specific entries added to :meth:`TransferPlan.describe`.

    Returns:
        The :class:`TransferPlan`; the model's frozen parameters are set.

    Raises:
        ValueError: ``--freeze_layers`` out of range, or a strategy that needs a block view on a
            model family without one (the message names the flag).
    """
    feature_extraction = getattr(config, "feature_extraction", "none")
    needs_view = (
        config.freeze_layers > 0
        or (isinstance(config, TransferConfig) and config.gradual_unfreezing)
        or getattr(config, "peft", "none") != "none"
        or getattr(config, "bitfit", False)
    )
    try:
        view = block_view_of(model)
    except ValueError:
        if needs_view:
            raise
        view = None
    peft_method = getattr(config, "peft", "none")
    adapter = None
    if feature_extraction != "none":
        freeze = _feature_extraction_report(model, view)
    elif peft_method != "none":
        adapter, freeze = apply_adapter(model, config, view)
        view = None if peft_method == "prompt_tuning" else block_view_of(model)  # wrapped head
    elif getattr(config, "bitfit", False):
        freeze = apply_bitfit(model, config.freeze_layers, view)
    elif view is None:
        trainable, total = count_parameters(model)
        freeze = FreezeReport([], ["all"], trainable, total)
    else:
        freeze = freeze_encoder_layers(model, config.freeze_layers, view=view)
    cache = _decide_cache(model, view, config, cacheable and feature_extraction == "none")
    plan = TransferPlan(config, view, freeze, cache, dict(details or {}), adapter)
    kind = "feature extraction | " if feature_extraction != "none" else ""
    if adapter is not None:
        kind = f"{peft_method} adapters (peft) | "
    elif getattr(config, "bitfit", False):
        kind = "BitFit (biases and head) | "
    logger.info(f"Transfer strategy: {kind}{freeze}")
    return plan


def _decide_cache(
    model: nn.Module, view: BlockView | None, config: FrozenPrefixConfig, cacheable: bool
) -> bool:
    """Whether to cache the frozen prefix: asked for (``--cache_frozen_prefix`` not ``no``), with
    ``--freeze_layers`` >= 1, inputs that allow it, and a family where the cache is exact.

    Raises:
        ValueError: ``--cache_frozen_prefix memory|disk`` asked for a family where caching
            cannot be shown exact (``auto`` logs the reason and trains without a cache).
    """
    if not (cacheable and config.cache_frozen_prefix != "no" and config.freeze_layers >= 1):
        return False
    reason = caching_unsupported_reason(model, view)
    if reason is None:
        return True
    if config.cache_frozen_prefix != "auto":
        raise ValueError(reason)
    logger.info(f"No frozen-prefix cache: {reason}")
    return False


def _feature_extraction_report(model: nn.Module, view: BlockView | None) -> FreezeReport:
    """Everything but the head frozen; the counts are the encoder's (the head is fitted later)."""
    if view is None:
        encoder = getattr(model, "base_model", model)
        return FreezeReport(["encoder"], ["head"], 0, sum(p.numel() for p in encoder.parameters()))
    total = sum(p.numel() for b in view.blocks for p in b.parameters())
    return FreezeReport([b.name for b in view.blocks], ["head"], 0, total)
