"""The defaults for a user's own data on a many-class set of long texts, against TF-IDF.

    python benchmarks/defaults_many_class.py                  # runs it (~45-60 min on 2 cores)
    python benchmarks/defaults_many_class.py --from_run outputs/ng4000   # summarise a finished run

One ``nlp-transfer train`` process with no training settings at all: the budget (epochs as a
maximum, early stopping, best epoch kept) and the learning rate come from the data
(``nlp_transfer/text/defaults.py``). The data: 4,000 posts drawn (seeded) from the built-in 20
Newsgroups training split (20 classes; median 327 tokens, 92% longer than the default 128-token
window), validation split off the training split, scored on the whole test split (7,532 later
posts, split by date). The TF-IDF + logistic regression baseline is fitted in the same run on the
same 4,000 posts.

``--from_run`` reads an existing run's ``metrics.json`` and ``config.yaml`` instead of training
(the result then says so, with the run's own log line of the command).

Writes ``<output_dir>/defaults_many_class.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import harness

COMMAND = ["train", "--dataset_name", "20_newsgroups", "--max_train_samples", "4000"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--from_run", default=None, help="A finished run's output_dir.")
    harness.harness_arguments(parser, repeats=1)
    return parser.parse_args(argv)


def run(args) -> tuple[Path, dict | None]:
    """Train (or take ``--from_run``); returns the run directory and the harness record."""
    if args.from_run:
        return Path(args.from_run), None
    run_dir = Path(tempfile.mkdtemp(prefix="defaults_many_class-")) / "run"
    arm = harness.Arm(
        name="defaults",
        command=[sys.executable, "-m", "nlp_transfer.cli", *COMMAND, f"--output_dir={run_dir}"],
        metrics_path=run_dir / "metrics.json",
        phases=harness.phases_from_ours,
    )
    log_dir = Path(args.log_dir) if args.log_dir else run_dir.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    record = harness.run_arm(arm, log_dir, 0, **harness.harness_kwargs(args))
    record.pop("metrics")
    return run_dir, record


def markdown(metrics: dict, config: str, record: dict | None, from_run: str | None) -> str:
    test, base = metrics["test"], metrics["baseline"]
    epochs = [
        [
            h["epoch"],
            f"{h['train_loss']:.4f}",
            f"{h['eval_accuracy']:.4f}",
            f"{h['eval_f1_macro']:.4f}",
        ]
        for h in metrics["validation"]
    ]
    chosen = [
        line for line in config.splitlines() if line.split(":")[0] in ("learning_rate", "num_train_epochs", "early_stopping_patience", "per_device_train_batch_size", "max_seq_length")
    ]  # fmt: skip
    how = (
        f"Summarised from the finished run `{from_run}` (`nlp-transfer {' '.join(COMMAND)}`)."
        if from_run
        else f"`nlp-transfer {' '.join(COMMAND)}`, {record['wall_s'] / 60:.1f} min end to end"
        + (" (loaded machine)" if record["loaded"] else "")
        + "."
    )
    lines = [
        how,
        "\nSettings the run chose from the data (`config.yaml`): "
        + ", ".join(f"`{c.strip()}`" for c in chosen)
        + f". Best epoch {metrics['best_epoch']}"
        + (", stopped early" if metrics.get("stopped_early") else "")
        + ".\n",
        harness.markdown_table(
            ["model", "test accuracy", "test macro-F1"],
            [
                [
                    "fine-tuned all-MiniLM-L6-v2 (defaults)",
                    f"{test['accuracy']:.4f}",
                    f"{test['f1_macro']:.4f}",
                ],
                [
                    "TF-IDF + logistic regression",
                    f"{base['accuracy']:.4f}",
                    f"{base['f1_macro']:.4f}",
                ],
            ],
        ),
        f"\nTest split: {test['num_examples']:,} posts. Training "
        f"{metrics['timings']['train_runtime_s'] / 60:.1f} min, whole run "
        f"{metrics['timings']['total_runtime_s'] / 60:.1f} min, baseline "
        f"{metrics['timings']['baseline_runtime_s']:.0f} s.\n\nValidation per epoch:\n",
        harness.markdown_table(["epoch", "train loss", "accuracy", "macro-F1"], epochs),
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, machine = harness.run_info(script="defaults_many_class.py"), harness.machine()
    run_dir, record = run(args)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = (run_dir / "config.yaml").read_text()
    summary = {
        "test": {k: metrics["test"][k] for k in ("num_examples", "accuracy", "f1_macro")},
        "baseline": {k: metrics["baseline"][k] for k in ("accuracy", "f1_macro", "C")},
        "validation": metrics["validation"],
        "best_epoch": metrics["best_epoch"],
        "timings": metrics["timings"],
    }
    document = harness.result_document(
        info,
        machine,
        {"command": COMMAND, "from_run": args.from_run, "config_yaml": config},
        summary=summary,
        records=[record] if record else [],
    )
    md = markdown(metrics, config, record, args.from_run)
    paths = harness.write_result("defaults_many_class", document, md, Path(args.output_dir))
    print(md)
    print(f"wrote {paths[0]} and {paths[1]}")
    return document


if __name__ == "__main__":
    main()
