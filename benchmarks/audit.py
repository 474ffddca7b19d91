"""The audit and the drift monitor on real data (issue 36's must-show).

    python benchmarks/audit.py                                   # every part (~45 min, 2 cores)
    python benchmarks/audit.py --parts label_errors --rates 0.1 --seeds 0   # one cell

Parts:

- ``label_errors``: 5%, 10% and 20% of the training labels of sentiment
  (``rotten_tomatoes_sentences``) and SMS spam flipped to the other class, 3 seeds; the audit's
  label findings for each ``--fold_classifiers`` arm: precision and recall of the flagged rows
  against the flipped ones, and the share flagged. Features are computed once per set (cached).
  ``--fold_classifiers fine_tuned`` fine-tunes 5 fold models per cell (about 20 min for
  sentiment on 2 cores; ``--sets sentiment`` limits the sets).
- ``leakage``: 100 test sentences planted in the sentiment training split as exact copies (case,
  punctuation and spacing changed) and 100 as near copies (one word dropped or repeated); the
  recall of each kind, and the pairs found beyond them; near recall and the shipped sentences'
  near pairs also with the sentence features alone (no wording rule below cosine 0.95).
- ``builtins``: what the audit finds in every single-label built-in set as shipped.
- ``recovery`` (opt-in, ~1.5 h): at ``--recovery_rate`` (10%) flips, three training runs per set
  and seed on the own-data defaults (``nlp-transfer train --train_file``, the built-in validation
  and test splits as files): on the noisy labels, on the audit's ``--write_cleaned`` rows of
  them, and on the clean labels; the share of the accuracy lost to noise that cleaning recovers.
- ``monitor``: a model trained by the sentiment recipe (``--model_dir``, else trained here), then
  ``nlp_transfer.monitor`` on: 20 resamples of its own test split (same distribution: should not
  be flagged), SMS spam and Amazon review sentences (should be), and test-split resamples whose
  label priors are set to 0.2 / 0.35 / 0.65 / 0.8 positive (black-box shift estimation's error).

Goals (the issue's): at 10% flips, precision >= 0.7 and recall >= 0.6 on both sets; planted
duplicates found with recall >= 0.95; the same-distribution resamples not flagged in >= 90% of
them; both other domains flagged; the estimated label shift within 0.05 of the truth.
``recovery``: cleaning recovers at least half of the accuracy the noise cost.

Writes ``<output_dir>/audit.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
import numpy as np
import pandas as pd

SETS = {"sentiment": "rotten_tomatoes_sentences", "spam": "sms_spam"}
PARTS = ("label_errors", "leakage", "builtins", "monitor", "recovery")
DEFAULT_PARTS = ("label_errors", "leakage", "builtins", "monitor")  # recovery: ~1.5 h, opt-in
# --recovery_variants: label_issues_only drops the audit's label issues alone (keeps the
# within-training duplicates --write_cleaned also drops)
VARIANTS = ("label_issues_only",)
BUILTINS = (
    "rotten_tomatoes_sentences",
    "amazon_review_snippets",
    "tweets",
    "nyt_editorial_snippets",
    "sms_spam",
    "20_newsgroups",
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS), help=f"Of {PARTS}.")
    parser.add_argument("--recovery_rate", type=float, default=0.1)
    parser.add_argument("--recovery_seeds", default=None, help="Unset: --seeds.")
    parser.add_argument("--recovery_fold_classifier", default=None, help="Unset: the default.")
    parser.add_argument(
        "--recovery_variants", default="",
        help=f"Comma list of extra cleaned training files to train on, of {VARIANTS}.",
    )  # fmt: skip
    parser.add_argument("--max_train_samples", type=int, default=None, help="Smoke runs.")
    parser.add_argument("--settle_s", type=float, default=30.0)
    parser.add_argument("--rates", default="0.05,0.1,0.2")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fold_classifiers", default="logistic_regression,tfidf,ensemble")
    parser.add_argument("--builtins", default=",".join(BUILTINS))
    parser.add_argument(
        "--sets", default=",".join(SETS), help=f"label_errors and recovery: of {list(SETS)}."
    )
    parser.add_argument("--model_dir", help="A sentiment model saved with its fingerprint.")
    parser.add_argument("--resamples", type=int, default=20)
    parser.add_argument(
        "--merge",
        help="An earlier audit.json: its parts not run now are kept (with their run_info).",
    )
    parser.add_argument("--output_dir", default=str(harness.RESULTS))
    args = parser.parse_args(argv)
    args.part_list = [p for p in args.parts.split(",") if p]
    args.set_list = [s for s in args.sets.split(",") if s]
    if unknown := set(args.set_list) - set(SETS):
        parser.error(f"--sets: unknown {sorted(unknown)}; choose from {', '.join(SETS)}")
    if unknown := set(args.part_list) - set(PARTS):
        parser.error(f"--parts: unknown {sorted(unknown)}; choose from {', '.join(PARTS)}")
    return args


def _audit_rows(rows, out: Path, **settings):
    from nlp_transfer.audit.run import audit_rows

    return audit_rows(rows, out, **settings)


FILTERS = ("prune_by_noise_rate", "both", "confident_learning")


GOAL_RECALL = 0.6


def ranking_bound(given, probs: np.ndarray, flipped: np.ndarray) -> dict:
    """What any cut of cleanlab's label quality ranking (``get_label_quality_scores``,
    self-confidence: lowest first) could reach on these probabilities: the precision of the
    shortest top of the ranking holding ``GOAL_RECALL`` of the flipped rows, and the ranking's
    average precision. A bound on the filters, set by the fold classifier."""
    from cleanlab.rank import get_label_quality_scores
    from sklearn.metrics import average_precision_score

    quality = get_label_quality_scores(np.asarray(given), probs)
    is_flip = np.zeros(len(quality), dtype=bool)
    is_flip[flipped] = True
    hits = np.cumsum(is_flip[np.argsort(quality, kind="stable")])
    top = int(np.searchsorted(hits, math.ceil(GOAL_RECALL * len(flipped)))) + 1
    return {
        "ranked_precision_at_goal_recall": float(hits[top - 1] / top),
        "ranked_average_precision": float(average_precision_score(is_flip, -quality)),
    }


def label_errors(args, work: Path) -> list[dict]:
    """Out-of-fold probabilities of each fold classifier on the flipped labels (the audit's own
    functions), then cleanlab with each ``filter_by`` rule on the same probabilities."""
    from nlp_transfer.audit.data import load_audit_data
    from nlp_transfer.audit.embed import embed_texts
    from nlp_transfer.audit.labels import label_issues
    from nlp_transfer.audit.run import _single_label_probabilities

    records = []
    for set_name, builtin in SETS.items():
        if set_name not in args.set_list:
            continue
        clean = load_audit_data(builtin)
        train = np.flatnonzero(clean.mask("train"))
        features = embed_texts(clean.texts)[train]
        truth = np.asarray([clean.labels[i] for i in train])
        for rate in [float(r) for r in args.rates.split(",")]:
            for seed in [int(s) for s in args.seeds.split(",")]:
                flipped = _flipped_rows(len(train), rate, seed)
                labels = list(clean.labels)
                for i in train[flipped]:
                    labels[i] = 1 - int(labels[i])
                noisy = type(clean)(**(vars(clean) | {"labels": labels}))
                given = noisy.class_ids("train")
                for arm in args.fold_classifiers.split(","):
                    start = time.perf_counter()
                    if arm == "fine_tuned":  # 5 runs of the toolkit's defaults, as the audit does
                        from nlp_transfer.audit.folds import fine_tuned_fold_probabilities

                        out = work / f"fine_tuned-{set_name}-{rate}-{seed}"
                        probs = fine_tuned_fold_probabilities(noisy, out, num_folds=5, seed=seed)
                    else:
                        probs = _single_label_probabilities(noisy, features, 5, seed, arm)
                    seconds = time.perf_counter() - start
                    bound = ranking_bound(given, probs, flipped)
                    for rule in FILTERS:
                        found = set(label_issues(given, probs, filter_by=rule)["issues"].tolist())
                        hits = len(found & set(flipped.tolist()))
                        record = {
                            "set": set_name, "rate": rate, "seed": seed,
                            "fold_classifier": arm, "filter_by": rule,
                            "flipped": len(flipped), "flagged": len(found),
                            "precision": hits / max(len(found), 1),
                            "recall": hits / max(len(flipped), 1),
                            "out_of_fold_accuracy": float((probs.argmax(1) == truth).mean()),
                            "fold_seconds": round(seconds, 1), **bound,
                        }  # fmt: skip
                        print(record, flush=True)
                        records.append(record)
    return records


def _perturb_exact(text: str, rng) -> str:
    changed = text.upper() if rng.random() < 0.5 else text.lower()
    return "  " + changed.replace(" ", "  ", 1) + " !!"


def _perturb_near(text: str, rng) -> str:
    words = text.split()
    if len(words) < 4:
        return text + " " + words[-1]
    i = int(rng.integers(len(words)))
    return (
        " ".join(words[:i] + words[i + 1 :])
        if rng.random() < 0.5
        else " ".join(words[: i + 1] + words[i:])
    )


def leakage(args, work: Path) -> dict:
    from nlp_transfer.audit.data import load_audit_data

    rows = load_audit_data(SETS["sentiment"])
    rng = np.random.default_rng(0)
    test = np.flatnonzero(rows.mask("test"))
    long_enough = [i for i in test if len(rows.texts[i].split()) >= 6]
    chosen = rng.choice(long_enough, 200, replace=False)
    texts, splits = list(rows.texts), list(rows.splits)
    labels, origin = list(rows.labels), list(rows.rows)
    planted = {}
    for k, i in enumerate(chosen):
        kind = "exact" if k < 100 else "near"
        copy = (_perturb_exact if kind == "exact" else _perturb_near)(rows.texts[i], rng)
        planted[len(texts)] = (int(i), kind)
        texts.append(copy)
        splits.append("train")
        labels.append(rows.labels[i])
        origin.append(10_000_000 + k)
    planted_rows = type(rows)(
        **(
            vars(rows)
            | {
                "texts": texts,
                "splits": np.asarray(splits),
                "labels": labels,
                "rows": np.asarray(origin),
            }
        )
    )
    from nlp_transfer.audit.duplicates import WORDING_MIN_COSINE, find_duplicates
    from nlp_transfer.audit.embed import embed_texts

    result = _audit_rows(planted_rows, work / "leakage")
    # the audit's own duplicate search, to read which group each planted copy joined; and the
    # same with the features alone (no wording rule below 0.95), as before that rule
    features = embed_texts(texts)
    out = {"planted": {"exact": 100, "near": 100}, "counts": result.summary["duplicates"]}
    for name, wording in (("recall", WORDING_MIN_COSINE), ("recall_features_only", 0.95)):
        group = find_duplicates(texts, planted_rows.splits, labels, features, 0.95, wording)[
            "group"
        ]
        out[name] = {
            kind: float(
                np.mean(
                    [group[c] == group[planted[c][0]] for c, (_, k) in planted.items() if k == kind]
                )
            )
            for kind in ("exact", "near")
        }
    shipped = find_duplicates(rows.texts, rows.splits, rows.labels, features[: len(rows.texts)])
    alone = find_duplicates(
        rows.texts, rows.splits, rows.labels, features[: len(rows.texts)], 0.95, 0.95
    )
    out["shipped_near_pairs"] = {
        "with_wording_rule": shipped["counts"]["near_pairs"],
        "features_only": alone["counts"]["near_pairs"],
    }
    out |= {"near_duplicate_threshold": 0.95, "wording_min_cosine": WORDING_MIN_COSINE}
    return out


def builtins(args, work: Path) -> list[dict]:
    from nlp_transfer.audit import audit

    out = []
    for name in args.builtins.split(","):
        start = time.perf_counter()
        result = audit(name, output_dir=work / f"builtin-{name}")
        summary = result.summary
        out.append(
            {
                "set": name,
                "rows": summary["rows"],
                "label_issues": (summary["label_issues"] or {}).get("flagged"),
                "estimated_noise_rate": (summary["label_issues"] or {}).get("estimated_noise_rate"),
                "duplicates": summary["duplicates"],
                "outliers": summary["outliers"]["flagged"],
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(out[-1], flush=True)
    return out


def _train_model(work: Path) -> Path:
    out = work / "sentiment-model"
    command = [sys.executable, "-m", "nlp_transfer.cli", "train", "--task", "sentiment"]
    subprocess.run([*command, "--output_dir", str(out)], check=True)
    return out


def monitor_part(args, work: Path) -> dict:
    from nlp_transfer.audit import monitor
    from nlp_transfer.data.builtin import load_builtin_dataset

    model_dir = Path(args.model_dir) if args.model_dir else _train_model(work)
    test = load_builtin_dataset(SETS["sentiment"])["test"].to_pandas()
    result = {"model_dir": str(model_dir), "same_distribution": [], "other_domains": {}}
    for k in range(args.resamples):
        sample = test.sample(n=min(500, len(test)), random_state=k)
        path = work / f"same-{k}.csv"
        sample.to_csv(path, index=False)
        report = monitor(model_dir, path, seed=k)
        result["same_distribution"].append(
            {
                "p_value": report["mmd"]["p_value"],
                "verdict": report["verdict"],
                "auc": report["domain_classifier_auc"],
            }
        )
        print(k, result["same_distribution"][-1], flush=True)
    for name in ("sms_spam", "amazon_review_snippets"):
        other = load_builtin_dataset(name)["test"].to_pandas().sample(frac=1.0, random_state=0)
        path = work / f"{name}.csv"
        other.head(500).to_csv(path, index=False)
        report = monitor(model_dir, path)
        result["other_domains"][name] = {
            "p_value": report["mmd"]["p_value"],
            "verdict": report["verdict"],
            "auc": report["domain_classifier_auc"],
        }
        print(name, result["other_domains"][name], flush=True)
    result["label_shift"] = []
    positives, negatives = test[test.label == 1], test[test.label == 0]
    for prior in (0.2, 0.35, 0.65, 0.8):
        n = 400
        n_pos = round(prior * n)
        sample = pd.concat(
            [
                positives.sample(n=n_pos, random_state=1, replace=n_pos > len(positives)),
                negatives.sample(n=n - n_pos, random_state=1, replace=n - n_pos > len(negatives)),
            ]
        )
        path = work / f"prior-{prior}.csv"
        sample.to_csv(path, index=False)
        report = monitor(model_dir, path)
        estimated = report["label_shift"]["estimated_priors"][1]
        result["label_shift"].append(
            {
                "true_positive_share": prior,
                "estimated": round(estimated, 4),
                "error": round(abs(estimated - prior), 4),
                "verdict": report["verdict"],
            }
        )
        print(result["label_shift"][-1], flush=True)
    return result


def _flipped_rows(n: int, rate: float, seed: int) -> np.ndarray:
    """The training rows ``label_errors`` flips for ``(rate, seed)`` (the same draw)."""
    return np.flatnonzero(np.random.default_rng(seed).random(n) < rate)


def _train(name: str, train: Path, files: dict, out: Path, seed: int, args, log_dir: Path) -> dict:
    command = [sys.executable, "-m", "nlp_transfer.cli", "train", "--train_file", str(train),
               "--validation_file", str(files["validation"]), "--test_file", str(files["test"]),
               "--save_strategy", "no", "--run_baseline", "false", "--seed", str(seed),
               "--output_dir", str(out)]  # fmt: skip
    arm = harness.Arm(name=name, command=command, metrics_path=out / "metrics.json")
    record = harness.run_arm(arm, log_dir, 0, settle_s=args.settle_s)
    metrics = record.pop("metrics")
    return {"arm": name, "accuracy": metrics["test"]["accuracy"], "wall_s": round(record["wall_s"], 1),
            "loaded": record["loaded"], "train_rows": len(pd.read_csv(train))}  # fmt: skip


def _variant_rows(noisy: pd.DataFrame, suspects: pd.DataFrame, variant: str) -> pd.DataFrame:
    """The noisy training rows a ``--recovery_variants`` arm trains on: ``label_issues_only``
    leaves out the training rows flagged as label issues, nothing else."""
    if variant not in VARIANTS:
        raise ValueError(f"--recovery_variants: {variant!r} is not one of {VARIANTS}.")
    flagged = suspects[(suspects["split"] == "train") & (suspects["reason"] == "label_issue")]
    return noisy.drop(index=sorted(set(flagged["row"]) & set(noisy.index)))


def recovery(args, work: Path) -> list[dict]:
    from nlp_transfer.audit import audit
    from nlp_transfer.data.builtin import load_builtin_dataset

    log_dir = work / "logs"
    log_dir.mkdir(exist_ok=True)
    records = []
    for set_name, builtin in SETS.items():
        if set_name not in args.set_list:
            continue
        dataset = load_builtin_dataset(builtin)
        names = dataset["train"].features["label"].names
        files = {}
        for split in ("validation", "test"):
            frame = dataset[split].to_pandas()
            frame["label"] = [names[i] for i in frame["label"]]
            files[split] = work / f"{set_name}-{split}.csv"
            frame.to_csv(files[split], index=False)
        train = dataset["train"].to_pandas()
        if args.max_train_samples:
            train = train.head(args.max_train_samples)
        for seed in [int(s) for s in (args.recovery_seeds or args.seeds).split(",")]:
            flipped = _flipped_rows(len(train), args.recovery_rate, seed)
            clean = train.assign(label=[names[i] for i in train["label"]])
            noisy = clean.copy()
            noisy.loc[flipped, "label"] = [names[1 - train.loc[i, "label"]] for i in flipped]
            paths = {k: work / f"{set_name}-{seed}-{k}.csv" for k in ("clean", "noisy")}
            clean.to_csv(paths["clean"], index=False)
            noisy.to_csv(paths["noisy"], index=False)
            paths["cleaned"] = work / f"{set_name}-{seed}-cleaned.csv"
            found = audit(paths["noisy"], output_dir=work / f"recovery-audit-{set_name}-{seed}",
                          write_cleaned=paths["cleaned"],
                          fold_classifier=args.recovery_fold_classifier, seed=seed)  # fmt: skip
            variants = [v for v in args.recovery_variants.split(",") if v]
            for variant in variants:
                paths[variant] = work / f"{set_name}-{seed}-{variant}.csv"
                _variant_rows(noisy, found.suspects, variant).to_csv(paths[variant], index=False)
            row = {"set": set_name, "seed": seed, "rate": args.recovery_rate,
                   "flipped": len(flipped)}  # fmt: skip
            for arm in ("noisy", "cleaned", "clean", *variants):
                out = work / f"recovery-{set_name}-{seed}-{arm}"
                row[arm] = _train(f"{set_name}-{seed}-{arm}", paths[arm], files, out, seed, args,
                                  log_dir)  # fmt: skip
                print(set_name, seed, arm, row[arm], flush=True)
            cost = row["clean"]["accuracy"] - row["noisy"]["accuracy"]
            gain = row["cleaned"]["accuracy"] - row["noisy"]["accuracy"]
            row["recovered_share"] = gain / cost if cost > 0 else None
            for variant in variants:
                gain = row[variant]["accuracy"] - row["noisy"]["accuracy"]
                row[variant]["recovered_share"] = gain / cost if cost > 0 else None
            records.append(row)
    return records


def summarize(document: dict) -> dict:
    goals = {}
    records = document.get("label_errors") or []
    for set_name in SETS:
        for arm, rule in sorted({(r["fold_classifier"], r["filter_by"]) for r in records}):
            cell = [
                r
                for r in records
                if r["set"] == set_name
                and r["rate"] == 0.1
                and (r["fold_classifier"], r["filter_by"]) == (arm, rule)
            ]
            if cell:
                p = float(np.mean([r["precision"] for r in cell]))
                r_ = float(np.mean([r["recall"] for r in cell]))
                goals[f"label_errors_10pct_{set_name}_{arm}_{rule}"] = {
                    "precision": round(p, 4),
                    "recall": round(r_, 4),
                    "met": p >= 0.7 and r_ >= 0.6,
                }
    if leak := document.get("leakage"):
        goals["leakage_recall"] = {
            "recall": leak["recall"],
            "met": bool(min(leak["recall"].values()) >= 0.95),
        }
    if rec := document.get("recovery"):
        for set_name in SETS:
            rows = [r for r in rec if r["set"] == set_name]
            if rows:
                mean = {
                    a: float(np.mean([r[a]["accuracy"] for r in rows]))
                    for a in ("noisy", "cleaned", "clean")
                }
                cost = mean["clean"] - mean["noisy"]
                share = (mean["cleaned"] - mean["noisy"]) / cost if cost > 0 else None
                goals[f"recovery_{set_name}"] = mean | {"recovered_share": share,
                                                         "met": share is not None and share >= 0.5}  # fmt: skip
                for variant in VARIANTS:  # the same seeds' other cleaned files, where run
                    if rows and all(variant in r for r in rows):
                        v = float(np.mean([r[variant]["accuracy"] for r in rows]))
                        share = (v - mean["noisy"]) / cost if cost > 0 else None
                        goals[f"recovery_{set_name}_{variant}"] = {
                            "accuracy": v, "recovered_share": share,
                            "met": share is not None and share >= 0.5,
                        }  # fmt: skip
    if mon := document.get("monitor"):
        same = mon["same_distribution"]
        kept = sum(r["verdict"] == "no drift" for r in same) / len(same)
        goals["monitor_same_not_flagged"] = {"share": kept, "met": kept >= 0.9}
        goals["monitor_other_domains_flagged"] = {
            "met": all(r["verdict"] == "drift" for r in mon["other_domains"].values())
        }
        worst = max(r["error"] for r in mon["label_shift"])
        goals["monitor_label_shift_error"] = {"max_error": worst, "met": worst <= 0.05}
    return goals


def markdown(document: dict) -> str:
    parts = ["# Audit and monitor\n"]
    for earlier in sources_of(document):
        parts.append(
            f"\nParts {', '.join(earlier['parts'])} come from an earlier run on {earlier['cpu']} "
            f"({earlier['run_info']['git_sha']}: {earlier['run_info']['command']}).\n"
        )
    if sources_of(document):
        parts.append(f"\nThe rest come from this run on {document['machine']['cpu']}.\n\n")
    records = document.get("label_errors") or []
    if records:
        rows = []
        keys = sorted(
            {(r["set"], r["rate"], r["fold_classifier"], r["filter_by"]) for r in records}
        )
        for set_name, rate, arm, rule in keys:
            cell = [
                r
                for r in records
                if (r["set"], r["rate"], r["fold_classifier"], r["filter_by"])
                == (set_name, rate, arm, rule)
            ]
            mean = {
                k: np.mean([r[k] for r in cell])
                for k in ("precision", "recall", "flagged", "flipped", "out_of_fold_accuracy")
            }
            std = {k: np.std([r[k] for r in cell]) for k in ("precision", "recall")}
            bounds = [
                r["ranked_precision_at_goal_recall"]
                for r in cell
                if "ranked_precision_at_goal_recall" in r
            ]
            rows.append(
                [
                    set_name,
                    f"{rate:.0%}",
                    arm,
                    rule,
                    f"{mean['precision']:.3f} ± {std['precision']:.3f}",
                    f"{mean['recall']:.3f} ± {std['recall']:.3f}",
                    f"{mean['flagged']:.0f}",
                    f"{mean['flipped']:.0f}",
                    f"{mean['out_of_fold_accuracy']:.3f}",
                    f"{np.median([r['fold_seconds'] for r in cell]):.0f}",
                    f"{np.mean(bounds):.3f}" if bounds else "",
                ]
            )
        parts.append("## Injected label flips\n")
        parts.append(
            harness.markdown_table(
                [
                    "set",
                    "flips",
                    "fold classifier",
                    "cleanlab filter_by",
                    "precision",
                    "recall",
                    "flagged",
                    "flipped",
                    "out-of-fold accuracy (vs true labels)",
                    "fold s (median)",
                    f"precision at recall {GOAL_RECALL}: best cut of the quality ranking",
                ],
                rows,
            )
        )
    if leak := document.get("leakage"):
        parts.append("\n## Planted duplicates (sentiment test rows copied into training)\n")
        parts.append(
            f"recall: exact {leak['recall']['exact']:.2f}, near {leak['recall']['near']:.2f}; "
            f"counts: {leak['counts']}\n"
        )
        if alone := leak.get("recall_features_only"):
            shipped = leak["shipped_near_pairs"]
            parts.append(
                f"\nWith the features alone (cosine >= 0.95, no wording rule): near recall "
                f"{alone['near']:.2f}. Near pairs among the shipped sentences: "
                f"{shipped['with_wording_rule']} with the wording rule (cosine >= "
                f"{leak['wording_min_cosine']} and the same wording), {shipped['features_only']} "
                "with the features alone.\n"
            )
    if found := document.get("builtins"):
        parts.append("\n## The built-in sets as shipped\n")
        parts.append(
            harness.markdown_table(
                [
                    "set",
                    "rows",
                    "likely label errors",
                    "est. noise rate",
                    "exact pairs",
                    "near pairs",
                    "conflicting rows",
                    "leaked rows",
                    "outliers",
                    "s",
                ],
                [
                    [
                        b["set"],
                        b["rows"],
                        b["label_issues"],
                        b["estimated_noise_rate"],
                        b["duplicates"]["exact_pairs"],
                        b["duplicates"]["near_pairs"],
                        b["duplicates"]["conflicting_rows"],
                        b["duplicates"]["leaked_rows"],
                        b["outliers"],
                        b["seconds"],
                    ]
                    for b in found
                ],
            )
        )
    if mon := document.get("monitor"):
        same = mon["same_distribution"]
        parts.append("\n## Monitor (a sentiment model's fingerprint)\n")
        kept = sum(r["verdict"] == "no drift" for r in same)
        p_values = ", ".join(f"{r['p_value']:.3f}" for r in same)
        parts.append(
            f"same distribution: {kept} of {len(same)} resamples not flagged (p-values {p_values})\n\n"
        )
        for name, r in mon["other_domains"].items():
            parts.append(
                f"- {name}: {r['verdict']} (p {r['p_value']:.4f}, domain AUC {r['auc']:.3f})\n"
            )
        parts.append(
            "\n"
            + harness.markdown_table(
                ["true positive share", "estimated (BBSE)", "error", "verdict"],
                [
                    [r["true_positive_share"], r["estimated"], r["error"], r["verdict"]]
                    for r in mon["label_shift"]
                ],
            )
        )
    if rec := document.get("recovery"):
        parts.append("\n## Training on noisy, cleaned and clean labels (test accuracy)\n")
        parts.append(harness.markdown_table(
            ["set", "seed", "flipped", "noisy", "cleaned (rows)", "clean", "recovered"],
            [[r["set"], f"{r['seed']} (from {r['merged_from']})" if "merged_from" in r
              else r["seed"], r["flipped"], f"{r['noisy']['accuracy']:.4f}",
              f"{r['cleaned']['accuracy']:.4f} ({r['cleaned']['train_rows']})",
              f"{r['clean']['accuracy']:.4f}",
              "n/a" if r["recovered_share"] is None else f"{r['recovered_share']:.2f}"]
             for r in rec]))  # fmt: skip
        extra = [(r, v) for r in rec for v in VARIANTS if v in r]
        if extra:
            parts.append(
                "\n\nOther cleaned files (`--recovery_variants`; label_issues_only: "
                "the label issues dropped, duplicates kept):\n\n"
            )
            parts.append(harness.markdown_table(
                ["set", "seed", "variant", "test accuracy (rows)", "recovered"],
                [[r["set"], r["seed"], v, f"{r[v]['accuracy']:.4f} ({r[v]['train_rows']})",
                  "n/a" if r[v]["recovered_share"] is None else f"{r[v]['recovered_share']:.2f}"]
                 for r, v in extra]))  # fmt: skip
    parts.append("\n## Goals\n")
    for name, goal in document["goals"].items():
        parts.append(f"- {name}: {'met' if goal['met'] else 'NOT met'} ({goal})\n")
    return "".join(parts)


def sources_of(document: dict) -> list[dict]:
    """Where a result's parts that its own run did not make came from (``run_info.earlier``:
    one source, as older results hold it, or a list)."""
    earlier = document["run_info"].get("earlier")
    return earlier if isinstance(earlier, list) else [earlier] if earlier else []


def merge_earlier(document: dict, path: Path, ran: list[str]) -> None:
    """Keep the parts of the earlier result at ``path`` that this run did not make; each kept
    part's source goes with it (``run_info.earlier``, a list: the earlier run's run_info and
    CPU, or, for a part that run had itself merged, that part's own source)."""
    earlier = json.loads(path.read_text(encoding="utf-8"))
    kept = [
        p for p in (*PARTS, "monitor_training_text_fingerprint") if p in earlier and p not in ran
    ]
    for part in kept:
        document[part] = earlier[part]
    sources = []
    for source in sources_of(earlier):
        if parts := [p for p in source["parts"] if p in kept]:
            sources.append(source | {"parts": parts})
    if own := [p for p in kept if not any(p in s["parts"] for s in sources)]:
        run_info = {k: v for k, v in earlier["run_info"].items() if k != "earlier"}
        cpu = earlier["machine"].get("cpu")
        sources.append({"file": str(path), "parts": own, "run_info": run_info, "cpu": cpu})
    document["run_info"]["earlier"] = sources
    if "recovery" in ran and earlier.get("recovery"):  # its other seeds join this run's
        made = {(r["set"], r["seed"]) for r in document.get("recovery") or []}
        where = f"{path} @ {earlier['run_info']['git_sha'][:7]}, {earlier['machine'].get('cpu')}"
        joined = [
            {"merged_from": where} | r
            for r in earlier["recovery"]
            if (r["set"], r["seed"]) not in made
        ]
        document["recovery"] = joined + (document.get("recovery") or [])


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, machine = harness.run_info(script="audit.py"), harness.machine()
    work = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    document = harness.result_document(info, machine, vars(args) | {"work": str(work)})
    if "label_errors" in args.part_list:
        document["label_errors"] = label_errors(args, work)
    if "leakage" in args.part_list:
        document["leakage"] = leakage(args, work)
    if "builtins" in args.part_list:
        document["builtins"] = builtins(args, work)
    if "monitor" in args.part_list:
        document["monitor"] = monitor_part(args, work)
    if "recovery" in args.part_list:
        document["recovery"] = recovery(args, work)
    if args.merge:
        merge_earlier(document, Path(args.merge), args.part_list)
    document["goals"] = summarize(document)
    harness.write_result("audit", document, markdown(document), Path(args.output_dir))
    print(markdown(document))
    return document


if __name__ == "__main__":
    main()
