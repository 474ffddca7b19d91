"""The audit's findings as one table (``suspects.csv``), the rows a cleaned training file drops,
and the counts of ``audit.json``.

What a cleaned training file drops (nothing else; outliers and long texts are only reported):

- the training rows cleanlab ranks as likely mislabelled;
- within a group of duplicate training rows, every row but the one whose label cleanlab trusts
  most (the first, without label scores);
- training rows that duplicate a validation or test row (the evaluation copy stays, so that
  evaluation no longer measures memory).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data import AuditData

REASONS = ("label_issue", "conflicting_duplicate", "leakage", "duplicate", "outlier")
MAX_MEMBERS_SHOWN = 5


def _label_text(rows: AuditData, label) -> str:
    names = rows.label_names
    if rows.problem_type == "regression":
        return f"{float(label):g}"
    if isinstance(label, tuple):
        return ",".join(names[i] for i in label)
    return names[int(label)]


def _dropped(rows: AuditData, labels: dict | None, members: dict[int, list[int]]) -> np.ndarray:
    """``(n,)`` bool: the pooled rows a cleaned training file leaves out."""
    n = len(rows.texts)
    drop = np.zeros(n, dtype=bool)
    train = rows.splits == "train"
    quality = np.ones(n)
    if labels is not None:
        drop[labels["rows"][labels["issues"]]] = True
        quality[labels["rows"]] = labels["quality"]
    for rows_of_group in members.values():
        in_train = [i for i in rows_of_group if train[i]]
        if len(in_train) < len(rows_of_group):  # a validation or test copy: leakage
            drop[in_train] = True
        elif len(in_train) > 1:
            keep = max(in_train, key=lambda i: (quality[i], -i))
            drop[[i for i in in_train if i != keep]] = True
    return drop & train


def _members(rows: AuditData, group: list[int], i: int) -> str:
    others = [j for j in group if j != i]
    shown = ", ".join(f"{rows.splits[j]} row {rows.rows[j]}" for j in others[:MAX_MEMBERS_SHOWN])
    more = len(others) - MAX_MEMBERS_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _duplicate_reason(rows: AuditData, duplicates: dict, group: list[int], i: int) -> str:
    if duplicates["conflicting"][i]:
        return "conflicting_duplicate"
    splits = {rows.splits[j] for j in group}
    if "train" in splits and len(splits) > 1:  # training text also in validation or test
        return "leakage"
    return "duplicate"


def suspects_table(
    rows: AuditData, labels: dict | None, duplicates: dict, outliers: dict
) -> pd.DataFrame:
    """One row per finding, most important reason first, then most suspect first.

    ``score`` means, by reason: ``label_issue``, cleanlab's label quality (low: suspect);
    the duplicate reasons, the highest cosine to another member (1 for exact copies);
    ``outlier``, the out-of-distribution score (low: atypical). ``dropped`` says whether a
    cleaned training file leaves the row out (:data:`__doc__`).

    Returns:
        Columns ``split``, ``row``, ``reason``, ``score``, ``text``, ``label``,
        ``suggested_label``, ``detail``, ``dropped``.
    """
    texts = rows.flat_texts()
    members = duplicates["members"]
    dropped = _dropped(rows, labels, members)
    records = []

    def add(i, reason, score, detail, suggested=""):
        records.append(
            {
                "split": rows.splits[i],
                "row": int(rows.rows[i]),
                "reason": reason,
                "score": round(float(score), 4),
                "text": texts[i],
                "label": _label_text(rows, rows.labels[i]),
                "suggested_label": suggested,
                "detail": detail,
                "dropped": bool(dropped[i]),
            }
        )

    if labels is not None:
        for rank, k in enumerate(labels["issues"]):
            i = int(labels["rows"][k])
            suggested = labels["suggested"][k]
            if isinstance(suggested, np.ndarray):  # multi-label: the labels at >= 0.5
                suggested = tuple(np.flatnonzero(suggested).tolist())
            detail = f"rank {rank + 1} by cleanlab self-confidence"
            add(i, "label_issue", labels["quality"][k], detail, _label_text(rows, suggested))
    best_cosine = _best_cosines(len(rows.texts), duplicates["pairs"])
    for group in members.values():
        for i in group:
            reason = _duplicate_reason(rows, duplicates, group, i)
            add(i, reason, best_cosine[i], f"duplicate group with {_members(rows, group, i)}")
    for i in np.flatnonzero(outliers["ood"]):
        detail = f"out-of-distribution score below {outliers['ood_threshold']:.4f}"
        add(int(i), "outlier", outliers["ood_score"][i], detail)
    table = pd.DataFrame.from_records(
        records,
        columns=[
            "split",
            "row",
            "reason",
            "score",
            "text",
            "label",
            "suggested_label",
            "detail",
            "dropped",
        ],
    )
    order = {r: k for k, r in enumerate(REASONS)}
    table["_order"] = table["reason"].map(order)
    ascending = table["reason"].isin(["label_issue", "outlier"])
    table["_key"] = np.where(ascending, table["score"], -table["score"])
    table = table.sort_values(["_order", "_key", "split", "row"], kind="stable")
    return table.drop(columns=["_order", "_key"]).reset_index(drop=True)


def _best_cosines(n: int, pairs: list[dict]) -> np.ndarray:
    best = np.zeros(n)
    for pair in pairs:
        for i in (pair["a"], pair["b"]):
            best[i] = max(best[i], pair["cosine"])
    return best


def audit_summary(
    rows: AuditData, labels: dict | None, duplicates: dict, outliers: dict, suspects: pd.DataFrame
) -> dict:
    """The counts of ``audit.json``."""
    splits = rows.split_names()
    train = int(rows.mask("train").sum())
    summary = {
        "problem_type": rows.problem_type,
        "rows": {s: int(rows.mask(s).sum()) for s in splits},
        "sources": rows.sources,
        "empty_texts_dropped": rows.dropped_empty,
        "duplicates": duplicates["counts"],
        "outliers": {
            "ood_threshold": round(float(outliers["ood_threshold"]), 4),
            "flagged": {s: int((outliers["ood"] & rows.mask(s)).sum()) for s in splits},
        },
        "lengths": outliers["length_report"],
        "cleaned": {
            "training_rows_dropped": int(suspects.loc[suspects["dropped"], "row"].nunique()),
            "training_rows_kept": train - int(suspects.loc[suspects["dropped"], "row"].nunique()),
        },
    }
    if labels is None:
        summary["label_issues"] = None
        return summary
    summary["label_issues"] = {
        "flagged": len(labels["issues"]),
        "share_of_training_rows": round(len(labels["issues"]) / max(train, 1), 4),
        "estimated_noise_rate": round(labels["estimated_noise_rate"], 4),
        "out_of_fold_accuracy": _oof_accuracy(rows, labels),
        "noise_matrix": None
        if labels["noise_matrix"] is None
        else np.round(labels["noise_matrix"], 4).tolist(),
    }
    return summary


def _oof_accuracy(rows: AuditData, labels: dict) -> float | None:
    if rows.problem_type != "single_label_classification":
        return None
    given = rows.class_ids("train")
    return round(float((labels["pred_probs"].argmax(1) == given).mean()), 4)
