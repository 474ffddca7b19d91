"""The transfer-strategy interface and its registry.

A strategy is one module of this package: a config dataclass of its own flags (help text and
checks), and a :class:`TransferStrategy` subclass registered with :func:`register_strategy`.
:func:`~nlp_transfer.transfer.plan.plan_transfer` composes the registered strategies that a
run's config turns on; nothing else branches on a strategy's name.

Two kinds:

- A strategy that decides **what trains** (``selects_parameters``: freezing, feature
  extraction, peft adapters, BitFit): exactly one applies, the active one of lowest
  ``priority``, else ``freeze`` (which with ``--freeze_layers 0`` is full fine-tuning).
- A strategy that changes **how it trains** (layer-wise LR decay, L2-SP, gradual unfreezing):
  any number compose, each adding optimizer settings, a loss term or an unfreezing schedule.

Combinations that mean nothing are refused from what each strategy declares
(:meth:`TransferStrategy.refuses`), with an error that names the flags.

As peft registers each method with its own config class (``src/peft/tuners/<method>/``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from torch import nn

from ...models.blocks import BlockView
from ..freeze import FreezeReport

if TYPE_CHECKING:
    from ..gradual import GradualUnfreezer
    from ..l2sp import L2SPRegularizer

_STRATEGIES: dict[str, TransferStrategy] = {}


class TransferStrategy:
    """One transfer strategy. Subclasses set the class attributes and override what they do.

    Attributes:
        name: Its name in the registry and in errors.
        arguments: Its config dataclass; a config without it (e.g. domain adaptation's, which
            has only freezing) never turns the strategy on.
        selects_parameters: Whether it decides what trains (see the module docstring).
    """

    name: ClassVar[str]
    arguments: ClassVar[type]
    selects_parameters: ClassVar[bool] = False
    priority: ClassVar[int] = 0  # among selects_parameters strategies: the lowest active applies
    prefix_cacheable: ClassVar[bool] = True  # whether a frozen prefix may be cached under it
    describes_helpers: ClassVar[bool] = True  # the description lists the other strategies too
    uses_param_groups: ClassVar[bool] = False  # needs per-block optimizer groups when active
    shared: ClassVar[bool] = True  # its flags join every task's config (else a task adds them)

    def is_active(self, config) -> bool:
        """Whether ``config`` turns this strategy on (False for configs without its flags)."""
        return isinstance(config, self.arguments) and self.enabled(config)

    def enabled(self, config) -> bool:
        """Whether its flags turn it on (``config`` has them)."""
        raise NotImplementedError

    def flags_set(self, config) -> list[str]:
        """Its flags that ``config`` sets away from their defaults (named in refusals)."""
        return []

    def check(self, config) -> None:
        """Check its own values (called for every config that has its flags).

        Raises:
            ValueError: A value out of range; the message names the flag.
        """

    def refuses(self, config) -> tuple[tuple[str, ...], str]:
        """``(strategies it does not compose with, why)`` when active; ``why`` starts the error."""
        return (), ""

    def label(self, config) -> str:
        """Its name in the run's "Transfer strategy:" log line ("" for plain freezing)."""
        return ""

    def trains_wrapper(self, config) -> bool:
        """Whether the run trains the adapter model :meth:`apply` returned instead of the
        task model (prompt tuning, whose wrapper prepends the virtual tokens)."""
        return False

    def needs_block_view(self, config) -> bool:
        """Whether it acts on the model's block view (a family without one refuses it)."""
        return self.enabled(config)

    # What trains (selects_parameters strategies only)
    def apply(
        self, model: nn.Module, view: BlockView | None, config
    ) -> tuple[FreezeReport, nn.Module | None, BlockView | None]:
        """Set what trains: ``(report of what changed, a wrapping adapter model or None, the
        block view from now on)``."""
        raise NotImplementedError

    # How it trains
    def optimizer_settings(self, config) -> dict:
        """Keyword arguments for :func:`~nlp_transfer.transfer.lr.layerwise_lr_param_groups`
        (a non-empty dict asks for per-block parameter groups)."""
        return {}

    def regularizer(self, model: nn.Module, view: BlockView, config) -> L2SPRegularizer | None:
        """A loss term added to every batch (L2-SP), or None."""
        return None

    def unfreezer(self, model: nn.Module, view: BlockView, config) -> GradualUnfreezer | None:
        """A gradual-unfreezing schedule, or None."""
        return None

    def before_training(self, model: nn.Module, plan, stage) -> dict:
        """A stage of its own before the head stage trains (contrastive tuning), on the task's
        ``stage`` inputs; returns entries for the strategy description ({} = nothing done)."""
        return {}

    def describe(self, config, plan) -> dict:
        """Its entries of the strategy description (``metrics.json``, model card)."""
        return {}


def register_strategy(strategy: TransferStrategy) -> TransferStrategy:
    """Add ``strategy`` to the registry (after the ones there: the order of application).

    Raises:
        ValueError: A strategy of that name is registered already.
    """
    if strategy.name in _STRATEGIES:
        raise ValueError(f"A transfer strategy named {strategy.name!r} is registered already.")
    _STRATEGIES[strategy.name] = strategy
    return strategy


def get_strategy(name: str) -> TransferStrategy:
    """The strategy registered as ``name``.

    Raises:
        KeyError: No such strategy (the message lists them).
    """
    if name not in _STRATEGIES:
        raise KeyError(f"No transfer strategy {name!r}; registered: {', '.join(_STRATEGIES)}.")
    return _STRATEGIES[name]


def list_strategies() -> list[str]:
    """The registered strategy names, in the order they apply."""
    return list(_STRATEGIES)


def active_strategies(config) -> list[TransferStrategy]:
    """The registered strategies ``config`` turns on, in order."""
    return [s for s in _STRATEGIES.values() if s.is_active(config)]


def parameter_strategy(config) -> TransferStrategy:
    """The one strategy that decides what trains under ``config``."""
    chosen = [s for s in active_strategies(config) if s.selects_parameters]
    return min(chosen, key=lambda s: s.priority)


def arguments_classes(shared_only: bool = True) -> list[type]:
    """The strategies' config classes, each once, in registration order; ``shared_only``: those
    every task's config takes (a task adds the others it supports, e.g. text's contrastive)."""
    chosen = [s for s in _STRATEGIES.values() if s.shared or not shared_only]
    return list(dict.fromkeys(s.arguments for s in chosen))


def check_strategies(config) -> None:
    """Each strategy's own checks, then the combinations the active ones refuse.

    Raises:
        ValueError: A bad value, or strategies that do not combine (the message names the
            flags).
    """
    for strategy in _STRATEGIES.values():
        if isinstance(config, strategy.arguments):
            strategy.check(config)
    for strategy in active_strategies(config):
        others, why = strategy.refuses(config)
        refused = [get_strategy(name) for name in others]
        used = [f for s in refused if isinstance(config, s.arguments) for f in s.flags_set(config)]
        if used:
            raise ValueError(f"{why}; it does not combine with {', '.join(dict.fromkeys(used))}.")
