"""Source -> target transfer on Fashion-MNIST: the image recipe's default experiment, over seeds.

    python benchmarks/image_transfer.py                  # the committed result: seeds 0, 1, 2
    python benchmarks/image_transfer.py --seeds 0 -- --source_num_train_epochs 2   # recipe flags after --

Each seed is one run of ``recipes/image_classification.py`` (defaults: ResNet-18 trained from
scratch on classes 0-4, then three runs on classes 5-9 with 100 labelled images per class: from
scratch, transferred with the lower stages frozen, transferred and fully fine-tuned), in a fresh
subprocess run by the shared harness (``harness.py``): timed from process start to metrics
written, wall and CPU seconds and peak RSS, the machine's load before it recorded (and the run
refused with ``--refuse_when_loaded``); the seeds are the repeats. Writes
``<output_dir>/<name>.{json,md}``: run info and machine from the shared helper (commit, CPU
flags, threads, versions), the per-seed tables, and mean, spread and per-seed margins of the
transferred runs over the from-scratch run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import harness

REPO = Path(__file__).resolve().parents[1]
RUNS = ("from scratch", "transferred, lower stages frozen", "transferred, fully fine-tuned")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="Comma list of seeds (the repeats).")
    parser.add_argument("--name", default="image_transfer", help="Stem of the result files.")
    parser.add_argument("recipe_flags", nargs="*", help="Flags for the recipe (after --).")
    harness.harness_arguments(parser, repeats=1)
    args = parser.parse_args(argv)
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    return args


def arm_for(seed: int, flags: list[str], work: Path) -> harness.Arm:
    """One recipe run (its own process) of ``seed``."""
    out = work / f"seed-{seed}"
    cmd = [sys.executable, str(REPO / "recipes" / "image_classification.py"), "--seed", str(seed)]
    return harness.Arm(
        f"image_transfer-seed{seed}",
        [*cmd, "--output_dir", str(out), *flags],
        metrics_path=out / "metrics.json",
        env={"PYTHONPATH": str(REPO)},
        extra={"seed": seed, "output_dir": str(out)},
    )


def run_seed(seed: int, flags: list[str], work: Path, log_dir: Path, args) -> dict:
    """One recipe run through the harness; its experiment metrics plus the harness figures."""
    record = harness.run_arm(
        arm_for(seed, flags, work), log_dir, seed, **harness.harness_kwargs(args)
    )
    result = record.pop("metrics")
    # CPU seconds of the run (all threads): about cores x wall time when it had the CPU to
    # itself; far less means it waited (other processes, or was paused), inflating wall time.
    result |= {"wall_time_s": record["wall_s"], "cpu_time_s": record["cpu_s"]}
    result["harness"] = record
    return result


def summarise(results: list[dict]) -> dict:
    """Mean and std of test accuracy per target run, and margins over from scratch."""

    def stats(values: list[float]) -> dict:
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return {"mean": statistics.fmean(values), "std": spread, "values": values}

    rows = {}
    for i, name in enumerate(RUNS):
        rows[name] = {
            "test_accuracy": stats([r["target"][i]["test_accuracy"] for r in results]),
            "test_f1_macro": stats([r["target"][i]["test_f1_macro"] for r in results]),
            "train_runtime_s": stats([r["target"][i]["train_runtime_s"] for r in results]),
            "trainable_params": results[0]["target"][i]["trainable_params"],
        }
    return {
        "target": rows,
        "margins": {
            key: stats([r["margins"][key] for r in results])
            for key in ("frozen_minus_scratch", "full_minus_scratch")
        },
        "source_test_accuracy": stats([r["source"]["test_accuracy"] for r in results]),
        "wall_time_s": stats([r["wall_time_s"] for r in results]),
        "cpu_time_s": stats([r["cpu_time_s"] for r in results]),
    }


def markdown(summary: dict, settings: dict, results: list[dict], cores: int) -> str:
    s = settings
    lines = [
        "# Fashion-MNIST source -> target transfer (image recipe default)\n",
        f"Source: {s['architecture']} from scratch on classes 0-4 ({results[0]['source']['train_examples']:,} "
        f"images, {s['source_num_train_epochs']} epoch{'' if s['source_num_train_epochs'] == 1 else 's'}). Target: classes 5-9, "
        f"{s['transfer_samples_per_class']} labelled training images per class (+ "
        f"{s['transfer_validation_per_class']} per class for picking the epoch), tested on "
        f"{results[0]['data']['target_test_examples']:,} images; every target run "
        f"{s['num_train_epochs']} epochs, batch {s['per_device_train_batch_size']}, lr "
        f"{s['learning_rate']:g} ({s['lr_scheduler_type']}), {s['image_size'] or 28}px, "
        f"seeds {', '.join(str(r['seed']) for r in results)}.\n",
        "| target run | test accuracy (mean ± std) | per seed | macro-F1 | trainable params | training s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in summary["target"].items():
        acc = row["test_accuracy"]
        lines.append(
            f"| {name} | {acc['mean']:.4f} ± {acc['std']:.4f} | "
            f"{', '.join(f'{v:.4f}' for v in acc['values'])} | "
            f"{row['test_f1_macro']['mean']:.4f} | {row['trainable_params']:,} | "
            f"{row['train_runtime_s']['mean']:.0f} |"
        )
    margins = summary["margins"]
    wall = summary["wall_time_s"]
    lines += [
        "",
        "Margin over from scratch (test accuracy, per seed): frozen "
        + ", ".join(f"{v:+.4f}" for v in margins["frozen_minus_scratch"]["values"])
        + "; fully fine-tuned "
        + ", ".join(f"{v:+.4f}" for v in margins["full_minus_scratch"]["values"])
        + ".",
        f"Source test accuracy (classes 0-4): {summary['source_test_accuracy']['mean']:.4f} ± "
        f"{summary['source_test_accuracy']['std']:.4f}. Wall time per recipe run: "
        + ", ".join(f"{v / 60:.1f}" for v in wall["values"])
        + " min (CPU time "
        + ", ".join(f"{v / 60:.1f}" for v in summary["cpu_time_s"]["values"])
        + f" min over {cores} cores).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, machine = harness.run_info(script="image_transfer.py"), harness.machine()
    work, log_dir = harness.workspace(args, "image_transfer")
    results = []
    for seed in args.seed_list:
        result = run_seed(seed, args.recipe_flags, work, log_dir, args)
        results.append(result)
        print(
            f"seed {seed}: {json.dumps(result['margins'])}, {result['wall_time_s']:.0f} s",
            flush=True,
        )
    import yaml

    config = yaml.safe_load((work / f"seed-{args.seed_list[0]}" / "config.yaml").read_text())
    settings = {k: v for k, v in config.items() if k not in ("seed", "output_dir")}
    summary = summarise(results)
    records = [r.pop("harness") for r in results]
    document = harness.result_document(
        info, machine, settings, summary=summary, seeds=results, records=records
    )
    text = markdown(summary, settings, results, machine["cores"])
    paths = harness.write_result(args.name, document, text, Path(args.output_dir))
    print(text)
    print(f"wrote {paths[0]} and {paths[1]} (runs and logs in {work})")
    return document


if __name__ == "__main__":
    main()
