"""Text at scale: the data phase, training and the TF-IDF baseline on 10k, 100k and 1M rows.

    python benchmarks/text_scaling.py --refuse_when_loaded          # the full run (see README)
    python benchmarks/text_scaling.py --sizes 200,500 --train_samples 64 --eval_samples 32 \\
        --output_dir /tmp/text_scaling                               # smoke run (minutes)

The data: rows drawn **with replacement** from the built-in ``rotten_tomatoes_sentences``
(10,072 movie-review sentences, positive/negative; all its splits pooled), seeded, written to one
Parquet file per size (``text``, ``label``). The rows repeat (1M rows hold each sentence ~100
times), so the split's test rows also occur in training: these runs measure time and memory,
not accuracy, and their accuracies are not reported.

For every size, each arm is its own process (the shared harness: wall time from process start
to exit, peak RSS, the load before it):

* ``data_cold``: what a run does before the model, from a fresh ``datasets`` cache: read the
  Parquet file into Arrow, check and encode the labels, split, tokenize every split
  (``--preprocessing_num_workers``), through ``text_scaling_worker.py`` (the library's own
  ``load_data`` and ``tokenize_dataset``);
* ``data_warm``: the same again on the cache the cold arm left: the file's Arrow copy, the
  splits' index files and the tokens are reused (nothing is tokenized);
* ``baseline``: the TF-IDF + logistic regression baseline as a run fits it (its training rows
  capped at 100,000; every validation and test row scored, in batches);
* ``train_full`` and ``train_frozen``: ``nlp-transfer train --task text`` on the file, full
  fine-tuning and ``--freeze_layers 4`` with the frozen-prefix cache, for one epoch of
  ``--train_samples`` rows (``--max_train_samples``; 9,600 = 300 steps of 32, drawn after the
  split from the whole training split) and ``--eval_samples`` validation and test rows. The
  figure is seconds of training per 1,000 samples (the loop's training time, the cache build
  shown beside it), which should not grow with the rows in the file.

Ratios against the smallest size are taken per repeat. Writes
``<output_dir>/text_scaling.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import harness

WORKER = Path(__file__).resolve().parent / "text_scaling_worker.py"
SOURCE = "rotten_tomatoes_sentences"
TRAIN_ARMS = {"train_full": [], "train_frozen": ["--freeze_layers=4"]}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000", help="Rows per file.")
    parser.add_argument("--train_samples", type=int, default=9600, help="Rows trained on.")
    parser.add_argument("--eval_samples", type=int, default=1000, help="Validation/test rows.")
    parser.add_argument("--preprocessing_num_workers", type=int, default=None)
    parser.add_argument("--model_name_or_path", default=None, help="Default: the packaged one.")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--work_dir",
        default=None,
        help="Data files, caches and runs (default: a temp dir, emptied at the end but its logs).",
    )
    harness.harness_arguments(parser, repeats=1)
    args = parser.parse_args(argv)
    args.size_list = [int(s) for s in args.sizes.split(",")]
    return args


def write_data(sizes: list[int], folder: Path, seed: int) -> dict[int, Path]:
    """One Parquet file per size: rows drawn with replacement from the built-in sentences."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import concatenate_datasets

    from nlp_transfer.data.builtin import load_builtin_dataset

    splits = load_builtin_dataset(SOURCE, seed=seed)
    pool = concatenate_datasets(list(splits.values()))
    names = pool.features["label"].names
    table = pa.table(
        {
            "text": pool.with_format("arrow")["text"],
            "label": pa.array(names).take(pool.with_format("arrow")["label"]),
        }
    )
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for size in sizes:
        paths[size] = folder / f"{SOURCE}-{size}.parquet"
        pq.write_table(table.take(rng.integers(0, len(table), size)), paths[size])
    return paths


