"""Frozen-prefix caching: compute the frozen lower blocks once, then train only the suffix.

With the embeddings and the lower ``k`` layers frozen (``--freeze_layers k``), their output for
an example never changes: frozen blocks run in eval mode, so there is no dropout in them. The
cache holds that output, ``(tokens, hidden)`` per example, without padding and in half
precision by default, for every split. Training then feeds it to the first trainable layer and
never runs the prefix again: each epoch costs only the trainable suffix (AutoFreeze, Liu et al.
2021, and "embedding recycling", Saad-Falcon et al. 2023, report the same idea).

How it plugs into the model without a second copy of any architecture: inside
:class:`CachedPrefixModel`, the first layer's block returns the cached tensor instead of
computing, and the other frozen layers pass their input through. The embeddings block still runs
(a table look-up; its output is replaced), so whatever a family does between its embeddings and
its first layer (GPT-2 adds position embeddings, ALBERT and ELECTRA project, DeBERTa and MPNet
compute relative positions) needs no special case. The model's own forward then does everything
else (attention masks, the trainable layers, final norm, pooler, classifier) exactly as without
the cache. The weights are untouched, so the model saves and loads as usual. This is exact for
every family with an explicit block layout (each is tested); a discovered view is refused (see
:func:`caching_unsupported_reason`).

The cache is keyed by the frozen weights, the model's non-weight config, ``k``, the tokenizer,
``max_seq_length``, the tokenized data, the storage dtype and the library versions
(:func:`cache_key`), so a disk cache is never reused for anything else; ``nlp-transfer cache``
lists and clears the disk caches. It is
kept in memory, or in a memory-mapped file when it would take more than a memory budget
(``storage="auto"``: ``--prefix_cache_memory_gb`` for text, by default a quarter of the
available RAM, :func:`~nlp_transfer.data.memory.memory_budget_bytes`), and under several
processes on disk, computed by the main process and read by the others. The values are the same
either way (same dtype, same bytes); only where they live differs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from torch.utils.data import DataLoader

from ..console import progress_bar
from ..data.columns import sequence_lengths
from ..data.memory import memory_budget_bytes
from .prefix_model import (
    PREFIX_INPUT,
    CachedPrefixModel,
    PrefixFeeder,
    _base_model,
    _passthrough,
    _prefix_blocks,
    _prefix_modules,
    _suffix_layers,
    _Swap,
    caching_unsupported_reason,
)

logger = logging.getLogger(__name__)

# re-exported: the model side of caching lives in prefix_model
__all__ = [
    "CachedPrefixModel",
    "CachingCollator",
    "PrefixCache",
    "PrefixFeeder",
    "add_cache_index",
    "allocate_values",
    "cache_key",
    "caching_unsupported_reason",
    "choose_storage",
    "compute_prefix_cache",
    "config_fingerprint",
    "load_disk_cache",
    "remove_disk_cache",
]

_NUMPY = {torch.float16: np.float16, torch.float32: np.float32}
INDEX_COLUMN = "cache_index"


class PrefixCache:
    """Per-example prefix outputs, stored flat without padding.

    Args:
        values: ``(total_tokens, hidden)`` tensor or memory-mapped array, in the storage dtype.
        offsets: ``(n + 1,)`` int64: example ``i`` is ``values[offsets[i]:offsets[i + 1]]``.
    """

    def __init__(self, values: torch.Tensor | np.ndarray, offsets: np.ndarray):
        self.values = values
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def hidden_size(self) -> int:
        return int(self.values.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.values.shape[0] * self.values.shape[1] * self.values.dtype.itemsize)

    def batch(
        self, indices: list[int], seq_len: int, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(len(indices), seq_len, hidden)`` float32, zero where there is padding.

        Args:
            indices: Example numbers.
            seq_len: Padded length of the batch.
            attention_mask: ``(len(indices), seq_len)``, 1 on real tokens: each example goes
                where its tokens are (left or right padding); None puts it on the left.
        """
        out = torch.zeros(len(indices), seq_len, self.hidden_size)
        for row, i in enumerate(indices):
            start, end = int(self.offsets[i]), int(self.offsets[i + 1])
            piece = self.values[start:end]
            if isinstance(piece, np.ndarray):
                piece = torch.from_numpy(np.asarray(piece))
            if attention_mask is None:
                out[row, : end - start] = piece.float()
            else:
                out[row][attention_mask[row].bool()] = piece.float()
        return out


# Config fields that cannot change the frozen prefix's output: the labels, the head, names.
_KEY_IGNORED_CONFIG = frozenset(
    {
        "_name_or_path", "architectures", "id2label", "label2id", "num_labels", "problem_type",
        "finetuning_task", "classifier_dropout", "summary_type", "summary_use_proj",
        "summary_activation", "summary_proj_to_labels", "summary_first_dropout",
        "transformers_version", "output_attentions", "output_hidden_states", "return_dict",
    }
)  # fmt: skip


