"""Deterministic, stratified train/validation/test splits."""

from __future__ import annotations

import numpy as np
from datasets import Dataset, DatasetDict

from .columns import numpy_column


def _split_off(dataset: Dataset, size: float, seed: int, what: str) -> tuple[Dataset, Dataset]:
    """Split ``size`` (a fraction) off ``dataset``, stratified by ``label``."""
    try:
        parts = dataset.train_test_split(test_size=size, stratify_by_column="label", seed=seed)
    except ValueError as err:
        names = dataset.features["label"].names
        counts = np.bincount(numpy_column(dataset, "label"), minlength=len(names))
        per_class = ", ".join(f"{name}: {n}" for name, n in zip(names, counts, strict=True) if n)
        raise ValueError(
            f"Cannot split a stratified {what} set ({size:.0%}) off {len(dataset)} training rows "
            f"(rows per label: {per_class}): every label needs at least 2 rows, and the {what} "
            f"set at least one row per label. Provide more data or pass --{what}_file. "
            f"({err})"
        ) from err
    return parts["train"], parts["test"]


def stratified_split(
    dataset: Dataset,
    *,
    validation_size: float = 0.1,
    test_size: float = 0.1,
    seed: int = 42,
    need_validation: bool = True,
    need_test: bool = True,
) -> DatasetDict:
    """Split one labelled dataset into train/validation/test, stratified by ``label``.

    Stratification keeps each split's label proportions equal to the whole's (up to rounding);
    the result depends only on the data and ``seed``. Implemented with
    ``datasets.Dataset.train_test_split(stratify_by_column="label")``: the splits are index
    mappings over the same Arrow table (for a dataset read from a file, written beside its
    cache files and reused by a later run with the same data and seed), not copies.

    Args:
        dataset: Rows with a ``label`` column of type ``ClassLabel``.
        validation_size: Fraction of all rows for validation, in (0, 1).
        test_size: Fraction of all rows for test, in (0, 1).
        seed: Seed of the shuffle.
        need_validation: Whether to split off a validation set.
        need_test: Whether to split off a test set.

    Returns:
        A ``DatasetDict`` with ``train`` and the requested ``validation``/``test`` splits.

    Raises:
        ValueError: If the fractions are out of range, or a label has too few rows to stratify.
    """
    for flag, value in (("validation_size", validation_size), ("test_size", test_size)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"--{flag} must be a fraction in (0, 1), got {value}.")
    if validation_size + test_size >= 1.0:
        raise ValueError(
            f"--validation_size + --test_size must leave rows for training, got "
            f"{validation_size} + {test_size}."
        )
    splits = {}
    train = dataset
    if need_test:
        train, splits["test"] = _split_off(train, test_size, seed, "test")
    if need_validation:
        # The fraction of what is left that makes validation_size of the whole.
        remaining = 1.0 - (test_size if need_test else 0.0)
        train, splits["validation"] = _split_off(
            train, validation_size / remaining, seed, "validation"
        )
    return DatasetDict({"train": train, **dict(sorted(splits.items(), reverse=True))})
