"""Long documents: truncation against head + tail and overlapping windows, on 20 Newsgroups.

    python benchmarks/long_texts.py --settle_s 30              # 4 arms x 2 seeds (hours on 2 cores)
    python benchmarks/long_texts.py --seeds 42 --arms truncate_128,chunks_128
    python benchmarks/long_texts.py --max_train_samples 64 --max_eval_samples 32 \\
        --output_dir /tmp/lt                                   # smoke run

The data: the built-in 20 Newsgroups by date (posts with their headers, median about 330
tokens): a ``--max_train_samples`` subset of the training split (4,000 posts), its validation
split (a tenth of the training posts) and the full test split (7,532 posts) unless
``--max_eval_samples`` caps both. Every arm is one ``nlp-transfer train`` process with the default
model and the same ``--num_train_epochs`` and ``--learning_rate``; they differ only in how a
post longer than ``--max_seq_length`` is read (:mod:`nlp_transfer.text.windows`):

- ``truncate_128``: its first 128 tokens;
- ``head_tail_128``: its first 32 and last 94 content tokens (Sun et al. 2019's split);
- ``chunks_128``: windows of 128 tokens sharing 64 (``--stride 64``), at most ``--max_chunks``
  per post (the library's default), trained on with the post's label; the post's prediction is
  the mean of its windows' logits, and metrics are per post;
- ``truncate_512``: its first 512 tokens (the model's maximum).

Reported per arm and seed: test accuracy and macro-F1 (per post), whole-process wall time and
the training phase. The goal (issue 37): chunks at 128 at least 2 points above truncate at 128,
and within 0.5 points of truncate at 512 (or above it) in less time.

Writes ``<output_dir>/long_texts.{json,md}``, rewritten after every arm (an interrupted run
keeps what it finished).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import harness

ARMS = {
    "truncate_128": ["--max_seq_length", "128", "--long_text_strategy", "truncate"],
    "head_tail_128": ["--max_seq_length", "128", "--long_text_strategy", "head_tail"],
    "chunks_128": ["--max_seq_length", "128", "--long_text_strategy", "chunks", "--stride", "64"],
    "truncate_512": ["--max_seq_length", "512", "--long_text_strategy", "truncate"],
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="42,43", help="Comma-separated seeds.")
    parser.add_argument("--arms", default=",".join(ARMS), help="Comma-separated arms.")
    parser.add_argument("--num_train_epochs", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--max_train_samples", type=int, default=4000)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    harness.harness_arguments(parser, repeats=1)
    return parser.parse_args(argv)


def summary_rows(records: list[dict]) -> list[list[str]]:
    """One row per arm: mean (and each seed's) test accuracy, macro-F1, minutes."""
    rows = []
    for arm in ARMS:
        runs = [r for r in records if r["arm"] == arm and r.get("test")]
        if not runs:
            continue
        acc = [r["test"]["accuracy"] for r in runs]
        f1 = [r["test"]["f1_macro"] for r in runs]
        wall = [r["wall_s"] / 60 for r in runs]
        train = [(r["train_runtime_s"] or 0.0) / 60 for r in runs]
        seeds = ", ".join(f"{r['seed']}: {r['test']['accuracy']:.4f}" for r in runs)
        rows.append([
            arm, f"{statistics.mean(acc):.4f}", f"{statistics.mean(f1):.4f}",
            f"{statistics.mean(wall):.1f}", f"{statistics.mean(train):.1f}",
            f"{statistics.mean(r['windows_per_post'] for r in runs):.2f}", seeds, len(runs),
        ])  # fmt: skip
    return rows


def goal_lines(records: list[dict]) -> list[str]:
    """The issue's goal, checked on the seeds every compared arm has."""
    by = {}
    for r in records:
        if r.get("test"):
            by.setdefault(r["arm"], {})[r["seed"]] = r
    lines = []
    chunks = by.get("chunks_128", {})
    for other, need in (("truncate_128", 2.0), ("truncate_512", -0.5)):
        seeds = sorted(set(chunks) & set(by.get(other, {})))
        if not seeds:
            continue
        diff = statistics.mean(
            100 * (chunks[s]["test"]["accuracy"] - by[other][s]["test"]["accuracy"]) for s in seeds
        )
        time_ratio = statistics.mean(chunks[s]["wall_s"] / by[other][s]["wall_s"] for s in seeds)
        met = diff >= need and (other != "truncate_512" or time_ratio < 1.0)
        want = f"at least {need:+.1f} points" + (" in less time" if other == "truncate_512" else "")
        lines.append(
            f"- chunks_128 vs {other} (seeds {', '.join(map(str, seeds))}): {diff:+.2f} accuracy "
            f"points, {time_ratio:.2f}x the wall time; goal {want}: "
            f"**{'met' if met else 'not met'}**"
        )
    return lines


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, machine = harness.run_info(script="long_texts.py"), harness.machine()
    work, log_dir = harness.workspace(args, "long_texts")
    common = ["train", "--task", "text", "--dataset_name", "20_newsgroups"]
    common += ["--max_train_samples", str(args.max_train_samples)]
    if args.max_eval_samples:
        common += ["--max_eval_samples", str(args.max_eval_samples)]
    common += ["--num_train_epochs", str(args.num_train_epochs)]
    common += ["--learning_rate", str(args.learning_rate), "--save_strategy", "no"]
    common += ["--run_baseline", "false", "--calibration", "none"]
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = [a for a in args.arms.split(",") if a]
    unknown = set(arms) - set(ARMS)
    if unknown:
        raise SystemExit(f"--arms: unknown {sorted(unknown)}; choose from {', '.join(ARMS)}")
    records = []
    for seed in seeds:
        for name in arms:
            out = work / f"{name}-{seed}"
            command = [sys.executable, "-m", "nlp_transfer.cli", *common, *ARMS[name]]
            command += ["--seed", str(seed), "--output_dir", str(out)]
            arm = harness.Arm(
                name=name,
                command=command,
                metrics_path=out / "metrics.json",
                phases=harness.phases_from_ours,
            )
            record = harness.run_arm(arm, log_dir, 0, **harness.harness_kwargs(args))
            metrics = record.pop("metrics", None) or {}
            record["seed"] = seed
            record["test"] = {
                k: metrics.get("test", {}).get(k) for k in ("accuracy", "f1_macro", "loss")
            }
            record["train_runtime_s"] = metrics.get("timings", {}).get("train_runtime_s")
            record["long_text"] = metrics.get("long_text")
            record["windows_per_post"] = windows_per_post(Path(record["log"]))
            records.append(record)
            write(args, info, machine, common, records)
    return write(args, info, machine, common, records, final=True)


def windows_per_post(log: Path) -> float:
    """Rows per training post, from the run's "train: N text(s) read as M windows" line (1.0
    when the arm does not window)."""
    import re

    found = re.search(r"train: ([\d,]+) text\(s\) read as ([\d,]+) windows", log.read_text())
    if not found:
        return 1.0
    posts, windows = (int(g.replace(",", "")) for g in found.groups())
    return windows / posts


def write(args, info, machine, common, records, final: bool = False) -> dict:
    table = harness.markdown_table(
        ["arm", "test accuracy", "test macro-F1", "whole process (min)", "training (min)",
         "rows per training post", "accuracy per seed", "seeds"],
        summary_rows(records),
    )  # fmt: skip
    loaded = any(r.get("loaded") for r in records)
    md = (
        f"20 Newsgroups by date: {args.max_train_samples:,} training posts, the "
        + ("full validation and test splits" if not args.max_eval_samples else
           f"validation and test capped at {args.max_eval_samples:,}")
        + f"; the default model, {args.num_train_epochs} epoch(s) at learning rate "
        f"{args.learning_rate:g} for every arm{' (loaded machine)' if loaded else ''}:\n\n"
        f"{table}\n\n" + "\n".join(goal_lines(records)) + "\n"
    )  # fmt: skip
    document = harness.result_document(
        info,
        machine,
        {"common": common, "arms": ARMS, "complete": final},
        records=records,
    )
    paths = harness.write_result("long_texts", document, md, Path(args.output_dir))
    if final:
        print(md)
        print(f"wrote {paths[0]} and {paths[1]}")
    return document


if __name__ == "__main__":
    main()
