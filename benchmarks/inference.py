"""Inference speed: ``nlp-transfer predict`` on torch, onnxruntime fp32 and int8, against
``transformers.pipeline``, on the same texts, end to end.

    python benchmarks/inference.py --model_dir outputs/sentiment              # the full run
    python benchmarks/inference.py --model_dir X --max_samples 64 --repeats 1 \\
        --output_dir /tmp/inference                                           # a smoke run

Texts: the built-in sentiment test split (``rotten_tomatoes_sentences``, seed 42, as
``recipes/sentiment.py`` splits it: 1,008 sentences), written to a JSON Lines file. The model:
``--model_dir``, a run of ``accelerate launch recipes/sentiment.py --output_dir X``; it is copied
into a work folder first, so the ONNX files made here stay out of it. Arms, each a fresh process
through a stable command line, repeated round-robin (``harness.py``):

- ``torch``: ``python -m nlp_transfer predict --model_dir W --file test.jsonl --output out.jsonl``;
- ``onnxruntime``: the same with ``--backend onnxruntime`` (``W/model.onnx``);
- ``onnxruntime_int8``: ``--backend onnxruntime --quantize int8`` (``W/model.int8.onnx``);
- ``pipeline_bs<k>``: ``benchmarks/pipeline_worker.py``, ``transformers.pipeline(
  "text-classification", model=W)`` with ``batch_size=k`` (``--pipeline_batch_sizes``, default
  1, 8, 16, 32 and 64: the pipeline's default, the sizes its documentation suggests trying, and
  ours) and the same truncation; the fastest counts as the pipeline at its best.

The ONNX export and the int8 quantization are once-only work per model: they run first, once,
timed as their own processes (``once_only``), and the arms above reuse their files. Figures per
arm: texts/s of the predict phase (reading, tokenizing, predicting and writing every text: our
log line "Predicted N rows in X s", the worker's ``predict`` phase) and end to end (process start
to exit: imports and model loading included), peak RSS, accuracy on the split's labels, and
label agreement with the torch arm; speed-ups are ratios to the torch arm taken per repeat.
The pipeline takes the argmax: where the model saved a tuned ``decision_threshold``, its labels
can differ from ours for that reason alone (the threshold is in ``settings``).

Writes ``<output_dir>/inference.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

import harness

HERE = Path(__file__).resolve().parent
INT8 = ("--backend", "onnxruntime", "--quantize", "int8")
PREDICTED_RE = re.compile(r"Predicted ([0-9,]+) rows in ([0-9.]+) s")


def write_texts(args, path: Path) -> list[str]:
    """The test split's texts to ``path`` (JSON Lines); returns the gold label names."""
    from nlp_transfer import load_text_classification_dataset

    test = load_text_classification_dataset(args.dataset_name, seed=args.seed)["test"]
    if args.max_samples:
        test = test.select(range(min(args.max_samples, len(test))))
    names = test.features["label"].names
    with path.open("w", encoding="utf-8") as out:
        for text in test["text"]:
            out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    return [names[i] for i in test["label"]]


def predict_phase(metrics: dict, log: str) -> dict:
    """Our arm's predict phase, from its last "Predicted N rows in X s" line."""
    found = PREDICTED_RE.findall(log)
    return {"predict": float(found[-1][1])} if found else {}


def ours(name: str, work: Path, model: Path, data: Path, *flags: str) -> harness.Arm:
    """An arm running ``python -m nlp_transfer predict`` on the texts."""
    command = [sys.executable, "-m", "nlp_transfer", "predict", "--model_dir", str(model)]
    command += ["--file", str(data), "--output", str(work / f"{name}.jsonl")]
    command += ["--overwrite_output", *flags]
    return harness.Arm(
        name=name,
        command=command,
        phases=predict_phase,
        env={"PYTHONPATH": str(harness.REPO)},
        extra={"output": str(work / f"{name}.jsonl")},
    )