def arms_for(size: int, path: Path, repeat: int, args, work: Path) -> list[harness.Arm]:
    """The five arms of one size and repeat (a fresh datasets cache per repeat)."""
    cache = work / f"cache-{size}-r{repeat}"
    env = {"PYTHONPATH": str(harness.REPO)}  # this checkout's library, wherever run from
    spec = {
        "train_file": str(path),
        "cache_dir": str(cache),
        "preprocessing_num_workers": args.preprocessing_num_workers,
        "model_name_or_path": args.model_name_or_path,
        "seed": args.seed,
    }
    arms = []
    for name, phase in (("data_cold", "data"), ("data_warm", "data"), ("baseline", "baseline")):
        metrics = work / f"{name}-{size}-r{repeat}.json"
        worker_spec = json.dumps(spec | {"phase": phase, "metrics_path": str(metrics)})
        arms.append(
            harness.Arm(
                name=f"{name}-{size}",
                command=[sys.executable, str(WORKER), worker_spec],
                metrics_path=metrics,
                phases=lambda m, _log: m["phases"],
                env=env,
                extra={"size": size, "kind": name},
            )
        )
    for name, extra in TRAIN_ARMS.items():
        out = work / f"{name}-{size}-r{repeat}"
        flags = [
            f"--train_file={path}",
            f"--cache_dir={cache}",
            f"--output_dir={out}",
            f"--max_train_samples={args.train_samples}",
            f"--max_eval_samples={args.eval_samples}",
            "--num_train_epochs=1",
            "--learning_rate=5e-5",
            f"--seed={args.seed}",
            "--run_baseline=false",
            "--save_strategy=no",
            "--overwrite_output_dir",
            *extra,
        ]
        if args.preprocessing_num_workers:
            flags.append(f"--preprocessing_num_workers={args.preprocessing_num_workers}")
        if args.model_name_or_path:
            flags.append(f"--model_name_or_path={args.model_name_or_path}")
        command = [sys.executable, "-m", "nlp_transfer.cli", "train", "--task", "text", *flags]
        arms.append(
            harness.Arm(
                name=f"{name}-{size}",
                command=command,
                metrics_path=out / "metrics.json",
                phases=harness.phases_from_ours,
                env=env,
                extra={"size": size, "kind": name},
            )
        )
    return arms


def per_1000(record: dict, args) -> float | None:
    """Seconds of training per 1,000 samples trained on.

    From the run's own ``train_samples_per_second`` (samples it trained on, over its training
    time): a file too small for ``--train_samples`` training rows trains on fewer (10,000 rows
    leave 8,000), so the training time over ``--train_samples`` would flatter it.
    """
    rate = ((record.get("metrics") or {}).get("timings") or {}).get("train_samples_per_second")
    if rate:
        return 1000 / rate
    training = record["phases"].get("training")
    return None if training is None else training / args.train_samples * 1000


def figures_of(records: list[dict], args) -> dict:
    """Per size: each arm's wall time and peak RSS, the data phases, training per 1,000 samples,
    the baseline's fit; ratios against the smallest size, per repeat."""
    out = {}
    smallest = min(args.size_list)
    for size in args.size_list:
        mine = [r for r in records if r["size"] == size]
        entry = {}
        for kind in ("data_cold", "data_warm", "baseline", *TRAIN_ARMS):
            arm = f"{kind}-{size}"
            entry[kind] = {
                "wall_s": harness.figures(mine, arm, lambda r: r["wall_s"]),
                "peak_rss_mib": harness.figures(mine, arm, lambda r: r["peak_rss_mib"]),
                "phases": {
                    phase: harness.figures(mine, arm, lambda r, p=phase: r["phases"].get(p))
                    for phase in sorted({p for r in mine if r["arm"] == arm for p in r["phases"]})
                },
            }
            if kind in TRAIN_ARMS:
                entry[kind]["train_s_per_1000"] = harness.figures(
                    mine, arm, lambda r: per_1000(r, args)
                )
        for kind in TRAIN_ARMS:
            ours = sorted((r for r in mine if r["kind"] == kind), key=lambda r: r["repeat"])
            base = sorted(
                (r for r in records if r["size"] == smallest and r["kind"] == kind),
                key=lambda r: r["repeat"],
            )
            entry[kind]["per_1000_vs_smallest"] = harness.paired_ratios(
                [per_1000(r, args) for r in ours], [per_1000(r, args) for r in base]
            )
        out[str(size)] = entry
    return out


