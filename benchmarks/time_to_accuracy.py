"""Time to the Trainer's best accuracy on the main job: ours against the Hugging Face ``Trainer``.

    python benchmarks/time_to_accuracy.py --settle_s 30     # 12 runs (~45 min on 2 cores)
    python benchmarks/time_to_accuracy.py --runs no:1 --max_train_samples 256 \\
        --max_eval_samples 64 --output_dir /tmp/tta             # smoke run

Issue 32, item 8. The main job's data (``rotten_tomatoes_sentences``, the recipe's seeded split)
and model, full fine-tuning at the recipe's rate (5e-5, batch 32). Each system is run at every
``--runs`` entry, ``precision:epochs`` (``no`` is float32; ``bf16`` is autocast, on both sides):

- ``hf_trainer``: ``hf_trainer_worker.py``, the Trainer at its best (length-grouped batches,
  fused AdamW, 10% warm-up, best epoch kept);
- ``ours``: ``recipes/sentiment.py`` with ``--num_train_epochs`` and ``--mixed_precision`` set,
  the TF-IDF baseline and checkpoints off (the Trainer has neither).

Each run is one process, timed end to end (start-up, data, training, test). The **target** is
the Trainer's best test accuracy over its runs; a system's **time to the target** is the
whole-process time of its fastest run whose test accuracy reaches the target (none when no run
does). The goal of the issue: ours at most 0.5x the Trainer's time.

Writes ``<output_dir>/time_to_accuracy.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import harness

HERE = Path(__file__).resolve().parent
PRECISION_NAMES = {"no": "float32", "bf16": "bf16"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs",
        default="no:1,no:2,no:3,bf16:1,bf16:2,bf16:3",
        help="Comma list of precision:epochs, run by both systems.",
    )
    parser.add_argument("--systems", default="hf_trainer,ours")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    harness.harness_arguments(parser, repeats=1)
    args = parser.parse_args(argv)
    args.run_list = []
    for item in args.runs.split(","):
        precision, _, epochs = item.partition(":")
        if precision not in PRECISION_NAMES or not epochs.isdigit():
            parser.error(f"--runs: {item!r} is not precision:epochs with precision no or bf16")
        args.run_list.append((precision, int(epochs)))
    return args


def arm(system: str, precision: str, epochs: int, args, work: Path) -> harness.Arm:
    name = f"{system}-{PRECISION_NAMES[precision]}-e{epochs}"
    extra = {"system": system, "precision": precision, "epochs": epochs}
    if system == "ours":
        run_dir = work / name
        caps = [
            f"--{k}={v}"
            for k in ("max_train_samples", "max_eval_samples")
            if (v := getattr(args, k))
        ]
        command = [
            sys.executable, str(harness.REPO / "recipes" / "sentiment.py"),
            f"--output_dir={run_dir}", f"--seed={args.seed}", f"--num_train_epochs={epochs}",
            f"--mixed_precision={precision}", f"--learning_rate={args.learning_rate}",
            "--save_strategy=no", "--run_baseline=false", *caps,
        ]  # fmt: skip
        return harness.Arm(
            name, command, run_dir / "metrics.json", harness.phases_from_ours, extra=extra
        )
    metrics = work / f"{name}.json"
    spec = {
        "setting": "full",
        "dataset_name": "rotten_tomatoes_sentences",
        "seed": args.seed,
        "epochs": epochs,
        "batch_size": 32,
        "learning_rate": args.learning_rate,
        "max_train_samples": args.max_train_samples,
        "max_eval_samples": args.max_eval_samples,
        "metrics_path": str(metrics),
        "bf16": precision == "bf16",
    }
    command = [sys.executable, str(HERE / "hf_trainer_worker.py"), json.dumps(spec)]
    return harness.Arm(name, command, metrics, lambda m, log: m.get("phases", {}), extra=extra)


def time_to_target(records: list[dict]) -> dict:
    """The target (the Trainer's best test accuracy) and each system's time to reach it."""
    trainer = [r for r in records if r["system"] == "hf_trainer"]
    target = max(r["accuracy"] for r in trainer) if trainer else None
    out = {"target_accuracy": target, "systems": {}}
    for system in dict.fromkeys(r["system"] for r in records):
        reached = [r for r in records if r["system"] == system and r["accuracy"] >= (target or 0)]
        fastest = min(reached, key=lambda r: r["wall_s"]) if reached and target else None
        out["systems"][system] = {
            "run": fastest["arm"] if fastest else None,
            "wall_s": fastest["wall_s"] if fastest else None,
            "best_accuracy": max(r["accuracy"] for r in records if r["system"] == system),
        }
    ours, peer = out["systems"].get("ours"), out["systems"].get("hf_trainer")
    if ours and peer and ours["wall_s"] and peer["wall_s"]:
        out["ours_time_over_trainer"] = ours["wall_s"] / peer["wall_s"]
        out["goal_met"] = out["ours_time_over_trainer"] <= 0.5
    return out


def markdown(records: list[dict], result: dict, cpu: str) -> str:
    table = harness.markdown_table(
        ["run", "test accuracy", "whole process s", "training s", "reaches the target"],
        [
            [
                r["arm"] + (" *" if r["loaded"] else ""),
                f"{r['accuracy']:.4f}",
                f"{r['wall_s']:.0f}",
                f"{r['phases'].get('training', float('nan')):.0f}",
                "yes" if result["target_accuracy"] and r["accuracy"] >= result["target_accuracy"]
                else "no",
            ]
            for r in records
        ],
    )  # fmt: skip
    lines = [f"On {cpu}; `*`: started on a loaded machine.\n", table, ""]
    target = result["target_accuracy"]
    if target is not None:
        lines.append(f"Target: the Trainer's best test accuracy, {target:.4f}.\n")
        for system, row in result["systems"].items():
            reached = f"{row['wall_s']:.0f} s ({row['run']})" if row["wall_s"] else "not reached"
            lines.append(f"- {system}: {reached}; best accuracy {row['best_accuracy']:.4f}")
        if "ours_time_over_trainer" in result:
            lines.append(
                f"\nOurs / the Trainer's time to the target: {result['ours_time_over_trainer']:.2f}x "
                f"(goal: at most 0.5x; {'met' if result['goal_met'] else 'not met'})."
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, machine = harness.run_info(script="time_to_accuracy.py"), harness.machine()
    work, log_dir = harness.workspace(args, "time_to_accuracy")
    records = []
    for system in args.systems.split(","):
        for precision, epochs in args.run_list:
            record = harness.run_arm(
                arm(system, precision, epochs, args, work),
                log_dir,
                0,
                **harness.harness_kwargs(args),
            )
            record["accuracy"] = record.pop("metrics")["test"]["accuracy"]
            print(f"{record['arm']}: accuracy {record['accuracy']:.4f}, {record['wall_s']:.0f} s",
                  flush=True)  # fmt: skip
            records.append(record)
    result = time_to_target(records)
    settings = {k: v for k, v in vars(args).items() if k not in ("output_dir", "log_dir")}
    document = harness.result_document(info, machine, settings, result=result, records=records)
    md = markdown(records, result, machine["cpu"])
    paths = harness.write_result("time_to_accuracy", document, md, Path(args.output_dir))
    print(md)
    print(f"wrote {paths[0]} and {paths[1]}")
    return document


if __name__ == "__main__":
    main()
