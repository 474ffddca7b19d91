"""The default image experiment: does a ResNet trained on one task help on another, with few labels?

``fashion_mnist_transfer`` (Fashion-MNIST, Xiao et al. 2017, 28x28 grey):

- **source task**: classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat), all 30,000 of their
  training images; a ResNet trained from scratch. Validation: 200 test images per class; test:
  the other 800 per class.
- **target task**: classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot) with only
  ``--transfer_samples_per_class`` (100) labelled training images per class, plus
  ``--transfer_validation_per_class`` (20) more per class used only to pick the best epoch;
  test: all 1,000 test images per class.
- three target runs, same budget (epochs, batch size, learning rate, schedule, seed): (1) from
  scratch, (2) from the source model with the stem and lower ``--transfer_freeze_layers`` stages
  frozen, (3) from the source model, everything fine-tuned. The head is new in (2) and (3).

Each run is an ordinary image run in its own sub-directory (model, metrics, plots, model card);
the experiment's ``metrics.json`` holds the comparison.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence

import numpy as np
from accelerate import PartialState

from ..reporting.config_file import save_config
from ..training.setup import check_output_dir
from .config import ImageClassificationConfig
from .data import ImageData, cap
from .datasets import FASHION_MNIST_LABELS, ImageDataset, load_fashion_mnist
from .run import run_image_classification
from .transforms import stratified_indices

logger = logging.getLogger(__name__)

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
SOURCE_VALIDATION_PER_CLASS = 200


def _classes(dataset: ImageDataset, classes: tuple[int, ...]) -> ImageDataset:
    """The images of ``classes``, relabelled ``0..len(classes)-1``."""
    labels = dataset.labels.numpy()
    keep = np.flatnonzero(np.isin(labels, classes))
    subset = dataset.subset(keep)
    subset.labels = subset.labels - min(classes)
    return subset


def fashion_mnist_transfer_data(
    config: ImageClassificationConfig,
) -> tuple[ImageData, ImageData]:
    """The source and target splits (see the module docstring), drawn with ``--seed``.

    ``--max_train_samples`` caps the source training images and ``--max_eval_samples`` every
    validation and test split (quick runs); the target training set is never capped.

    Returns:
        ``(source, target)``.
    """
    full = load_fashion_mnist(config.cache_dir)
    rng = np.random.default_rng(config.seed)
    names = list(FASHION_MNIST_LABELS)
    src_test = _classes(full["test"], SOURCE_CLASSES)
    src_val_idx = stratified_indices(src_test.labels.numpy(), SOURCE_VALIDATION_PER_CLASS, rng)
    rest = np.setdiff1d(np.arange(len(src_test)), src_val_idx)
    source = ImageData(
        {
            "train": cap(
                _classes(full["train"], SOURCE_CLASSES), config.max_train_samples, config.seed
            ),
            "validation": cap(src_test.subset(src_val_idx), config.max_eval_samples, config.seed),
            "test": cap(src_test.subset(rest), config.max_eval_samples, config.seed),
        },
        names[:5],
        "Fashion-MNIST classes 0-4 (source task)",
    )
    tgt_pool = _classes(full["train"], TARGET_CLASSES)
    labels = tgt_pool.labels.numpy()
    train_idx = stratified_indices(labels, config.transfer_samples_per_class, rng)
    val_idx = stratified_indices(labels, config.transfer_validation_per_class, rng, train_idx)
    target = ImageData(
        {
            "train": tgt_pool.subset(train_idx),
            "validation": cap(tgt_pool.subset(val_idx), config.max_eval_samples, config.seed),
            "test": cap(
                _classes(full["test"], TARGET_CLASSES), config.max_eval_samples, config.seed
            ),
        },
        names[5:],
        f"Fashion-MNIST classes 5-9 (target task), {config.transfer_samples_per_class} "
        "labelled training images per class",
    )
    return source, target


def _row(name: str, metrics: dict) -> dict:
    test = metrics["test"]
    return {
        "run": name,
        "weights": metrics["transfer_strategy"].get("weights"),
        "frozen_blocks": metrics["parameters"]["frozen_blocks"],
        "test_accuracy": test["accuracy"],
        "test_f1_macro": test["f1_macro"],
        "trainable_params": metrics["parameters"]["trainable"],
        "best_epoch": metrics["best_epoch"],
        "train_runtime_s": metrics["timings"]["train_runtime_s"],
        "total_runtime_s": metrics["timings"]["total_runtime_s"],
    }


def format_transfer_table(result: dict) -> str:
    """The experiment's result as a Markdown table with the source run below it."""
    lines = [
        "| target run | test accuracy | macro-F1 | trainable params | training s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in result["target"]:
        lines.append(
            f"| {row['run']} | {row['test_accuracy']:.4f} | {row['test_f1_macro']:.4f} | "
            f"{row['trainable_params']:,} | {row['train_runtime_s']:.0f} |"
        )
    src = result["source"]
    lines.append(
        f"\nsource run (classes 0-4, {src['train_examples']:,} images, "
        f"{src['epochs']} epoch(s)): test accuracy {src['test_accuracy']:.4f}, training "
        f"{src['train_runtime_s']:.0f} s; total {result['total_runtime_s']:.0f} s"
    )
    return "\n".join(lines)


def run_fashion_mnist_transfer(config: ImageClassificationConfig) -> dict:
    """Run the source model and the three target runs; write and print the comparison.

    Args:
        config: The settings; ``output_dir`` gets ``source/``, ``scratch/``, ``frozen/`` and
            ``full/`` (each a complete run) and the experiment's ``metrics.json`` and
            ``config.yaml``.

    Returns:
        The experiment's metrics (``target`` rows, ``source`` summary, ``margins``).

    Raises:
        FileExistsError: ``output_dir`` is not empty and ``--overwrite_output_dir`` is not set.
        ValueError: ``--resume_from_checkpoint`` (resume a sub-run by itself instead).
    """
    start = time.perf_counter()
    _check_experiment_flags(config)
    root = check_output_dir(config.output_dir, config.overwrite_output_dir)
    source_data, target_data = fashion_mnist_transfer_data(config)
    results = {}
    for name, data, settings in _runs(config, str(root / "source"), source_data, target_data):
        sub = dataclasses.replace(config, output_dir=str(root / name), **settings)
        logger.info(f"== fashion_mnist_transfer: {name} run -> {sub.output_dir}")
        results[name] = run_image_classification(sub, data, task_name=f"{name} run")
    result = _comparison(config, results, source_data, target_data)
    result["total_runtime_s"] = time.perf_counter() - start
    if PartialState().is_main_process:
        (root / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        save_config(config, root / "config.yaml")
        print(f"\n== fashion_mnist_transfer (seed {config.seed}): target test accuracy ==")
        print(format_transfer_table(result))
    return result


def _check_experiment_flags(config: ImageClassificationConfig) -> None:
    """Reject the flags the experiment cannot honour (it is several fine-tuning runs)."""
    if config.feature_extraction != "none":
        raise ValueError(
            "--feature_extraction: the fashion_mnist_transfer experiment compares fine-tuning "
            "runs; for feature extraction, run it once with --weights <its source/ directory> "
            "and --dataset_name fashion_mnist or your own --train_dir."
        )
    if config.resume_from_checkpoint:
        raise ValueError(
            "--resume_from_checkpoint: the fashion_mnist_transfer experiment is several runs; "
            "rerun it, or resume one of its sub-runs with its own config.yaml."
        )


def _runs(
    config: ImageClassificationConfig,
    source_dir: str,
    source_data: ImageData,
    target_data: ImageData,
) -> list[tuple[str, ImageData, dict]]:
    """``(name, data, config overrides)`` of the source run and the three target runs, in order."""
    k = config.transfer_freeze_layers
    # From scratch is plain training; the transferred runs also get any strategy flags given
    # (--layer_lr_decay, --l2sp_alpha...), which only make sense with pretrained weights.
    plain = {
        "weights": "none",
        "freeze_layers": 0,
        "layer_lr_decay": 1.0,
        "l2sp_alpha": 0.0,
        "head_learning_rate": None,
        "gradual_unfreezing": False,
    }
    return [
        ("source", source_data, {**plain, "num_train_epochs": config.source_num_train_epochs}),
        ("scratch", target_data, plain),
        ("frozen", target_data, {"weights": source_dir, "freeze_layers": k}),
        ("full", target_data, {"weights": source_dir, "freeze_layers": 0}),
    ]  # fmt: skip


def _comparison(
    config: ImageClassificationConfig,
    results: dict[str, dict],
    source_data: ImageData,
    target_data: ImageData,
) -> dict:
    """The experiment's metrics (without ``total_runtime_s``) from the four runs' metrics."""
    k = config.transfer_freeze_layers
    frozen = ", ".join(["stem"] + [f"layer{i}" for i in range(1, k + 1)])
    titles = {
        "scratch": "from scratch",
        "frozen": f"transferred, {frozen} frozen",
        "full": "transferred, fully fine-tuned",
    }
    source = results["source"]
    return {
        "experiment": "fashion_mnist_transfer",
        "target": [_row(titles[n], results[n]) for n in ("scratch", "frozen", "full")],
        "source": {
            "test_accuracy": source["test"]["accuracy"],
            "train_examples": len(source_data.splits["train"]),
            "epochs": config.source_num_train_epochs,
            "train_runtime_s": source["timings"]["train_runtime_s"],
        },
        "margins": {
            f"{n}_minus_scratch": results[n]["test"]["accuracy"]
            - results["scratch"]["test"]["accuracy"]
            for n in ("frozen", "full")
        },
        "data": {
            "target_train_examples": len(target_data.splits["train"]),
            "target_validation_examples": len(target_data.splits["validation"]),
            "target_test_examples": len(target_data.splits["test"]),
        },
        "seed": config.seed,
    }


def run_image_task(config: ImageClassificationConfig, callbacks: Sequence = ()) -> dict:
    """What the image recipe and ``nlp-transfer train --task image`` run: the default
    experiment for ``--dataset_name fashion_mnist_transfer``, else one image run (whose
    Trainer gets ``callbacks``).

    Raises:
        ValueError: ``callbacks`` for the Fashion-MNIST experiment, which trains several models.
    """
    if config.train_dir is None and config.dataset_name == "fashion_mnist_transfer":
        if callbacks:
            raise ValueError(
                "The fashion_mnist_transfer experiment trains several models; pass --train_dir "
                "(or another --dataset_name) to train one with callbacks (e.g. under search)."
            )
        return run_fashion_mnist_transfer(config)
    return run_image_classification(config, callbacks=callbacks)
