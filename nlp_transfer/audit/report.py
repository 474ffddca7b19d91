"""The audit's files: ``audit.md`` (with plots), ``audit.json``, ``suspects.csv``, and the
cleaned training file written on request (never over an existing file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import ConfusionMatrixDisplay

from ..data.read import FILE_FORMATS, to_table
from .data import AuditData
from .findings import audit_summary, suspects_table

__all__ = [
    "audit_summary",
    "check_cleaned_path",
    "format_audit_summary",
    "suspects_table",
    "write_audit",
    "write_cleaned_file",
]

SHOWN = 15  # rows of each table in audit.md
TEXT_CHARS = 100


def check_cleaned_path(path, sources) -> Path | None:
    """``--write_cleaned``'s file, checked before any work.

    Raises:
        FileExistsError: The file exists (the audit never overwrites a file).
        ValueError: Its extension is not one the toolkit reads back.
    """
    if path is None:
        return None
    path = Path(path).expanduser()
    if path.exists():
        raise FileExistsError(
            f"--write_cleaned {path} exists: the audit never overwrites a file; name a new one."
        )
    if path.suffix.lower() not in FILE_FORMATS:
        raise ValueError(
            f"--write_cleaned {path}: use one of {', '.join(sorted(FILE_FORMATS))} as extension."
        )
    return path


def _clip(text: str) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    if frame.empty:
        return "_none_\n"
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for _, row in frame.head(SHOWN).iterrows():
        lines.append("| " + " | ".join(_clip(row[c]) for c in columns) + " |")
    more = len(frame) - SHOWN
    if more > 0:
        lines.append(f"\n{more:,} more in `suspects.csv`.")
    return "\n".join(lines) + "\n"


def _plots(out: Path, rows: AuditData, labels: dict | None, outliers: dict) -> list[str]:
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    written = []
    if labels is not None:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        flagged = np.zeros(len(labels["quality"]), dtype=bool)
        flagged[labels["issues"]] = True
        bins = np.linspace(0, 1, 41)
        ax.hist(labels["quality"][~flagged], bins=bins, label="not flagged", color="tab:blue")
        ax.hist(labels["quality"][flagged], bins=bins, label="likely mislabelled", color="tab:red")
        ax.set(xlabel="label quality (cleanlab self-confidence)", ylabel="training rows")
        ax.set_yscale("log")
        ax.legend()
        _save(fig, plots / "label_quality.png")
        written.append("plots/label_quality.png")
    if labels is not None and labels["noise_matrix"] is not None and len(rows.label_names) <= 30:
        size = max(4.0, 0.45 * len(rows.label_names) + 2)
        fig, ax = plt.subplots(figsize=(size, size))
        display = ConfusionMatrixDisplay(labels["noise_matrix"], display_labels=rows.label_names)
        display.plot(ax=ax, values_format=".2f", colorbar=False, xticks_rotation="vertical")
        ax.set(xlabel="true label (estimated)", ylabel="given label")
        ax.set_title("P(given label | true label)")
        _save(fig, plots / "noise_matrix.png")
        written.append("plots/noise_matrix.png")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    train = rows.mask("train")
    bins = np.linspace(0, 1, 41)
    ax.hist(outliers["ood_score"][train], bins=bins, alpha=0.7, label="train")
    if (~train).any():
        ax.hist(outliers["ood_score"][~train], bins=bins, alpha=0.7, label="other splits")
    ax.axvline(outliers["ood_threshold"], color="tab:red", linestyle="--", label="flagged below")
    ax.set(xlabel="out-of-distribution score (low: atypical)", ylabel="rows")
    ax.set_yscale("log")
    ax.legend()
    _save(fig, plots / "ood_scores.png")
    written.append("plots/ood_scores.png")
    return written


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_audit_summary(summary: dict) -> str:
    """The lines the CLI prints (and ``train --audit`` logs)."""
    rows = ", ".join(f"{s} {n:,}" for s, n in summary["rows"].items())
    dup = summary["duplicates"]
    lines = [f"Audit of {rows} rows ({summary['problem_type']})"]
    issues = summary["label_issues"]
    if issues is not None:
        lines.append(
            f"  likely label errors: {issues['flagged']:,} "
            f"({issues['share_of_training_rows']:.1%} of training rows; cleanlab)"
        )
    leaked = ", ".join(f"{s} {n:,}" for s, n in dup["leaked_rows"].items()) or "none"
    lines += [
        f"  duplicates: {dup['exact_pairs']:,} exact and {dup['near_pairs']:,} near pairs, "
        f"{dup['conflicting_rows']:,} rows with conflicting labels",
        f"  leaked from training (rows with a training duplicate): {leaked}",
        "  outliers: " + ", ".join(f"{s} {n:,}" for s, n in summary["outliers"]["flagged"].items()),
        f"  a cleaned training file keeps {summary['cleaned']['training_rows_kept']:,} rows "
        f"(drops {summary['cleaned']['training_rows_dropped']:,})",
    ]
    return "\n".join(lines)


def _markdown(summary: dict, suspects: pd.DataFrame, plots: list[str]) -> str:
    columns = ["split", "row", "score", "label", "suggested_label", "text"]
    parts = ["# Data audit", "", "```", format_audit_summary(summary), "```", ""]
    parts += [
        "## Likely label errors",
        "",
        "Ranked by cleanlab (confident learning) on out-of-fold probabilities; `score` is the "
        "label quality (the out-of-fold probability of the given label).",
        "",
        _table(suspects[suspects.reason == "label_issue"], columns),
    ]
    for reason, title in (
        ("conflicting_duplicate", "Duplicates with conflicting labels"),
        ("leakage", "Leakage: training rows duplicated in validation or test"),
        ("duplicate", "Other duplicates"),
        ("outlier", "Out-of-distribution texts"),
    ):
        subset = suspects[suspects.reason == reason]
        parts += [
            f"## {title}",
            "",
            _table(subset, ["split", "row", "score", "label", "text", "detail"]),
        ]
    parts += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    parts += [
        "## Settings",
        "",
        "```json",
        json.dumps(summary["settings"], indent=2),
        "```",
        "",
    ]
    return "\n".join(parts)


def write_audit(
    out: Path,
    rows: AuditData,
    labels: dict | None,
    outliers: dict,
    suspects: pd.DataFrame,
    summary: dict,
) -> None:
    """Write ``suspects.csv``, ``plots/``, ``audit.md`` and ``audit.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    suspects.to_csv(out / "suspects.csv", index=False)
    plots = _plots(out, rows, labels, outliers)
    (out / "audit.md").write_text(_markdown(summary, suspects, plots), encoding="utf-8")
    (out / "audit.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")


