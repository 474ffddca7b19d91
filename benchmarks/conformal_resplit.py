"""Is a regression run's conformal coverage on test a chance draw? Re-split its held-out rows.

    python benchmarks/conformal_resplit.py --model_dir M --dataset_name rotten_tomatoes_sentences_scores

``M``: a regression run saved with its conformal scores (``conformal.json``: the absolute
residuals of its held-out calibration split). The model predicts the test split; the test
coverage at each target is the share of test residuals within the calibration quantile, as
``TextClassifier.predict(coverage=...)`` gives. Neither the calibration rows nor the test rows
shaped the model, so under the split's randomness they are exchangeable: pooling both sets of
residuals and re-splitting them at random (same sizes, ``--resamples`` times) gives the
coverage's distribution for this model, and the share of re-splits whose coverage is at or below
the observed one is how unlucky the actual split was (a permutation test). A small share at
every target would point at something other than chance (a shift between the splits, or
residuals that do not match the saved model).

Writes ``<output_dir>/conformal_resplit.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import harness
import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--dataset_name", default="rotten_tomatoes_sentences_scores")
    parser.add_argument("--seed", type=int, default=42, help="The run's data seed.")
    parser.add_argument("--resamples", type=int, default=4000)
    parser.add_argument("--coverages", default="0.8,0.9,0.95")
    parser.add_argument("--output_dir", default=str(harness.RESULTS))
    return parser.parse_args(argv)


def resplit(
    calibration: np.ndarray, test: np.ndarray, coverage: float, resamples: int, seed: int = 0
) -> dict:
    """The observed test coverage and its distribution over random re-splits of the pooled
    residuals into parts of the same sizes.

    Returns:
        ``{"observed", "share_at_or_below", "resplit_5_95" [p5, p95], "resplit_mean"}``.
    """
    from nlp_transfer.metrics.conformal import conformal_quantile

    observed = float(np.mean(test <= conformal_quantile(calibration, coverage)))
    pool, n = np.concatenate([calibration, test]), len(calibration)
    rng = np.random.default_rng(seed)
    sims = np.empty(resamples)
    for i in range(resamples):
        order = rng.permutation(len(pool))
        held, rest = pool[order[:n]], pool[order[n:]]
        sims[i] = np.mean(rest <= conformal_quantile(held, coverage))
    return {
        "observed": observed,
        "share_at_or_below": float(np.mean(sims <= observed + 1e-12)),
        "resplit_5_95": np.quantile(sims, [0.05, 0.95]).tolist(),
        "resplit_mean": float(sims.mean()),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, machine = harness.run_info(script="conformal_resplit.py"), harness.machine()
    from nlp_transfer import TextClassifier
    from nlp_transfer.data.pipeline import load_problem_dataset

    saved = json.loads((Path(args.model_dir) / "conformal.json").read_text(encoding="utf-8"))
    calibration = np.asarray(saved["scores"], dtype=float)
    data = load_problem_dataset(args.dataset_name, problem_type="regression", seed=args.seed)
    classifier = TextClassifier.from_pretrained(args.model_dir, device="cpu")
    predicted = np.asarray([p["score"] for p in classifier.predict(list(data["test"]["text"]))])
    test = np.abs(np.asarray(data["test"]["label"], dtype=float) - predicted)
    rows = []
    for coverage in (float(c) for c in args.coverages.split(",")):
        rows.append({"coverage": coverage, **resplit(calibration, test, coverage, args.resamples)})
        print(rows[-1], flush=True)
    sizes = {"calibration": len(calibration), "test": len(test)}
    settings = {k: v for k, v in vars(args).items() if k != "output_dir"}
    document = harness.result_document(info, machine, settings, sizes=sizes, rows=rows)
    table = harness.markdown_table(
        ["target", "test coverage", "re-splits at or below it", "re-splits' 5th-95th percentile"],
        [
            [r["coverage"], f"{r['observed']:.3f}", f"{r['share_at_or_below']:.1%}",
             f"{r['resplit_5_95'][0]:.3f}-{r['resplit_5_95'][1]:.3f}"]
            for r in rows
        ],
    )  # fmt: skip
    md = (
        f"{args.dataset_name}: {sizes['calibration']} calibration and {sizes['test']} test "
        f"residuals of {args.model_dir}, {args.resamples} random re-splits.\n\n{table}\n"
    )
    paths = harness.write_result("conformal_resplit", document, md, Path(args.output_dir))
    print(md)
    print(f"wrote {paths[0]} and {paths[1]}")
    return document


if __name__ == "__main__":
    main()
