"""The strategy race (``--strategy auto``) against each strategy alone, TF-IDF and SetFit.

    python benchmarks/strategy_race.py                          # every row, seeds 0-2 (hours)
    python benchmarks/strategy_race.py --rows sentiment_k16,sentiment_k64 --seeds 0
    python benchmarks/strategy_race.py --rows sentiment_k16 --seeds 0 --max_test 200 \\
        --budget_scale 0.2 --output_dir /tmp/race                 # a smoke run

Rows (each from the seed-42 splits of a built-in set): ``sentiment_k16`` / ``sentiment_k64``
(16 / 64 training sentences per class, and as many per class from the validation split: the
race needs labels to judge on), ``sentiment_1000`` (1,000 training sentences), ``sentiment_full``,
``sms_spam`` and ``20ng_4000`` (4,000 posts of 20 Newsgroups); validation capped at
``--max_validation`` rows, test at ``--max_test``. For each row and seed, each a fresh process
timed end to end by ``harness.py``:

- ``auto``: ``nlp-transfer train --strategy auto --time_budget B`` (B per row, below, times
  ``--budget_scale``); its test score is its winner's;
- each strategy alone, at the race's own settings for it: ``--strategy auto
  --race_candidates NAME`` with no budget (a race of one is never pruned): ``tfidf``,
  ``feature_extraction``, ``contrastive`` (few-shot rows only), ``freeze_half``, ``lora``,
  ``full``;
- ``setfit`` (few-shot rows): SetFit 1.2.0 at its defaults on the training sentences
  (``few_shot_setfit.setfit_worker``).

With ``--singles_from_race`` a single strategy that the race ran to the end (not pruned, and not
stopped by the budget before its last epoch) is not run again:
its record is the race's own run of it (the same run: same splits, seed and settings; its
seconds are its time inside the race), and only the pruned or skipped ones run alone.

Score: test accuracy. Goals (issue 34): ``auto`` within 0.5 points of the best single strategy
(or above), never below TF-IDF, and within its budget end to end.
Writes ``<output_dir>/strategy_race.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import harness

# name -> (built-in dataset, training rows per class or in all (None: all), budget)
ROWS = {
    "sentiment_k16": ("rotten_tomatoes_sentences", {"per_class": 16}, "5m"),
    "sentiment_k64": ("rotten_tomatoes_sentences", {"per_class": 64}, "10m"),
    "sentiment_1000": ("rotten_tomatoes_sentences", {"rows": 1000}, "15m"),
    "sentiment_full": ("rotten_tomatoes_sentences", {}, "40m"),
    "sms_spam": ("sms_spam", {}, "20m"),
    "20ng_4000": ("20_newsgroups", {"rows": 4000}, "40m"),
}
SINGLES = ("tfidf", "feature_extraction", "contrastive", "freeze_half", "lora", "full")


def write_csv(path: Path, split) -> None:
    names = split.features["label"].names
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for text, label in zip(split["text"], split["label"], strict=True):
            writer.writerow([text, names[label]])


def sample(split, seed: int, per_class: int | None = None, rows: int | None = None):
    """``per_class`` rows of each label, or ``rows`` rows, drawn with ``seed``; else all."""
    import numpy as np

    if per_class is None and (rows is None or rows >= len(split)):
        return split
    rng = np.random.default_rng(seed)
    if rows is not None:
        return split.select(sorted(rng.choice(len(split), size=rows, replace=False).tolist()))
    labels = np.asarray(split["label"])
    picked = [rng.choice(np.flatnonzero(labels == y), size=per_class, replace=False) for y in
              sorted(set(labels.tolist()))]  # fmt: skip
    return split.select(sorted(np.concatenate(picked).tolist()))


def files_for(row: str, seed: int, work: Path, args) -> Path:
    """The row's train/validation/test CSV files for ``seed`` (in ``work/row-sSEED``)."""
    from nlp_transfer import load_text_classification_dataset

    name, size, _ = ROWS[row]
    data = load_text_classification_dataset(name, seed=42)
    here = work / f"{row}-s{seed}"
    here.mkdir(parents=True, exist_ok=True)
    per_class = size.get("per_class")
    write_csv(here / "train.csv", sample(data["train"], seed, per_class, size.get("rows")))
    validation = sample(
        data["validation"], seed, per_class, None if per_class else args.max_validation
    )
    write_csv(here / "validation.csv", validation)
    write_csv(here / "test.csv", sample(data["test"], 0, None, args.max_test))
    return here


