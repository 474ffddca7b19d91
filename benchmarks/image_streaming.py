"""Images in memory vs streamed from disk: wall time and peak RSS of the image recipe, two sizes.

    python benchmarks/image_streaming.py                      # the full run (see benchmarks/README.md)
    python benchmarks/image_streaming.py --num_images 400 --small_num_images 200 \\
        --num_train_epochs 1 --output_dir /tmp/smoke/streaming    # a smoke run, ~1 min

Writes a folder of generated (synthetic) 64x64 RGB PNGs, two classes (horizontal vs vertical
stripes under noise, as in the tests), named as such (``generated-stripes-64px-<n>/``), whose
decoded size (images x 3 x 64 x 64 bytes) is over ``--budget_gb``; and a second, smaller folder
(the first ``--small_num_images`` of them, hard-linked) to show how memory grows with the
number of images. Then runs the image recipe (``nlp-transfer train --task image``) on each
folder twice, each run its own process on the shared harness:

- ``memory``: ``--image_cache_memory_gb`` far above the decoded size: every image is decoded
  once, up front, and kept in memory (the path of every folder that fits);
- ``streamed``: ``--image_cache_memory_gb --budget_gb``: paths and labels only; every image is
  checked once up front, then decoded in the DataLoader workers whenever a batch needs it.

Both arms use the same ``--dataloader_num_workers``. The recipe trains a ResNet-18 from scratch
with the stem and every stage frozen (``--freeze_layers 4``) and without the frozen-prefix cache
(``--cache_frozen_prefix no``), so that every epoch reads every image through the data path (no
cache hides it) while the compute stays small (a forward pass, the head's backward); the stem
keeps its max-pool (``--stem_maxpool true``: 4x fewer FLOPs at 64 pixels). The two arms of one
size must give the same test metrics (checked; ``same_numbers``).

Per arm: wall and CPU seconds, process start to exit; peak RSS (``ru_maxrss`` from ``wait4``:
the largest process of the run's tree, the main one, whose decoded images are what differs; the
DataLoader workers are not added to it); the phases of the run (training, validation, other =
data loading, decoding or checking, model, test, saving). Writes
``<output_dir>/image_streaming.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import harness

IMAGE_SIZE = 64
CLASSES = ("stripes_h", "stripes_v")
STREAMED_LOG = "Images streamed from disk:"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num_images", type=int, default=40_000, help="The large folder.")
    parser.add_argument("--small_num_images", type=int, default=10_000, help="The small folder.")
    parser.add_argument(
        "--budget_gb",
        type=float,
        default=None,
        help="--image_cache_memory_gb of the streamed arms, GB; default: 80%% of the small "
        "folder's decoded size (both folders are over it).",
    )
    parser.add_argument("--num_train_epochs", type=int, default=2)
    parser.add_argument("--per_device_train_batch_size", type=int, default=128)
    parser.add_argument("--dataloader_num_workers", type=int, default=2)
    parser.add_argument(
        "--work_dir", default=None, help="Where the folders and runs go (default: a temp dir)."
    )
    parser.add_argument("--keep", action="store_true", help="Keep the work directory.")
    harness.harness_arguments(parser, repeats=1)
    args = parser.parse_args(argv)
    if not 0 < args.small_num_images < args.num_images:
        parser.error("--small_num_images must be positive and below --num_images.")
    if args.budget_gb is None:
        args.budget_gb = 0.8 * decoded_bytes(args.small_num_images) / 1e9
    if decoded_bytes(args.small_num_images) <= args.budget_gb * 1e9:
        parser.error("--budget_gb must be below the small folder's decoded size.")
    return args


def decoded_bytes(num_images: int) -> int:
    """What ``num_images`` decoded images take in memory (uint8 RGB at 64x64)."""
    return num_images * 3 * IMAGE_SIZE * IMAGE_SIZE


def write_generated_folder(root: Path, num_images: int, seed: int = 0) -> Path:
    """``root/<class>/gen_<i>.png``: generated stripes under noise, half per class.

    Deterministic in ``seed``: image ``i`` is the same in every folder written with the seed.
    """
    import numpy as np
    from PIL import Image

    stripes = (np.arange(IMAGE_SIZE) // 4 % 2 * 200).astype(np.float64)
    patterns = {"stripes_h": stripes[:, None], "stripes_v": stripes[None, :]}
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(num_images):
        name = CLASSES[i % 2]
        rng = np.random.default_rng([seed, i])
        grey = np.broadcast_to(patterns[name], (IMAGE_SIZE, IMAGE_SIZE))
        noise = rng.normal(0, 40, (IMAGE_SIZE, IMAGE_SIZE, 3))
        pixels = np.clip(grey[..., None] + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / name / f"gen_{i:06d}.png")
    return root


def link_subset(source: Path, target: Path, num_images: int) -> Path:
    """``target``: the first ``num_images`` of ``source`` (hard links, else copies)."""
    for i in range(num_images):
        name = CLASSES[i % 2]
        (target / name).mkdir(parents=True, exist_ok=True)
        src, dst = source / name / f"gen_{i:06d}.png", target / name / f"gen_{i:06d}.png"
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    return target


def arm_for(name: str, folder: Path, num_images: int, budget_gb: float, args, work: Path):
    """One ``nlp-transfer train --task image`` process."""
    run_dir = work / "runs" / name
    settings = {
        "train_dir": folder,
        "output_dir": run_dir,
        "cache_dir": work / "cache",
        "image_cache_memory_gb": budget_gb,
        "image_size": IMAGE_SIZE,
        "architecture": "resnet18",
        "weights": "none",
        "stem_maxpool": "true",
        "freeze_layers": 4,
        "cache_frozen_prefix": "no",
        "head_learning_rate": 1e-2,
        "num_train_epochs": args.num_train_epochs,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "per_device_eval_batch_size": 256,
        "dataloader_num_workers": args.dataloader_num_workers,
        "validation_size": 0.05,
        "test_size": 0.05,
        "save_strategy": "no",
        "report_to": "none",
        "seed": 42,
    }
    command = [sys.executable, "-m", "nlp_transfer.cli", "train", "--task", "image"]
    command += [f"--{key}={value}" for key, value in settings.items()]
    command.append("--overwrite_output_dir")
    return harness.Arm(
        name=name,
        command=command,
        metrics_path=run_dir / "metrics.json",
        phases=harness.phases_from_ours,
        extra={
            "mode": name.split("-")[0],
            "num_images": num_images,
            "decoded_gb": decoded_bytes(num_images) / 1e9,
            "budget_gb": budget_gb,
        },
    )


def flatten(record: dict) -> dict:
    """One run's figures (the metrics file dropped), with whether the log says it streamed."""
    metrics = record.pop("metrics")
    record["test_accuracy"] = metrics["test"]["accuracy"]
    record["test_loss"] = metrics["test"]["loss"]
    log = Path(record["log"]).read_text(errors="replace")
    record["streamed"] = STREAMED_LOG in log
    if record["streamed"] != (record["mode"] == "streamed"):
        raise RuntimeError(f"{record['arm']}: the log says streamed={record['streamed']}")
    return record


