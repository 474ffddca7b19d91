"""Can weighting the conformal scores by an estimated covariate shift restore the coverage that
split conformal loses on shifted texts? (issue 35: 20 Newsgroups' by-date test split)

    python benchmarks/conformal_shift.py --model_dirs NG43,NG44,NG45 --seeds 43,44,45 \\
        --dataset_name 20_newsgroups
    python benchmarks/conformal_shift.py --model_dirs S42,S43,S44 --seeds 42,43,44 \\
        --new_sets amazon_review_snippets,nyt_editorial_snippets,tweets

``NG43`` ...: output directories of ``benchmarks/calibration.py`` runs (``--seeds``: the seed each
was trained with, which fixes its splits). For each run, the calibration split its conformal
scores came from (as ``text/uncertainty.hold_out_calibration_split`` drew it) against new rows:
the dataset's test split (20 Newsgroups: later posts than training and validation), or, with
``--new_sets``, every row of other built-in sets (other domains). On the new rows:

- the model's accuracy, and split conformal's coverage and mean set size at 0.8 / 0.9 / 0.95
  (randomised APS, the saved model's own sets);
- a domain classifier telling calibration rows from new rows, cross-fitted (5 folds; logistic
  regression on standardised inputs, classes balanced, ``C`` 0.1), on the model's
  log-probabilities and on its encoder's mean-pooled features: its ROC AUC (0.5: no shift it can
  see) and the effective number of calibration rows its weights leave, ``(sum w)^2 / sum w^2``;
- **weighted split conformal** with those weights (Tibshirani, Barber, Candès and Ramdas 2019,
  "Conformal Prediction Under Covariate Shift", eq. (7); the likelihood ratio as the odds of the
  domain classifier, their section 4.1): each new row's threshold is the coverage quantile of
  the calibration scores weighted by ``w(X_i)``, plus a point at infinity weighted ``w(x)``;
  coverage, mean set size and the share of rows whose threshold is infinite (every label).

The guarantee it restores needs the shift to be in the inputs only (``P(y | x)`` unchanged) and
the ratio to be estimated well. With ``--parts refit`` (``--labelled_new_rows K``), what
``nlp-transfer refit-conformal`` does instead: split conformal with the scores of ``K`` labelled
new rows drawn at random (seeded), its coverage and set size on the other new rows; and the
abstention threshold chosen again on those rows for each precision of ``ABSTENTION_TARGETS`` (as
``refit-conformal`` does for a model trained with ``--abstain_below_precision``), its precision
and share answered on the other new rows beside those of the threshold chosen on validation.
Writes ``<output_dir>/conformal_shift.{json,md}``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import harness
import numpy as np

COVERAGES = (0.8, 0.9, 0.95)
ABSTENTION_TARGETS = (0.95, 0.98)
FEATURES = ("log_probabilities", "encoder")
MAX_ODDS = 100.0  # domain probabilities clipped to [1/101, 100/101]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    harness.saved_run_arguments(parser)
    parser.add_argument(
        "--new_sets",
        default=None,
        help="Comma list of built-in sets whose rows are the new texts (default: the "
        "dataset's own test split).",
    )
    parser.add_argument(
        "--parts", default="weighted", help="Comma list of weighted (the default), refit."
    )
    parser.add_argument(
        "--labelled_new_rows",
        type=int,
        default=1000,
        help="refit: labelled new rows the scores come from (the rest are scored).",
    )
    parser.add_argument("--output_dir", default=str(harness.RESULTS))
    return harness.saved_runs(parser, parser.parse_args(argv))


def shift_weights(held: np.ndarray, new: np.ndarray, seed: int = 0, c: float = 0.1) -> dict:
    """Cross-fitted likelihood ratios ``dP_new / dP_held`` of every held-out and new row: the
    odds of a balanced logistic regression telling them apart, each row scored by the fold
    model that did not see it. ``{"held", "new", "domain_auc", "effective_rows"}``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    features = np.vstack([held, new]).astype(np.float64)
    domain = np.r_[np.zeros(len(held)), np.ones(len(new))]
    prob = np.empty(len(features))
    for fit, rows in StratifiedKFold(5, shuffle=True, random_state=seed).split(features, domain):
        scaler = StandardScaler().fit(features[fit])
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
        model.fit(scaler.transform(features[fit]), domain[fit])
        prob[rows] = model.predict_proba(scaler.transform(features[rows]))[:, 1]
    low = 1.0 / (MAX_ODDS + 1.0)
    odds = np.clip(prob, low, 1 - low) / (1 - np.clip(prob, low, 1 - low))
    w_held = odds[: len(held)]
    return {
        "held": w_held,
        "new": odds[len(held) :],
        "domain_auc": float(roc_auc_score(domain, prob)),
        "effective_rows": float(w_held.sum() ** 2 / np.sum(w_held**2)),
    }