def markdown(figures: dict, args) -> str:
    lines = [
        f"Rows drawn with replacement from the built-in `{SOURCE}` (Parquet), split 80/10/10; "
        "each cell is a separate process, median (min-max) over repeats. Data phase: read into "
        "Arrow, check, encode labels, split, tokenize (cold: fresh `datasets` cache; warm: "
        "the cold arm's cache reused). Training: one epoch of "
        f"{args.train_samples:,} rows drawn from the whole training split, "
        f"{args.eval_samples:,} validation/test rows; seconds of training per 1,000 samples "
        "(frozen: `--freeze_layers 4` with the frozen-prefix cache, its build time beside "
        "it). Baseline: TF-IDF + logistic regression fit and scoring (training rows capped at "
        "100,000).\n",
    ]
    rows = []
    for size, entry in figures.items():
        cold, warm = entry["data_cold"], entry["data_warm"]
        full, frozen = entry["train_full"], entry["train_frozen"]
        rows.append(
            [
                f"{int(size):,}",
                f"{harness.fmt_range(cold['phases'].get('load_and_check', _none()))} + "
                f"{harness.fmt_range(cold['phases'].get('tokenize', _none()))}",
                harness.fmt_range(cold["peak_rss_mib"], 0),
                f"{harness.fmt_range(warm['phases'].get('load_and_check', _none()))} + "
                f"{harness.fmt_range(warm['phases'].get('tokenize', _none()))}",
                harness.fmt_range(warm["peak_rss_mib"], 0),
                f"{harness.fmt_range(full['train_s_per_1000'])} "
                f"(x{harness.fmt_range(full['per_1000_vs_smallest'], 2)})",
                f"{harness.fmt_range(frozen['train_s_per_1000'])} "
                f"(+{harness.fmt_range(frozen['phases'].get('cache_build', _none()))} cache)",
                harness.fmt_range(entry["baseline"]["phases"].get("baseline", _none())),
                harness.fmt_range(entry["baseline"]["peak_rss_mib"], 0),
            ]
        )
    headers = [
        "rows",
        "data cold: load+check + tokenize (s)",
        "data cold peak RSS (MiB)",
        "data warm: load+check + tokenize (s)",
        "data warm peak RSS (MiB)",
        "full FT s / 1k samples (vs smallest)",
        "frozen-4 cached s / 1k samples",
        "TF-IDF baseline (s)",
        "baseline peak RSS (MiB)",
    ]
    lines.append(harness.markdown_table(headers, rows))
    return "\n".join(lines) + "\n"


def _none() -> dict:
    return harness.summarize([])


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, machine = harness.run_info(script="text_scaling.py"), harness.machine()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="text_scaling-"))
    log_dir = Path(args.log_dir) if args.log_dir else work / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    paths = write_data(args.size_list, work / "data", args.seed)
    records = []
    for repeat in range(args.repeats):
        for size in args.size_list:
            for arm in arms_for(size, paths[size], repeat, args, work):
                record = harness.run_arm(arm, log_dir, repeat, **harness.harness_kwargs(args))
                records.append(record)
                print(
                    f"[{repeat + 1}/{args.repeats}] {arm.name:<22} {record['wall_s']:8.1f} s wall "
                    f"{record['peak_rss_mib']:8.0f} MiB peak RSS"
                    + ("  LOADED" if record["loaded"] else ""),
                    flush=True,
                )
    info["wall_time_s"] = time.perf_counter() - start
    figures = figures_of(records, args)
    md = markdown(figures, args)
    settings = {k: v for k, v in vars(args).items() if k not in ("output_dir", "log_dir")}
    settings |= {"source": SOURCE, "sampling": "with replacement", "cpu_count": os.cpu_count()}
    document = harness.result_document(info, machine, settings, figures=figures, records=records)
    written = harness.write_result("text_scaling", document, md, Path(args.output_dir))
    print(md)
    print(f"wrote {written[0]} and {written[1]}; logs in {log_dir}")
    if args.work_dir is None:  # the data, caches, runs and arm files; the logs stay
        for path in work.iterdir():
            if path.is_dir() and path != log_dir:
                shutil.rmtree(path, ignore_errors=True)
            elif path.is_file():
                path.unlink()
    return document


if __name__ == "__main__":
    main()