def summarise(records: list[dict]) -> dict:
    """Per arm: medians (min-max) over repeats; per size: same numbers; RSS growth per mode."""
    arms = {}
    for name in dict.fromkeys(r["arm"] for r in records):
        mine = [r for r in records if r["arm"] == name]
        arms[name] = {
            "mode": mine[0]["mode"],
            "num_images": mine[0]["num_images"],
            "decoded_gb": mine[0]["decoded_gb"],
            "budget_gb": mine[0]["budget_gb"],
            "wall_s": harness.summarize([r["wall_s"] for r in mine]),
            "cpu_s": harness.summarize([r["cpu_s"] for r in mine]),
            "peak_rss_mib": harness.summarize([r["peak_rss_mib"] for r in mine]),
            "training_s": harness.summarize([r["phases"].get("training") for r in mine]),
            "other_s": harness.summarize([r["phases"].get("other") for r in mine]),
            "test_accuracy": mine[0]["test_accuracy"],
            "test_loss": mine[0]["test_loss"],
            "loaded": any(r.get("loaded") for r in mine),
        }
    sizes = sorted({a["num_images"] for a in arms.values()})
    by = {(a["mode"], a["num_images"]): a for a in arms.values()}
    same = {
        n: abs(by["memory", n]["test_loss"] - by["streamed", n]["test_loss"]) < 1e-5
        and by["memory", n]["test_accuracy"] == by["streamed", n]["test_accuracy"]
        for n in sizes
    }
    growth = {
        mode: by[mode, sizes[-1]]["peak_rss_mib"]["median"]
        - by[mode, sizes[0]]["peak_rss_mib"]["median"]
        for mode in ("memory", "streamed")
    }
    return {"arms": arms, "same_numbers": same, "peak_rss_growth_mib": growth, "sizes": sizes}


