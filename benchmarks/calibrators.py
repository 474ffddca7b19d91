"""Calibrators beyond one temperature, on binary models the toolkit has already calibrated
(issue 35's ECE goal on the movie-review sentences).

    python benchmarks/calibrators.py --model_dirs RUN43,RUN44 --seeds 43,44

``RUN43`` ...: output directories of ``benchmarks/calibration.py``'s sentiment runs (``--seeds``:
the seed each was trained with, which fixes its splits). For each, the maps below are fitted on
the validation rows that chose the epoch and the temperature (the run's split; its conformal
half is left alone) and scored on the test split, starting from the saved (temperature-scaled)
probabilities:

- ``temperature``: the saved probabilities as they are (Guo et al. 2017, what the toolkit does);
- ``isotonic``: isotonic regression of p(positive) (Zadrozny and Elkan 2002), probabilities
  clipped to [1 / (n + 1), n / (n + 1)] so that NLL stays finite;
- ``histogram``: histogram binning, 15 equal-width bins of p(positive) (Zadrozny and Elkan 2001);
- ``cubic_platt``: logistic regression on the log-odds and its cube (a Platt scaling that can
  bend: a temperature only rescales the log-odds).

Reports ECE (15 bins), NLL and Brier on test, and ECE over the run's uncalibrated test ECE
(``metrics.json``; the goal is at most 0.5). None of these maps folds into the classifier's
linear head as the temperature does, so adopting one means applying it at decode time in every
backend. Writes ``<output_dir>/calibrators.{json,md}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import harness
import numpy as np

METHODS = ("temperature", "isotonic", "histogram", "cubic_platt")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    harness.saved_run_arguments(parser)
    parser.add_argument("--output_dir", default=str(harness.RESULTS))
    return harness.saved_runs(parser, parser.parse_args(argv))


def fitted_maps(p_val: np.ndarray, y_val: np.ndarray) -> dict:
    """``{method: f(p_positive) -> p_positive}`` fitted on the validation probabilities."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    n = len(y_val)
    isotonic = IsotonicRegression(y_min=1 / (n + 1), y_max=n / (n + 1), out_of_bounds="clip")
    isotonic.fit(p_val, y_val)
    edges = np.linspace(0.0, 1.0, 16)

    def bins(p):
        return np.clip(np.digitize(p, edges) - 1, 0, 14)

    values = np.array(
        [(y_val[bins(p_val) == b].sum() + 0.5) / ((bins(p_val) == b).sum() + 1) for b in range(15)]
    )  # a half-count prior keeps an empty or one-sided bin off 0 and 1

    def features(p):
        z = np.log(np.clip(p, 1e-9, 1)) - np.log(np.clip(1 - p, 1e-9, 1))
        return np.c_[z, z**3]

    cubic = LogisticRegression(C=1e4, max_iter=1000).fit(features(p_val), y_val)
    return {
        "temperature": lambda p: p,
        "isotonic": isotonic.predict,
        "histogram": lambda p: values[bins(p)],
        "cubic_platt": lambda p: cubic.predict_proba(features(p))[:, 1],
    }


def scores(p_positive: np.ndarray, labels: np.ndarray) -> dict:
    from nlp_transfer.metrics.calibration import calibration_metrics

    probs = np.clip(np.c_[1 - p_positive, p_positive], 1e-12, 1.0)
    return calibration_metrics(np.log(probs), labels)


def reliability(p_positive: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Top-label confidence in bins 0.05 wide from 0.5: rows, mean confidence, accuracy."""
    confidence = np.maximum(p_positive, 1 - p_positive)
    right = (p_positive >= 0.5).astype(int) == labels
    edges = np.arange(0.5, 1.0001, 0.05)
    out = []
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence >= lo) & ((confidence < hi) | (hi >= 1.0))
        if inside.any():
            out.append({"bin": [round(lo, 2), round(hi, 2)], "rows": int(inside.sum()),
                        "confidence": float(confidence[inside].mean()),
                        "accuracy": float(right[inside].mean())})  # fmt: skip
    return out


def one_run(run_dir: Path, seed: int, args) -> dict:
    from nlp_transfer import TextClassifier, load_text_classification_dataset

    data = load_text_classification_dataset(args.dataset_name, seed=seed)
    selection = harness.validation_halves(data["validation"], args.calibration_split_size, seed)[
        0
    ]  # the rows T was fitted on
    model = TextClassifier.from_pretrained(run_dir, device="cpu")
    p_val = model.predict_proba(list(selection["text"]))[:, 1]
    p_test = model.predict_proba(list(data["test"]["text"]))[:, 1]
    y_val, y_test = np.asarray(selection["label"]), np.asarray(data["test"]["label"])
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    before = metrics["calibration"]["test"]["before"]["ece"]
    row = {"run": str(run_dir), "seed": seed, "fitted_on": len(y_val), "before_ece": before}
    row["test_reliability_temperature"] = reliability(p_test, y_test)
    for method, f in fitted_maps(p_val, y_val).items():
        row[method] = scores(f(p_test), y_test)
        row[method]["ece_ratio"] = row[method]["ece"] / before
    return row


def markdown(rows: list[dict], cpu: str) -> str:
    table = harness.markdown_table(
        ["seed", "validation rows fitted on", "uncalibrated ECE"]
        + [f"{m}: ECE (x uncalibrated), NLL" for m in METHODS],
        [
            [r["seed"], r["fitted_on"], f"{r['before_ece']:.4f}"]
            + [f"{r[m]['ece']:.4f} (x{r[m]['ece_ratio']:.2f}), {r[m]['nll']:.4f}" for m in METHODS]
            for r in rows
        ],
    )
    bins = harness.markdown_table(
        ["seed", "confidence bin", "test rows", "mean confidence", "accuracy"],
        [
            [r["seed"], f"{b['bin'][0]:.2f}-{b['bin'][1]:.2f}", b["rows"],
             f"{b['confidence']:.3f}", f"{b['accuracy']:.3f}"]
            for r in rows for b in r["test_reliability_temperature"]
        ],
    )  # fmt: skip
    return (
        f"On {cpu}. Test split of each run; maps fitted on its epoch-and-temperature rows.\n\n"
        f"{table}\n\nThe saved (temperature-scaled) probabilities on test, by confidence:\n\n"
        f"{bins}\n"
    )


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, machine = harness.run_info(script="calibrators.py"), harness.machine()
    rows = [one_run(Path(d), s, args) for d, s in zip(args.dir_list, args.seed_list, strict=True)]
    md = markdown(rows, machine["cpu"])
    return harness.finish("calibrators", args, info, machine, md, "(none)", summary=rows)


if __name__ == "__main__":
    main()
