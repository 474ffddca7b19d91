"""Parsing a run's config: a typed dataclass, Hugging Face names, a YAML file overridden by flags.

The writing half (``config.yaml`` in an ``output_dir``) is
:func:`nlp_transfer.reporting.config_file.save_config`.

The config classes themselves live with what they configure: the shared training arguments in
:mod:`nlp_transfer.training.arguments`, the transfer strategies in
:mod:`nlp_transfer.transfer.strategies`, each task's own fields in its package.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import yaml
from transformers import HfArgumentParser

from ..args import section_of
from ..training.arguments import MIXED_PRECISION_CHOICES, TRACKERS, parse_report_to
from .help import compact_help

__all__ = [
    "MIXED_PRECISION_CHOICES",
    "TRACKERS",
    "build_config_parser",
    "parse_config",
    "parse_report_to",
]

# --help sections listed first, in this order; any other section follows in field order.
GROUP_ORDER = (
    "Data",
    "Model",
    "Transfer strategy",
    "Optimisation",
    "Class imbalance",
    "Evaluation and outputs",
    "Checkpoints and resuming",
    "Tracking and sharing",
)

ConfigT = TypeVar("ConfigT")


def build_config_parser(config_cls: type, prog: str | None = None) -> HfArgumentParser:
    """An ``HfArgumentParser`` for ``config_cls`` plus ``--config``, its ``--help`` grouped by topic
    and compact (:func:`~nlp_transfer.cli.help.compact_help`: real defaults, one usage line).

    Each field is listed under its section (see :func:`~nlp_transfer.training.arguments.arg`);
    sections follow :data:`GROUP_ORDER`.
    """
    parser = HfArgumentParser(config_cls, prog=prog)
    _bare_optional_booleans(parser)
    parser.add_argument("--config", default=None, help="YAML file of settings; flags override it.")
    default_group = next(
        g for g in parser._action_groups if g.title in ("options", "optional arguments")
    )
    titles = [section_of(f) for f in dataclasses.fields(config_cls)]
    ordered = [t for t in GROUP_ORDER if t in titles]
    ordered += [t for t in dict.fromkeys(titles) if t and t not in ordered]
    sections = {title: parser.add_argument_group(title) for title in ordered}
    group_of = {f.name: section_of(f) for f in dataclasses.fields(config_cls)}
    for action in list(default_group._group_actions):
        title = group_of.get(action.dest)
        if title is not None:
            default_group._group_actions.remove(action)
            sections[title]._group_actions.append(action)
    return compact_help(parser)


def _bare_optional_booleans(parser: HfArgumentParser) -> None:
    """Let ``bool | None`` fields (unset: decided per problem type) take a bare ``--flag`` for
    true, as plain booleans do: HfArgumentParser gives them a required value."""
    for action in parser._actions:
        if getattr(action.type, "__name__", "") == "string_to_bool" and action.nargs is None:
            action.nargs, action.const = "?", True


def _yaml_to_argv(path: str, valid: Sequence[str]) -> list[str]:
    config_path = Path(path).expanduser()
    if not config_path.is_file():
        raise FileNotFoundError(f"--config {path}: no such file.")
    values = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ValueError(f"--config {path} must hold a mapping of setting: value.")
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ValueError(
            f"--config {path} has unknown key(s) {', '.join(unknown)}; valid keys: "
            f"{', '.join(sorted(valid))}."
        )
    argv = []
    for key, value in values.items():
        if value is not None:
            argv += [f"--{key}", str(value)]
    return argv


def parse_config(
    config_cls: type[ConfigT], argv: Sequence[str] | None = None, prog: str | None = None
) -> ConfigT:
    """Parse ``--config file.yaml`` and flags into ``config_cls``; flags override the file.

    Built on ``transformers.HfArgumentParser``: every dataclass field is a ``--flag`` with its
    help string; booleans take ``--flag`` / ``--flag false``.

    Args:
        config_cls: A dataclass type such as :class:`TextClassificationConfig`.
        argv: Arguments without the program name; None reads ``sys.argv``.
        prog: Program name shown by ``--help``.

    Returns:
        The populated, validated dataclass.

    Raises:
        FileNotFoundError: The ``--config`` file does not exist.
        ValueError: The YAML has unknown keys (the message lists the valid ones) or a value is
            invalid.
        SystemExit: On ``--help`` or an unknown flag (argparse's behaviour).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_config_parser(config_cls, prog)
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        valid = [f.name for f in dataclasses.fields(config_cls)]
        argv = _yaml_to_argv(pre.config, valid) + argv
    namespace = vars(parser.parse_args(argv))
    namespace.pop("config")
    return config_cls(**namespace)