def weighted_thresholds(
    scores: np.ndarray, weights: np.ndarray, new_weights: np.ndarray, coverage: float
) -> np.ndarray:
    """Each new row's threshold (Tibshirani et al. 2019, eq. (7)): the smallest score whose
    weighted cumulative share, out of ``sum(weights) + w_new``, reaches ``coverage``; ``inf``
    where only the point at infinity does. Equal weights give split conformal's
    ``ceil((n + 1) coverage)``-th smallest score."""
    order = np.argsort(scores, kind="stable")
    ranked, cumulative = np.asarray(scores)[order], np.cumsum(np.asarray(weights)[order])
    needed = coverage * (cumulative[-1] + np.asarray(new_weights)) * (1 - 1e-12)
    index = np.searchsorted(cumulative, needed, side="left")
    out = np.full(len(index), np.inf)
    out[index < len(ranked)] = ranked[index[index < len(ranked)]]
    return out


def set_coverage(probs, labels, uniforms, thresholds) -> dict:
    """Coverage, mean size and share of infinite thresholds of randomised-APS sets
    (``nlp_transfer.metrics.conformal.aps_sets``' rule) with one threshold per row."""
    order = np.argsort(-probs, axis=1, kind="stable")
    ranked = np.take_along_axis(probs, order, axis=1)
    scores = np.cumsum(ranked, axis=1) - ranked + uniforms[:, None] * ranked
    inside = scores <= np.asarray(thresholds)[:, None] + 1e-12  # by rank
    by_label = np.take_along_axis(inside, np.argsort(order, axis=1), axis=1)
    return {
        "coverage": float(np.mean(by_label[np.arange(len(labels)), labels])),
        "mean_set_size": float(np.mean(inside.sum(axis=1))),
        "unbounded": float(np.mean(np.isinf(thresholds))),
    }


def refit_coverage(
    probs, labels, uniforms, rows: int, seed: int, trained_thresholds: dict | None = None
) -> dict:
    """Split conformal with the scores of ``rows`` new rows drawn at random (``seed``), as
    ``nlp-transfer refit-conformal`` computes them; coverage and set size on the other rows.
    With ``trained_thresholds`` (``{target precision: threshold chosen on validation}``) also
    ``abstention``: per target, the other rows' precision and coverage under that threshold
    (``trained``) and under the one chosen on the ``rows`` labelled rows (``refit``)."""
    from nlp_transfer.metrics.conformal import aps_scores, conformal_quantile
    from nlp_transfer.metrics.selective import select_abstention_threshold, selective_report

    order = np.random.default_rng(seed).permutation(len(labels))
    fit, rest = order[:rows], order[rows:]
    scores = aps_scores(probs[fit], labels[fit], uniforms[fit])
    report = {"labelled_rows": rows, "scored_rows": len(rest)} | {
        str(c): set_coverage(
            probs[rest], labels[rest], uniforms[rest],
            np.full(len(rest), conformal_quantile(scores, c)),
        )
        for c in COVERAGES
    }  # fmt: skip
    if trained_thresholds:
        report["abstention"] = {}
        for target, trained in trained_thresholds.items():
            refit = select_abstention_threshold(probs[fit], labels[fit], target)
            report["abstention"][str(target)] = {
                name: {"threshold": x} | selective_report(probs[rest], labels[rest], x)
                for name, x in (("trained", trained), ("refit", refit))
            }
    return report


def new_rows(args, seed: int) -> dict:
    """``{name: (texts, labels)}`` of the new texts."""
    from datasets import concatenate_datasets

    from nlp_transfer import load_text_classification_dataset

    if not args.new_sets:
        test = load_text_classification_dataset(args.dataset_name, seed=seed)["test"]
        return {f"{args.dataset_name} test": (list(test["text"]), np.asarray(test["label"]))}
    out = {}
    for name in args.new_sets.split(","):
        data = load_text_classification_dataset(name, seed=seed)
        rows = concatenate_datasets([data[s] for s in data])
        out[name] = (list(rows["text"]), np.asarray(rows["label"]))
    return out


def validation_thresholds(classifier, validation) -> dict:
    """``{target: threshold}``: the abstention thresholds chosen on the run's validation split
    for each of :data:`ABSTENTION_TARGETS` (as ``--abstain_below_precision`` does in training)."""
    from nlp_transfer.metrics.selective import select_abstention_threshold

    probs = classifier.predict_proba(list(validation["text"]))
    labels = np.asarray(validation["label"])
    return {t: select_abstention_threshold(probs, labels, t) for t in ABSTENTION_TARGETS}


