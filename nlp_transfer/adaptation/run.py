"""A domain-adaptation run end to end: every method side by side on one target test split.

    from nlp_transfer.adaptation import DomainAdaptationConfig, run_domain_adaptation

    metrics = run_domain_adaptation(DomainAdaptationConfig(target_domain="tweets"))

Steps: data (labelled source, unlabelled target, labelled target test) -> tokenize -> the
frozen prefix cached once for every split -> for each method (source-only, DANN, CORAL, MMD)
a fresh model from the same initialisation, trained by the shared loop
(:func:`~nlp_transfer.training.loop.fit`) with the best epoch chosen on *source* validation
(no target label is used) -> the in-domain oracle (target labels, target validation) -> target
test metrics and proxy A-distances -> ``metrics.json``, ``config.yaml``, a printed table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from datasets import DatasetDict
from torch import nn
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from ..data.samplers import LengthSortedSampler
from ..data.tokenize import tokenize_dataset
from ..metrics import classification_metrics
from ..models.text import DEFAULT_MODEL_NAME, build_text_classifier
from ..text_classification import build_prefix_caches
from ..training.loop import create_scheduler, fit, predict_logits
from ..training.setup import build_accelerator, check_output_dir
from ..transfer.cache import CachingCollator, PrefixCache
from ..transfer.freeze import count_parameters, freeze_encoder_layers
from .config import DomainAdaptationConfig
from .data import DomainSplits, load_domains, paired_dataloader, training_sampler
from .distance import proxy_a_distance
from .model import DomainAdaptationModel, trace_summary
from .report import format_table, write_metrics

logger = get_logger(__name__)


@dataclass
class PreparedData:
    """Tokenized splits (``source_train``, ``source_validation``, ``source_test``,
    ``target_train``, ``target_test``[, ``target_validation``]) and their prefix caches."""

    tokenized: DatasetDict
    caches: dict[str, PrefixCache] | None
    collator: DataCollatorWithPadding

    def collator_for(self, split: str):
        if self.caches is None:
            return self.collator
        return CachingCollator(self.collator, self.caches[split])


def prepare_data(
    splits: DomainSplits,
    tokenizer: PreTrainedTokenizerBase,
    model: DomainAdaptationModel,
    accelerator: Accelerator,
    config: DomainAdaptationConfig,
) -> PreparedData:
    """Tokenize every split and, with ``--freeze_layers k >= 1``, cache the frozen prefix once.

    The cache is shared by every method: they all start from the same pretrained weights, so
    the frozen layers' output is the same for all of them. ``model`` (built by
    :func:`build_model`) computes it, with
    :func:`~nlp_transfer.text_classification.build_prefix_caches` (which reads the same
    settings, ``freeze_layers``, ``cache_frozen_prefix``, ``cache_dtype``... from ``config``).
    """
    named = {f"source_{s}": ds for s, ds in splits.source.items()}
    named |= {"target_train": splits.target_train, "target_test": splits.target_test}
    if splits.target_validation is not None:
        named["target_validation"] = splits.target_validation
    with accelerator.main_process_first():
        tokenized = tokenize_dataset(DatasetDict(named), tokenizer, config.max_seq_length)
    caches = None
    if model.feeder is not None:
        model.feeder.disable()  # the cache is computed by the prefix itself
        tokenized, caches = build_prefix_caches(
            model.classifier, tokenizer, tokenized, accelerator, config
        )
        model.feeder.enable()
    mixed = accelerator.mixed_precision != "no"
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if mixed else None)
    return PreparedData(tokenized, caches, collator)


def eval_loader(data: PreparedData, split: str, config: DomainAdaptationConfig) -> DataLoader:
    """Longest first (little padding); ``predict_logits`` restores the order."""
    ds = data.tokenized[split]
    return DataLoader(
        ds,
        batch_size=config.per_device_eval_batch_size,
        sampler=LengthSortedSampler([len(x) for x in ds["input_ids"]]),
        collate_fn=data.collator_for(split),
        num_workers=config.dataloader_num_workers,
    )


def train_loader(
    data: PreparedData, split: str, config: DomainAdaptationConfig, adapt: bool
) -> DataLoader:
    """Batches of ``split`` (labelled); with ``adapt``, joint with unlabelled target texts."""
    batch_size, seed = config.per_device_train_batch_size, config.seed
    if adapt:
        return paired_dataloader(
            data.tokenized[split],
            data.tokenized["target_train"],
            data.collator_for(split),
            data.collator_for("target_train"),
            batch_size=batch_size,
            seed=seed,
            group_by_length=config.group_by_length,
            num_workers=config.dataloader_num_workers,
        )
    ds = data.tokenized[split]
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=training_sampler(ds, batch_size, seed, config.group_by_length),
        collate_fn=data.collator_for(split),
        num_workers=config.dataloader_num_workers,
        generator=torch.Generator().manual_seed(seed),
    )


def param_groups(
    model: DomainAdaptationModel, learning_rate: float, head_learning_rate: float, wd: float
) -> list[dict]:
    """AdamW groups: trainable encoder layers at ``learning_rate``, new heads at
    ``head_learning_rate``; no weight decay on 1-D tensors (biases, LayerNorm)."""
    new = {id(p) for m in model.new_modules() for p in m.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = []
    for params, lr in (
        ([p for p in trainable if id(p) not in new], learning_rate),
        ([p for p in trainable if id(p) in new], head_learning_rate),
    ):
        groups += [
            {"params": [p for p in params if p.ndim >= 2], "lr": lr, "weight_decay": wd},
            {"params": [p for p in params if p.ndim < 2], "lr": lr, "weight_decay": 0.0},
        ]
    return [g for g in groups if g["params"]]


class PooledFeatures(nn.Module):
    """``forward`` gives a :class:`DomainAdaptationModel`'s pooled features, not its logits
    (so :func:`predict_logits` gathers features across processes, in dataset order)."""

    def __init__(self, model: DomainAdaptationModel):
        super().__init__()
        self.model = model

    def forward(self, **batch) -> torch.Tensor:
        return self.model.features(**batch).float()


def domain_distance(
    model: DomainAdaptationModel, loaders: dict[str, DataLoader], accelerator, seed: int
) -> dict:
    """Proxy A-distance between source-test and target-test features of ``model``."""
    features = {
        split: predict_logits(PooledFeatures(model), loaders[split], accelerator, "Features")[0]
        for split in ("source_test", "target_test")
    }
    return proxy_a_distance(features["source_test"], features["target_test"], seed=seed)


def build_model(
    label_names: list[str], method: str, config: DomainAdaptationConfig
) -> tuple[DomainAdaptationModel, PreTrainedTokenizerBase]:
    """A fresh network (pretrained encoder, lower layers frozen, new heads) for ``method``,
    and its tokenizer."""
    set_seed(config.seed)  # every method starts from the same initialisation
    classifier, tokenizer = build_text_classifier(
        config.model_name_or_path,
        label_names=label_names,
        trust_remote_code=config.trust_remote_code,
    )
    freeze_encoder_layers(classifier, config.freeze_layers)
    caching = config.freeze_layers >= 1 and config.cache_frozen_prefix != "no"
    model = DomainAdaptationModel(
        classifier,
        "source_only" if method == "oracle" else method,
        config.method_weight(method),
        schedule=config.adaptation_schedule,
        pooling=config.pooling,
        prefix_layers=config.freeze_layers if caching else 0,
        mmd_kernels=config.mmd_kernels,
        mmd_kernel_mul=config.mmd_kernel_mul,
    )
    return model, tokenizer


def build_optimizer(
    model: DomainAdaptationModel, num_batches: int, epochs: int, config: DomainAdaptationConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over :func:`param_groups` and the run's schedule (``num_batches`` per epoch)."""
    groups = param_groups(
        model, config.learning_rate, config.head_learning_rate, config.weight_decay
    )
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, foreach=True)
    scheduler = create_scheduler(
        optimizer,
        num_batches_per_epoch=num_batches,
        num_train_epochs=epochs,
        warmup_ratio=config.warmup_ratio,
        lr_scheduler_type=config.lr_scheduler_type,
    )
    return optimizer, scheduler


