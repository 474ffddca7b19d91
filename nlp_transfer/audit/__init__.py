"""Know your data: before training, likely label errors (confident learning, cleanlab), exact
and near duplicates, train/test leakage and outliers (``nlp-transfer audit``); after it, drift
of incoming texts from the training data (``nlp-transfer monitor``); ``docs/audit.md``."""

import sys
import types

from .monitoring import monitor
from .run import AuditResult, audit

__all__ = ["AuditResult", "audit", "monitor"]


class _CallableModule(types.ModuleType):
    """``nlp_transfer.audit`` names both this package and its function: once the package is
    imported, Python binds ``nlp_transfer.audit`` to it, so calling it runs :func:`audit`."""

    def __call__(self, *args, **kwargs) -> AuditResult:
        return audit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