def arms_for(row: str, seed: int, here: Path, args) -> list[harness.Arm]:
    budget_s = harness_budget(row, args)
    common = [sys.executable, "-m", "nlp_transfer.cli", "train", "--task", "text"]
    common += [f"--{s}_file={here / f'{s}.csv'}" for s in ("train", "validation", "test")]
    common += [f"--seed={seed}", "--save_strategy=no", "--strategy=auto", "--overwrite_output_dir"]
    extra = {"row": row, "seed": seed}
    arms = []
    if "auto" in args.arm_list:
        out = here / "auto"
        arms.append(harness.Arm(
            f"auto-{row}", [*common, f"--output_dir={out}", f"--time_budget={budget_s:.0f}s"],
            metrics_path=out / "metrics.json", extra=extra | {"method": "auto", "budget_s": budget_s},
        ))  # fmt: skip
    for name in SINGLES:
        if name in args.arm_list and not (
            name == "contrastive" and "per_class" not in ROWS[row][1]
        ):
            out = here / name
            arms.append(harness.Arm(
                f"{name}-{row}", [*common, f"--output_dir={out}", f"--race_candidates={name}"],
                metrics_path=out / "metrics.json", extra=extra | {"method": name},
            ))  # fmt: skip
    if "setfit" in args.arm_list and "per_class" in ROWS[row][1]:
        from few_shot_setfit import __file__ as setfit_script

        spec = {"train": str(here / "train.csv"), "test": str(here / "test.csv"), "seed": seed}
        spec["metrics_path"] = str(here / "setfit.json")
        arms.append(harness.Arm(
            f"setfit-{row}", [sys.executable, setfit_script, "--setfit_worker", json.dumps(spec)],
            metrics_path=here / "setfit.json", extra=extra | {"method": "setfit"},
        ))  # fmt: skip
    return arms


def harness_budget(row: str, args) -> float:
    from nlp_transfer.args import parse_duration

    return parse_duration(ROWS[row][2]) * args.budget_scale


def record_of(r: dict) -> dict:
    metrics = r.pop("metrics")
    r["accuracy"] = metrics["test"]["accuracy"]
    if "race" in metrics:
        r["winner"] = metrics["race"]["winner"]
        r["race_spent_s"] = metrics["race"]["spent_s"]
        r["candidates"] = {
            c["candidate"]: {
                "state": c["state"],
                "validation": c.get("value"),
                "seconds": c.get("seconds"),
                "epochs_run": c.get("epochs_run"),
                "accuracy": (c.get("test") or {}).get("accuracy"),
            }
            | ({"stopped_by_budget": c["stopped_by_budget"]} if c.get("stopped_by_budget") else {})
            for c in metrics["race"]["leaderboard"]
        }
    return r


def singles_from_race(auto: dict, names: list[str]) -> tuple[list[dict], list[str]]:
    """``--singles_from_race``: the records of the singles that the race ran to the end (the
    same run as alone: same splits, seed and settings; its seconds are the candidate's time
    inside the race, without process start and data loading), and the names still to run: the
    pruned, skipped and failed ones, and those the budget stopped before their last epoch."""
    records, left = [], []
    for name in names:
        c = (auto.get("candidates") or {}).get(name)
        ran_to_the_end = c and c["state"] == "complete" and not c.get("stopped_by_budget")
        if ran_to_the_end and c.get("accuracy") is not None:
            records.append({
                "arm": f"{name}-{auto['row']}", "row": auto["row"], "seed": auto["seed"],
                "method": name, "accuracy": c["accuracy"], "wall_s": c["seconds"],
                "from_race": True,
            })  # fmt: skip
        else:
            left.append(name)
    return records, left


