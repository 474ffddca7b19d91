"""Domain adaptation: every method on movie -> amazon and movie -> tweets, over several seeds.

    python benchmarks/domain_adaptation.py                    # CORAL weight chosen on nyt, then the claim
    python benchmarks/domain_adaptation.py --quick            # a smoke run (minutes)
    python benchmarks/domain_adaptation.py --select_coral_on none --set coral_weight=1e4

Each (target, seed) is one run of the recipe (``recipes/domain_adaptation.py``: source-only,
DANN, Deep CORAL, MK-MMD and the in-domain oracle, all from the same initialisation and sharing
one frozen-prefix cache), a fresh process run by the shared harness (``harness.py``: end-to-end
time, CPU seconds, load before the run), with the recipe's defaults unless ``--set key=value``
overrides them.

CORAL's weight is chosen without the claim's target labels: first a sweep of
``--coral_weights`` on a domain pair not used for the claim (``--select_coral_on``, default
movie -> nyt; CORAL only, ``--selection_seeds``), scored by that pair's target test accuracy;
the best weight then runs on ``--targets``. ``--select_coral_on none`` skips the sweep (then
say where the weight came from). The
seed changes the splits, the initialisation and the batch order; methods are compared on the
same split within a seed, so the table also gives the *paired* difference to source-only.

Writes ``benchmarks/results/domain_adaptation[_<name>].{json,md}``: run info (date, git sha,
command, machine, versions, settings), every run's figures, and per target and method the mean
and standard deviation over seeds of target test accuracy and macro-F1, the difference to
source-only, source test accuracy and the proxy A-distance.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import harness


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
    parser.add_argument(
        "--select_coral_on",
        default="nyt",
        help="Target domain of the CORAL weight sweep (not one of --targets), or none.",
    )
    parser.add_argument("--coral_weights", default="1e2,1e3,1e4,1e5")
    parser.add_argument("--selection_seeds", default="42", help="Seeds of the CORAL sweep.")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Smoke run: amazon, 1 seed, 512 source texts, 1 epoch.",
    )
    harness.harness_arguments(parser, repeats=1)
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
        args.settings |= {"oracle_num_train_epochs": "1", "max_target_samples": "512"}
        args.coral_weights = "1e3,1e4"
        args.name = args.name or "quick"
    args.target_list = args.targets.split(",")
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    args.coral_weight_list = [float(w) for w in args.coral_weights.split(",")]
    args.selection_seed_list = [int(s) for s in args.selection_seeds.split(",")]
    if args.select_coral_on != "none":
        if args.select_coral_on in args.target_list:
            parser.error(
                f"--select_coral_on {args.select_coral_on} is one of --targets: choose the "
                "weight on a pair not used for the claim"
            )
        if "coral_weight" in args.settings:
            parser.error("--set coral_weight=... needs --select_coral_on none")
    return args


def run_one(target: str, seed: int, settings: dict, work: Path, args) -> dict:
    """One (target, seed) run of the recipe as a fresh process; its figures per method."""
    run_dir = work / f"{target}-seed{seed}-{len(list(work.iterdir()))}"
    command = [sys.executable, str(harness.REPO / "recipes" / "domain_adaptation.py")]
    command += [f"--target_domain={target}", f"--seed={seed}", f"--output_dir={run_dir}"]
    command += [f"--{k}" if v is None else f"--{k}={v}" for k, v in settings.items()]
    arm = harness.Arm(run_dir.name, command, metrics_path=run_dir / "metrics.json")
    record = harness.run_arm(arm, work, seed, **harness.harness_kwargs(args))
    metrics = record["metrics"]
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
    return {
        "target": metrics["target"],
        "seed": seed,
        "settings": settings,
        "sizes": metrics["sizes"],
        "pretrained_proxy_a_distance": metrics["pretrained"]["proxy_a_distance"][
            "proxy_a_distance"
        ],
        "total_runtime_s": metrics["timings"]["total_runtime_s"],
        "wall_s": record["wall_s"],
        "cpu_s": record["cpu_s"],
        "load_1m_before": record["load_1m_before"],
        "loaded": record["loaded"],
        "methods": methods,
    }


def choose_coral_weight(runs: list[dict]) -> tuple[float, dict]:
    """The sweep's best weight by mean target accuracy over seeds (ties: the smaller weight).

    Args:
        runs: Selection runs, each with ``settings["coral_weight"]`` and a ``coral`` method.

    Returns:
        ``(weight, {weight: mean target accuracy})``.

    Raises:
        ValueError: No run carries a CORAL result.
    """
    scores: dict[float, list[float]] = {}
    for run in runs:
        if "coral" in run["methods"]:
            weight = float(run["settings"]["coral_weight"])
            scores.setdefault(weight, []).append(run["methods"]["coral"]["accuracy"])
    if not scores:
        raise ValueError("no CORAL run in the selection sweep: check --coral_weights")
    means = {w: statistics.fmean(v) for w, v in sorted(scores.items())}
    best = max(means, key=lambda w: (means[w], -w))
    return best, means


def select_coral(args, work: Path) -> dict:
    """Sweep ``--coral_weights`` on ``--select_coral_on``; returns the choice and the sweep."""
    runs = []
    for weight in args.coral_weight_list:
        for seed in args.selection_seed_list:
            settings = args.settings | {"coral_weight": f"{weight:g}", "methods": "coral"}
            settings["no_oracle"] = None
            run = run_one(args.select_coral_on, seed, settings, work, args)
            runs.append(run)
            print(
                f"CORAL selection on {args.select_coral_on}: weight {weight:g}, seed {seed}: "
                f"target accuracy {run['methods']['coral']['accuracy']:.4f}",
                flush=True,
            )
    weight, means = choose_coral_weight(runs)
    print(f"CORAL weight chosen on {args.select_coral_on}: {weight:g} ({means})", flush=True)
    return {"pair": args.select_coral_on, "chosen": weight, "mean_accuracy": means, "runs": runs}


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


def markdown(summary: dict, document: dict) -> str:
    """Per target: every method's mean ± std over seeds and its paired difference to source-only."""
    seeds = document["settings"]["seeds"]
    lines = []
    for target, table in summary.items():
        pad = table["pretrained"]["proxy_a_distance"]
        lines += [
            f"### {document['settings']['source']} -> {target}",
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


def main(argv=None) -> dict:
    args = parse_args(argv)
    from nlp_transfer.adaptation import DomainAdaptationConfig

    stem = "domain_adaptation" + (f"_{args.name}" if args.name else "")
    work = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="domain_adapt-"))
    work.mkdir(parents=True, exist_ok=True)
    info, machine = harness.run_info(script="domain_adaptation.py"), harness.machine()
    start = time.perf_counter()
    selection = None
    settings = dict(args.settings)
    if args.select_coral_on != "none":
        selection = select_coral(args, work)
        settings["coral_weight"] = f"{selection['chosen']:g}"
    runs = []
    for target in args.target_list:
        for seed in args.seed_list:
            run = run_one(target, seed, settings, work, args)
            runs.append(run)
            accuracies = ", ".join(f"{m} {v['accuracy']:.4f}" for m, v in run["methods"].items())
            print(f"{target} seed {seed} ({run['wall_s']:.0f} s): {accuracies}", flush=True)
    info["wall_time_s"] = time.perf_counter() - start
    summary = summarise(runs)
    run_settings = {
        "source": DomainAdaptationConfig().source_dataset,
        "targets": args.target_list,
        "seeds": args.seed_list,
        "overrides": settings,
        "coral_weight_from": (
            f"sweep on {args.select_coral_on}" if selection else "given (--select_coral_on none)"
        ),
    }
    document = harness.result_document(
        info, machine, run_settings, coral_selection=selection, summary=summary, records=runs
    )
    per_run = statistics.fmean(r["wall_s"] for r in runs)
    chosen = (
        f"CORAL weight {selection['chosen']:g}, chosen on movie -> {selection['pair']} "
        f"(mean target accuracy per weight: "
        + ", ".join(f"{w:g}: {a:.4f}" for w, a in selection["mean_accuracy"].items())
        + "). "
        if selection
        else ""
    )
    text = (
        f"# Domain adaptation{f' ({args.name})' if args.name else ''}\n\n"
        f"{info['wall_time_s'] / 60:.1f} min in all ({per_run / 60:.1f} min per run of every "
        f"method + oracle, process wall time). {chosen}Recipe defaults"
        f"{' with ' + json.dumps(settings) if settings else ''}.\n\n" + markdown(summary, document)
    )
    paths = harness.write_result(stem, document, text, Path(args.output_dir))
    print(text)
    print(f"wrote {paths[0]} and {paths[1]}; logs in {work}")
    return document


if __name__ == "__main__":
    main()
