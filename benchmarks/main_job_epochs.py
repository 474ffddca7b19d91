"""The main job's budget against the toolkit's own advice: 2 epochs (the recipe) vs 3, per seed.

    python benchmarks/main_job_epochs.py --settle_s 30        # 4 runs (~25 min on 2 cores)
    python benchmarks/main_job_epochs.py --epochs 1,2 --seeds 42 --max_train_samples 256 \\
        --max_eval_samples 64 --output_dir /tmp/epochs            # smoke run

Issue 32, item 3: ``make sentiment`` on its defaults ended with "the model had not finished
fitting. try: more epochs". Each arm is the main job (``recipes/sentiment.py`` on its defaults,
TF-IDF baseline included) with only ``--num_train_epochs`` and ``--seed`` set, one process timed
end to end. Recorded per run: test accuracy, the validation accuracy of every epoch, the
training phase and whole-process seconds, and what the summary's advice
(``nlp_transfer.training.advice``) says about the run.

Writes ``<output_dir>/main_job_epochs.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import harness


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", default="2,3", help="Comma list of --num_train_epochs.")
    parser.add_argument("--seeds", default="42,43", help="Comma list of seeds.")
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    harness.harness_arguments(parser, repeats=1)
    return parser.parse_args(argv)


def arm(args, work: Path, epochs: int, seed: int) -> harness.Arm:
    run_dir = work / f"epochs{epochs}-seed{seed}"
    caps = [
        f"--{k}={v}" for k in ("max_train_samples", "max_eval_samples") if (v := getattr(args, k))
    ]
    command = [
        sys.executable, str(harness.REPO / "recipes" / "sentiment.py"),
        f"--output_dir={run_dir}", f"--seed={seed}", f"--num_train_epochs={epochs}", *caps,
    ]  # fmt: skip
    return harness.Arm(
        name=f"epochs_{epochs}",
        command=command,
        metrics_path=run_dir / "metrics.json",
        phases=harness.phases_from_ours,
        extra={"epochs": epochs, "seed": seed},
    )


def describe(record: dict) -> dict:
    """The run's test accuracy, validation curve and the advice its summary printed."""
    from nlp_transfer.training.advice import advice

    metrics = record.pop("metrics")
    return {
        "accuracy": metrics["test"]["accuracy"],
        "validation_accuracy": [h.get("eval_accuracy") for h in metrics["validation"]],
        "train_accuracy": [h.get("train_accuracy") for h in metrics["validation"]],
        "best_epoch": metrics["best_epoch"],
        "advice": advice(metrics),
    }


def summary(records: list[dict]) -> list[dict]:
    rows = harness.per_seed_rows(records, lambda r: r["accuracy"])
    for row in rows:
        mine = [r for r in records if r["arm"] == row["arm"]]
        row["advised_more_epochs"] = sum(bool(r["advice"]) for r in mine)
    return rows


def markdown(rows: list[dict], records: list[dict], cpu: str) -> str:
    table = harness.markdown_table(
        ["arm", "test accuracy, mean ± std (per seed)", "training s (median)",
         "whole process s (median)", "runs advised more epochs"],
        [
            [*harness.per_seed_cells(row), f"{row['advised_more_epochs']} of {len(row['seeds'])}"]
            for row in rows
        ],
    )  # fmt: skip
    curves = "\n".join(
        f"- {r['arm']}, seed {r['seed']}: validation accuracy "
        + " -> ".join(f"{v:.4f}" for v in r["validation_accuracy"])
        + "; training accuracy "
        + " -> ".join(f"{v:.4f}" for v in r["train_accuracy"] if v is not None)
        + (f"; advice: {' '.join(r['advice'])}" if r["advice"] else "; no advice")
        for r in records
    )
    return f"On {cpu}; `*`: some run started on a loaded machine.\n\n{table}\n\n{curves}\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, machine = harness.run_info(script="main_job_epochs.py"), harness.machine()
    work, log_dir = harness.workspace(args, "main_job_epochs")
    records = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for epochs in (int(e) for e in args.epochs.split(",")):
            record = harness.run_arm(
                arm(args, work, epochs, seed), log_dir, 0, **harness.harness_kwargs(args)
            )
            record |= describe(record)
            print(f"{record['arm']} seed {seed}: accuracy {record['accuracy']:.4f}, "
                  f"{record['wall_s']:.0f} s", flush=True)  # fmt: skip
            records.append(record)
    rows = summary(records)
    settings = {"epochs": args.epochs, "seeds": args.seeds}
    document = harness.result_document(info, machine, settings, summary=rows, records=records)
    md = markdown(rows, records, machine["cpu"])
    paths = harness.write_result("main_job_epochs", document, md, Path(args.output_dir))
    print(md)
    print(f"wrote {paths[0]} and {paths[1]}")
    return document


if __name__ == "__main__":
    main()