def arms(args, work: Path, model: Path, data: Path, max_length: int) -> list[harness.Arm]:
    """Ours on the three backends, then the pipeline at each batch size."""
    batch = ["--batch_size", str(args.batch_size)]
    out = [
        ours("torch", work, model, data, *batch),
        ours("onnxruntime", work, model, data, *batch, "--backend", "onnxruntime"),
        ours("onnxruntime_int8", work, model, data, *batch, *INT8),
    ]
    for size in args.pipeline_batch_sizes:
        name = f"pipeline_bs{size}"
        spec = {
            "model_dir": str(model),
            "input": str(data),
            "output": str(work / f"{name}.jsonl"),
            "metrics_path": str(work / f"{name}.json"),
            "batch_size": size,
            "max_length": max_length,
        }
        out.append(
            harness.Arm(
                name=name,
                command=[sys.executable, str(HERE / "pipeline_worker.py"), json.dumps(spec)],
                metrics_path=work / f"{name}.json",
                phases=lambda metrics, log: metrics.get("phases", {}),
                extra={"output": spec["output"]},
            )
        )
    return out


def once_only(work: Path, model: Path, log_dir: Path, kwargs: dict) -> list[dict]:
    """Export to ONNX, then quantize to int8: each once, timed as its own process."""
    py = [sys.executable, "-m", "nlp_transfer"]
    steps = [
        harness.Arm("onnx_export", [*py, "export", "--model_dir", str(model)]),
        harness.Arm(
            "int8_quantization",
            [*py, "predict", "--model_dir", str(model), "--text", "a film", *INT8],
        ),
    ]
    for step in steps:
        step.env = {"PYTHONPATH": str(harness.REPO)}
    return [harness.run_arm(step, log_dir, **kwargs) for step in steps]


def labels_of(path: str) -> list[str]:
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line)["label"] for line in lines]


def summarise(records: list[dict], names: list[str], gold: list[str]) -> list[dict]:
    """Per arm: texts/s (predict phase, end to end), speed-ups to torch, accuracy, agreement."""
    n = len(gold)
    torch_labels = labels_of(next(r["output"] for r in records if r["arm"] == "torch"))
    by_arm = {
        name: sorted((r for r in records if r["arm"] == name), key=lambda r: r["repeat"])
        for name in names
    }
    torch_predict = [r["phases"]["predict"] for r in by_arm["torch"]]
    torch_wall = [r["wall_s"] for r in by_arm["torch"]]
    # the pipeline at its best: the batch size with the shortest median predict phase
    pipelines = [name for name in names if name.startswith("pipeline")]
    best_pipeline = min(
        pipelines,
        key=lambda name: harness.summarize([r["phases"]["predict"] for r in by_arm[name]])[
            "median"
        ],
        default=None,
    )
    rows = []
    for name in names:
        mine = by_arm[name]
        predicted = labels_of(mine[-1]["output"])
        if len(predicted) != n:
            raise RuntimeError(f"{name} wrote {len(predicted)} lines for {n} texts")
        predict = [r["phases"]["predict"] for r in mine]
        rows.append(
            {
                "arm": name,
                "texts_per_s_predict": harness.summarize([n / s for s in predict]),
                "texts_per_s_end_to_end": harness.summarize([n / r["wall_s"] for r in mine]),
                "speedup_predict_vs_torch": harness.paired_ratios(torch_predict, predict),
                "speedup_end_to_end_vs_torch": harness.paired_ratios(
                    torch_wall, [r["wall_s"] for r in mine]
                ),
                "best_pipeline": best_pipeline,
                "speedup_predict_vs_best_pipeline": harness.paired_ratios(
                    [r["phases"]["predict"] for r in by_arm[best_pipeline]], predict
                )
                if best_pipeline
                else None,
                "predict_s": harness.summarize(predict),
                "wall_s": harness.figures(records, name, lambda r: r["wall_s"]),
                "peak_rss_mib": harness.figures(records, name, lambda r: r["peak_rss_mib"]),
                "accuracy": sum(p == g for p, g in zip(predicted, gold, strict=True)) / n,
                "label_agreement_vs_torch": sum(
                    p == t for p, t in zip(predicted, torch_labels, strict=True)
                )
                / n,
                "loaded": any(r["loaded"] for r in mine),
            }
        )
    torch_accuracy = rows[names.index("torch")]["accuracy"]
    for row in rows:
        row["accuracy_diff_vs_torch"] = row["accuracy"] - torch_accuracy
    return rows


