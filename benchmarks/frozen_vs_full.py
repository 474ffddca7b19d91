"""Frozen vs full fine-tuning: every transfer strategy side by side, each run timed end to end.

    python benchmarks/frozen_vs_full.py                    # the full run (3 seeds, ~35 min on 2 cores)
    python benchmarks/frozen_vs_full.py --seeds 42 --max_train_samples 200 --max_eval_samples 100 \\
        --num_train_epochs 1 --strategies full_5e-5,freeze_4 --output_dir /tmp/fvf
    python benchmarks/frozen_vs_full.py --dataset_name sms_spam
    python benchmarks/frozen_vs_full.py --plot_only benchmarks/results/frozen_vs_full.json

Every strategy trains the packaged all-MiniLM-L6-v2 on the same training examples, for the same
epochs and batch size, with the same seeds; only the transfer strategy (and the learning rate it
needs, listed in STRATEGIES) differs. Full fine-tuning runs at peak learning rates 2e-5, 5e-5
and 1e-4, each beside layer-wise LR decay at the same peak rate (the head's; every block below
trains at 0.85 times the rate of the block above), so that neither wins by its learning rate.

Each (strategy, seed) is a fresh ``nlp-transfer train --task text`` process run by the shared
harness (``harness.py``): its time runs from process start to metrics written, so a frozen
prefix's cache build and feature extraction's encoding are inside it; the training phase, the
cache build or encoding and the peak RSS are reported beside it. The TF-IDF + logistic
regression peer is fitted on the same training examples.

Writes ``<output_dir>/frozen_vs_full[_<dataset>].{json,md,png}``; ``--plot_only`` redraws the
figure of an earlier result file without running anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import harness
from tfidf import tfidf_logreg

DECAY = 0.85


@dataclass
class Strategy:
    """One benchmarked strategy: a label, what it does, and its ``nlp-transfer train`` flags."""

    name: str
    description: str
    settings: dict = field(default_factory=dict)


PEAK_RATES = {"2e-5": 2e-5, "5e-5": 5e-5, "1e-4": 1e-4}


def _rates() -> list[Strategy]:
    out = []
    for label, lr in PEAK_RATES.items():
        out.append(Strategy(f"full_{label}", f"full fine-tuning, lr {lr:g}", {"learning_rate": lr}))
    for label, lr in PEAK_RATES.items():
        out.append(
            Strategy(
                f"layer_lr_decay_{label}",
                f"layer-wise LR decay: peak (head) lr {lr:g}, x{DECAY} per block down "
                f"(embeddings {lr * DECAY**7:.2g})",
                {"learning_rate": lr, "layer_lr_decay": DECAY},
            )
        )
    return out


STRATEGIES = [
    *_rates(),
    Strategy("freeze_2", "embeddings + layers 0-1 frozen (cached), lr 5e-05", {"freeze_layers": 2}),
    Strategy("freeze_4", "embeddings + layers 0-3 frozen (cached), lr 5e-05", {"freeze_layers": 4}),
    Strategy(
        "freeze_6",
        "whole encoder frozen (cached), pooler + classifier (CLS token) at lr 1e-3",
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
        "ULMFiT: head first, one more block from the top every 1/7 epoch, lr 5e-05",
        {"gradual_unfreezing": True},
    ),
    Strategy(
        "l2sp",
        "L2-SP alpha 0.1, beta 0.01 instead of weight decay, lr 5e-05",
        {"l2sp_alpha": 0.1, "l2sp_beta": 0.01},
    ),
    # Adapters (peft) and BitFit: the pretrained weights stay frozen, so they want the higher
    # rates their papers use (LoRA: 4e-4 to 5e-4 for RoBERTa-base on GLUE; IA3: 3e-3; BitFit:
    # 1e-4 to 1e-3).
    Strategy(
        "lora_r8",
        "LoRA (peft) r=8, alpha 16, on the attention projections; classifier trained; lr 5e-4",
        {"peft": "lora", "lora_r": 8, "lora_alpha": 16, "learning_rate": 5e-4},
    ),
    Strategy(
        "lora_r16",
        "LoRA (peft) r=16, alpha 32, on the attention projections; classifier trained; lr 5e-4",
        {"peft": "lora", "lora_r": 16, "lora_alpha": 32, "learning_rate": 5e-4},
    ),
    Strategy(
        "ia3",
        "IA3 (peft): learned rescaling of keys, values and FFN; classifier trained; lr 3e-3",
        {"peft": "ia3", "learning_rate": 3e-3},
    ),
    Strategy(
        "bitfit",
        "BitFit: bias terms and classifier trained, every weight matrix frozen; lr 1e-3",
        {"bitfit": True, "learning_rate": 1e-3},
    ),
]
BY_NAME = {s.name: s for s in STRATEGIES}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset_name", default="rotten_tomatoes_sentences")
    parser.add_argument(
        "--strategies", default="all", help=f"Comma list or all: {', '.join(BY_NAME)}."
    )
    parser.add_argument("--seeds", default="42,43,44", help="Comma list of seeds (the repeats).")
    parser.add_argument(
        "--max_train_samples",
        type=int,
        default=1000,
        help="Training examples (the first N of the seeded training split).",
    )
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--num_train_epochs", type=int, default=2)
    parser.add_argument("--per_device_train_batch_size", type=int, default=32)
    parser.add_argument(
        "--name", default=None, help="Stem of the result files (default: frozen_vs_full[_DATASET])."
    )
    parser.add_argument(
        "--plot_only",
        type=Path,
        default=None,
        metavar="RESULT_JSON",
        help="Redraw the figure of this result file (written beside it as .png) and stop.",
    )
    harness.harness_arguments(parser, repeats=1)
    args = parser.parse_args(argv)
    names = list(BY_NAME) if args.strategies == "all" else args.strategies.split(",")
    if unknown := [n for n in names if n not in BY_NAME]:
        parser.error(f"--strategies: unknown {unknown}; choose from {', '.join(BY_NAME)}")
    args.strategy_names = names
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    return args


def arm_for(strategy: Strategy, seed: int, args, work: Path) -> harness.Arm:
    """The ``nlp-transfer train --task text`` process of one (strategy, seed)."""
    settings = {"learning_rate": 5e-5} | strategy.settings
    if settings.get("gradual_unfreezing"):
        # One stage per 1/7 of the first epoch: everything trains from epoch 2 on.
        steps = -(-args.max_train_samples // args.per_device_train_batch_size)
        settings["unfreeze_every_n_steps"] = max(1, steps // 7)
    run_dir = work / f"{strategy.name}-seed{seed}"
    command = [sys.executable, "-m", "nlp_transfer.cli", "train", "--task", "text"]
    settings |= {
        "dataset_name": args.dataset_name,
        "output_dir": str(run_dir),
        "seed": seed,
        "num_train_epochs": args.num_train_epochs,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "max_train_samples": args.max_train_samples,
        "max_eval_samples": args.max_eval_samples,
        "save_strategy": "no",
    }
    for key, value in settings.items():
        if value is True:
            command.append(f"--{key}")
        elif value is not None:
            command.append(f"--{key}={value}")
    command += ["--overwrite_output_dir", "--no_run_baseline"]
    return harness.Arm(
        name=strategy.name,
        command=command,
        metrics_path=run_dir / "metrics.json",
        phases=harness.phases_from_ours,
        extra={"strategy": strategy.name, "seed": seed, "run_dir": str(run_dir)},
    )


def stored_mib(run_dir: Path) -> float | None:
    """MiB of what must be kept per task: an adapter run's ``adapter/`` (peft format), else the
    saved model's weights (``*.safetensors`` and a scikit-learn head, if any)."""
    adapter = run_dir / "adapter"
    files = (
        list(adapter.iterdir())
        if adapter.is_dir()
        else [f for f in run_dir.iterdir() if f.suffix in (".safetensors", ".joblib", ".pkl")]
    )
    return sum(f.stat().st_size for f in files if f.is_file()) / 2**20 if files else None


