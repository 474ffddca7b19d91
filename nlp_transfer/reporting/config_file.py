"""``config.yaml``: the resolved settings of a run, written so that ``--config`` can rerun it.

The reading half is :func:`nlp_transfer.cli.config.parse_config`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

__all__ = ["save_config"]


def save_config(config, path: str | Path, **extra) -> None:
    """Write the resolved config (plus ``extra`` resolved values) to a YAML file.

    Args:
        config: A config dataclass instance (e.g. ``TextClassificationConfig``).
        path: The YAML file to write (overwritten: it belongs to the run's own ``output_dir``).
        **extra: Resolved values that are not fields, written after the fields.
    """
    values = dataclasses.asdict(config) | extra
    Path(path).write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