def config_fingerprint(model: nn.Module) -> str:
    """The model's non-weight settings that shape its hidden states, as stable JSON.

    Everything in ``model.config`` (activation, layer-norm epsilon, position embeddings, dtype
    ...) except the labels and the head's settings (``_KEY_IGNORED_CONFIG``), plus the attention
    implementation transformers chose (``eager``, ``sdpa``...), which differs in rounding.
    """
    config = getattr(model, "config", None)
    if config is None:
        return ""
    settings = {k: v for k, v in config.to_dict().items() if k not in _KEY_IGNORED_CONFIG}
    settings["attn_implementation"] = getattr(config, "_attn_implementation", None)
    return json.dumps(settings, sort_keys=True, default=str)


def cache_key(
    model: nn.Module,
    k: int,
    tokenizer: object,
    max_seq_length: int,
    dataset: Dataset,
    dtype: torch.dtype,
) -> str:
    """A hex digest that changes with anything that changes the cached values.

    Hashed: the frozen prefix's weights (names and bytes), the model's non-weight config
    (:func:`config_fingerprint`), ``k``, the tokenizer (class, name, vocabulary size),
    ``max_seq_length``, the tokenized data's fingerprint, the storage dtype, and the versions of
    torch, transformers and nlp_transfer (kernels and the cache format change between them).
    The labels and the classifier head are not hashed: a new head reuses the cache.

    Returns:
        24 hex digits (the directory name's suffix under ``<cache_dir>/prefix_cache``).
    """
    from importlib.metadata import PackageNotFoundError, version

    import transformers

    try:
        ours = version("nlp-transfer")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        ours = "source"

    digest = hashlib.sha256()
    for module in _prefix_modules(model, k):
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    parts = [
        type(model).__name__,
        config_fingerprint(model),
        str(k),
        type(tokenizer).__name__,
        str(getattr(tokenizer, "name_or_path", "")),
        str(len(tokenizer)) if hasattr(tokenizer, "__len__") else "",
        str(max_seq_length),
        str(getattr(dataset, "_fingerprint", "")) or str(len(dataset)),
        str(dtype),
        f"torch {torch.__version__}, transformers {transformers.__version__}, nlp_transfer {ours}",
    ]
    digest.update("|".join(parts).encode())
    return digest.hexdigest()[:24]


@torch.no_grad()
def compute_prefix_cache(
    model: nn.Module,
    k: int,
    dataset: Dataset,
    collator,
    *,
    batch_size: int = 128,
    dtype: torch.dtype = torch.float16,
    device: torch.device | str = "cpu",
    path: Path | None = None,
    desc: str = "Caching frozen layers",
    disable_progress: bool = False,
) -> PrefixCache:
    """Run the frozen prefix (eval mode, no gradients) over ``dataset`` once and store the output.

    Batches are formed in length order (little padding) and each example's output is stored
    unpadded at its own offset.

    Args:
        model: The task model (block view supported), frozen prefix already frozen.
        k: Frozen encoder layers (the embeddings are frozen too).
        dataset: Tokenized split (``input_ids``, ``attention_mask``...).
        collator: Pads a list of examples into a batch.
        batch_size: Examples per forward pass.
        dtype: Storage dtype.
        device: Where to compute.
        path: A directory to store a memory-mapped cache in; None keeps it in memory.
        desc: Progress-bar title.
        disable_progress: Hide the progress bar (other processes).

    Returns:
        The :class:`PrefixCache`.
    """
    lengths = sequence_lengths(dataset)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = allocate_values((int(offsets[-1]), model.config.hidden_size), dtype, path)
    order = np.argsort(lengths, kind="stable")
    keep = [
        c for c in dataset.column_names if c in ("input_ids", "attention_mask", "token_type_ids")
    ]
    sorted_ds = dataset.select_columns(keep).select(order)
    # Its own generator: building the cache must not draw from the global RNG, or training
    # would see other dropout masks than an uncached run.
    loader = DataLoader(
        sorted_ds, batch_size=batch_size, collate_fn=collator, generator=torch.Generator()
    )
    was_training = model.training
    model.eval()
    base = _base_model(model)
    suffix = _Swap({m: _passthrough for m in _suffix_layers(model, k)})
    # The prefix output is what its last module returns (before any final norm of the model);
    # a shared layer applied several times (ALBERT) returns it on its last application.
    captured: list[torch.Tensor] = []

    def grab(module, inputs, output) -> None:
        captured[:] = [output if isinstance(output, torch.Tensor) else output[0]]

    hook = _prefix_blocks(model, k)[-1].modules[-1].register_forward_hook(grab)
    done = 0
    with suffix:
        for batch in progress_bar(loader, desc, enabled=not disable_progress):
            batch = {n: t.to(device) for n, t in batch.items()}
            base(**batch)  # the suffix passes through
            rows = order[done : done + captured[0].shape[0]]
            _store(values, offsets, lengths, rows, captured[0], batch.get("attention_mask"), dtype)
            done += len(rows)
    hook.remove()
    model.train(was_training)
    if isinstance(values, np.ndarray):
        values.flush()
        np.save(path / "offsets.npy", offsets)
        (path / "complete.json").write_text(json.dumps({"examples": len(lengths)}))
    return PrefixCache(values, offsets)


