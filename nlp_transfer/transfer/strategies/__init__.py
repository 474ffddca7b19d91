"""The transfer strategies, one module each, registered in the order they are imported here.

A new strategy is one more module (its config dataclass and a registered
:class:`~nlp_transfer.transfer.strategies.base.TransferStrategy`) and one import line below;
its flags join every task config that has the transfer strategies.
"""

from . import (  # noqa: F401  (imported to register)
    adapters,
    bitfit,
    contrastive,
    feature_extraction,
    freeze,
    gradual_unfreezing,
    l2sp,
    layer_lr_decay,
)
from .base import (
    TransferStrategy,
    active_strategies,
    arguments_classes,
    check_strategies,
    get_strategy,
    list_strategies,
    parameter_strategy,
    register_strategy,
)

__all__ = [
    "TransferStrategy",
    "active_strategies",
    "arguments_classes",
    "check_strategies",
    "get_strategy",
    "list_strategies",
    "parameter_strategy",
    "register_strategy",
]