def measure(
    model: DomainAdaptationModel,
    prepared: nn.Module,
    loaders: dict[str, DataLoader],
    accelerator: Accelerator,
    label_names: list[str],
    seed: int,
) -> dict:
    """Target test metrics, source test accuracy and the proxy A-distance of a trained model."""
    model.eval()
    tests = {}
    for split in ("target_test", "source_test"):
        logits, labels = predict_logits(prepared, loaders[split], accelerator, split)
        tests[split] = classification_metrics(labels, logits, label_names)
    return {
        "target_test": tests["target_test"],
        "source_test": {
            k: tests["source_test"][k] for k in ("num_examples", "accuracy", "f1_macro")
        },
        "proxy_a_distance": domain_distance(model, loaders, accelerator, seed),
    }


def train_method(
    method: str,
    data: PreparedData,
    loaders: dict[str, DataLoader],
    accelerator: Accelerator,
    config: DomainAdaptationConfig,
    label_names: list[str],
) -> tuple[dict, DomainAdaptationModel]:
    """Train one method with :func:`fit` and measure it on the target (and source) test split.

    ``oracle`` trains on the target's labelled training split and selects its epoch on target
    validation; every other method trains on the source and selects on source validation.
    """
    model = build_model(label_names, method, config)[0]
    oracle = method == "oracle"
    trainable, total = count_parameters(model)
    logger.info(f"== {method}: trainable params {trainable:,} / {total:,}")
    train_dl = train_loader(
        data, "target_train" if oracle else "source_train", config, model.adapts
    )
    val_dl = loaders["target_validation" if oracle else "source_validation"]
    epochs = config.oracle_num_train_epochs if oracle else config.num_train_epochs
    optimizer, scheduler = build_optimizer(model, len(train_dl), epochs, config)
    prepared, optimizer, scheduler, train_dl = accelerator.prepare(
        model, optimizer, scheduler, train_dl
    )
    model.total_steps = len(train_dl) * epochs  # this process's batches: the schedule's p
    result = fit(
        prepared,
        optimizer,
        scheduler,
        train_dl,
        val_dl,
        accelerator,
        num_train_epochs=epochs,
        compute_metrics=lambda y, z: classification_metrics(y, z, label_names),
        max_grad_norm=config.max_grad_norm,
        loss_fn=F.cross_entropy,
        regularizer=model.alignment_loss if model.adapts else None,
        logging_steps=config.logging_steps,
    )
    outcome = {
        "uses_target_labels": oracle,
        **measure(model, prepared, loaders, accelerator, label_names, config.seed),
        "best_epoch": result.best_epoch,
        "validation": result.history,
        "alignment": trace_summary(model.trace, epochs),
        "weight": config.method_weight(method),
        "train_runtime_s": result.train_runtime_s,
        "train_examples": len(data.tokenized["target_train" if oracle else "source_train"]),
        "trainable_params": trainable,
    }
    accelerator.free_memory()
    return outcome, model


