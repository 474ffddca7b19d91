"""Building the frozen-prefix caches of a text run's splits (see :mod:`nlp_transfer.transfer.cache`).

Shared by every text task: classification caches its splits once before training; domain
adaptation caches its source and target splits once for all of its methods.
"""

from __future__ import annotations

import logging
import time

import torch
from accelerate import Accelerator
from datasets import DatasetDict
from torch import nn
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from ..data.columns import sequence_lengths
from ..data.fetch import default_cache_dir
from ..data.memory import memory_budget_bytes
from ..transfer.cache import (
    PrefixCache,
    add_cache_index,
    cache_key,
    choose_storage,
    compute_prefix_cache,
    load_disk_cache,
)
from ..transfer.strategies.freeze import CACHE_DTYPES, FreezeArguments

logger = logging.getLogger(__name__)


def build_prefix_caches(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    tokenized: DatasetDict,
    accelerator: Accelerator,
    config: FreezeArguments,
    memory_budget_gb: float | None = None,
) -> tuple[DatasetDict, dict[str, PrefixCache]]:
    """Compute (or reuse from disk) the frozen-prefix cache of every split.

    Shared by every text task (classification, domain adaptation): ``config`` gives
    ``freeze_layers`` (k), ``cache_frozen_prefix``, ``cache_dtype``, ``cache_dir``,
    ``max_seq_length`` and ``per_device_eval_batch_size``. Under ``cache_frozen_prefix auto``
    the cache is memory-mapped from ``cache_dir`` when its estimated size (tokens x hidden x
    bytes per value) is above ``memory_budget_gb`` GB (10**9 bytes; None: a quarter of the
    available RAM, :func:`~nlp_transfer.data.memory.memory_budget_bytes`), else kept in
    memory; the values are the same either way.

    Returns:
        The splits with a ``cache_index`` column, and ``{split: PrefixCache}``.
    """
    k = config.freeze_layers
    dtype = CACHE_DTYPES[config.cache_dtype]
    collator = DataCollatorWithPadding(tokenizer)
    tokens = sum(int(sequence_lengths(ds).sum()) for ds in tokenized.values())
    estimate = tokens * model.config.hidden_size * torch.finfo(dtype).bits // 8
    storage = choose_storage(
        config.cache_frozen_prefix,
        estimate,
        accelerator.num_processes,
        None if memory_budget_gb is None else memory_budget_bytes(memory_budget_gb),
    )
    if storage == "disk" and dtype == torch.bfloat16:
        dtype = torch.float16
    start = time.perf_counter()
    caches, reused = {}, []
    for split, ds in tokenized.items():
        path = None
        if storage == "disk":
            key = cache_key(model, k, tokenizer, config.max_seq_length, ds, dtype)
            path = default_cache_dir(config.cache_dir) / "prefix_cache" / f"{split}-{key}"
        with accelerator.main_process_first():
            cache = load_disk_cache(path) if path is not None else None
            if cache is None:
                cache = compute_prefix_cache(
                    model,
                    k,
                    ds,
                    collator,
                    batch_size=config.per_device_eval_batch_size,
                    dtype=dtype,
                    device=accelerator.device,
                    path=path,
                    desc=f"Caching frozen layers ({split})",
                    disable_progress=not accelerator.is_local_main_process,
                )
            else:
                reused.append(split)
        caches[split] = cache
    size = sum(c.nbytes for c in caches.values()) / 2**20
    counts = " + ".join(f"{len(c):,}" for c in caches.values())
    where = (
        f"memory-mapped in {default_cache_dir(config.cache_dir) / 'prefix_cache'}"
        if storage == "disk"
        else "in memory"
    )
    logger.info(
        f"Frozen-prefix cache: embeddings + layer_0..layer_{k - 1} computed once for {counts} "
        f"examples ({size:.0f} MiB {str(dtype).removeprefix('torch.')}, {where}"
        + (f"; reused for {', '.join(reused)}" if reused else "")
        + f") in {time.perf_counter() - start:.1f} s; training runs only the layers above"
    )
    indexed = DatasetDict({split: add_cache_index(ds) for split, ds in tokenized.items()})
    return indexed, caches
