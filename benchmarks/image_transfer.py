"""Source -> target transfer on Fashion-MNIST: the image recipe's default experiment, over seeds.

    python benchmarks/image_transfer.py                  # the committed result: seeds 0, 1, 2
    python benchmarks/image_transfer.py --seeds 0 -- --source_num_train_epochs 2   # recipe flags after --

Each seed is one run of ``recipes/image_classification.py`` (defaults: ResNet-18 trained from
scratch on classes 0-4, then three runs on classes 5-9 with 100 labelled images per class: from
scratch, transferred with the lower stages frozen, transferred and fully fine-tuned), in a fresh
subprocess, timed from start to end. Writes ``benchmarks/results/image_transfer.{json,md}``:
run info (date, git commit, command, machine, versions), the per-seed tables, and mean, spread
and per-seed margins of the transferred runs over the from-scratch run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RUNS = ("from scratch", "transferred, lower stages frozen", "transferred, fully fine-tuned")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="Comma list of seeds.")
    parser.add_argument("--output_dir", default=str(RESULTS), help="Where the JSON/MD go.")
    parser.add_argument("--name", default="image_transfer", help="Stem of the result files.")
    parser.add_argument("recipe_flags", nargs="*", help="Flags for the recipe (after --).")
    args = parser.parse_args(argv)
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    return args


def run_seed(seed: int, flags: list[str], work: Path) -> dict:
    """One recipe run in a subprocess; its experiment metrics plus the wall time."""
    out = work / f"seed-{seed}"
    cmd = [sys.executable, str(REPO / "recipes" / "image_classification.py"), "--seed", str(seed)]
    cmd += ["--output_dir", str(out), *flags]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(work / f"seed-{seed}.log", "w") as log:
        code = subprocess.call(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if code != 0:
        raise SystemExit(f"seed {seed} failed (exit {code}); see {work / f'seed-{seed}.log'}")
    result = json.loads((out / "metrics.json").read_text())
    result["wall_time_s"] = wall
    # CPU seconds of the run (all threads): about cores x wall time when it had the CPU to
    # itself; far less means it waited (other processes, or was paused), inflating wall time.
    result["cpu_time_s"] = cpu
    return result


def run_info(args, settings: dict) -> dict:
    import accelerate
    import numpy
    import torch
    import torchvision

    cpu = platform.processor()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python benchmarks/image_transfer.py " + " ".join(sys.argv[1:]),
        "git_commit": commit or None,
        "machine": {
            "cpu": cpu,
            "cpu_count": os.cpu_count(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "accelerate": accelerate.__version__,
            "numpy": numpy.__version__,
        },
        "settings": settings,
    }


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


def markdown(summary: dict, info: dict, results: list[dict]) -> str:
    m = info["machine"]
    s = info["settings"]
    lines = [
        "# Fashion-MNIST source -> target transfer (image recipe default)\n",
        f"`{info['command']}` at commit `{info['git_commit']}`, {info['date']}; {m['cpu']}, "
        f"{m['cpu_count']} cores; torch {info['versions']['torch']}, torchvision "
        f"{info['versions']['torchvision']}.\n",
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
        + f" min over {m['cpu_count']} cores).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="image-transfer-"))
    info = run_info(args, {})  # date and commit at the start
    results = []
    for seed in args.seed_list:
        result = run_seed(seed, args.recipe_flags, work)
        results.append(result)
        print(
            f"seed {seed}: {json.dumps(result['margins'])}, {result['wall_time_s']:.0f} s",
            flush=True,
        )
    settings = {
        k: v
        for k, v in __import__("yaml")
        .safe_load((work / f"seed-{args.seed_list[0]}" / "config.yaml").read_text())
        .items()
        if k not in ("seed", "output_dir")
    }
    info["settings"] = settings
    summary = summarise(results)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"run": info, "summary": summary, "seeds": results}
    (out / f"{args.name}.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    text = markdown(summary, info, results)
    (out / f"{args.name}.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"Wrote {out / args.name}.json and .md (runs and logs in {work})")
    return payload


if __name__ == "__main__":
    main()
