"""A hyperparameter search against the task's default configuration, on the same test split.

    python benchmarks/search_vs_default.py                         # 12 trials, sentiment, 2,000 examples
    python benchmarks/search_vs_default.py --n_trials 2 --max_train_samples 64 \\
        --max_eval_samples 32 --output_dir /tmp/svd                # smoke run

Two processes through the shared harness (``harness.py``): ``nlp-transfer search`` (Optuna TPE,
median pruning on the per-epoch validation metric, the default search space of
``nlp_transfer/configs/search_space.yaml``) and ``nlp-transfer train`` with the task's defaults.
Both see the same training subset (the first ``--max_train_samples`` of the seeded training
split), the same validation and test splits, the same epochs and seed; the search chooses by
validation only, and the best trial's test metrics are read from its own run directory. The
search's plots (optimisation history, parameter importances) are copied beside the results.

Writes ``<output_dir>/search_<task>.{json,md}`` and ``search_<task>_*.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import harness


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="sentiment")
    parser.add_argument("--n_trials", type=int, default=12)
    parser.add_argument("--max_train_samples", type=int, default=2000)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--num_train_epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    harness.harness_arguments(parser, repeats=1)
    return parser.parse_args(argv)


def common_flags(args, output_dir: Path) -> list[str]:
    """Flags both arms share: data subset, epochs, seed, no checkpoints, no baseline."""
    flags = [
        f"--task={args.task}",
        f"--max_train_samples={args.max_train_samples}",
        f"--num_train_epochs={args.num_train_epochs}",
        f"--seed={args.seed}",
        f"--output_dir={output_dir}",
        "--save_strategy=no",
        "--no_run_baseline",
    ]
    if args.max_eval_samples:
        flags.append(f"--max_eval_samples={args.max_eval_samples}")
    return flags


def summary_of(search_dir: Path, default_metrics: dict) -> dict:
    """Best trial vs default: validation objective and test metrics, plus every trial."""
    search = json.loads((search_dir / "search.json").read_text())
    best = search["best_trial"]
    best_metrics = json.loads(
        (search_dir / "trials" / f"trial_{best['number']}" / "metrics.json").read_text()
    )

    def row(name: str, metrics: dict, params: dict | str) -> dict:
        return {
            "configuration": name,
            "validation_best": metrics["best_metric"],
            "test_accuracy": metrics["test"]["accuracy"],
            "test_f1_macro": metrics["test"]["f1_macro"],
            "best_epoch": metrics["best_epoch"],
            "settings": params,
        }

    return {
        "objective": search["objective"],
        "rows": [
            row("default", default_metrics, "the task's defaults"),
            row(f"best trial ({best['number']})", best_metrics, best["params"]),
        ],
        "trials": search["trials"],
    }


def markdown(summary: dict, args, wall: dict) -> str:
    lines = [
        f"`{args.task}`: {args.n_trials} trials of Optuna TPE with median pruning, on the first "
        f"{args.max_train_samples:,} examples of the seeded training split, {args.num_train_epochs} "
        f"epochs each, seed {args.seed}; objective: {summary['objective']}. The default "
        "configuration and the best trial are scored on the same test split (the search never "
        f"sees it). Search {wall['search'] / 60:.1f} min, default run {wall['default']:.0f} s, "
        "end to end.\n",
    ]
    rows = [
        [
            r["configuration"],
            f"{r['validation_best']:.4f}",
            f"{r['test_accuracy']:.4f}",
            f"{r['test_f1_macro']:.4f}",
            r["best_epoch"],
            r["settings"]
            if isinstance(r["settings"], str)
            else ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in r["settings"].items()),
        ]
        for r in summary["rows"]
    ]  # fmt: skip
    headers = ["configuration", "validation (objective)", "test accuracy", "test macro-F1"]
    lines.append(harness.markdown_table([*headers, "best epoch", "settings"], rows))
    trial_rows = [
        [
            t["number"],
            t["state"],
            "—" if t["value"] is None else f"{t['value']:.4f}",
            t["epochs_reported"],
            "—" if t["duration_s"] is None else f"{t['duration_s']:.0f}",
            ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in t["params"].items()),
        ]
        for t in summary["trials"]
    ]  # fmt: skip
    lines.append("\nEvery trial:\n")
    headers = ["trial", "state", "validation", "epochs run", "seconds", "settings"]
    lines.append(harness.markdown_table(headers, trial_rows))
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, machine = harness.run_info(script="search_vs_default.py"), harness.machine()
    work, log_dir = harness.workspace(args, "search_vs_default")
    cli = [sys.executable, "-m", "nlp_transfer.cli"]
    search_dir, default_dir = work / "search", work / "default"
    arms = {
        "search": harness.Arm(
            name="search",
            command=[
                *cli,
                "search",
                *common_flags(args, search_dir),
                f"--n_trials={args.n_trials}",
            ],
            metrics_path=search_dir / "search.json",
        ),
        "default": harness.Arm(
            name="default",
            command=[*cli, "train", *common_flags(args, default_dir)],
            metrics_path=default_dir / "metrics.json",
        ),
    }
    start = time.perf_counter()
    records = {
        name: harness.run_arm(arm, log_dir, 0, **harness.harness_kwargs(args))
        for name, arm in arms.items()
    }
    info["wall_time_s"] = time.perf_counter() - start
    summary = summary_of(search_dir, records["default"]["metrics"])
    wall = {name: r["wall_s"] for name, r in records.items()}
    for r in records.values():
        r.pop("metrics")
    settings = {k: v for k, v in vars(args).items() if k not in ("output_dir", "log_dir")}
    document = harness.result_document(
        info, machine, settings, summary=summary, records=list(records.values())
    )
    out, stem = Path(args.output_dir), f"search_{args.task}"
    paths = harness.write_result(stem, document, markdown(summary, args, wall), out)
    for plot in sorted((search_dir / "plots").glob("*.png")):
        shutil.copy(plot, out / f"{stem}_{plot.name}")
    print((out / f"{stem}.md").read_text())
    print(f"wrote {paths[0]}, {paths[1]} and the plots; logs in {log_dir}")
    return document


if __name__ == "__main__":
    main()