def reused_records(args, records: list[dict]) -> list[dict]:
    """``--reuse``'s runs of the (row, seed, method) cells this run did not run."""
    if not args.reuse:
        return []
    earlier = json.loads(Path(args.reuse).read_text(encoding="utf-8"))
    ran = {(r["row"], r["seed"], r["method"]) for r in records}
    cells = {(r["row"], r["seed"]) for r in records}
    return [
        r | {"reused_from": args.reuse}
        for r in earlier["records"]
        if (r["row"], r["seed"]) in cells and (r["row"], r["seed"], r["method"]) not in ran
    ]


def merged_records(paths: str | None, records: list[dict]) -> list[dict]:
    """``--merge``: every run of earlier results of this benchmark (other seeds or rows, made
    at an earlier commit) whose (row, seed, method) this run did not run; each keeps the file
    and commit it came from."""
    out, ran = [], {(r["row"], r["seed"], r["method"]) for r in records}
    for path in (paths or "").split(","):
        if not path:
            continue
        earlier = json.loads(Path(path).read_text(encoding="utf-8"))
        sha = earlier["run_info"].get("git_sha", "?")[:7]
        for r in earlier["records"]:
            if (r["row"], r["seed"], r["method"]) not in ran:
                ran.add((r["row"], r["seed"], r["method"]))
                out.append(r if r.get("merged_from") else r | {"merged_from": f"{path} @ {sha}"})
    return out


def summarise(records: list[dict]) -> list[dict]:
    """Per row: each method's mean accuracy and median seconds; the goals' checks."""
    out = []
    for row in dict.fromkeys(r["row"] for r in records):
        mine = [r for r in records if r["row"] == row]
        methods = {}
        for method in dict.fromkeys(r["method"] for r in mine):
            runs = [r for r in mine if r["method"] == method]
            methods[method] = {
                "accuracy_mean": statistics.fmean(r["accuracy"] for r in runs),
                "accuracy_std": statistics.stdev([r["accuracy"] for r in runs]) if len(runs) > 1 else 0.0,
                "wall_s_median": statistics.median(r["wall_s"] for r in runs),
                "seeds": len(runs),
                "winners": [r.get("winner") for r in runs if r.get("winner")],
                "reused": any(r.get("reused_from") for r in runs),
                "from_race": sum(bool(r.get("from_race")) for r in runs),
            }  # fmt: skip
        singles = {m: v for m, v in methods.items() if m in SINGLES}
        summary = {"row": row, "methods": methods}
        if "auto" in methods and singles:
            best = max(singles, key=lambda m: singles[m]["accuracy_mean"])
            auto = methods["auto"]["accuracy_mean"]
            summary |= {"best_single": best, "gap_to_best": auto - singles[best]["accuracy_mean"]}
            summary["within_half_point"] = summary["gap_to_best"] >= -0.005
            if "tfidf" in methods:
                summary["not_below_tfidf"] = auto >= methods["tfidf"]["accuracy_mean"]
            autos = [r for r in mine if r["method"] == "auto"]
            summary["within_budget"] = all(r["wall_s"] <= r["budget_s"] for r in autos)
        out.append(summary)
    return out