def run_baseline(args, seed: int) -> dict:
    """TF-IDF + logistic regression on the same (capped) split as the runs."""
    from nlp_transfer import load_text_classification_dataset

    data = load_text_classification_dataset(args.dataset_name, seed=seed)
    caps = {"train": args.max_train_samples, "validation": args.max_eval_samples}
    caps["test"] = args.max_eval_samples
    parts = {}
    for split, cap in caps.items():
        subset = data[split].select(range(min(cap, len(data[split])))) if cap else data[split]
        parts[split] = (list(subset["text"]), list(subset["label"]))
    metrics = tfidf_logreg(parts["train"], parts["validation"], parts["test"], seed=seed)
    return {
        "train_rows": len(parts["train"][0]),
        "arm": "tfidf_logreg",
        "strategy": "tfidf_logreg",
        "seed": seed,
        "accuracy": metrics["accuracy"],
        "f1_macro": metrics["f1_macro"],
        "wall_s": metrics["fit_runtime_s"],
        "phases": {"training": metrics["fit_runtime_s"]},
        "loaded": False,
    }


def flatten(record: dict) -> dict:
    """One run's figures, for the JSON's per-run list (the metrics file itself is dropped)."""
    if "metrics" not in record:
        return record
    metrics = record.pop("metrics")
    record["accuracy"] = metrics["test"]["accuracy"]
    record["f1_macro"] = metrics["test"]["f1_macro"]
    record["trainable_params"] = metrics.get("parameters", {}).get("trainable")
    record["best_epoch"] = metrics.get("best_epoch")
    record["stored_mib"] = stored_mib(Path(record.pop("run_dir")))
    return record


