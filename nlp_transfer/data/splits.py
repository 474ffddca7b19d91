"""Deterministic, stratified train/validation/test splits."""

from __future__ import annotations

import math

import numpy as np
from datasets import Dataset, DatasetDict
from datasets.utils.stratify import stratified_shuffle_split_generate_indices

from .columns import numpy_column


def split_indices(labels: np.ndarray, size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held)`` row numbers: ``size`` (a fraction) of the rows held out, stratified.

    The indices ``Dataset.train_test_split(test_size=size, stratify_by_column="label",
    seed=seed)`` gives (its own index generator, ``datasets.utils.stratify``, with the same
    sizes and random generator), computed from the labels as an array: ``train_test_split``
    itself reads the label column through ``Dataset.with_format("numpy")[...]``, one row at a
    time (about a minute for a million rows on one core). ``tests/test_text_scale.py`` checks
    that both give the same splits.

    Args:
        labels: ``(n,)`` label ids.
        size: Fraction held out, in (0, 1).
        seed: Seed of the shuffle.

    Raises:
        ValueError: A label has fewer than 2 rows, or a side gets fewer rows than there are
            labels.
    """
    n_held = math.ceil(size * len(labels))
    generator = np.random.default_rng(seed)
    indices = stratified_shuffle_split_generate_indices(
        labels, len(labels) - n_held, n_held, rng=generator
    )
    return next(indices)


def _split_off(dataset: Dataset, size: float, seed: int, what: str) -> tuple[Dataset, Dataset]:
    """Split ``size`` (a fraction) off ``dataset``, stratified by ``label`` (index mappings)."""
    labels = numpy_column(dataset, "label")
    try:
        kept, held = split_indices(labels, size, seed)
    except ValueError as err:
        names = dataset.features["label"].names
        counts = np.bincount(labels, minlength=len(names))
        per_class = ", ".join(f"{name}: {n}" for name, n in zip(names, counts, strict=True) if n)
        raise ValueError(
            f"Cannot split a stratified {what} set ({size:.0%}) off {len(dataset)} training rows "
            f"(rows per label: {per_class}): every label needs at least 2 rows, and the {what} "
            f"set at least one row per label. Provide more data or pass --{what}_file. "
            f"({err})"
        ) from err
    return dataset.select(kept), dataset.select(held)


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
    the result depends only on the data and ``seed``. The splits are those of
    ``datasets.Dataset.train_test_split(stratify_by_column="label")`` (see
    :func:`split_indices`), made as index mappings over the same Arrow table, not copies.

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