def markdown(summary: list[dict], merged: tuple[str, ...] = ()) -> str:
    methods = ["auto", *SINGLES, "setfit"]
    rows = []
    for s in summary:
        cells = [s["row"]]
        for m in methods:
            v = s["methods"].get(m)
            mark = " †" if v and v.get("reused") else ""
            mark += " ‡" if v and v.get("from_race") else ""
            cells.append(
                "—" if v is None else f"{v['accuracy_mean']:.3f} ({v['wall_s_median']:.0f} s){mark}"
            )
        winners = ", ".join(s["methods"].get("auto", {}).get("winners", []))
        goals = [
            k
            for k in ("within_half_point", "not_below_tfidf", "within_budget")
            if s.get(k) is False
        ]
        cells += [winners, "met" if "gap_to_best" in s and not goals else ", ".join(goals) or "—"]
        rows.append(cells)
    head = "### Test accuracy, mean over seeds (median seconds per run)\n\n"
    table = harness.markdown_table(["row", *methods, "auto's winners", "goals missed"], rows)
    reused = any(v.get("reused") for s in summary for v in s["methods"].values())
    note = "\n† runs of an earlier result (`--reuse`), same rows and seeds.\n" if reused else ""
    if merged:
        note += (
            "\nMerged from earlier runs of this script (`--merge`): "
            + ", ".join(f"`{m}`" for m in merged)
            + ".\n"
        )
    if any(v.get("from_race") for s in summary for v in s["methods"].values()):
        note += (
            "\n‡ some or all seeds from auto's own run of that candidate (`--singles_from_race`: "
            "the same run, on the same splits and seed; its seconds exclude process start and "
            "data loading).\n"
        )
    return head + table + "\n" + note


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arms", default=",".join(("auto", *SINGLES, "setfit")))
    parser.add_argument("--max_validation", type=int, default=1000)
    parser.add_argument("--max_test", type=int, default=2000)
    parser.add_argument("--budget_scale", type=float, default=1.0, help="Times each row's budget.")
    parser.add_argument(
        "--reuse",
        default=None,
        help="An earlier strategy_race.json on the same rows and seeds: its runs of arms not "
        "run now join the summary (marked reused).",
    )
    parser.add_argument(
        "--merge",
        default=None,
        help="Comma list of earlier strategy_race.json files: all their runs not run now "
        "(other seeds or rows) join the summary, each naming its file and commit.",
    )
    parser.add_argument(
        "--singles_from_race",
        action="store_true",
        help="Take each single strategy's test score from auto's own run of it where the race "
        "ran it to the end (marked ‡; its time is inside the race); run alone only the rest.",
    )
    harness.harness_arguments(parser, repeats=1)
    args = parser.parse_args(argv)
    args.arm_list = args.arms.split(",")
    if unknown := [r for r in args.rows.split(",") if r not in ROWS]:
        parser.error(f"--rows: unknown {unknown}; choose from {', '.join(ROWS)}")
    info, machine = harness.run_info(script="strategy_race.py"), harness.machine()
    work, logs = harness.workspace(args, "strategy_race")
    records = []
    for row in args.rows.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            here = files_for(row, seed, work, args)
            skip: set[str] = set()
            for arm in arms_for(row, seed, here, args):
                if arm.extra["method"] in skip:
                    continue
                records.append(
                    record_of(harness.run_arm(arm, logs, seed, **harness.harness_kwargs(args)))
                )
                r = records[-1]
                print(f"{row} seed {seed} {r['method']}: {r['accuracy']:.3f} in {r['wall_s']:.0f} s"
                      + (f" (winner {r['winner']})" if r.get("winner") else ""), flush=True)  # fmt: skip
                if r["method"] == "auto" and args.singles_from_race:
                    names = [n for n in SINGLES if n in args.arm_list]
                    taken, _ = singles_from_race(r, names)
                    records += taken
                    skip |= {t["method"] for t in taken}
    records += reused_records(args, records)
    records += merged_records(args.merge, records)
    summary = summarise(records)
    return harness.finish(
        "strategy_race",
        args,
        info,
        machine,
        markdown(
            summary, tuple(dict.fromkeys(r["merged_from"] for r in records if r.get("merged_from")))
        ),
        work,
        summary=summary,
        records=records,
    )


if __name__ == "__main__":
    main()
