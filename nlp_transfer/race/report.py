"""The race's leaderboard: ``race.json``, ``metrics.json``'s ``race``, ``plots/race.png``, the
model card's section and the printed table."""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

STATE_ORDER = {"complete": 0, "pruned": 1, "failed": 2, "skipped": 3}
COLUMNS = ("candidate", "state", "value", "seconds", "trainable_params", "size_mb")


def leaderboard_rows(rows: list[dict], greater_is_better: bool) -> list[dict]:
    """Rows sorted best first: finished candidates by validation value, then pruned, failed
    and skipped ones (each row: ``candidate``, ``state``, ``value``, ``seconds``,
    ``trainable_params``, ``size_mb``, ``note``...)."""
    sign = -1 if greater_is_better else 1

    def key(row: dict):
        value = row.get("value")
        has_value = value is not None and row.get("state") in ("complete", "pruned")
        return (STATE_ORDER.get(row.get("state"), 9), 0 if has_value else 1, sign * (value or 0))

    return sorted(rows, key=key)


def markdown_table(board: list[dict], metric: str) -> str:
    """The leaderboard as a markdown table."""
    lines = [
        f"| strategy | state | validation {metric} | seconds | trainable params | stored MiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in board:
        value = "" if row.get("value") is None else f"{row['value']:.4f}"
        seconds = "" if row.get("seconds") is None else f"{row['seconds']:.0f}"
        params = "" if row.get("trainable_params") is None else f"{row['trainable_params']:,}"
        size = "" if row.get("size_mb") is None else f"{row['size_mb']:.1f}"
        state = row["state"] + (" (resumed)" if row.get("resumed") else "")
        if row.get("stopped_by_budget"):
            state += f" (the budget stopped it after epoch {row['stopped_by_budget']})"
        lines.append(f"| {row['candidate']} | {state} | {value} | {seconds} | {params} | {size} |")
    return "\n".join(lines)


def write_race_outputs(
    output_dir: Path,
    board: list[dict],
    winner: dict,
    metric: str,
    spent_s,
    budget,
    plots: bool,
    n_validation: int | None = None,
) -> dict:
    """Write the leaderboard everywhere it belongs and return the winner's updated metrics."""
    race = {
        "metric": f"validation {metric}",
        "n_validation": n_validation,
        "winner": winner["candidate"],
        "winner_reason": winner.get("reason", "best on validation"),
        "time_budget_s": None if budget is None else budget.total,
        "spent_s": spent_s,
        "leaderboard": board,
    }
    (output_dir / "race.json").write_text(json.dumps(race, indent=2, default=str) + "\n")
    metrics_path = output_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    metrics["race"] = race
    metrics_path.write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
    table = markdown_table(board, metric)
    _append_model_card(output_dir, winner, table, race)
    if plots:
        plot_race(board, metric, winner["candidate"], output_dir / "plots" / "race.png")
    logger.info(f"Strategy race (validation {metric}), winner {winner['candidate']}:\n{table}")
    return metrics


def _append_model_card(output_dir: Path, winner: dict, table: str, race: dict) -> None:
    card = output_dir / "README.md"
    text = card.read_text(encoding="utf-8") if card.is_file() else "# TF-IDF text classifier\n"
    budget = race["time_budget_s"]
    spent = race["spent_s"]
    timing = ""
    if budget is not None and spent is not None:
        timing = f" in {spent:.0f} s of a {budget:.0f} s budget"
    section = (
        "\n## Strategy race\n\n"
        f"This model is the winner of `--strategy auto` ({winner['candidate']}: "
        f"{winner.get('description', '')}){timing}, chosen on {race['metric']}: "
        f"{race['winner_reason']}. Every candidate's run is kept under `race/`.\n\n" + table + "\n"
    )
    card.write_text(text.rstrip("\n") + "\n" + section, encoding="utf-8")


def plot_race(board: list[dict], metric: str, winner: str, path: Path) -> Path | None:
    """Horizontal bars: each candidate's validation value, its seconds written beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in board if r.get("value") is not None]
    if not rows:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5))
    names = [r["candidate"] + (" (pruned)" if r["state"] == "pruned" else "") for r in rows]
    colors = ["tab:green" if r["candidate"] == winner else "tab:gray" for r in rows]
    values = [r["value"] for r in rows]
    axes.barh(names[::-1], values[::-1], color=colors[::-1])
    low = min(values)
    axes.set_xlim(left=min(0.0, low) if low < 0 else low * 0.9)
    for y, row in enumerate(rows[::-1]):
        axes.text(row["value"], y, f"  {row.get('seconds', 0):.0f} s", va="center", fontsize=8)
    axes.set_xlabel(f"validation {metric}")
    axes.set_title(f"Strategy race: {winner} wins")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
