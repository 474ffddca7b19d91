"""The ``nlp-transfer`` command line (also ``python -m nlp_transfer``).

Subcommands: ``train`` (any text task and strategy; ``--config`` YAML + flags, the same config
dataclasses as the recipes), ``evaluate``, ``predict``, ``export`` (ONNX), ``datasets`` (list or
fetch the built-in ones), ``cache`` (list or clear what is kept on disk), ``serve`` (an HTTP
server), ``audit`` (label errors, duplicates, leakage), ``monitor`` (drift) and ``benchmark`` (the committed
benchmark scripts). ``nlp-transfer <subcommand> --help`` describes each. A user error (bad data,
flag or path, a model that is not available offline) prints ``error: <message>`` and exits with
status 1; ``--debug`` shows the traceback instead.

Nothing heavy (torch, transformers, datasets) is imported before a subcommand runs, so
``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .audit import add_audit_parser, add_monitor_parser, audit_main, monitor_main
from .predict import (
    add_evaluate_parser,
    add_predict_parser,
    add_refit_conformal_parser,
    evaluate_main,
    predict_main,
    refit_conformal_main,
)
from .serve import add_serve_parser, serve_main

DESCRIPTION = """\
Transfer learning for text (and image) classification. Train on your own data:

  nlp-transfer train --train_file data.csv --text_column text --label_column label