def write_cleaned_file(
    path: Path, rows: AuditData, suspects: pd.DataFrame, data, encoding: str, cache_dir
) -> Path:
    """The training rows the audit keeps, every column of the source, to a new file.

    A built-in set (or a Dataset without its file) gives ``text`` (``text_pair``) and ``label``
    (names; multi-label joined by ``,``).
    """
    dropped = set(suspects.loc[suspects.dropped & (suspects.split == "train"), "row"].tolist())
    if isinstance(data, str | os.PathLike) and Path(data).expanduser().is_file():
        table = to_table(
            data, "train data", encoding, None if cache_dir is None else str(cache_dir)
        )
        frame = table.to_pandas() if not isinstance(table, pd.DataFrame) else table
    elif isinstance(data, pd.DataFrame):
        frame = data
    else:
        frame = _builtin_frame(rows)
    keep = [i for i in range(len(frame)) if i not in dropped]
    frame = frame.iloc[keep]
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".csv", ".tsv"):
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=suffix == ".jsonl", force_ascii=False)
    return path


def _builtin_frame(rows: AuditData) -> pd.DataFrame:
    train = rows.mask("train")
    texts = [t for t, keep in zip(rows.texts, train, strict=True) if keep]
    labels = [y for y, keep in zip(rows.labels, train, strict=True) if keep]
    names = rows.label_names
    if rows.problem_type == "multi_label_classification":
        labels = [",".join(names[i] for i in y) for y in labels]
    elif rows.problem_type != "regression":
        labels = [names[int(y)] for y in labels]
    if texts and not isinstance(texts[0], str):
        first, second = zip(*texts, strict=True)
        return pd.DataFrame({"text": first, "text_pair": second, "label": labels})
    return pd.DataFrame({"text": texts, "label": labels})
