"""Command line: ``python -m nlp_transfer predict|evaluate ...``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _read_texts(path: str, text_column: str) -> list[str]:
    """One text per line for ``.txt``; a column of a CSV/TSV/JSONL/Parquet file otherwise."""
    from .data.custom import read_table

    if Path(path).suffix.lower() == ".txt":
        return [
            line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()
        ]
    table = read_table(path)
    if text_column not in table.column_names:
        raise SystemExit(
            f"error: {path} has no column {text_column!r} (columns: {', '.join(table.column_names)}); "
            "pass --text_column."
        )
    return [str(t) for t in table[text_column]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nlp_transfer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="Classify texts with a saved model (prints JSON lines).")
    p.add_argument("--model_dir", required=True, help="A run's output_dir.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", help="A text to classify (repeatable).")
    source.add_argument("--file", help=".txt (one text per line) or .csv/.tsv/.jsonl/.parquet.")
    p.add_argument("--text_column", default="text", help="Text column of --file (tables only).")
    p.add_argument("--batch_size", type=int, default=64, help="Texts per forward pass.")
    p.add_argument("--output", help="Write JSON lines here instead of standard output.")
    e = sub.add_parser("evaluate", help="Evaluate a saved model on a labelled file.")
    e.add_argument("--model_dir", required=True, help="A run's output_dir.")
    e.add_argument("--file", required=True, help="Labelled .csv/.tsv/.jsonl/.parquet file.")
    e.add_argument("--text_column", default="text")
    e.add_argument("--label_column", default="label")
    e.add_argument("--batch_size", type=int, default=64)
    e.add_argument("--output_dir", help="Write metrics.json and plots/ here.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size <= 0:
        raise SystemExit("error: --batch_size must be positive.")
    if args.command == "predict":
        from .predict import predict

        texts = args.text or _read_texts(args.file, args.text_column)
        results = predict(args.model_dir, texts, batch_size=args.batch_size)
        lines = [
            json.dumps({"text": t, **r}, ensure_ascii=False)
            for t, r in zip(texts, results, strict=True)
        ]
        if args.output:
            Path(args.output).write_text("\n".join(lines) + "\n", encoding="utf-8")
        else:
            print("\n".join(lines))
        return 0
    from .predict import evaluate_saved_model

    metrics = evaluate_saved_model(
        args.model_dir,
        args.file,
        text_column=args.text_column,
        label_column=args.label_column,
        batch_size=args.batch_size,
        output_dir=args.output_dir,
    )
    summary = {k: v for k, v in metrics.items() if isinstance(v, int | float) or v is None}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
