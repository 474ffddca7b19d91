"""Discover the block view of a model family that has no explicit layout.

For a ``model_type`` missing from :data:`~nlp_transfer.models.layouts.TEXT_LAYOUTS`, the view
is read off the module tree:

- **layers**: the ``nn.ModuleList`` of two or more blocks of one class with the same parameter
  shapes (the encoder layers); the one with the most parameters if there are several; sibling
  ModuleLists of the same length hold parts of the same layers (XLM's ``attentions[i]``,
  ``ffns[i]``...) and join layer ``i``'s block;
- **bottom block** ("embeddings"): the module that owns the input embeddings
  (``get_input_embeddings()``), and the other embedding tables registered beside the layers'
  ancestors before them (position or token-type embeddings);
- **head**: the rest (final norm, pooler, classifier; a projection or norm registered next to the
  embeddings too, since construction order does not say where it runs: OPT builds its final
  norm before its layers); the head modules outside ``model.base_model`` are the newly
  initialised part.

A discovered view is coverage-checked like an explicit one. It serves freezing, layer-wise LR
decay, gradual unfreezing and L2-SP; frozen-prefix caching needs an explicit layout (see
:mod:`nlp_transfer.transfer.cache`).
"""

from __future__ import annotations

from torch import nn

from .layouts import BlockLayout


def _repeated_blocks(model: nn.Module) -> list[tuple[int, str]]:
    """``(parameter count, path)`` of every ModuleList of >= 2 identical, parameterised blocks."""
    found = []
    for path, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) < 2:
            continue
        if len({type(m) for m in module}) != 1:
            continue
        shapes = {tuple(tuple(p.shape) for p in m.parameters()) for m in module}
        if len(shapes) != 1 or not next(iter(shapes)):
            continue
        found.append((sum(p.numel() for p in module.parameters()), path))
    return found


def _join(parent: str, child: str) -> str:
    return f"{parent}.{child}" if parent else child


def _input_embeddings_path(model: nn.Module) -> str | None:
    try:
        embeddings = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if embeddings is None:
        return None
    return next((path for path, m in model.named_modules() if m is embeddings), None)


def discover_layout(model: nn.Module) -> tuple[BlockLayout | None, str]:
    """Read a :class:`BlockLayout` off ``model``'s module tree.

    Args:
        model: A task model, e.g. from ``AutoModelForSequenceClassification``.

    Returns:
        ``(layout, "")``, or ``(None, reason)`` saying what could not be found.
    """
    candidates = _repeated_blocks(model)
    if not candidates:
        return None, "it has no nn.ModuleList of repeated identical layers"
    layers = max(candidates)[1]
    embeddings = _input_embeddings_path(model)
    if embeddings is None:
        return None, "get_input_embeddings() gives no module of the model"
    if embeddings.startswith(layers + "."):
        return None, f"its input embeddings ({embeddings}) are inside the layers ({layers})"
    modules = dict(model.named_modules())
    parallel = _parallel_lists(modules, layers)
    bottom: list[str] = []
    head: list[str] = []
    parts = layers.split(".")
    for depth, child in enumerate(parts):
        parent = ".".join(parts[:depth])
        names = [name for name, _ in modules[parent].named_children()]
        at = names.index(child)
        for name in names[:at]:  # embedding tables before the layers: bottom; else head
            path = _join(parent, name)
            if path in parallel:
                continue
            tables = any(isinstance(m, nn.Embedding) for m in modules[path].modules())
            (bottom if tables else head).append(path)
        head += [_join(parent, n) for n in names[at + 1 :] if _join(parent, n) not in parallel]
    owner = next(
        (p for p in bottom + head if embeddings == p or embeddings.startswith(p + ".")), None
    )
    if owner is None:
        return None, f"its input embeddings ({embeddings}) are part of its layer lists"
    if owner in head:  # embeddings registered after the layers: still the bottom block
        head.remove(owner)
        bottom.insert(0, owner)
    else:  # the owner first: it is what a reader looks for
        bottom.remove(owner)
        bottom.insert(0, owner)
    base = getattr(model, "base_model_prefix", "")
    in_base = bool(base) and isinstance(getattr(model, base, None), nn.Module)
    new = tuple(p for p in head if not (in_base and (p == base or p.startswith(base + "."))))
    extras = tuple((i, f"{path}.{i}") for path in parallel for i in range(len(modules[path])))
    return BlockLayout(tuple(bottom), layers, tuple(head), new=new, layer_extras=extras), ""


def _parallel_lists(modules: dict[str, nn.Module], layers: str) -> list[str]:
    """Sibling ModuleLists as long as the layers: parts of each layer kept in parallel lists.

    XLM and FlauBERT keep layer ``i`` as ``attentions[i]``, ``layer_norm1[i]``, ``ffns[i]``,
    ``layer_norm2[i]``; each of those belongs to block ``layer_i``.
    """
    parent, _, _ = layers.rpartition(".")
    count = len(modules[layers])
    return [
        _join(parent, name)
        for name, child in modules[parent].named_children()
        if isinstance(child, nn.ModuleList)
        and len(child) == count
        and _join(parent, name) != layers
    ]