def one_run(run_dir: Path, seed: int, args) -> list[dict]:
    from types import SimpleNamespace

    from accelerate import PartialState

    from nlp_transfer import TextClassifier, load_text_classification_dataset
    from nlp_transfer.metrics.conformal import aps_scores, example_uniforms, load_conformal_scores
    from nlp_transfer.text.fingerprint import model_features
    from nlp_transfer.text.inference import load_classifier
    from nlp_transfer.text.uncertainty import hold_out_calibration_split

    PartialState()  # the split's log line goes through accelerate's logger
    settings = SimpleNamespace(
        calibration_split_size=args.calibration_split_size, feature_extraction="none", seed=seed
    )
    data = load_text_classification_dataset(args.dataset_name, seed=seed)
    calibration = hold_out_calibration_split(data, settings, "single_label_classification")[
        "calibration"
    ]
    texts, labels = list(calibration["text"]), np.asarray(calibration["label"])
    classifier = TextClassifier.from_pretrained(run_dir, device="cpu")
    model, tokenizer, _ = load_classifier(run_dir, device="cpu")
    probs = classifier.predict_proba(texts)
    scores = aps_scores(probs, labels, example_uniforms(texts))
    saved = load_conformal_scores(run_dir)["scores"]
    if len(saved) != len(scores) or np.max(np.abs(np.sort(scores) - saved)) > 1e-4:
        raise SystemExit(f"{run_dir}: its calibration split could not be drawn again (--seeds?)")
    weighted = "weighted" in args.parts.split(",")
    held = {"log_probabilities": np.log(np.clip(probs, 1e-12, 1)),
            "encoder": model_features(model, tokenizer, texts) if weighted else None}  # fmt: skip
    rows = []
    for name, (new_texts, new_labels) in new_rows(args, seed).items():
        new_probs, uniforms = classifier.predict_proba(new_texts), example_uniforms(new_texts)
        row = {"run": str(run_dir), "seed": seed, "new": name, "rows": len(new_texts)}
        row["accuracy"] = float(np.mean(new_probs.argmax(axis=1) == new_labels))
        row["split_conformal"] = {
            str(c): set_coverage(new_probs, new_labels, uniforms,
                                 np.full(len(new_texts), sorted(scores)[math.ceil((len(scores) + 1) * c) - 1]))
            for c in COVERAGES
        }  # fmt: skip
        if "refit" in args.parts.split(","):
            row["refit"] = refit_coverage(
                new_probs, new_labels, uniforms, args.labelled_new_rows, seed,
                validation_thresholds(classifier, data["validation"]),
            )  # fmt: skip
        if weighted:
            new = {"log_probabilities": np.log(np.clip(new_probs, 1e-12, 1)),
                   "encoder": model_features(model, tokenizer, new_texts)}  # fmt: skip
            for feature in FEATURES:
                w = shift_weights(held[feature], new[feature], seed=seed)
                row[feature] = {
                    "domain_auc": w["domain_auc"],
                    "effective_rows": w["effective_rows"],
                }
                for c in COVERAGES:
                    thresholds = weighted_thresholds(scores, w["held"], w["new"], c)
                    row[feature][str(c)] = set_coverage(new_probs, new_labels, uniforms, thresholds)
        rows.append(row)
        print(f"seed {seed} {name}: accuracy {row['accuracy']:.3f}", flush=True)
    return rows


def markdown(rows: list[dict], cpu: str) -> str:
    def cell(report):
        return " / ".join(f"{report[str(c)]['coverage']:.3f}" for c in COVERAGES)

    def sizes(report):
        return " / ".join(f"{report[str(c)]['mean_set_size']:.2f}" for c in COVERAGES)

    def abstaining(report):
        return " / ".join(
            f"{t}: {a['trained']['precision']:.3f} ({a['trained']['coverage']:.2f}) -> "
            f"{a['refit']['precision']:.3f} ({a['refit']['coverage']:.2f})"
            for t, a in report["abstention"].items()
        )

    features = [f for f in FEATURES if rows and f in rows[0]]
    refit = bool(rows) and "refit" in rows[0]
    abstains = refit and "abstention" in rows[0]["refit"]
    table = harness.markdown_table(
        ["seed", "new texts", "rows", "accuracy", "split conformal: coverage (set size)"]
        + ([f"refit on {rows[0]['refit']['labelled_rows']} labelled new rows: coverage (set "
            "size) on the others"] if refit else [])
        + (["abstention precision (share answered) on the others at each target: validation's "
            "threshold -> refit's"] if abstains else [])
        + [f"weighted on {f}: domain AUC, effective rows, coverage (set size, unbounded)"
           for f in features],
        [
            [r["seed"], r["new"], r["rows"], f"{r['accuracy']:.3f}",
             f"{cell(r['split_conformal'])} ({sizes(r['split_conformal'])})"]
            + ([f"{cell(r['refit'])} ({sizes(r['refit'])})"] if refit else [])
            + ([abstaining(r["refit"])] if abstains else [])
            + [f"{r[f]['domain_auc']:.3f}, {r[f]['effective_rows']:.0f}, {cell(r[f])} "
               f"({sizes(r[f])}, {r[f]['0.95']['unbounded']:.2f})" for f in features]
            for r in rows
        ],
    )  # fmt: skip
    return (
        f"On {cpu}. Coverage at {' / '.join(map(str, COVERAGES))} on the new texts; "
        "'unbounded': the share of new rows whose 0.95 threshold is infinite (every label).\n\n"
        f"{table}\n"
    )


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, machine = harness.run_info(script="conformal_shift.py"), harness.machine()
    rows = [r for d, s in zip(args.dir_list, args.seed_list, strict=True)
            for r in one_run(Path(d), s, args)]  # fmt: skip
    md = markdown(rows, machine["cpu"])
    return harness.finish("conformal_shift", args, info, machine, md, "(none)", summary=rows)


if __name__ == "__main__":
    main()
