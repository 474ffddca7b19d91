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

The cache is keyed by the frozen weights, ``k``, the tokenizer, ``max_seq_length``, the
tokenized data and the storage dtype, so a disk cache is never reused for anything else. It is
kept in memory, or in a memory-mapped file when it would take more than a quarter of the
available RAM (``storage="auto"``), and under several processes on disk, computed by the main
process and read by the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import types
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..models.blocks import Block, BlockView, find_block_view, get_block_view, model_type_of

logger = logging.getLogger(__name__)

CACHE_CHOICES = ("auto", "memory", "disk", "no")
CACHE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_NUMPY = {torch.float16: np.float16, torch.float32: np.float32}
PREFIX_INPUT = "prefix_hidden"
INDEX_COLUMN = "cache_index"


# How many values a layer returns: 0 for a bare tensor, n for a tuple of n (hidden states first).
_OUTPUT_ARITY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _shaped(module: nn.Module, hidden: torch.Tensor, args: tuple, kwargs: dict):
    """``hidden`` in the form ``module`` returns its output: a tensor, or ``(hidden, None...)``.

    The form is learnt once per module by running its own forward (without gradients) the first
    time it is stood in for: BERT layers return a tensor, DeBERTa and MPNet layers a tuple.
    """
    arity = _OUTPUT_ARITY.get(module)
    if arity is None:
        with torch.no_grad():
            out = type(module).forward(module, *args, **kwargs)
        if isinstance(out, torch.Tensor):
            arity = 0
        elif isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            arity = len(out)
        else:
            raise TypeError(
                f"Frozen-prefix caching: {type(module).__name__} returns a "
                f"{type(out).__name__}, not hidden states; use --cache_frozen_prefix no."
            )
        _OUTPUT_ARITY[module] = arity
    return hidden if arity == 0 else (hidden, *([None] * (arity - 1)))


def _passthrough(self, *args, **kwargs):
    """Stand-in forward of a cached frozen module: returns its input (hidden states) unchanged."""
    if "hidden_states" in kwargs:
        hidden = kwargs["hidden_states"]
    else:
        hidden = args[0] if args else next(iter(kwargs.values()))
    return _shaped(self, hidden, args, kwargs)


class _Swap:
    """Replace the forward of some modules for the duration of a ``with`` block (or until undo)."""

    def __init__(self, replacements: dict[nn.Module, object]):
        self.replacements = replacements

    def apply(self) -> None:
        for module, forward in self.replacements.items():
            module.forward = types.MethodType(forward, module)

    def undo(self) -> None:
        for module in self.replacements:
            if "forward" in module.__dict__:
                del module.forward

    def __enter__(self):
        self.apply()
        return self

    def __exit__(self, *exc) -> None:
        self.undo()


def caching_unsupported_reason(model: nn.Module, view: BlockView | None = None) -> str | None:
    """Why frozen-prefix caching cannot be used for ``model``, or None when it can.

    Caching is exact for every family with an explicit block layout. A discovered view (or no
    view) is refused: whether a family's layers pass hidden states straight from one to the next
    (no state carried between them, as T5's position bias is) cannot be read off the module
    tree. ``--cache_frozen_prefix auto`` should then train without a cache.

    Args:
        model: The task model.
        view: Its block view, if already built.
    """
    view = view or find_block_view(model)
    if view is not None and not view.discovered:
        return None
    how = "a discovered block view" if view is not None else "no block view"
    return (
        f"--cache_frozen_prefix: frozen-prefix caching needs an explicit block layout, and model "
        f"type {model_type_of(model)!r} has {how}, for which a cached run cannot be proven to "
        "match an uncached one. Use --cache_frozen_prefix no, or add a BlockLayout to "
        "nlp_transfer.models.layouts.TEXT_LAYOUTS."
    )


def _prefix_modules(model: nn.Module, k: int) -> list[nn.Module]:
    """Modules of the frozen prefix: the embeddings block's modules, then layers 0..k-1."""
    return [m for block in _prefix_blocks(model, k) for m in block.modules]


def _prefix_blocks(model: nn.Module, k: int) -> list[Block]:
    """The frozen prefix's blocks (embeddings, layers 0..k-1), checked to be cacheable."""
    view = find_block_view(model)
    reason = caching_unsupported_reason(model, view)
    if reason or view is None:
        raise ValueError(reason)
    if not 1 <= k < view.num_blocks:
        raise ValueError(f"Frozen-prefix caching needs 1 <= freeze_layers < {view.num_blocks}.")
    return view.blocks[: k + 1]


def _suffix_layers(model: nn.Module, k: int) -> list[nn.Module]:
    view = get_block_view(model)
    return [m for block in view.blocks[k + 1 :] for m in block.modules]


def _base_model(model: nn.Module) -> nn.Module:
    return getattr(model, "base_model", model)


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