def markdown(summary: dict) -> str:
    rows = []
    for name, a in summary["arms"].items():
        rows.append(
            [
                f"`{name}`" + (" (loaded)" if a["loaded"] else ""),
                f"{a['num_images']:,}",
                f"{a['decoded_gb']:.3f}",
                f"{a['budget_gb']:.3g}",
                harness.fmt_range(a["wall_s"], 1),
                harness.fmt_range(a["cpu_s"], 1),
                harness.fmt_range(a["peak_rss_mib"], 0),
                harness.fmt_range(a["training_s"], 1),
                harness.fmt_range(a["other_s"], 1),
                f"{a['test_accuracy']:.4f}",
                f"{a['test_loss']:.6f}",
            ]
        )
    headers = [
        "arm", "images", "decoded GB", "budget GB", "end-to-end s", "CPU s", "peak RSS MiB",
        "training s", "other s (data, test, saving)", "test accuracy", "test loss",
    ]  # fmt: skip
    small, large = summary["sizes"][0], summary["sizes"][-1]
    growth = summary["peak_rss_growth_mib"]
    same = ", ".join(f"{n:,}: {'yes' if s else 'NO'}" for n, s in summary["same_numbers"].items())
    return (
        "Generated 64x64 PNG stripes, 2 classes; ResNet-18 from scratch, stem and stages frozen, "
        "no prefix cache (every epoch reads every image). Times and RSS: median (min-max) over "
        "repeats.\n\n"
        + harness.markdown_table(headers, rows)
        + f"\nPeak RSS from {small:,} to {large:,} images: in memory {growth['memory']:+.0f} MiB, "
        f"streamed {growth['streamed']:+.0f} MiB. Same test metrics in memory and streamed "
        f"(per size): {same}.\n"
    )


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, machine = harness.run_info(script="image_streaming.py"), harness.machine()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="image_streaming-"))
    log_dir = Path(args.log_dir) if args.log_dir else work / "logs"
    start = time.perf_counter()
    large = work / f"generated-stripes-64px-{args.num_images}"
    small = work / f"generated-stripes-64px-{args.small_num_images}"
    if not large.exists():
        write_generated_folder(large, args.num_images)
    if not small.exists():
        link_subset(large, small, args.small_num_images)
    info["folder_write_s"] = time.perf_counter() - start
    above = 10 * decoded_bytes(args.num_images) / 1e9  # far above: always in memory
    arms = [
        arm_for(f"{mode}-{n}", folder, n, above if mode == "memory" else args.budget_gb, args, work)
        for n, folder in ((args.small_num_images, small), (args.num_images, large))
        for mode in ("memory", "streamed")
    ]
    records = harness.run_repeats(arms, args.repeats, log_dir, **harness.harness_kwargs(args))
    records = [flatten(r) for r in records]
    info["wall_time_s"] = time.perf_counter() - start
    summary = summarise(records)
    settings = {k: v for k, v in vars(args).items() if k not in ("output_dir", "log_dir")}
    settings["arms"] = {a.name: a.command[2:] for a in arms}
    document = harness.result_document(info, machine, settings, **summary, records=records)
    md = markdown(summary)
    paths = harness.write_result("image_streaming", document, md, Path(args.output_dir))
    print(md)
    print(f"wrote {paths[0]} and {paths[1]}; logs in {log_dir}")
    if not args.keep and args.work_dir is None:
        shutil.rmtree(work / "runs", ignore_errors=True)
        shutil.rmtree(work / "cache", ignore_errors=True)
        for folder in (large, small):
            shutil.rmtree(folder, ignore_errors=True)
    return document


if __name__ == "__main__":
    main()