def allocate_values(
    shape: tuple[int, ...], dtype: torch.dtype, path: Path | None
) -> torch.Tensor | np.ndarray:
    """A cache's storage: an empty tensor in memory, or a memory-mapped ``path/values.npy``.

    Shared by the token cache (``(tokens, hidden)``) and the image cache
    (``(images, C, h, w)``, :mod:`nlp_transfer.vision.prefix`).

    Args:
        shape: The values' shape.
        dtype: ``float16`` or ``float32`` on disk; any dtype in memory.
        path: A directory for the ``.npy`` file (created), or None for memory.

    Returns:
        A ``torch.Tensor``, or a writable ``numpy.memmap`` (a ``.npy`` file that
        ``np.load(..., mmap_mode="r")`` opens again).

    Raises:
        ValueError: ``bfloat16`` on disk (numpy has no bfloat16).
    """
    if path is None:
        return torch.empty(shape, dtype=dtype)
    if dtype not in _NUMPY:
        raise ValueError("A disk cache stores float16 or float32 (numpy has no bfloat16).")
    path.mkdir(parents=True, exist_ok=True)
    return np.lib.format.open_memmap(
        path / "values.npy", mode="w+", dtype=_NUMPY[dtype], shape=tuple(shape)
    )


def _store(values, offsets, lengths, rows, out, mask, dtype) -> None:
    """Write each example's unpadded output ``out[j]`` ``(seq, hidden)`` at its offset."""
    for j, i in enumerate(int(r) for r in rows):
        piece = out[j, : int(lengths[i])] if mask is None else out[j][mask[j].bool()]
        piece = piece.to("cpu", dtype)
        if isinstance(values, np.ndarray):
            values[offsets[i] : offsets[i + 1]] = piece.numpy()
        else:
            values[offsets[i] : offsets[i + 1]] = piece


def load_disk_cache(path: Path) -> PrefixCache | None:
    """A complete disk cache at ``path`` (memory-mapped, read-only), or None."""
    if not (path / "complete.json").exists():
        return None
    values = np.load(path / "values.npy", mmap_mode="r")
    return PrefixCache(values, np.load(path / "offsets.npy"))


def choose_storage(
    storage: str, estimated_bytes: int, num_processes: int = 1, budget_bytes: int | None = None
) -> str:
    """``memory`` or ``disk`` for ``storage="auto"`` (other values are returned as they are).

    Args:
        storage: ``--cache_frozen_prefix``.
        estimated_bytes: The cache's size.
        num_processes: Processes that share the cache (more than one: on disk).
        budget_bytes: Memory the cache may take; None: a quarter of the available RAM
            (:func:`~nlp_transfer.data.memory.memory_budget_bytes`).

    Returns:
        ``disk`` above the budget or when several processes share the cache, else ``memory``.
    """
    if storage != "auto":
        return storage
    if num_processes > 1:
        return "disk"
    budget = memory_budget_bytes() if budget_bytes is None else budget_bytes
    return "disk" if estimated_bytes > budget else "memory"


class CachingCollator:
    """Pads a batch as ``collator`` does, then adds ``prefix_hidden`` from the split's cache.

    Examples carry their row number in ``cache_index`` (added by :func:`add_cache_index`).
    """

    def __init__(self, collator, cache: PrefixCache):
        self.collator = collator
        self.cache = cache

    def __call__(self, features: list[dict]) -> dict:
        indices = [int(f[INDEX_COLUMN]) for f in features]
        batch = self.collator([{k: v for k, v in f.items() if k != INDEX_COLUMN} for f in features])
        batch[PREFIX_INPUT] = self.cache.batch(
            indices, batch["input_ids"].shape[1], batch.get("attention_mask")
        )
        return batch


def add_cache_index(dataset: Dataset) -> Dataset:
    """The split with a ``cache_index`` column: each row's position, its key into the cache."""
    return dataset.add_column(INDEX_COLUMN, np.arange(len(dataset), dtype=np.int64))


def remove_disk_cache(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