then `nlp-transfer predict --model_dir outputs/text_classification --text "..."`.
`nlp-transfer COMMAND --help` describes each command. An error in the input (data, flags,
paths, a model not available offline) prints its message and exits with status 1; add --debug
for the traceback."""

DEBUG_HELP = "On an error, show the full traceback (any subcommand)."

BENCHMARKS = {
    "bf16_cpu": "benchmarks/bf16_cpu.py",
    "domain_adaptation": "benchmarks/domain_adaptation.py",
    "few_shot_setfit": "benchmarks/few_shot_setfit.py",
    "frozen_vs_full": "benchmarks/frozen_vs_full.py",
    "inference": "benchmarks/inference.py",
    "throughput_vs_hf": "benchmarks/throughput_vs_hf.py",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nlp-transfer",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "train",
        help="Train a classifier: nlp-transfer train "
        "[--task text|sentiment|spam|image|domain_adaptation] "
        "[--config file.yaml] [flags] (see nlp-transfer train --task TASK --help).",
        add_help=False,
    )
    sub.add_parser(
        "search",
        help="Hyperparameter search (Optuna): nlp-transfer search [--task TASK] "
        "[--search_space FILE] [--n_trials N] [train flags] (see nlp_transfer.search).",
        add_help=False,
    )
    add_predict_parser(sub)
    add_evaluate_parser(sub)
    add_refit_conformal_parser(sub)
    add_serve_parser(sub)
    add_audit_parser(sub)
    add_monitor_parser(sub)
    x = sub.add_parser(
        "export",
        help="Export a saved model to ONNX (dynamic batch and sequence axes), checked against PyTorch.",
    )
    x.add_argument("--model_dir", required=True, help="A run's output_dir.")
    x.add_argument("--format", default="onnx", choices=["onnx"], help="Export format.")
    x.add_argument("--output", help="The .onnx file to write; default: <model_dir>/model.onnx.")
    x.add_argument("--opset", type=int, default=18, help="ONNX opset version.")
    x.add_argument(
        "--no_check",
        action="store_true",
        help="Skip running the export with onnxruntime and comparing its logits with PyTorch's.",
    )
    d = sub.add_parser("datasets", help="List the built-in datasets, or fetch one into the cache.")
    d.add_argument("action", nargs="?", default="list", choices=["list", "fetch"])
    d.add_argument("name", nargs="?", help="Dataset to fetch (with 'fetch').")
    d.add_argument(
        "--cache_dir",
        help="Cache directory (default: $NLP_TRANSFER_CACHE or ~/.cache/nlp_transfer).",
    )
    d.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    c = sub.add_parser(
        "cache",
        help="List or clear what nlp_transfer keeps on disk: prefix and feature caches, downloads.",
        description="List (default) or clear the cache directory's entries: frozen-prefix caches "
        "written to disk and the audit's sentence features (derived data, recomputed when "
        "needed) and the built-in datasets' downloads. `clear` removes the derived data only, "
        "unless --all.",
    )
    c.add_argument("action", nargs="?", default="list", choices=["list", "clear"])
    c.add_argument(
        "--cache_dir",
        help="Cache directory (default: $NLP_TRANSFER_CACHE or ~/.cache/nlp_transfer).",
    )
    c.add_argument(
        "--all", action="store_true", help="clear: the downloads too, not only the derived caches."
    )
    c.add_argument("--dry_run", action="store_true", help="clear: only list what would go.")
    c.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    b = sub.add_parser(
        "benchmark",
        help="Run a committed benchmark script (from a source checkout); extra flags go to it.",
    )
    b.add_argument("name", choices=sorted(BENCHMARKS), help="Which benchmark.")
    return parser


def train_main(argv: Sequence[str]) -> int:
    """``nlp-transfer train``: the recipes' run, with the task's defaults chosen by ``--task``."""
    from ..tasks import DEFAULT_TASK, get_task, list_tasks
    from ..training.checkpoint import exit_on_interrupt
    from .config import parse_config

    pre = argparse.ArgumentParser(prog="nlp-transfer train", add_help=False)
    pre.add_argument("--task", default=DEFAULT_TASK, choices=list_tasks())
    known, rest = pre.parse_known_args(argv)
    task = get_task(known.task)
    if "-h" in rest or "--help" in rest:
        train_parser(known.task, task.config_class, list_tasks()).print_help()
        raise SystemExit(0)  # as argparse does for --help
    config = parse_config(task.config_class, rest, prog=f"nlp-transfer train --task {known.task}")
    with exit_on_interrupt():
        if getattr(config, "strategy", "manual") == "auto":  # text tasks: the strategy race
            from ..race import race

            race(config)
        else:
            task.run(config, ())
    return 0


def train_parser(task: str, config_cls: type, tasks: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of ``nlp-transfer train --task TASK``, with short, grouped help."""
    from .config import build_config_parser
    from .help import compact_help

    parser = build_config_parser(config_cls, prog="nlp-transfer train")
    parser.description = (
        f"Train a classifier with the defaults of --task {task}. Flags override --config; "
        "booleans take --flag or --flag false; dashes work too (--train-file)."
    )
    parser.add_argument(
        "--task",
        choices=tasks,
        default=task,
        metavar="TASK",
        help=f"{', '.join(tasks[:-1])} or {tasks[-1]}: the defaults (and flags) of this task; "
        "this help shows those of the task given.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    for group in parser._action_groups:
        if group.title in ("options", "optional arguments"):
            group.title = "Command"
    return compact_help(
        parser, usage="nlp-transfer train [--task TASK] [--config FILE] [--FLAG VALUE ...]"
    )


def cache_main(args: argparse.Namespace) -> int:
    """``nlp-transfer cache [list|clear]``: the cache directory's entries, or remove them."""
    from ..data.disk_cache import cache_entries, clear_cache, entries_as_dicts, human_bytes
    from ..data.fetch import default_cache_dir

    root = default_cache_dir(args.cache_dir)
    if args.action == "clear":
        derived = ("prefix_cache", "features")
        kinds = (*derived, "downloads") if args.all else derived
        removed = clear_cache(args.cache_dir, kinds, dry_run=args.dry_run)
        if args.json:
            print(json.dumps(entries_as_dicts(removed), indent=2))
            return 0
        verb = "would remove" if args.dry_run else "removed"
        for entry in removed:
            print(f"{verb} {entry.path} ({human_bytes(entry.bytes)})")
        total = human_bytes(sum(e.bytes for e in removed))
        print(f"{root}: {verb} {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}, {total}")
        return 0
    entries = cache_entries(args.cache_dir)
    if args.json:
        print(json.dumps(entries_as_dicts(entries), indent=2))
        return 0
    if not entries:
        print(f"{root}: empty")
        return 0
    print(f"{root}:")
    for entry in entries:
        print(
            f"  {entry.kind}/{entry.name}  {human_bytes(entry.bytes)}  {entry.modified}  "
            f"{entry.state}"
        )
    for kind in ("prefix_cache", "features", "downloads"):
        mine = [e for e in entries if e.kind == kind]
        if mine:
            print(f"{kind}: {len(mine)} entries, {human_bytes(sum(e.bytes for e in mine))}")
    print(
        "`nlp-transfer cache clear` removes the prefix and feature caches (--all: the downloads "
        "too)."
    )
    return 0


def datasets_main(args: argparse.Namespace) -> int:
    from ..data.builtin import BUILTIN_DATASETS, load_builtin_dataset
    from ..data.fetch import default_cache_dir

    if args.action == "fetch":
        if args.name not in BUILTIN_DATASETS:
            raise SystemExit(
                f"error: datasets fetch NAME: NAME must be one of {', '.join(sorted(BUILTIN_DATASETS))}."
            )
        ds = load_builtin_dataset(args.name, cache_dir=args.cache_dir)
        sizes = ", ".join(f"{s} {len(d):,}" for s, d in ds.items())
        print(f"{args.name}: cached in {default_cache_dir(args.cache_dir) / 'downloads'} ({sizes})")
        return 0
    downloads = default_cache_dir(args.cache_dir) / "downloads"
    rows = [
        {
            "name": spec.name,
            "labels": list(spec.label_names),
            "description": spec.description,
            "license": spec.license,
            "citation": spec.citation,
            "cached": (downloads / spec.source.filename).exists(),
            "source": f"{spec.source.package}=={spec.source.version}",
        }
        for spec in BUILTIN_DATASETS.values()
    ]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for row in rows:
        print(f"{row['name']}  [{'cached' if row['cached'] else 'not cached'}]")
        print(f"  {row['description']}")
        print(
            f"  labels: {', '.join(row['labels'])} | source: {row['source']} | licence: {row['license']}"
        )
        print(f"  cite: {row['citation']}")
    return 0


def benchmark_main(name: str, extra: Sequence[str]) -> int:
    import subprocess

    script = Path(__file__).resolve().parents[1] / BENCHMARKS[name]
    if not script.exists():
        raise SystemExit(
            f"error: {script} not found; the benchmarks ship with the source checkout "
            "(git clone), not with the installed package."
        )
    return subprocess.call([sys.executable, str(script), *extra])


def main(argv: Sequence[str] | None = None) -> int:
    """``nlp-transfer``: run a subcommand; a user error is one line on standard error, status 1.

    Args:
        argv: Arguments without the program name; None reads ``sys.argv``. ``--debug``
            anywhere shows the traceback of an error instead of its message alone.

    Returns:
        The exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    try:
        return _dispatch(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug or not is_user_error(exc):
            raise
        print(f"error: {error_message(exc)}", file=sys.stderr)
        return 1


# What bad data, flags, paths or an unavailable model raise; their messages say what to fix.
USER_ERRORS = (ValueError, OSError, KeyError, ImportError, FloatingPointError)


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` reports a problem with the user's input or set-up, not a bug.

    That is the built-in types of :data:`USER_ERRORS` (``FileNotFoundError``,
    ``FileExistsError`` and ``ConnectionError`` are ``OSError``\\ s) and the library's own error
    types (``DownloadError``, ``ChecksumError``...).
    """
    return isinstance(exc, USER_ERRORS) or type(exc).__module__.startswith("nlp_transfer.")


def error_message(exc: BaseException) -> str:
    """The message of ``exc`` as a user reads it (a ``KeyError``'s without quotes)."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc) or type(exc).__name__


def _dispatch(argv: list[str]) -> int:
    """Run the subcommand of ``argv``."""
    if argv and argv[0] == "train":
        return train_main(argv[1:])
    if argv and argv[0] == "search":
        from ..search import search_main

        return search_main(argv[1:])
    parser = build_parser()
    if argv and argv[0] == "benchmark":
        args, extra = parser.parse_known_args(argv)
        return benchmark_main(args.name, extra)
    args = parser.parse_args(argv)
    if args.command == "datasets":
        return datasets_main(args)
    if args.command == "cache":
        return cache_main(args)
    if args.command == "export":
        from ..export import export_onnx

        report = export_onnx(args.model_dir, args.output, opset=args.opset, check=not args.no_check)
        print(json.dumps(report, indent=2))
        return 0
    if args.command == "predict":
        return predict_main(args)
    if args.command == "serve":
        return serve_main(args)
    if args.command == "audit":
        return audit_main(args)
    if args.command == "monitor":
        return monitor_main(args)
    if args.command == "refit-conformal":
        return refit_conformal_main(args)
    return evaluate_main(args)
