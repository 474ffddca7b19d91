"""Which validation rows should fit the calibration? (issue 35's ECE goal on movie reviews)

    python benchmarks/calibration_rows.py --model_dirs RUN42,...,RUN51 --seeds 42,...,51

``RUN42`` ...: output directories of ``benchmarks/calibration.py``'s sentiment runs
(``--seeds``: each run's ``--seed``, which fixes its splits). A run splits validation in two
(``--calibration_split_size``, as ``text/uncertainty.hold_out_calibration_split``): the
*selection* half chose the best epoch and fitted the temperature and the map; the *held* half
gave the conformal scores only. The model's weights do not depend on the calibration, so the
calibration can be fitted again on other rows after the fact, exactly as training would:

- ``selection``: the temperature, then (binary models) the isotonic map where it lowers the
  cross-validated NLL
  (``nlp_transfer.training.calibration.fit_temperature``,
  ``nlp_transfer.metrics.recalibration.fit_binary_map``) on the selection half (what the toolkit
  does; it repeats the saved calibration);
- ``held``: the same fit on the held half, rows that selected nothing;
- ``both``: the same fit on the whole validation split.

For each: test ECE (15 bins), NLL and Brier, and the coverage on test of randomised APS sets
whose scores come from the held half (the conformal scores of every choice, so ``both`` shows
what scoring rows that also fitted the calibration costs the guarantee). Writes
``<output_dir>/calibration_rows.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

import harness
import numpy as np

CHOICES = ("selection", "held", "both")
COVERAGES = (0.8, 0.9, 0.95)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    harness.saved_run_arguments(parser)
    parser.add_argument("--output_dir", default=str(harness.RESULTS))
    return harness.saved_runs(parser, parser.parse_args(argv))


def uncalibrated_copy(run_dir: Path, work: Path) -> tuple[Path, float]:
    """A view of ``run_dir`` whose ``config.json`` has no map (files linked, not copied), and
    the saved temperature: its logits times the temperature are the uncalibrated ones."""
    work.mkdir(parents=True)
    for f in run_dir.iterdir():
        if f.is_file() and f.name != "config.json":
            (work / f.name).symlink_to(f.resolve())
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    config["calibration"].pop("isotonic", None)
    (work / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return work, float(config["calibration"]["temperature"])


def one_run(run_dir: Path, seed: int, args, work: Path) -> dict:
    from scipy.special import softmax

    from nlp_transfer import TextClassifier, load_text_classification_dataset
    from nlp_transfer.metrics.calibration import calibration_metrics
    from nlp_transfer.metrics.conformal import aps_scores, coverage_report, example_uniforms
    from nlp_transfer.metrics.recalibration import fit_binary_map, map_logits
    from nlp_transfer.training.calibration import fit_temperature

    data = load_text_classification_dataset(args.dataset_name, seed=seed)
    selection, held = harness.validation_halves(
        data["validation"], args.calibration_split_size, seed
    )
    view, saved_t = uncalibrated_copy(run_dir, work / f"seed{seed}")
    model = TextClassifier.from_pretrained(view, device="cpu")
    parts = {"selection": selection, "held": held, "test": data["test"]}
    logits = {
        k: (model.predict_logits(list(p["text"])) * saved_t, np.asarray(p["label"]))
        for k, p in parts.items()
    }
    logits["both"] = tuple(
        np.concatenate([logits[k][i] for k in ("selection", "held")]) for i in (0, 1)
    )
    uniforms = {k: example_uniforms(list(parts[k]["text"])) for k in ("held", "test")}
    test_logits, test_labels = logits["test"]
    row = {"run": str(run_dir), "seed": seed, "saved_temperature": saved_t,
           "before": calibration_metrics(test_logits, test_labels)}  # fmt: skip
    for choice in CHOICES:
        z, y = logits[choice]
        t = fit_temperature(z, y)
        isotonic = fit_binary_map(z / t, y, seed=seed) if z.shape[1] == 2 else None

        def probs(raw, t=t, isotonic=isotonic):
            return softmax(map_logits(raw / t, isotonic), axis=1)

        scores = aps_scores(probs(logits["held"][0]), logits["held"][1], uniforms["held"])
        coverage = coverage_report(
            scores, probs(test_logits), test_labels, COVERAGES, uniforms=uniforms["test"]
        )
        row[choice] = calibration_metrics(np.log(probs(test_logits)), test_labels) | {
            "rows": len(y),
            "temperature": t,
            "map": isotonic is not None,
            "coverage": {c: coverage[c]["coverage"] for c in coverage},
        }
    return row


def means(rows: list[dict]) -> dict:
    before = statistics.mean(r["before"]["ece"] for r in rows)
    out = {"before_ece": before}
    for choice in CHOICES:
        ece = statistics.mean(r[choice]["ece"] for r in rows)
        out[choice] = {
            "ece": ece,
            "ece_ratio": ece / before,
            "nll": statistics.mean(r[choice]["nll"] for r in rows),
            "nll_below_selection": sum(r[choice]["nll"] < r["selection"]["nll"] for r in rows),
            "coverage": {
                c: statistics.mean(r[choice]["coverage"][c] for r in rows)
                for c in rows[0][choice]["coverage"]
            },
        }
    return out


def markdown(rows: list[dict], summary: dict, cpu: str) -> str:
    def cell(r):
        return (
            f"T {r['temperature']:.3f}{' + map' if r['map'] else ''}: ECE {r['ece']:.4f}, "
            f"NLL {r['nll']:.4f}, coverage "
            + " / ".join(f"{v:.3f}" for v in r["coverage"].values())
        )

    table = harness.markdown_table(
        ["seed", "uncalibrated ECE", *[f"fitted on {c}" for c in CHOICES]],
        [[r["seed"], f"{r['before']['ece']:.4f}", *[cell(r[c]) for c in CHOICES]] for r in rows],
    )
    mean_table = harness.markdown_table(
        ["fitted on", "test ECE (x uncalibrated)", "test NLL (runs below selection's)",
         "coverage at 0.8 / 0.9 / 0.95"],
        [
            [c, f"{m['ece']:.4f} (x{m['ece_ratio']:.3f})",
             f"{m['nll']:.4f} ({m['nll_below_selection']} of {len(rows)})",
             " / ".join(f"{v:.3f}" for v in m["coverage"].values())]
            for c in CHOICES if (m := summary[c])
        ],
    )  # fmt: skip
    return (
        f"On {cpu}. Test split of each run; conformal scores from the held half in every "
        f"column. Uncalibrated test ECE, mean: {summary['before_ece']:.4f}.\n\n"
        f"Mean over the {len(rows)} runs:\n\n{mean_table}\n\nEach run:\n\n{table}\n"
    )


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, machine = harness.run_info(script="calibration_rows.py"), harness.machine()
    work = Path(tempfile.mkdtemp(prefix="calibration-rows-"))
    try:
        rows = [
            one_run(Path(d), s, args, work)
            for d, s in zip(args.dir_list, args.seed_list, strict=True)
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = means(rows)
    md = markdown(rows, summary, machine["cpu"])
    return harness.finish(
        "calibration_rows", args, info, machine, md, "(none)", means=summary, summary=rows
    )


if __name__ == "__main__":
    main()
