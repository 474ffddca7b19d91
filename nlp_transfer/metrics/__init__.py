"""Evaluation metrics, all from scikit-learn and scipy: :mod:`.classification` (single-label),
:mod:`.multilabel` and :mod:`.regression`. Imports nothing of the package above it.
"""
