"""Domain adaptation: every method on movie -> amazon and movie -> tweets, over several seeds.

    python benchmarks/domain_adaptation.py                    # the committed result
    python benchmarks/domain_adaptation.py --quick            # a smoke run (minutes)
    python benchmarks/domain_adaptation.py --targets nyt --set dann_weight=0.3 --name dann03

Each (target, seed) is one run of the recipe's pipeline
(:func:`nlp_transfer.adaptation.run_domain_adaptation`: source-only, DANN, Deep CORAL, MK-MMD and
the in-domain oracle, all from the same initialisation and sharing one frozen-prefix cache), in
a fresh subprocess, with the recipe's defaults unless ``--set key=value`` overrides them. The
seed changes the splits, the initialisation and the batch order; methods are compared on the
same split within a seed, so the table also gives the *paired* difference to source-only.

Writes ``benchmarks/results/domain_adaptation[_<name>].{json,md}``: run info (date, git sha,
command, machine, versions, settings), every run's figures, and per target and method the mean
and standard deviation over seeds of target test accuracy and macro-F1, the difference to
source-only, source test accuracy and the proxy A-distance.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--targets", default="amazon,tweets", help="Comma list: amazon, tweets, nyt."
    )
    parser.add_argument("--seeds", default="42,43,44", help="Comma list of seeds.")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="A DomainAdaptationConfig setting for every run (repeatable), e.g. freeze_layers=2.",
    )
    parser.add_argument("--name", default="", help="Suffix of the result files.")
    parser.add_argument("--output_dir", default=str(RESULTS))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Smoke run: amazon, 1 seed, 512 source texts, 1 epoch.",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.settings = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: use KEY=VALUE")
        args.settings[key] = value
    if args.quick:
        args.targets, args.seeds = "amazon", "42"
        args.settings |= {"max_source_samples": "512", "num_train_epochs": "1"}
        args.settings |= {"oracle_num_train_epochs": "1"}
        args.name = args.name or "quick"
    args.target_list = args.targets.split(",")
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    return args


def worker(spec_json: str) -> None:
    """One (target, seed) run, through the recipe's flag parsing; prints its figures as JSON."""
    from nlp_transfer.adaptation import DomainAdaptationConfig, run_domain_adaptation
    from nlp_transfer.config import parse_config

    spec = json.loads(spec_json)
    with tempfile.TemporaryDirectory() as tmp:
        flags = ["--target_domain", spec["target"], "--seed", str(spec["seed"])]
        flags += ["--output_dir", str(Path(tmp) / "run")]
        for key, value in spec["settings"].items():
            flags += [f"--{key}", value]
        metrics = run_domain_adaptation(parse_config(DomainAdaptationConfig, flags))
    methods = {
        name: {
            "accuracy": m["target_test"]["accuracy"],
            "f1_macro": m["target_test"]["f1_macro"],
            "source_accuracy": m["source_test"]["accuracy"],
            "proxy_a_distance": m["proxy_a_distance"]["proxy_a_distance"],
            "train_runtime_s": m["train_runtime_s"],
            "best_epoch": m["best_epoch"],
            "alignment": m["alignment"],
        }
        for name, m in metrics["methods"].items()
    }
    result = {
        "target": metrics["target"],
        "seed": spec["seed"],
        "sizes": metrics["sizes"],
        "pretrained_proxy_a_distance": metrics["pretrained"]["proxy_a_distance"][
            "proxy_a_distance"
        ],
        "total_runtime_s": metrics["timings"]["total_runtime_s"],
        "methods": methods,
    }
    print("RESULT " + json.dumps(result), flush=True)


def run_one(target: str, seed: int, settings: dict, log_dir: Path) -> dict:
    spec = {"target": target, "seed": seed, "settings": settings}
    log = log_dir / f"{target}-seed{seed}.log"
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
        raise RuntimeError(f"{target} (seed {seed}) failed; see {log}")
    return json.loads(lines[-1][len("RESULT ") :])


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: list[dict]) -> dict:
    """``{target: {method: {mean, std of each figure, paired difference to source-only}}}``."""
    out: dict = {}
    for target in dict.fromkeys(r["target"] for r in runs):
        mine = [r for r in runs if r["target"] == target]
        table: dict = {
            "pretrained": {
                "proxy_a_distance": _stats([r["pretrained_proxy_a_distance"] for r in mine])
            }
        }
        for method in mine[0]["methods"]:
            rows = [r["methods"][method] for r in mine]
            entry = {"seeds": len(rows)}
            for key in (
                "accuracy",
                "f1_macro",
                "source_accuracy",
                "proxy_a_distance",
                "train_runtime_s",
            ):
                entry[key], entry[f"{key}_std"] = _stats([row[key] for row in rows])
            if "source_only" in mine[0]["methods"]:
                deltas = [
                    r["methods"][method]["accuracy"] - r["methods"]["source_only"]["accuracy"]
                    for r in mine
                ]
                entry["delta_vs_source_only"], entry["delta_vs_source_only_std"] = _stats(deltas)
                entry["seeds_better_than_source_only"] = sum(d > 0 for d in deltas)
            table[method] = entry
        out[target] = table
    return out


