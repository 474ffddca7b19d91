"""The main job in bf16 against float32, 3 seeds, ours and the Hugging Face ``Trainer`` alike.

    python benchmarks/bf16_main_job.py --settle_s 30      # 12 runs (~75 min on 2 cores)
    python benchmarks/bf16_main_job.py --trainer_seeds 42 # the Trainer on one seed (~40 min)
    python benchmarks/bf16_main_job.py --seeds 42 --max_train_samples 256 --max_eval_samples 64 \\
        --no_trainer --output_dir /tmp/bf16                # smoke run

Decides whether bf16 becomes the default where the hardware computes it natively (issue 32):
the main job (``recipes/sentiment.py`` on its defaults: the built-in Rotten Tomatoes sentences,
2 epochs at 5e-5) with ``--mixed_precision no`` and ``--mixed_precision bf16``, once per seed;
the bar is a mean test accuracy within 0.5 points of float32's. Beside it, the Trainer at its
best (``hf_trainer_worker.py``, full fine-tuning, the same epochs and rate) with ``bf16=False``
and ``bf16=True``, so that the speed-up is compared like for like. Each run is one process,
timed end to end; the training phase from each side's own log.

Writes ``<output_dir>/bf16_main_job.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import harness

HERE = Path(__file__).resolve().parent
PRECISIONS = ("no", "bf16")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="42,43,44", help="Comma list of seeds.")
    parser.add_argument("--num_train_epochs", type=int, default=2)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--no_trainer", action="store_true", help="Only our arms.")
    parser.add_argument(
        "--trainer_seeds", default=None, help="Seeds of the Trainer's arms (default: --seeds)."
    )
    harness.harness_arguments(parser, repeats=1)
    return parser.parse_args(argv)


def arms(args, work: Path, seed: int) -> list[harness.Arm]:
    """Ours in float32 and bf16, then (unless --no_trainer, or the seed is not one of
    --trainer_seeds) the Trainer in both."""
    out = []
    caps = []
    if args.max_train_samples:
        caps += [f"--max_train_samples={args.max_train_samples}"]
    if args.max_eval_samples:
        caps += [f"--max_eval_samples={args.max_eval_samples}"]
    for precision in PRECISIONS:
        run_dir = work / f"ours-{precision}-{seed}"
        command = [
            sys.executable, str(harness.REPO / "recipes" / "sentiment.py"),
            f"--output_dir={run_dir}", f"--seed={seed}", f"--mixed_precision={precision}",
            f"--num_train_epochs={args.num_train_epochs}", f"--learning_rate={args.learning_rate}",
            "--save_strategy=no", "--run_baseline=false", *caps,
        ]  # fmt: skip
        out.append(
            harness.Arm(
                name=f"ours-{precision}",
                command=command,
                metrics_path=run_dir / "metrics.json",
                phases=harness.phases_from_ours,
                extra={"framework": "nlp_transfer", "precision": precision, "seed": seed},
            )
        )
    trainer_seeds = args.trainer_seeds or args.seeds
    if args.no_trainer or seed not in {int(s) for s in trainer_seeds.split(",")}:
        return out
    for precision in PRECISIONS:
        metrics = work / f"hf-{precision}-{seed}.json"
        spec = {
            "setting": "full",
            "dataset_name": "rotten_tomatoes_sentences",
            "seed": seed,
            "epochs": args.num_train_epochs,
            "batch_size": 32,
            "learning_rate": args.learning_rate,
            "max_train_samples": args.max_train_samples,
            "max_eval_samples": args.max_eval_samples,
            "metrics_path": str(metrics),
            "bf16": precision == "bf16",
        }
        out.append(
            harness.Arm(
                name=f"hf_trainer-{precision}",
                command=[sys.executable, str(HERE / "hf_trainer_worker.py"), json.dumps(spec)],
                metrics_path=metrics,
                phases=lambda metrics, log: metrics.get("phases", {}),
                extra={"framework": "hf_trainer", "precision": precision, "seed": seed},
            )
        )
    return out


def accuracy_of(record: dict) -> float:
    metrics = record["metrics"]
    return metrics["test"]["accuracy"] if "test" in metrics else metrics["accuracy"]


def summary(records: list[dict]) -> list[dict]:
    """Per framework and precision: test accuracy (mean, std, per seed) and times (median)."""
    rows = harness.per_seed_rows(records, accuracy_of)
    by_arm = {row["arm"]: row for row in rows}
    for framework in ("ours", "hf_trainer"):
        fp32, bf16 = by_arm.get(f"{framework}-no"), by_arm.get(f"{framework}-bf16")
        if fp32 and bf16:
            bf16["accuracy_points_vs_fp32"] = 100 * (bf16["accuracy_mean"] - fp32["accuracy_mean"])
            bf16["training_speedup_vs_fp32"] = (
                fp32["training_s"]["median"] / bf16["training_s"]["median"]
            )
            bf16["wall_speedup_vs_fp32"] = fp32["wall_s"]["median"] / bf16["wall_s"]["median"]
    return rows


def markdown(rows: list[dict], cpu: str) -> str:
    table = harness.markdown_table(
        ["arm", "test accuracy, mean ± std (per seed)", "training s (median)",
         "whole process s (median)", "bf16 vs float32"],
        [
            [
                *harness.per_seed_cells(row),
                (
                    f"{row['accuracy_points_vs_fp32']:+.2f} points, training "
                    f"{row['training_speedup_vs_fp32']:.2f}x, whole {row['wall_speedup_vs_fp32']:.2f}x"
                    if "accuracy_points_vs_fp32" in row
                    else ""
                ),
            ]
            for row in rows
        ],
    )  # fmt: skip
    return f"On {cpu}; `*`: some run started on a loaded machine.\n\n{table}\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, machine = harness.run_info(script="bf16_main_job.py"), harness.machine()
    work, log_dir = harness.workspace(args, "bf16_main_job")
    records = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for arm in arms(args, work, seed):
            record = harness.run_arm(arm, log_dir, 0, **harness.harness_kwargs(args))
            print(f"{arm.name} seed {seed}: accuracy {accuracy_of(record):.4f}, "
                  f"{record['wall_s']:.0f} s", flush=True)  # fmt: skip
            records.append(record)
    rows = summary(records)
    for record in records:
        record["accuracy"] = accuracy_of(record)
        record.pop("metrics")
    document = harness.result_document(
        info, machine, {"seeds": args.seeds, "epochs": args.num_train_epochs,
                        "learning_rate": args.learning_rate}, summary=rows, records=records
    )  # fmt: skip
    md = markdown(rows, machine["cpu"])
    paths = harness.write_result("bf16_main_job", document, md, Path(args.output_dir))
    print(md)
    print(f"wrote {paths[0]} and {paths[1]}")
    return document


if __name__ == "__main__":
    main()
