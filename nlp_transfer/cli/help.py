"""Short ``--help`` for the config parsers: one line per flag, real defaults, no repeats.

``HfArgumentParser`` lists every flag twice (``--train_file TRAIN_FILE, --train-file
TRAIN_FILE``), appends "(default: None)" to flags whose help already says what unset means,
and repeats a boolean's help under its ``--no_*`` twin. :func:`compact_help` restyles such a
parser for display only: parsing is unchanged (dashed spellings and ``--no_*`` flags still
work). Standard library only, so it costs nothing at start-up.
"""

from __future__ import annotations

import argparse
import functools
import shutil

HELP_WIDTH = 100
HELP_POSITION = 34


def _is_bool_flag(action: argparse.Action) -> bool:
    """``HfArgumentParser``'s booleans: ``--flag`` or ``--flag true|false`` (``nargs="?"``)."""
    return action.nargs == "?" and action.const is True


def _metavar(action: argparse.Action) -> str:
    if action.choices is not None:
        choices = ",".join(str(c) for c in action.choices)
        return f"{{{choices}}}" if len(choices) <= 30 else "CHOICE"
    if action.type is int:
        return "N"
    if action.type is float:
        return "X"
    if action.dest.endswith(("_file", "_dir", "_path", "checkpoint", "config", "_from")):
        return "PATH"
    return "VALUE"


class CompactHelpFormatter(argparse.HelpFormatter):
    """One spelling per flag, a short metavar, and ``(default: ...)`` only for real defaults.

    Args:
        prog: The program name (argparse passes it).
        negations: ``{dest: "--no_flag"}``: shown beside the positive flag, which they negate.
    """

    def __init__(self, prog: str, negations: dict[str, str] | None = None):
        width = min(HELP_WIDTH, shutil.get_terminal_size((HELP_WIDTH, 24)).columns)
        super().__init__(prog, max_help_position=HELP_POSITION, width=width)
        self.negations = negations or {}

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        if isinstance(action, argparse._HelpAction):
            return ", ".join(action.option_strings)
        name = action.option_strings[0]  # --train_file; its --train-file alias still parses
        if action.nargs == 0 or _is_bool_flag(action):
            negation = self.negations.get(action.dest)
            return f"{name}, {negation}" if negation else name
        return f"{name} {action.metavar or _metavar(action)}"

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            default is None
            or default is argparse.SUPPRESS
            or default is False
            or action.nargs == 0
            or "(default:" in text
        ):
            return text
        if isinstance(default, bool):
            default = str(default).lower()
        return f"{text} (default: {str(default).replace('%', '%%')})"


def compact_help(
    parser: argparse.ArgumentParser, usage: str | None = None
) -> argparse.ArgumentParser:
    """Restyle ``parser``'s help with :class:`CompactHelpFormatter`; parsing is unchanged.

    The ``--no_*`` flags ``HfArgumentParser`` adds for booleans that default to true are
    listed beside their positive flag instead of with a copy of its help.

    Args:
        parser: A parser, e.g. from :func:`~nlp_transfer.cli.config.build_config_parser`.
        usage: The usage line; None: ``PROG [--config FILE] [--FLAG VALUE ...]`` (without
            ``--config`` when the parser has none) instead of argparse's list of every flag.

    Returns:
        The same parser.
    """
    negations = {}
    for action in parser._actions:
        if isinstance(action, argparse._StoreFalseAction) and action.option_strings[0].startswith(
            "--no_"
        ):
            action.help = argparse.SUPPRESS
            negations[action.dest] = action.option_strings[0]
    parser.formatter_class = functools.partial(CompactHelpFormatter, negations=negations)
    if usage is None:
        has_config = any("--config" in a.option_strings for a in parser._actions)
        usage = f"%(prog)s {'[--config FILE] ' if has_config else ''}[--FLAG VALUE ...]"
    parser.usage = usage
    return parser