def markdown(rows: list[dict], prep: list[dict], n: int) -> str:
    """The comparison table and the once-only costs."""
    table = [
        [
            row["arm"] + (" (loaded)" if row["loaded"] else ""),
            f"**{harness.fmt_range(row['texts_per_s_predict'], 0)}**",
            harness.fmt_range(row["texts_per_s_end_to_end"], 1),
            harness.fmt_range(row["speedup_predict_vs_torch"], 2, "x"),
            harness.fmt_range(row["speedup_end_to_end_vs_torch"], 2, "x"),
            harness.fmt_range(row["speedup_predict_vs_best_pipeline"], 2, "x")
            if row["speedup_predict_vs_best_pipeline"]
            else "",
            f"{row['accuracy']:.4f}",
            f"{100 * row['label_agreement_vs_torch']:.1f}%",
            harness.fmt_range(row["peak_rss_mib"], 0),
        ]
        for row in rows
    ]
    headers = [
        "arm", "texts/s (predict)", "texts/s (end to end)", "speed-up vs torch (predict)",
        "speed-up vs torch (end to end)", "speed-up vs best pipeline (predict)", "accuracy",
        "same label as torch", "peak RSS MiB",
    ]  # fmt: skip
    text = harness.markdown_table(headers, table)
    best = rows[0]["best_pipeline"]
    text += (
        f"\n{n:,} texts. Median (min-max) over repeats; speed-ups are ratios to the torch arm, "
        f"or to the pipeline at its best ({best}: its fastest batch size here), per repeat. "
        "Predict: reading, tokenizing, predicting and writing every text; end to end: "
        "process start to exit.\n\nOnce-only work per model (one process each): "
        + ", ".join(f"{r['arm']} {r['wall_s']:.1f} s" for r in prep)
        + ".\n"
    )
    if best:
        text += (
            "\nGoal (issue 21): at least 3x the pipeline at its best with ONNX Runtime, "
            "accuracy within 0.3 points of torch.\n\n"
        )
        for row in rows:
            if row["arm"].startswith("onnxruntime"):
                ratio = row["speedup_predict_vs_best_pipeline"]["median"]
                diff = 100 * row["accuracy_diff_vs_torch"]
                met = ratio >= 3 and abs(diff) <= 0.3
                text += (
                    f"- {row['arm']}: {ratio:.2f}x {best}, accuracy {diff:+.2f} points: "
                    f"{'met' if met else 'not met'}.\n"
                )
    return text


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_dir", required=True, help="A run of recipes/sentiment.py.")
    parser.add_argument("--dataset_name", default="rotten_tomatoes_sentences")
    parser.add_argument("--seed", type=int, default=42, help="The split's seed (the recipe's).")
    parser.add_argument("--max_samples", type=int, default=None, help="First N test texts only.")
    parser.add_argument("--batch_size", type=int, default=64, help="Ours: texts per batch.")
    parser.add_argument("--pipeline_batch_sizes", default="1,8,16,32,64")
    harness.harness_arguments(parser)
    args = parser.parse_args(argv)
    args.pipeline_batch_sizes = [int(x) for x in args.pipeline_batch_sizes.split(",") if x]
    source = Path(args.model_dir)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    info, machine = harness.run_info(script="inference.py"), harness.machine()
    work, log_dir = harness.workspace(args, "inference")
    model = work / "model"
    skip = shutil.ignore_patterns("checkpoints", "plots", "*.onnx", "adapter")
    shutil.copytree(source, model, ignore=skip)
    data = work / "test.jsonl"
    gold = write_texts(args, data)
    max_length = config.get("max_seq_length") or 512
    kwargs = harness.harness_kwargs(args)
    start = time.perf_counter()
    prep = once_only(work, model, log_dir, kwargs)
    all_arms = arms(args, work, model, data, max_length)
    records = harness.run_repeats(all_arms, args.repeats, log_dir, **kwargs)
    info["wall_time_s"] = time.perf_counter() - start
    rows = summarise(records, [a.name for a in all_arms], gold)
    settings = {k: v for k, v in vars(args).items() if k not in ("output_dir", "log_dir")}
    settings |= {
        "num_texts": len(gold),
        "max_seq_length": max_length,
        "decision_threshold": config.get("decision_threshold"),
        "model_type": config.get("model_type"),
    }
    document = harness.result_document(
        info, machine, settings, comparison=rows, once_only=prep, records=records
    )
    md = markdown(rows, prep, len(gold))
    paths = harness.write_result("inference", document, md, Path(args.output_dir))
    print(md)
    print(f"wrote {paths[0]} and {paths[1]}; logs in {log_dir}")
    return document


if __name__ == "__main__":
    main()
