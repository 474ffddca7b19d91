"""The model side of frozen-prefix caching: the frozen prefix stood in for by its cached output.

Inside :class:`CachedPrefixModel` (training) and :class:`PrefixFeeder` (a model that feeds
itself, e.g. domain adaptation's), the first trainable layer's input is the cached tensor: the
frozen layers below pass their input through (:func:`_passthrough`, in the shape each layer
returns, learnt from one real forward), and the model's own forward does everything else
(attention masks, the trainable layers, pooler, classifier) exactly as without the cache. The
weights are untouched, so the model saves and loads as usual. The storage side (computing,
keeping and batching the cached tensors) is :mod:`nlp_transfer.transfer.cache`.
"""

from __future__ import annotations

import types
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..models.blocks import Block, BlockView, find_block_view, get_block_view, model_type_of

PREFIX_INPUT = "prefix_hidden"

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