def prepare_run(
    splits: DomainSplits, accelerator: Accelerator, config: DomainAdaptationConfig
) -> tuple[PreparedData, dict[str, DataLoader], dict, PreTrainedTokenizerBase]:
    """Tokenize and cache once for every method; the prepared evaluation loaders; the proxy
    A-distance of the pretrained features; the tokenizer."""
    model, tokenizer = build_model(splits.label_names, "source_only", config)
    data = prepare_data(splits, tokenizer, model, accelerator, config)
    loaders = {
        split: accelerator.prepare(eval_loader(data, split, config))
        for split in data.tokenized
        if split not in ("source_train", "target_train")
    }
    before = domain_distance(model.eval(), loaders, accelerator, config.seed)
    logger.info(f"Proxy A-distance of the pretrained features: {before['proxy_a_distance']:.3f}")
    return data, loaders, before, tokenizer


def run_domain_adaptation(
    config: DomainAdaptationConfig, splits: DomainSplits | None = None
) -> dict:
    """Run every method of ``config`` and the oracle; save and print the comparison.

    Args:
        config: The run's settings.
        splits: Ready data (e.g. DataFrames loaded by the caller); None loads what ``config``
            names. ``splits.target_train`` may carry labels: they are used by the oracle only.

    Returns:
        The metrics written to ``output_dir/metrics.json``.

    Raises:
        FileExistsError: ``output_dir`` is not empty and ``overwrite_output_dir`` is False.
        ValueError, FileNotFoundError: Bad data or settings (the message names the flag).
    """
    start = time.perf_counter()
    accelerator = build_accelerator(config.mixed_precision, 1, config.use_cpu)
    check_output_dir(config.output_dir, config.overwrite_output_dir)
    set_seed(config.seed)
    if splits is None:
        with accelerator.main_process_first():
            splits = load_domains(config)
    names = splits.label_names
    sizes = {"source_" + s: len(d) for s, d in splits.source.items()}
    sizes |= {"target_train": len(splits.target_train), "target_test": len(splits.target_test)}
    logger.info(f"Data: {sizes}; labels {names}")
    data, loaders, before, tokenizer = prepare_run(splits, accelerator, config)
    methods = config.method_list()
    if config.oracle and splits.target_has_labels:
        methods.append("oracle")
    elif config.oracle:
        logger.info("No in-domain oracle: the target training texts are unlabelled.")
    results, trained = {}, {}
    for method in methods:
        results[method], model = train_method(method, data, loaders, accelerator, config, names)
        if config.save_models:
            trained[method] = model
        m = results[method]
        logger.info(
            f"{method}: target test accuracy {m['target_test']['accuracy']:.4f}, proxy "
            f"A-distance {m['proxy_a_distance']['proxy_a_distance']:.3f}"
        )
    metrics = {
        "source": splits.source_name,
        "target": splits.target_name,
        "model_name": config.model_name_or_path or DEFAULT_MODEL_NAME,
        "sizes": sizes,
        "pretrained": {"proxy_a_distance": before},
        "methods": results,
        "timings": {"total_runtime_s": time.perf_counter() - start},
        "environment": {
            "num_processes": accelerator.num_processes,
            "device": str(accelerator.device),
            "mixed_precision": accelerator.mixed_precision,
        },
        "output_dir": str(config.output_dir),
    }
    write_metrics(config, metrics, accelerator, trained, tokenizer)
    accelerator.print(format_table(metrics))
    accelerator.end_training()
    return metrics
