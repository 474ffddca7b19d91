"""The memory budget of a run's data: what may stay in RAM before it is streamed or memory-mapped.

Image runs keep their decoded images, and then their frozen-prefix cache, in memory while they
fit in the budget (``--image_cache_memory_gb``); past it the images are streamed from disk and
the cache is memory-mapped. Unset, the budget is a quarter of the RAM available when the run
starts, the rule the text runs' prefix cache follows too
(:func:`~nlp_transfer.transfer.cache.choose_storage`).
"""

from __future__ import annotations

import os

GB = 10**9  # the budget flags count decimal gigabytes: 100,000 RGB images at 224x224 are 15.1 GB
FALLBACK_AVAILABLE = 8 * 2**30  # when neither psutil nor sysconf can tell


def available_memory_bytes() -> int:
    """RAM that new allocations can take without swapping, bytes.

    ``psutil.virtual_memory().available`` (on Linux the kernel's ``MemAvailable``: free pages
    plus the page cache it can reclaim) when psutil is installed (Accelerate depends on it);
    else the free pages from ``os.sysconf`` (``SC_AVPHYS_PAGES``, an underestimate: it leaves out
    the page cache); else 8 GiB.
    """
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except (ImportError, OSError, AttributeError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return FALLBACK_AVAILABLE


def memory_budget_bytes(memory_gb: float | None = None) -> int:
    """The budget in bytes: ``memory_gb`` GB (10**9 bytes), or unset a quarter of the RAM
    available now (:func:`available_memory_bytes`).

    Args:
        memory_gb: The user's budget in GB (``--image_cache_memory_gb``); None for the default.

    Returns:
        Bytes, at least 0.
    """
    if memory_gb is None:
        return available_memory_bytes() // 4
    return max(int(memory_gb * GB), 0)


def format_gb(num_bytes: float) -> str:
    """``15.1 GB``, ``0.02 GB`` (decimal GB, as the budget flags count them)."""
    gb = num_bytes / GB
    return f"{gb:.1f} GB" if gb >= 1 else f"{gb:.2g} GB"
