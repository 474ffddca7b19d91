"""Step 4 of the data pipeline (:mod:`nlp_transfer.data.pipeline`): split validation and test
off the training data where they were not given; seeded, for every problem type.

- single-label: stratified by label, the indices of ``datasets``'
  ``Dataset.train_test_split(stratify_by_column="label")`` (:func:`stratified_split`);
- multi-label: iterative stratification (Sechidis, Tsoumakas and Vlahavas 2011, "On the
  Stratification of Multi-Label Data"; the ``iterative-stratification`` package's
  ``MultilabelStratifiedShuffleSplit``), which keeps each label's share similar in every split,
  then a held-out row moves back to training for any label training would lack;
- regression (and multi-label labels given as names, not ids): at random,
  ``Dataset.train_test_split(seed=seed)``.

Splits are index mappings over the same Arrow table, not copies.
"""

from __future__ import annotations

import math

import numpy as np
from datasets import Dataset, DatasetDict
from datasets.utils.stratify import stratified_shuffle_split_generate_indices

from .columns import arrow_column, multi_hot, numpy_column
from .encode import MULTI_LABEL, REGRESSION, SINGLE_LABEL

SPLITS = ("train", "validation", "test")


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
    check_split_sizes(validation_size, test_size)
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


def check_split_sizes(validation_size: float, test_size: float) -> None:
    """Raise unless both are fractions in (0, 1) that leave rows for training.

    Raises:
        ValueError: The message names ``--validation_size``/``--test_size``.
    """
    for flag, value in (("validation_size", validation_size), ("test_size", test_size)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"--{flag} must be a fraction in (0, 1), got {value}.")
    if validation_size + test_size >= 1.0:
        raise ValueError(
            f"--validation_size + --test_size must leave rows for training, got "
            f"{validation_size} + {test_size}."
        )


def split_missing(
    dataset: dict[str, Dataset] | DatasetDict,
    problem_type: str,
    *,
    validation_size: float = 0.1,
    test_size: float = 0.1,
    seed: int = 42,
) -> DatasetDict:
    """``train``/``validation``/``test``: the splits given, the others split off ``train``.

    Args:
        dataset: ``train`` and any of ``validation``/``test``, with an encoded ``label``.
        problem_type: ``single_label_classification``, ``multi_label_classification`` or
            ``regression``: how to split (see the module docstring).
        validation_size: Fraction of all rows for validation, when not given.
        test_size: Fraction of all rows for test, when not given.
        seed: Seed of the split.

    Raises:
        ValueError: The fractions are out of range, or (single-label) a label has too few rows
            to stratify.
    """
    need = {s: s not in dataset for s in ("validation", "test")}
    if not any(need.values()):
        return DatasetDict({s: dataset[s] for s in SPLITS})
    kwargs = dict(validation_size=validation_size, test_size=test_size, seed=seed)
    needs = dict(need_validation=need["validation"], need_test=need["test"])
    if problem_type == SINGLE_LABEL:
        parts = stratified_split(dataset["train"], **kwargs, **needs)
    elif problem_type == MULTI_LABEL and _label_ids(dataset["train"]):
        parts = _multi_label_split(dataset["train"], **kwargs, **needs)
    elif problem_type in (MULTI_LABEL, REGRESSION):  # multi-label as names: at random
        parts = _random_split(dataset["train"], **kwargs, **needs)
    else:
        raise ValueError(f"Unknown problem type {problem_type!r}.")
    return DatasetDict(
        {s: dataset[s] if s in dataset and s != "train" else parts[s] for s in SPLITS}
    )


def _label_ids(dataset: Dataset) -> bool:
    """Whether multi-label ``label`` holds ``ClassLabel`` ids (as the pipeline encodes them)."""
    return hasattr(getattr(dataset.features["label"], "feature", None), "names")


def _shares(validation_size, test_size, need_validation, need_test) -> dict[str, float]:
    """``{split: fraction of what is left}``, test first, that make the sizes of the whole."""
    check_split_sizes(validation_size, test_size)
    shares = {"test": test_size} if need_test else {}
    if need_validation:
        shares["validation"] = validation_size / (1 - (test_size if need_test else 0.0))
    return shares


def _random_split(dataset: Dataset, *, validation_size, test_size, seed, **needs) -> dict:
    """Seeded random splits, as ``Dataset.train_test_split(test_size=share, seed=seed)``."""
    out = {}
    for split, share in _shares(validation_size, test_size, **needs).items():
        parts = dataset.train_test_split(test_size=share, seed=seed)
        dataset, out[split] = parts["train"], parts["test"]
    return {"train": dataset} | out


def _multi_label_split(dataset: Dataset, *, validation_size, test_size, seed, **needs) -> dict:
    """Iterative stratification of the multi-hot labels (rows in the splitter's order)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    y = multi_hot(arrow_column(dataset, "label"), len(dataset.features["label"].feature.names))
    rest, held = np.arange(len(dataset)), {}
    for split, share in _shares(validation_size, test_size, **needs).items():
        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=share, random_state=seed)
        keep, out = next(splitter.split(np.zeros(len(rest)), y[rest]))
        held[split] = rest[out]
        rest = rest[keep]
    rest, held = keep_labels_in_train(y, rest, held)
    return {"train": dataset.select(rest)} | {s: dataset.select(i) for s, i in held.items()}


def keep_labels_in_train(y: np.ndarray, train: np.ndarray, held: dict) -> tuple:
    """Move one held-out row back to training for each label that training would lack (a
    label seen once or twice can otherwise land only in validation or test).

    Args:
        y: ``(n, C)`` multi-hot labels of every row.
        train: Training row numbers.
        held: ``{split: row numbers}``, visited in order, each split's rows in order.
    """
    seen = y[train].any(axis=0)
    for split in list(held):
        # only a row holding a label unseen now can move; later moves only shrink that set
        candidates = held[split][y[held[split]][:, ~seen].any(axis=1)]
        for row in candidates:
            if (y[row].astype(bool) & ~seen).any():
                seen |= y[row].astype(bool)
                train = np.sort(np.append(train, row))
                held[split] = held[split][held[split] != row]
    return train, held