def summarise(rows: list[dict]) -> list[dict]:
    """Per strategy: accuracy/F1 mean and std over seeds; times as median (min-max)."""
    out = []
    for name in dict.fromkeys(r["strategy"] for r in rows):
        mine = [r for r in rows if r["strategy"] == name]
        summary = {"strategy": name, "seeds": len(mine)}
        for key in ("accuracy", "f1_macro"):
            values = [r[key] for r in mine]
            summary[key] = statistics.fmean(values)
            summary[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary["wall_s"] = harness.summarize([r["wall_s"] for r in mine])
        summary["training_s"] = harness.summarize([r["phases"].get("training") for r in mine])
        summary["once_only_s"] = harness.summarize(
            [r["phases"].get("cache_build", r["phases"].get("feature_encoding")) for r in mine]
        )
        summary["peak_rss_mib"] = harness.summarize([r.get("peak_rss_mib") for r in mine])
        summary["trainable_params"] = mine[0].get("trainable_params")
        summary["stored_mib"] = mine[0].get("stored_mib")
        summary["loaded"] = any(r.get("loaded") for r in mine)
        out.append(summary)
    return out


def markdown(summary: list[dict], seeds: list[int]) -> str:
    """The strategy table (accuracy mean ± std; times median (min-max) over seeds)."""
    descriptions = {s.name: s.description for s in STRATEGIES}
    descriptions["tfidf_logreg"] = "TF-IDF (1-2 grams) + LogisticRegression, C tuned on validation"

    def pm(s: dict, key: str) -> str:
        return f"{s[key]:.4f} ± {s[key + '_std']:.4f}" if s[key + "_std"] else f"{s[key]:.4f}"

    rows = []
    for s in summary:
        rows.append(
            [
                f"`{s['strategy']}`" + (" (loaded)" if s["loaded"] else ""),
                pm(s, "accuracy"),
                pm(s, "f1_macro"),
                harness.fmt_range(s["wall_s"], 1),
                harness.fmt_range(s["training_s"], 1),
                harness.fmt_range(s["once_only_s"], 1),
                harness.fmt_range(s["peak_rss_mib"], 0),
                "—" if s["trainable_params"] is None else f"{s['trainable_params']:,}",
                "—" if s.get("stored_mib") is None else f"{s['stored_mib']:.2f}",
                descriptions[s["strategy"]],
            ]
        )
    headers = [
        "strategy", "accuracy", "macro-F1", "end-to-end s", "training s",
        "cache build / encoding s", "peak RSS MiB", "trainable params", "stored per task MiB",
        "what",
    ]  # fmt: skip
    intro = (
        f"Accuracy and macro-F1: mean ± std over seeds {', '.join(map(str, seeds))}. Times: median "
        "(min-max) over seeds; end to end = the process, start to metrics written (TF-IDF: the "
        "fit, in the harness's process). Stored per task: an adapter's `adapter/` directory "
        "(peft format), else the saved weights (`save_strategy no`: the final model only).\n\n"
    )
    return intro + harness.markdown_table(headers, rows)


def plot(summary: list[dict], path: Path, title: str) -> list[tuple[float, float, float, float]]:
    """Test accuracy against end-to-end seconds, one point per strategy (bars: ±1 std).

    The labels are placed by ``adjustText`` (``pip install -e .[benchmarks]``) so that strategies
    with close times and accuracies stay readable; a line joins a moved label to its point. The
    TF-IDF baseline, sub-second, is a dashed line rather than a point.

    Returns:
        The strategy labels' boxes as drawn, ``(x0, y0, x1, y1)`` in pixels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        from adjustText import adjust_text
    except ImportError as err:  # pragma: no cover - dev and benchmarks extras install it
        raise SystemExit(
            "the figure needs adjustText: pip install -e '.[benchmarks]' (make setup does)"
        ) from err

    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    xs, ys, texts = [], [], []
    for s in summary:
        if s["strategy"] == "tfidf_logreg":  # sub-second: a line, or it squeezes the axis
            ax.axhline(s["accuracy"], color="0.4", ls="--", lw=0.8)
            ax.text(
                0.01, s["accuracy"], f" TF-IDF + logistic regression "
                f"({s['wall_s']['median']:.1f} s)", transform=ax.get_yaxis_transform(),
                va="bottom", fontsize=7, color="0.3",
            )  # fmt: skip
            continue
        x, y = s["wall_s"]["median"], s["accuracy"]
        ax.errorbar(x, y, yerr=s["accuracy_std"] or None, fmt="o", capsize=3)
        xs.append(x)
        ys.append(y)
        texts.append(ax.text(x, y, s["strategy"], fontsize=7))
    ax.set_xlim(0, max(xs) * 1.15)
    ax.set_xlabel("end-to-end seconds per run (process start to metrics; median over seeds)")
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    adjust_text(
        texts, x=xs, y=ys, ax=ax, expand=(1.3, 1.6),
        arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5},
    )  # fmt: skip
    fig.savefig(path)
    renderer = fig.canvas.get_renderer()
    boxes = [tuple(t.get_window_extent(renderer).extents) for t in texts]
    plt.close(fig)
    return boxes


def plot_title(dataset_name: str, train_rows: int, num_train_epochs: int, seeds: int) -> str:
    """The figure's title: dataset, training examples, epochs and seeds."""
    return (
        f"{dataset_name}: test accuracy vs end-to-end time ({train_rows:,} training examples, "
        f"{num_train_epochs} epochs, {seeds} seed(s))"
    )


def replot(result_json: Path) -> tuple[Path, list[tuple[float, float, float, float]]]:
    """Redraw the figure of a result file written by this script.

    Returns:
        The .png's path (beside the JSON) and the labels' boxes (see `plot`).

    Raises:
        SystemExit: when the file is missing, is not a frozen_vs_full result, or predates the
            per-run ``train_rows`` field.
    """
    try:
        document = json.loads(result_json.read_text())
        settings, summary = document["settings"], document["summary"]
        train_rows = next(r["train_rows"] for r in document["records"] if "train_rows" in r)
    except (OSError, ValueError, KeyError, StopIteration) as err:
        raise SystemExit(
            f"--plot_only {result_json}: not a frozen_vs_full result with per-run training rows "
            f"(files written before the harness recorded train_rows cannot be redrawn): {err!r}"
        ) from err
    path = result_json.with_suffix(".png")
    title = plot_title(
        settings["dataset_name"],
        train_rows,
        settings["num_train_epochs"],
        len(settings["seed_list"]),
    )
    return path, plot(summary, path, title)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.plot_only is not None:
        print(f"wrote {replot(args.plot_only)[0]}")
        return {}
    info, machine = harness.run_info(script="frozen_vs_full.py"), harness.machine()
    stem = args.name or "frozen_vs_full" + (
        "" if args.dataset_name == "rotten_tomatoes_sentences" else f"_{args.dataset_name}"
    )
    work, log_dir = harness.workspace(args, "frozen_vs_full")
    start = time.perf_counter()
    rows = [run_baseline(args, seed) for seed in args.seed_list]
    for i, seed in enumerate(args.seed_list):
        for name in args.strategy_names:
            arm = arm_for(BY_NAME[name], seed, args, work)
            for _ in range(args.repeats):
                record = flatten(harness.run_arm(arm, log_dir, i, **harness.harness_kwargs(args)))
                rows.append(record)
                print(
                    f"{name:28s} seed {seed}: accuracy {record['accuracy']:.4f}, "
                    f"{record['wall_s']:.0f} s end to end, training {record['phases']['training']:.0f} s"
                    + (" LOADED" if record["loaded"] else ""),
                    flush=True,
                )
    info["wall_time_s"] = time.perf_counter() - start
    summary = summarise(rows)
    settings = {
        k: v for k, v in vars(args).items() if k not in ("output_dir", "log_dir", "plot_only")
    }
    settings["strategies"] = {n: BY_NAME[n].settings for n in args.strategy_names}
    document = harness.result_document(info, machine, settings, summary=summary, records=rows)
    md = markdown(summary, args.seed_list)
    out = Path(args.output_dir)
    paths = harness.write_result(stem, document, md, out)
    plot(
        summary,
        out / f"{stem}.png",
        plot_title(
            args.dataset_name, rows[0]["train_rows"], args.num_train_epochs, len(args.seed_list)
        ),
    )
    print(md)
    print(f"wrote {paths[0]}, {paths[1]} and {stem}.png; logs in {log_dir}")
    return document


if __name__ == "__main__":
    main()