NAMES = {
    "source_only": "source-only fine-tuning",
    "dann": "DANN",
    "coral": "Deep CORAL",
    "mmd": "MK-MMD",
    "oracle": "in-domain oracle (target labels)",
}


def markdown(summary: dict, info: dict) -> str:
    seeds = info["settings"]["seeds"]
    lines = []
    for target, table in summary.items():
        pad = table["pretrained"]["proxy_a_distance"]
        lines += [
            f"### {info['settings']['source']} -> {target}",
            "",
            f"Mean ± standard deviation over {len(seeds)} seeds ({', '.join(map(str, seeds))}). "
            f"Δ: the paired difference to source-only on the same split (wins: seeds where the "
            f"method is better). PAD: proxy A-distance of source-test vs target-test features; "
            f"pretrained features: {pad[0]:.3f} ± {pad[1]:.3f}.",
            "",
            "| method | target accuracy | Δ vs source-only (wins) | target macro-F1 | source accuracy | PAD | training s |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for method, s in table.items():
            if method == "pretrained":
                continue
            delta = (
                f"{s['delta_vs_source_only']:+.4f} ± {s['delta_vs_source_only_std']:.4f} "
                f"({s['seeds_better_than_source_only']}/{s['seeds']})"
                if method != "source_only" and "delta_vs_source_only" in s
                else "—"
            )
            lines.append(
                f"| {NAMES.get(method, method)} | {s['accuracy']:.4f} ± {s['accuracy_std']:.4f} | "
                f"{delta} | {s['f1_macro']:.4f} ± {s['f1_macro_std']:.4f} | "
                f"{s['source_accuracy']:.4f} | {s['proxy_a_distance']:.3f} ± "
                f"{s['proxy_a_distance_std']:.3f} | {s['train_runtime_s']:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def run_info(args) -> dict:
    import accelerate
    import sklearn
    import torch
    import transformers

    from nlp_transfer.adaptation import DomainAdaptationConfig

    cpu = platform.processor()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    ).stdout.strip()
    defaults = DomainAdaptationConfig()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python benchmarks/domain_adaptation.py " + " ".join(sys.argv[1:]),
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
            "scikit-learn": sklearn.__version__,
        },
        "settings": {
            "source": defaults.source_dataset,
            "targets": args.target_list,
            "seeds": args.seed_list,
            "overrides": args.settings,
            "model": "sentence-transformers/all-MiniLM-L6-v2 (packaged)",
        },
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:
        worker(args.worker)
        return {}
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "domain_adaptation" + (f"_{args.name}" if args.name else "")
    log_dir = Path(tempfile.mkdtemp(prefix="domain_adaptation-logs-"))
    info = run_info(args)
    start = time.perf_counter()
    runs = []
    for target in args.target_list:
        for seed in args.seed_list:
            run = run_one(target, seed, args.settings, log_dir)
            runs.append(run)
            accuracies = ", ".join(f"{m} {v['accuracy']:.4f}" for m, v in run["methods"].items())
            print(
                f"{target} seed {seed} ({run['total_runtime_s']:.0f} s): {accuracies}", flush=True
            )
    info["wall_time_s"] = time.perf_counter() - start
    summary = summarise(runs)
    result = {"run": info, "summary": summary, "runs": runs}
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    per_run = statistics.fmean(r["total_runtime_s"] for r in runs)
    header = (
        f"# Domain adaptation{f' ({args.name})' if args.name else ''}\n\n"
        f"`{info['command']}` — {info['machine']['cpu']}, {info['machine']['cpu_count']} cores, "
        f"{info['date']}, git {info['git_commit']}, {info['wall_time_s'] / 60:.1f} min in all "
        f"({per_run / 60:.1f} min per run of every method + oracle). all-MiniLM-L6-v2; "
        f"recipe defaults{' with ' + json.dumps(args.settings) if args.settings else ''}.\n\n"
    )
    text = header + markdown(summary, info)
    (out_dir / f"{stem}.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"Wrote {out_dir / stem}.json, .md (per-run logs in {log_dir})")
    return result


if __name__ == "__main__":
    main()