def cache_key(
    model: nn.Module,
    k: int,
    tokenizer: object,
    max_seq_length: int,
    dataset: Dataset,
    dtype: torch.dtype,
) -> str:
    """A hex digest that changes with anything that changes the cached values."""
    digest = hashlib.sha256()
    for module in _prefix_modules(model, k):
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    parts = [
        type(model).__name__,
        str(k),
        type(tokenizer).__name__,
        str(getattr(tokenizer, "name_or_path", "")),
        str(len(tokenizer)) if hasattr(tokenizer, "__len__") else "",
        str(max_seq_length),
        str(getattr(dataset, "_fingerprint", "")) or str(len(dataset)),
        str(dtype),
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
    lengths = np.array([len(ids) for ids in dataset["input_ids"]], dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    hidden = model.config.hidden_size
    if path is None:
        values: torch.Tensor | np.ndarray = torch.empty(int(offsets[-1]), hidden, dtype=dtype)
    else:
        if dtype not in _NUMPY:
            raise ValueError("A disk cache stores float16 or float32 (numpy has no bfloat16).")
        path.mkdir(parents=True, exist_ok=True)
        values = np.lib.format.open_memmap(
            path / "values.npy", mode="w+", dtype=_NUMPY[dtype], shape=(int(offsets[-1]), hidden)
        )
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
        for batch in tqdm(loader, desc=desc, leave=False, disable=disable_progress):
            batch = {n: t.to(device) for n, t in batch.items()}
            base(**batch)  # the suffix passes through
            out = captured[0]
            for row in range(out.shape[0]):
                i = int(order[done + row])
                n = int(lengths[i])
                mask = batch.get("attention_mask")
                piece = out[row, :n] if mask is None else out[row][mask[row].bool()]
                piece = piece.to("cpu", dtype)
                if isinstance(values, np.ndarray):
                    values[offsets[i] : offsets[i + 1]] = piece.numpy()
                else:
                    values[offsets[i] : offsets[i + 1]] = piece
            done += out.shape[0]
    hook.remove()
    model.train(was_training)
    if isinstance(values, np.ndarray):
        values.flush()
        np.save(path / "offsets.npy", offsets)
        (path / "complete.json").write_text(json.dumps({"examples": len(lengths)}))
    return PrefixCache(values, offsets)


def load_disk_cache(path: Path) -> PrefixCache | None:
    """A complete disk cache at ``path`` (memory-mapped, read-only), or None."""
    if not (path / "complete.json").exists():
        return None
    values = np.load(path / "values.npy", mmap_mode="r")
    return PrefixCache(values, np.load(path / "offsets.npy"))


def choose_storage(storage: str, estimated_bytes: int, num_processes: int = 1) -> str:
    """``memory`` or ``disk`` for ``storage="auto"``: disk above a quarter of available RAM,
    or when several processes share the cache."""
    if storage != "auto":
        return storage
    if num_processes > 1:
        return "disk"
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 8 * 2**30
    return "disk" if estimated_bytes > available / 4 else "memory"


class PrefixFeeder:
    """Makes the frozen prefix of a model return given (cached) states instead of computing them.

    While enabled, the first layer's block returns the tensor passed to :meth:`feeding` and the
    layers ``1..k-1`` pass their input through (each in the form the layer returns: a tensor or
    a tuple), so any forward of the model or of its encoder (``model.base_model``) inside
    ``with feeder.feeding(prefix_hidden):`` runs only the embedding look-up and the layers above
    ``k``. It is not a module: it holds no parameters, only the swapped forwards.

    Args:
        model: The task model with its lower ``k`` layers and embeddings frozen.
        k: Frozen encoder layers.

    Raises:
        ValueError: ``k`` is not in ``1..L-1``, or the model has no explicit block layout
            (:func:`caching_unsupported_reason`).
    """

    def __init__(self, model: nn.Module, k: int):
        self.k = k
        self._pending: torch.Tensor | None = None
        self._model = model  # a plain reference, for its current dtype
        blocks = _prefix_blocks(model, k)
        feeder = self

        def feed(module, *args, **kwargs):
            if feeder._pending is None:
                raise RuntimeError("CachedPrefixModel: no prefix_hidden was given for this batch.")
            return _shaped(module, feeder._pending, args, kwargs)

        self._swap = _Swap(
            {m: feed for m in blocks[1].modules}
            | {m: _passthrough for block in blocks[2:] for m in block.modules}
        )
        self.enable()

    def enable(self) -> None:
        self._swap.apply()

    def disable(self) -> None:
        """Restore the model's own forward everywhere (before saving or exporting it)."""
        self._swap.undo()

    @contextmanager
    def feeding(self, prefix_hidden: torch.Tensor) -> Iterator[None]:
        """Within the block, the prefix outputs ``prefix_hidden`` ``(batch, seq, hidden)``."""
        self._pending = prefix_hidden.to(dtype=next(self._model.parameters()).dtype)
        try:
            yield
        finally:
            self._pending = None


class CachedPrefixModel(nn.Module):
    """The task model, fed the cached prefix output instead of running the frozen prefix.

    ``forward(input_ids, attention_mask, prefix_hidden, **rest)`` returns what the model returns;
    ``prefix_hidden`` is ``(batch, seq, hidden)`` from :meth:`PrefixCache.batch`. While this
    wrapper is active (between :meth:`enable` and :meth:`disable`), the frozen prefix's modules
    do no work (see :class:`PrefixFeeder`).

    Args:
        model: The task model with its lower ``k`` layers and embeddings frozen.
        k: Frozen encoder layers.
    """

    def __init__(self, model: nn.Module, k: int):
        super().__init__()
        self.model = model
        self.k = k
        self.feeder = PrefixFeeder(model, k)

    @property
    def config(self):
        return self.model.config

    def enable(self) -> None:
        self.feeder.enable()

    def disable(self) -> None:
        """Restore the model's own forward everywhere (before saving or exporting it)."""
        self.feeder.disable()

    def forward(self, prefix_hidden: torch.Tensor, **inputs):
        with self.feeder.feeding(prefix_hidden):
            return self.model(**inputs)


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
    return dataset.add_column(INDEX_COLUMN, list(range(len(dataset))))


def remove_disk_cache(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
