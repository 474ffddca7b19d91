"""Know your data before training: likely label errors (confident learning, cleanlab), exact
and near duplicates, train/test leakage and outliers (``nlp-transfer audit``;
``docs/audit.md``)."""

from .run import AuditResult, audit

__all__ = ["AuditResult", "audit"]
