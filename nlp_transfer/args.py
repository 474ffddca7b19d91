"""How config dataclasses declare their flags: :func:`arg` (default, ``--help`` text and section)
and the checks that name the flag in their errors. Imports nothing of the library, so the
strategy configs (``transfer/strategies``) and the task configs build on the same helpers."""

from __future__ import annotations

import re
from dataclasses import field

# help text -> --help section. Kept beside the fields, not in their metadata: HfArgumentParser
# passes every metadata entry to argparse's add_argument, which takes no section.
HELP_SECTIONS: dict[str, str] = {}


def arg(default, help: str, group: str | None = None, **kwargs):
    """A dataclass field with its ``--help`` text, listed under section ``group`` in ``--help``."""
    if group:
        HELP_SECTIONS[help] = group
    return field(default=default, metadata={"help": help}, **kwargs)


def section_of(dataclass_field) -> str | None:
    """The ``--help`` section of a config field (None: the default section)."""
    return HELP_SECTIONS.get(dataclass_field.metadata.get("help", ""))


def check_positive(config, *names: str) -> None:
    """Raises ValueError naming the flag when one of ``names`` is None or <= 0."""
    for name in names:
        value = getattr(config, name)
        if value is None or value <= 0:
            raise ValueError(f"--{name} must be positive, got {value}.")


def check_optional_positive(config, *names: str) -> None:
    """Raises ValueError naming the flag when one of ``names`` is set and <= 0."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise ValueError(f"--{name} must be positive, got {value}.")


def check_non_negative(config, *names: str) -> None:
    """Raises ValueError naming the flag when one of ``names`` is < 0."""
    for name in names:
        if getattr(config, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(config, name)}.")


def check_choice(config, name: str, choices, optional: bool = False) -> None:
    """Raises ValueError naming the flag and its choices when ``name``'s value is not one of them."""
    value = getattr(config, name)
    if optional and value is None:
        return
    if value not in choices:
        raise ValueError(f"--{name} must be one of {', '.join(choices)}, got {value!r}.")


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str | float | int, flag: str = "--time_budget") -> float:
    """Seconds of a duration: ``"90s"``, ``"20m"``, ``"1.5h"``, ``"1h30m"`` or a number of seconds.

    Raises:
        ValueError: Not a positive duration (the message names ``flag`` and the accepted forms).
    """
    if isinstance(text, int | float) or re.fullmatch(r"\s*\d+(\.\d+)?\s*", str(text)):
        seconds = float(text)
    elif re.fullmatch(r"\s*(\d+(\.\d+)?\s*[smh]\s*)+", str(text)):
        pairs = re.findall(r"(\d+(?:\.\d+)?)\s*([smh])", str(text))
        seconds = sum(float(n) * DURATION_UNITS[u] for n, u in pairs)
    else:
        raise ValueError(f"{flag} {text!r}: give a duration such as 90s, 20m, 1.5h or 1h30m.")
    if seconds <= 0:
        raise ValueError(f"{flag} must be positive, got {text!r}.")
    return seconds
