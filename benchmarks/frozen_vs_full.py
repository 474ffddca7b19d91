"""Frozen vs full fine-tuning: every transfer strategy side by side under one matched budget.

    python benchmarks/frozen_vs_full.py                    # the committed result (~35 min, 2 CPU cores)
    python benchmarks/frozen_vs_full.py --quick            # a 2-minute smoke run
    python benchmarks/frozen_vs_full.py --dataset_name sms_spam --strategies full,feature_extraction_lr

Every strategy trains the packaged all-MiniLM-L6-v2 on the same training examples, for the same
epochs and batch size, with the same seeds; only the transfer strategy (and the learning rate it
needs, listed in STRATEGIES) differs. Each run is a fresh subprocess, so its peak memory (process
RSS, or ``torch.cuda.max_memory_allocated`` on a GPU) is its own. The TF-IDF + logistic
regression baseline is fitted on the same training examples.

Writes ``benchmarks/results/frozen_vs_full[_<dataset>].{json,md,png}``: run info (machine,
versions, settings), per-seed results, mean and spread per strategy, a Markdown table and a plot
of test accuracy against training time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

LR = 5e-5  # the Hugging Face examples' default, and the sentiment recipe's


@dataclass
class Strategy:
    """One benchmarked strategy: a label, what it does, and its config overrides."""

    name: str
    description: str
    settings: dict = field(default_factory=dict)


STRATEGIES = [
    Strategy("full", f"full fine-tuning, lr {LR:g}", {"learning_rate": LR}),
    Strategy(
        "freeze_2",
        f"embeddings + layers 0-1 frozen, lr {LR:g}",
        {"freeze_layers": 2, "learning_rate": LR},
    ),
    Strategy(
        "freeze_4",
        f"embeddings + layers 0-3 frozen, lr {LR:g}",
        {"freeze_layers": 4, "learning_rate": LR},
    ),
    Strategy(
        "freeze_6",
        "whole encoder frozen, pooler + classifier (CLS token) train at lr 1e-3",
        {"freeze_layers": 6, "learning_rate": 1e-3},
    ),
    Strategy(
        "feature_extraction_linear",
        "frozen encoder, mean-pooled features once, torch linear head at lr 1e-2",
        {"feature_extraction": "linear", "head_learning_rate": 1e-2},
    ),
    Strategy(
        "feature_extraction_lr",
        "frozen encoder, mean-pooled features once, scikit-learn LogisticRegression (C=1)",
        {"feature_extraction": "logistic_regression"},
    ),
    Strategy(
        "gradual_unfreezing",
        f"ULMFiT: head first, one more block from the top every 1/7 epoch, lr {LR:g}",
        {"gradual_unfreezing": True, "learning_rate": LR},
    ),
    Strategy(
        "layer_lr_decay",
        "discriminative LRs: top block 8.5e-5, x0.85 per block down (embeddings 3.2e-5), head 1e-4",
        {"learning_rate": 1e-4, "layer_lr_decay": 0.85},
    ),
    Strategy(
        "l2sp",
        f"L2-SP alpha 0.1, beta 0.01 instead of weight decay, lr {LR:g}",
        {"l2sp_alpha": 0.1, "l2sp_beta": 0.01, "learning_rate": LR},
    ),
]
BY_NAME = {s.name: s for s in STRATEGIES}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset_name", default="rotten_tomatoes_sentences")
    parser.add_argument(
        "--strategies",
        default="all",
        help=f"Comma list or 'all': {', '.join(BY_NAME)}.",
    )
    parser.add_argument("--seeds", default="42,43,44", help="Comma list of seeds.")
    parser.add_argument(
        "--max_train_samples",
        type=int,
        default=1000,
        help="Training examples (the first N of the seeded training split; the low-data regime "
        "transfer learning is for). Validation and test splits stay whole.",
    )
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--num_train_epochs", type=int, default=2)
    parser.add_argument("--per_device_train_batch_size", type=int, default=32)
    parser.add_argument("--output_dir", default=str(RESULTS))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Smoke run: 1 seed, 256 training and 256 evaluation examples, 1 epoch.",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.max_train_samples, args.max_eval_samples = "42", 256, 256
        args.num_train_epochs = 1
    names = list(BY_NAME) if args.strategies == "all" else args.strategies.split(",")
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown strategy {unknown}; choose from {', '.join(BY_NAME)}")
    args.strategy_names = names
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    return args


# ---------------------------------------------------------------------------------------------
# One run, in its own process


def worker(spec_json: str) -> None:
    """Run one (strategy, seed) and print its figures as one JSON line."""
    import torch

    from nlp_transfer import TextClassificationConfig, run_text_classification

    spec = json.loads(spec_json)
    settings = dict(spec["settings"])
    if settings.pop("gradual_unfreezing", False):
        # One stage per 1/num_stages of the first epoch: everything trains from epoch 2 on.
        steps = -(-spec["max_train_samples"] // spec["per_device_train_batch_size"])
        settings["gradual_unfreezing"] = True
        settings["unfreeze_every_n_steps"] = max(1, steps // 7)
    with tempfile.TemporaryDirectory() as tmp:
        config = TextClassificationConfig(
            dataset_name=spec["dataset_name"],
            output_dir=str(Path(tmp) / "run"),
            seed=spec["seed"],
            num_train_epochs=spec["num_train_epochs"],
            per_device_train_batch_size=spec["per_device_train_batch_size"],
            max_train_samples=spec["max_train_samples"],
            max_eval_samples=spec["max_eval_samples"],
            run_baseline=False,
            save_strategy="no",
            **settings,
        )
        metrics = run_text_classification(config, task_name=spec["name"])
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available()
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    result = {
        "strategy": spec["name"],
        "seed": spec["seed"],
        "accuracy": metrics["test"]["accuracy"],
        "f1_macro": metrics["test"]["f1_macro"],
        "train_runtime_s": metrics["timings"]["train_runtime_s"],
        "train_samples_per_second": metrics["timings"]["train_samples_per_second"],
        "total_runtime_s": metrics["timings"]["total_runtime_s"],
        "peak_memory_mib": peak,
        "peak_memory_kind": "cuda_max_allocated" if torch.cuda.is_available() else "process_rss",
        "trainable_params": metrics["parameters"]["trainable"],
        "total_params": metrics["parameters"]["total"],
        "best_epoch": metrics["best_epoch"],
    }
    print("RESULT " + json.dumps(result), flush=True)


def run_one(strategy: Strategy, seed: int, args, log_dir: Path) -> dict:
    spec = {
        "name": strategy.name,
        "settings": strategy.settings,
        "seed": seed,
        "dataset_name": args.dataset_name,
        "num_train_epochs": args.num_train_epochs,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "max_train_samples": args.max_train_samples,
        "max_eval_samples": args.max_eval_samples,
    }
    log = log_dir / f"{strategy.name}-seed{seed}.log"
    with log.open("w") as out:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            env=os.environ | {"TQDM_DISABLE": "1"},
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{strategy.name} (seed {seed}) failed; see {log}")
    return json.loads(lines[-1][len("RESULT ") :])


def run_baseline(args, seed: int) -> dict:
    from accelerate import PartialState

    from nlp_transfer import TextClassificationConfig
    from nlp_transfer.text.baseline import tfidf_logreg_baseline
    from nlp_transfer.text.loaders import load_data

    config = TextClassificationConfig(
        dataset_name=args.dataset_name,
        seed=seed,
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
    )
    PartialState(cpu=True)  # load_data logs through Accelerate
    metrics = tfidf_logreg_baseline(load_data(config), seed=seed)
    return {
        "strategy": "tfidf_logreg",
        "seed": seed,
        "accuracy": metrics["accuracy"],
        "f1_macro": metrics["f1_macro"],
        "train_runtime_s": metrics["fit_runtime_s"],
        "train_samples_per_second": None,
        "peak_memory_mib": None,
        "trainable_params": None,
    }


# ---------------------------------------------------------------------------------------------
# Summary, table, plot


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for name in dict.fromkeys(r["strategy"] for r in rows):
        mine = [r for r in rows if r["strategy"] == name]

        def stats(key, mine=mine):
            values = [r[key] for r in mine if r.get(key) is not None]
            if not values:
                return None, None
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            return statistics.fmean(values), spread

        summary = {"strategy": name, "seeds": len(mine)}
        for key in (
            "accuracy",
            "f1_macro",
            "train_runtime_s",
            "train_samples_per_second",
            "peak_memory_mib",
        ):
            summary[key], summary[f"{key}_std"] = stats(key)
        summary["trainable_params"] = mine[0].get("trainable_params")
        out.append(summary)
    return out


def markdown_table(summary: list[dict], info: dict) -> str:
    descriptions = {s.name: s.description for s in STRATEGIES}
    descriptions["tfidf_logreg"] = "TF-IDF (1-2 grams) + LogisticRegression, C tuned on validation"
    seeds = info["settings"]["seeds"]
    lines = [
        f"Test accuracy and macro-F1: mean ± standard deviation over {len(seeds)} seed(s) "
        f"({', '.join(map(str, seeds))}). Training time: wall seconds of the training steps "
        "(feature extraction: the training split's encoding + the head's fit), mean over seeds.",
        "",
        "| strategy | accuracy | macro-F1 | training s | samples/s | peak RSS MiB | trainable params | what |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def fmt(mean, std, digits=4):
        if mean is None:
            return "—"
        return f"{mean:.{digits}f} ± {std:.{digits}f}" if std else f"{mean:.{digits}f}"

    for s in summary:
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{s['strategy']}`",
                    fmt(s["accuracy"], s["accuracy_std"]),
                    fmt(s["f1_macro"], s["f1_macro_std"]),
                    f"{s['train_runtime_s']:.1f}",
                    "—"
                    if s["train_samples_per_second"] is None
                    else f"{s['train_samples_per_second']:.0f}",
                    "—" if s["peak_memory_mib"] is None else f"{s['peak_memory_mib']:.0f}",
                    "—" if s["trainable_params"] is None else f"{s['trainable_params']:,}",
                    descriptions[s["strategy"]],
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def plot(summary: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    placed: list[tuple[float, float]] = []  # label anchors so far, to keep labels apart
    for s in summary:
        baseline = s["strategy"] == "tfidf_logreg"
        ax.errorbar(
            s["train_runtime_s"],
            s["accuracy"],
            yerr=s["accuracy_std"] or None,
            fmt="s" if baseline else "o",
            color="grey" if baseline else None,
            capsize=3,
            label=s["strategy"],
        )
        x, y = s["train_runtime_s"], s["accuracy"]
        near = sum(abs(math.log10(x / px)) < 0.15 and abs(y - py) < 0.006 for px, py in placed)
        placed.append((x, y))
        ax.annotate(
            s["strategy"],
            (x, y),
            textcoords="offset points",
            xytext=(6, 4 - 11 * near),
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_xlabel("training time, s (log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_info(args) -> dict:
    import accelerate
    import datasets
    import sklearn
    import torch
    import transformers

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    ).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python benchmarks/frozen_vs_full.py " + " ".join(sys.argv[1:]),
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
            "transformers": transformers.__version__,
            "accelerate": accelerate.__version__,
            "datasets": datasets.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "settings": {
            "dataset_name": args.dataset_name,
            "model": "sentence-transformers/all-MiniLM-L6-v2 (packaged)",
            "seeds": args.seed_list,
            "max_train_samples": args.max_train_samples,
            "max_eval_samples": args.max_eval_samples,
            "num_train_epochs": args.num_train_epochs,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "strategies": {s.name: s.settings for s in STRATEGIES if s.name in args.strategy_names},
        },
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:
        worker(args.worker)
        return {}
    from tqdm.auto import tqdm

    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "frozen_vs_full" + (
        "" if args.dataset_name == "rotten_tomatoes_sentences" else f"_{args.dataset_name}"
    )
    stem += "_quick" if args.quick else ""
    log_dir = Path(tempfile.mkdtemp(prefix="frozen_vs_full-logs-"))
    info = run_info(args)
    start = time.perf_counter()
    rows = [run_baseline(args, seed) for seed in args.seed_list]
    jobs = [(BY_NAME[n], seed) for seed in args.seed_list for n in args.strategy_names]
    for strategy, seed in (bar := tqdm(jobs, desc="Runs", unit="run")):
        bar.set_postfix(strategy=strategy.name, seed=seed)
        row = run_one(strategy, seed, args, log_dir)
        rows.append(row)
        tqdm.write(
            f"{strategy.name:28s} seed {seed}: accuracy {row['accuracy']:.4f}, "
            f"training {row['train_runtime_s']:.0f}s, peak {row['peak_memory_mib']:.0f} MiB"
        )
    info["wall_time_s"] = time.perf_counter() - start
    summary = summarise(rows)
    order = {name: i for i, name in enumerate(["tfidf_logreg", *args.strategy_names])}
    summary.sort(key=lambda s: order[s["strategy"]])
    result = {"run": info, "summary": summary, "runs": rows}
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    table = markdown_table(summary, info)
    header = (
        f"# Frozen vs full fine-tuning on `{args.dataset_name}`\n\n"
        f"`{info['command']}` — {info['machine']['cpu']}, {info['machine']['cpu_count']} cores, "
        f"{info['date']}, {info['wall_time_s'] / 60:.1f} min in all. all-MiniLM-L6-v2, "
        f"{args.max_train_samples:,} training examples, {args.num_train_epochs} epoch(s), "
        f"batch {args.per_device_train_batch_size}.\n\n"
    )
    (out_dir / f"{stem}.md").write_text(header + table, encoding="utf-8")
    plot(
        summary,
        out_dir / f"{stem}.png",
        f"{args.dataset_name}: test accuracy vs training time "
        f"({args.max_train_samples:,} examples, {args.num_train_epochs} epochs, "
        f"{len(args.seed_list)} seeds; bars: ±1 std)",
    )
    print(header + table)
    print(f"Wrote {out_dir / stem}.json, .md, .png (per-run logs in {log_dir})")
    return result


if __name__ == "__main__":
    main()
