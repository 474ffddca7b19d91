"""Progress for people on a terminal: whether there is one, and a transient bar. Imports nothing
of the library, so every layer may show progress the same way."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm.auto import tqdm


def stderr_is_terminal() -> bool:
    """Whether standard error is an interactive terminal (where progress bars belong)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def progress_bar(iterable: Iterable, desc: str, enabled: bool = True) -> Iterable:
    """``iterable`` wrapped in a transient tqdm bar, shown only when ``enabled`` and on a terminal.

    Args:
        iterable: What to iterate over (e.g. a DataLoader).
        desc: The bar's label ("Validation", "Test").
        enabled: False on processes that should stay silent (not the local main process).
    """
    return tqdm(iterable, desc=desc, leave=False, disable=not (enabled and stderr_is_terminal()))
