"""The transfer plan: one decision, from a model's block view and the run's arguments, of how
knowledge is transferred, composed from the registered strategies
(:mod:`nlp_transfer.transfer.strategies`).

Every task (text, images, domain adaptation) calls :func:`plan_transfer` once, after building
its model. The plan

- lets the one strategy that decides what trains set it (freezing, feature extraction, peft
  adapters or BitFit),
- decides whether the frozen prefix is cached (:attr:`TransferPlan.cache_prefix`),
- builds the optimizer's parameter groups from what the active strategies ask for (layer-wise LR
  decay, head LR) and their loss terms (L2-SP) (:meth:`TransferPlan.optimizer`),
- builds the gradual-unfreezing schedule (:meth:`TransferPlan.unfreezer`), and
- describes itself for the log, ``metrics.json`` and the model card
  (:meth:`TransferPlan.describe`).

The block view is built once here and shared by all of it. A new strategy is one module in
``transfer/strategies/``; a new model family is one layout in :mod:`nlp_transfer.models.blocks`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from ..models.blocks import BlockView, get_block_view
from .freeze import FreezeReport
from .gradual import GradualUnfreezer
from .l2sp import L2SPRegularizer
from .lr import describe_lrs, layerwise_lr_param_groups
from .optim import adamw, create_optimizer
from .prefix_model import caching_unsupported_reason
from .strategies import TransferStrategy, active_strategies, parameter_strategy

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
        strategies: The active strategies; the first decides what trains.
        stage_seconds: Seconds spent in stages before the head stage (contrastive tuning),
            counted in the run's ``train_runtime_s``.
    """

    config: object
    view: BlockView | None
    freeze: FreezeReport
    cache_prefix: bool
    details: dict = field(default_factory=dict)
    adapter: nn.Module | None = None
    strategies: list[TransferStrategy] = field(default_factory=list)
    stage_seconds: float = 0.0  # spent in stages before the head stage (counted as training)

    @property
    def cache(self) -> bool:
        """Whether the frozen prefix is cached (the description's ``prefix_cache``)."""
        return self.cache_prefix

    @property
    def parameter_strategy(self) -> TransferStrategy:
        """The strategy that decided what trains."""
        return self.strategies[0]

    def training_model(self, model: nn.Module) -> nn.Module:
        """What the run trains: ``model``, or the peft wrapper for prompt tuning (whose forward
        prepends the virtual tokens)."""
        if self.adapter is not None and self.parameter_strategy.trains_wrapper(self.config):
            return self.adapter
        return model

    @property
    def feature_extraction(self) -> str:
        """The feature-extraction head (``--feature_extraction``), or ``none``."""
        if self.parameter_strategy.name != "feature_extraction":
            return "none"
        return self.config.feature_extraction

    def optimizer(self, model: nn.Module) -> tuple[torch.optim.Optimizer, L2SPRegularizer | None]:
        """Fused AdamW over the trainable parameters with the plan's groups, and L2-SP if asked.

        Plain AdamW (no weight decay on 1-D tensors) unless an active strategy asks for per-block
        groups (``--layer_lr_decay``, ``--head_learning_rate``) or adds a loss term
        (``--l2sp_alpha``). Logs the learning rate of every block.

        Raises:
            ValueError: No trainable parameter, or a strategy needs a block view this model
                family lacks.
        """
        c = self.config
        helpers = self.strategies[1:]
        settings = {k: v for s in helpers for k, v in s.optimizer_settings(c).items()}
        if not any(s.uses_param_groups for s in helpers):
            return create_optimizer(model, c.learning_rate, c.weight_decay), None
        view = self._require_view("--layer_lr_decay, --head_learning_rate and --l2sp_alpha")
        terms = [t for s in helpers if (t := s.regularizer(model, view, c)) is not None]
        regularizer = terms[0] if terms else None
        groups = layerwise_lr_param_groups(
            model,
            c.learning_rate,
            weight_decay=c.weight_decay,
            no_decay_for=regularizer.parameter_ids if regularizer else None,
            view=view,
            **settings,
        )
        logger.info(f"Learning rate per block: {describe_lrs(groups)}")
        return adamw(groups, c.learning_rate), regularizer

    def unfreezer(self, model: nn.Module) -> GradualUnfreezer | None:
        """The gradual-unfreezing schedule (ULMFiT), or None; make it before the optimizer,
        which must hold every block, and call its ``start()`` after ``accelerator.prepare``."""
        for strategy in self.strategies[1:]:
            if (unfreezer := strategy.unfreezer(model, self.view, self.config)) is not None:
                return unfreezer
        return None

    def before_training(self, model: nn.Module, stage) -> None:
        """Run the active strategies' stages before the head stage (contrastive tuning of the
        encoder) on the task's ``stage`` inputs; what they report joins :meth:`describe`."""
        for strategy in self.strategies:
            report = strategy.before_training(model, self, stage)
            self.details |= report
            self.stage_seconds += sum(r.get("seconds", 0.0) for r in report.values())

    def describe(self) -> dict:
        """The strategy as a dict for ``metrics.json``, trackers and the model card."""
        main = self.parameter_strategy
        strategy = main.describe(self.config, self) | self.details
        if not main.describes_helpers:  # feature extraction: a head on fixed features
            return strategy
        for helper in self.strategies[1:]:
            strategy |= helper.describe(self.config, self)
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
    config,
    *,
    cacheable: bool = True,
    details: dict | None = None,
) -> TransferPlan:
    """Apply the run's strategies to ``model`` and decide the rest of its transfer.

    Args:
        model: The task model, freshly built (a block-view family, or any model for plain full
            fine-tuning).
        config: The run's arguments (:class:`~nlp_transfer.training.arguments.TransferConfig`,
            or :class:`~nlp_transfer.training.arguments.FrozenPrefixConfig`: freezing only).
        cacheable: Whether the task's inputs allow a prefix cache at all (False for images
            with ``--augment``, whose input changes every epoch).
        details: Task-specific entries added to :meth:`TransferPlan.describe`.

    Returns:
        The :class:`TransferPlan`; the model's frozen parameters are set.

    Raises:
        ValueError: ``--freeze_layers`` out of range, or a strategy that needs a block view on a
            model family without one (the message names the flag).
    """
    main = parameter_strategy(config)
    helpers = [s for s in active_strategies(config) if not s.selects_parameters]
    try:
        view = block_view_of(model)
    except ValueError:
        if any(s.needs_block_view(config) for s in [main, *helpers]):
            raise
        view = None
    freeze, adapter, view = main.apply(model, view, config)
    cache = _decide_cache(model, view, config, cacheable and main.prefix_cacheable)
    plan = TransferPlan(config, view, freeze, cache, dict(details or {}), adapter, [main, *helpers])
    label = " + ".join(x for s in [*helpers, main] if (x := s.label(config)))
    logger.info(f"Transfer strategy: {label + ' | ' if label else ''}{freeze}")
    return plan


def _decide_cache(model: nn.Module, view: BlockView | None, config, cacheable: bool) -> bool:
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
