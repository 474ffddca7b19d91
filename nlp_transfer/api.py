"""Train on your own data in one call: ``nlp_transfer.train``.

    import nlp_transfer

    result = nlp_transfer.train("reviews.csv", text_column="review", label_column="stars")
    result.model.predict(["loved it", "a waste of time"])

``data`` is a file path, a pandas ``DataFrame``, a ``datasets.Dataset`` or a ``DatasetDict``;
keyword arguments are :class:`~nlp_transfer.text.config.TextClassificationConfig` fields.

Notebook reruns: with ``output_dir=None`` (the default) every call writes a new timestamped run
directory, ``outputs/run-YYYYmmdd-HHMMSS``, so rerunning a cell never touches an earlier run.
An explicit ``output_dir`` that exists and is not empty is refused unless
``overwrite_output_dir=True``: nothing is ever lost silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from datasets import DatasetDict

from .data.read import FILE_FORMATS, DataSource
from .reporting.outputs import new_output_dir
from .text.classifier import TextClassifier
from .text.config import TextClassificationConfig

RUNS_DIR = "outputs"


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: The trained classifier, loaded from ``output_dir`` (best epoch's weights).
        metrics: The run's ``metrics.json``: ``test``, ``baseline``, ``validation`` (per
            epoch), ``best_epoch``, ``timings``...
        output_dir: Where the run is saved (model, tokenizer, metrics.json, config.yaml, plots/).
        config: The run's settings, with the "auto" values as resolved (also in config.yaml).
    """

    model: TextClassifier
    metrics: dict
    output_dir: Path
    config: TextClassificationConfig

    def __repr__(self) -> str:
        test = self.metrics.get("test", {})
        return (
            f"TrainResult(output_dir={str(self.output_dir)!r}, test accuracy "
            f"{test.get('accuracy', float('nan')):.4f}, macro-F1 "
            f"{test.get('f1_macro', float('nan')):.4f}, model={self.model!r})"
        )


def new_run_dir(root: str | os.PathLike = RUNS_DIR) -> Path:
    """A run directory that does not exist yet: ``root/run-YYYYmmdd-HHMMSS`` (``-2``... if taken)."""
    return new_output_dir(root, "run")


def make_config(output_dir: str | os.PathLike | None, **kwargs) -> TextClassificationConfig:
    """A :class:`TextClassificationConfig` from keyword arguments, refusing unknown names.

    Raises:
        TypeError: A keyword that is not a config field (the message lists the valid ones).
        ValueError: A value out of range (the message names the setting).
    """
    valid = TextClassificationConfig.field_names()
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(
            f"nlp_transfer.train() got unknown setting(s) {', '.join(unknown)}; valid settings "
            f"(TextClassificationConfig fields): {', '.join(sorted(valid))}."
        )
    run_dir = new_run_dir() if output_dir is None else Path(output_dir)
    return TextClassificationConfig(output_dir=str(run_dir), **kwargs)


def train(
    data: DataSource | DatasetDict | None = None,
    *,
    text_column: str = "text",
    label_column: str = "label",
    output_dir: str | os.PathLike | None = None,
    **kwargs: object,
) -> TrainResult:
    """Fine-tune a text classifier on ``data``; return the trained model and its metrics.

    Example:
        >>> result = nlp_transfer.train(df, text_column="review", label_column="stars")
        >>> result.model.predict("a great film")

    The run is :func:`~nlp_transfer.text.run.run_text_classification` with the config's
    defaults: epochs and learning rate chosen from the data (logged, see
    :mod:`nlp_transfer.text.defaults`), early stopping, best epoch kept, a TF-IDF baseline.

    Args:
        data: A file path (``.csv``, ``.tsv``, ``.jsonl``, ``.json``, ``.parquet``) or a
            built-in dataset name; a pandas ``DataFrame``; a ``datasets.Dataset``; or a
            ``DatasetDict`` (its ``validation``/``test`` splits are used when present). Missing
            splits are split off the training data (``validation_size``, ``test_size``). None:
            the data named by ``dataset_name`` or ``train_file``.
        text_column: Column holding the text.
        label_column: Column holding the label (strings or integers).
        output_dir: Where the run is saved. None: a new ``outputs/run-YYYYmmdd-HHMMSS`` (a
            rerun never overwrites an earlier run). An existing non-empty directory is refused
            unless ``overwrite_output_dir=True``.
        **kwargs: Any other :class:`~nlp_transfer.text.config.TextClassificationConfig` field
            (``num_train_epochs``, ``learning_rate``, ``freeze_layers``,
            ``model_name_or_path``, ``validation_file``, ``max_train_samples``...).

    Returns:
        A :class:`TrainResult`: ``model`` (a :class:`~nlp_transfer.TextClassifier`),
        ``metrics``, ``output_dir``, ``config``.

    Raises:
        TypeError: An unknown keyword argument (the message lists the valid ones).
        FileExistsError: ``output_dir`` is not empty and ``overwrite_output_dir`` is not True.
        ValueError, FileNotFoundError: Bad data or settings (the message names what to fix).
    """
    from .race import run_or_race  # torch and transformers: load on first use

    if isinstance(data, str | os.PathLike):
        is_file = Path(data).suffix.lower() in FILE_FORMATS
        kwargs.setdefault("train_file" if is_file else "dataset_name", str(data))
        data = None
    config = make_config(output_dir, text_column=text_column, label_column=label_column, **kwargs)
    metrics = run_or_race(config, dataset=data)  # strategy="auto": the race
    path = Path(config.output_dir)
    return TrainResult(
        model=TextClassifier.from_pretrained(path),
        metrics=metrics,
        output_dir=path,
        config=saved_config(path / "config.yaml"),
    )


def saved_config(path: str | os.PathLike) -> TextClassificationConfig:
    """The resolved config a run wrote (``config.yaml``), "auto" values as numbers."""
    values = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    names = set(TextClassificationConfig.field_names())
    return TextClassificationConfig(**{k: v for k, v in values.items() if k in names})
