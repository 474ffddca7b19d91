"""A domain-adaptation run end to end: every method side by side on one target test split.

    from nlp_transfer.adaptation import DomainAdaptationConfig, run_domain_adaptation

    metrics = run_domain_adaptation(DomainAdaptationConfig(target_domain="tweets"))

Steps: data (labelled source, unlabelled target, labelled target test) -> tokenize -> the
frozen prefix cached once for every split -> for each method (source-only, DANN, CORAL, MMD)
a fresh model from the same initialisation, trained by the shared loop
(:class:`~nlp_transfer.training.trainer.Trainer`) with the best epoch chosen on *source* validation
(no target label is used) -> the in-domain oracle (target labels, target validation) -> target
test metrics and proxy A-distances -> ``metrics.json``, ``config.yaml``, a printed table.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

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
from ..hub import DEFAULT_MODEL_NAME
from ..metrics.classification import classification_metrics
from ..text.model import build_text_classifier
from ..text.prefix import build_prefix_caches
from ..text.tokenize import tokenize_dataset
from ..training.evaluation import predict_logits
from ..training.run import TrainOutcome, start_run, train_and_predict
from ..transfer.cache import CachingCollator, PrefixCache
from ..transfer.freeze import count_parameters
from ..transfer.plan import TransferPlan, plan_transfer
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
    :func:`~nlp_transfer.text.prefix.build_prefix_caches` (which reads the same
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
) -> tuple[DomainAdaptationModel, PreTrainedTokenizerBase, TransferPlan]:
    """A fresh network (pretrained encoder, lower layers frozen by the transfer plan, new heads)
    for ``method``, its tokenizer, and its plan (whose view puts the new heads at
    ``--head_learning_rate``)."""
    set_seed(config.seed)  # every method starts from the same initialisation
    classifier, tokenizer = build_text_classifier(
        config.model_name_or_path,
        label_names=label_names,
        trust_remote_code=config.trust_remote_code,
    )
    plan = plan_transfer(classifier, config)
    model = DomainAdaptationModel(
        classifier,
        "source_only" if method == "oracle" else method,
        config.method_weight(method),
        schedule=config.adaptation_schedule,
        pooling=config.pooling,
        prefix_layers=config.freeze_layers if plan.cache_prefix else 0,
        mmd_kernels=config.mmd_kernels,
        mmd_kernel_mul=config.mmd_kernel_mul,
    )
    plan.view = model.block_view()
    return model, tokenizer, plan


def method_config(config: DomainAdaptationConfig, method: str) -> DomainAdaptationConfig:
    """The arguments of one method's training: its own checkpoints under
    ``output_dir/methods/<method>/``, resumed there when ``--resume_from_checkpoint`` is given
    and the method had started, and its number of epochs."""
    out = Path(config.output_dir) / "methods" / method
    started = (out / "checkpoints").is_dir()
    epochs = config.oracle_num_train_epochs if method == "oracle" else config.num_train_epochs
    return dataclasses.replace(
        config,
        output_dir=str(out),
        num_train_epochs=epochs,
        resume_from_checkpoint=config.resume_from_checkpoint if started else None,
    )


def measure(
    model: DomainAdaptationModel,
    outcome: TrainOutcome,
    loaders: dict[str, DataLoader],
    accelerator: Accelerator,
    label_names: list[str],
    seed: int,
) -> dict:
    """Target test metrics (from the run's test predictions), source test accuracy and the proxy
    A-distance of a trained model."""
    model.eval()
    logits, labels = predict_logits(
        outcome.model, loaders["source_test"], accelerator, "source_test"
    )
    source = classification_metrics(labels, logits, label_names)
    return {
        "target_test": classification_metrics(outcome.test[1], outcome.test[0], label_names),
        "source_test": {k: source[k] for k in ("num_examples", "accuracy", "f1_macro")},
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
    """Train one method with the shared run and measure it on the target (and source) test split.

    ``oracle`` trains on the target's labelled training split and selects its epoch on target
    validation; every other method trains on the source and selects on source validation.
    """
    model, _, plan = build_model(label_names, method, config)
    oracle = method == "oracle"
    trainable, total = count_parameters(model)
    logger.info(f"== {method}: trainable params {trainable:,} / {total:,}")
    train_dl = train_loader(
        data, "target_train" if oracle else "source_train", config, model.adapts
    )
    run_config = method_config(config, method)
    epochs = run_config.num_train_epochs
    # this process's batches (prepared loaders are sharded): the schedule's progress p
    model.total_steps = math.ceil(len(train_dl) / accelerator.num_processes) * epochs
    dataloaders = {
        "train": train_dl,
        "validation": eval_loader(
            data, "target_validation" if oracle else "source_validation", config
        ),
        "test": eval_loader(data, "target_test", config),
    }
    outcome = train_and_predict(
        model,
        run_config,
        dataloaders,
        accelerator=accelerator,
        compute_metrics=lambda y, z: classification_metrics(y, z, label_names),
        loss_fn=F.cross_entropy,
        plan=plan,
        regularizer=model.alignment_loss if model.adapts else None,  # the method's loss hook
    )
    result = outcome.fit
    record = {
        "uses_target_labels": oracle,
        **measure(model, outcome, loaders, accelerator, label_names, config.seed),
        "best_epoch": result.best_epoch,
        "validation": result.history,
        "alignment": trace_summary(model.trace, epochs),
        "weight": config.method_weight(method),
        "train_runtime_s": result.train_runtime_s,
        "train_examples": len(data.tokenized["target_train" if oracle else "source_train"]),
        "trainable_params": trainable,
    }
    accelerator.free_memory()
    return record, model


def prepare_run(
    splits: DomainSplits, accelerator: Accelerator, config: DomainAdaptationConfig
) -> tuple[PreparedData, dict[str, DataLoader], dict, PreTrainedTokenizerBase]:
    """Tokenize and cache once for every method; the prepared evaluation loaders; the proxy
    A-distance of the pretrained features; the tokenizer."""
    model, tokenizer, _ = build_model(splits.label_names, "source_only", config)
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
    accelerator = start_run(config, "domain adaptation", check_resume=False)
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
        finished = _finished_result(config, method)
        if finished is not None:  # resuming: this method had completed
            results[method] = finished
            logger.info(f"{method}: finished before the interruption; its result is kept")
            continue
        results[method], model = train_method(method, data, loaders, accelerator, config, names)
        _save_result(config, method, results[method], accelerator)
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


def _result_path(config: DomainAdaptationConfig, method: str) -> Path:
    return Path(config.output_dir) / "methods" / method / "result.json"


def _finished_result(config: DomainAdaptationConfig, method: str) -> dict | None:
    """A method's saved result when the run resumes (``--resume_from_checkpoint``), else None."""
    path = _result_path(config, method)
    if not config.resume_from_checkpoint or not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _save_result(
    config: DomainAdaptationConfig, method: str, result: dict, accelerator: Accelerator
) -> None:
    """Keep a finished method's result, so an interrupted run resumes after it."""
    if accelerator.is_main_process:
        path = _result_path(config, method)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, default=float), encoding="utf-8")
