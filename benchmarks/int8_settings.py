"""Choose onnxruntime's int8 quantization settings on validation texts, never on test.

    python benchmarks/int8_settings.py --model_dir outputs/sentiment     # ~3 min on 2 cores
    python benchmarks/int8_settings.py --model_dir X --max_samples 64 --output_dir /tmp/int8

Issue 32, item 6: the settings of ``nlp-transfer predict --quantize int8``
(``nlp_transfer.text.onnx_backend.INT8_SETTINGS``) were first picked by their agreement with
PyTorch on the inference benchmark's test texts. Here every candidate setting of
``onnxruntime.quantization.quantize_dynamic`` is scored on the **validation** split of the main
job's data (``rotten_tomatoes_sentences``, seed 42, as ``recipes/sentiment.py`` splits it): the
share of PyTorch's labels it keeps, its validation accuracy, its largest absolute difference in
probability from PyTorch, its file size and its predict time. The choice rule, fixed before the
run: the most labels kept; ties within 0.1 points go to the faster setting.

``--model_dir``: a run of the main job (``accelerate launch recipes/sentiment.py --output_dir X``);
it is copied into a work folder, so the files made here stay out of it.

Writes ``<output_dir>/int8_settings.{json,md}``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import harness
import numpy as np

# The candidates: onnxruntime's defaults, then each of the two choices changed (per-channel
# scales; MatMul weights only, embeddings and other ops left in float32).
CANDIDATES = {
    "defaults (per tensor, all ops)": {"per_channel": False, "op_types_to_quantize": None},
    "per channel, all ops": {"per_channel": True, "op_types_to_quantize": None},
    "per tensor, MatMul only": {"per_channel": False, "op_types_to_quantize": ["MatMul"]},
    "per channel, MatMul only": {"per_channel": True, "op_types_to_quantize": ["MatMul"]},
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_dir", required=True, help="A run of recipes/sentiment.py.")
    parser.add_argument("--dataset_name", default="rotten_tomatoes_sentences")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max_samples", type=int, default=None, help="First N texts only.")
    parser.add_argument("--batch_size", type=int, default=64)
    harness.harness_arguments(parser, repeats=1)
    return parser.parse_args(argv)


def choose(rows: list[dict]) -> dict:
    """The most labels kept; within 0.1 points of the best, the fastest."""
    best = max(r["label_agreement"] for r in rows)
    close = [r for r in rows if r["label_agreement"] >= best - 0.001]
    return min(close, key=lambda r: r["predict_s"])


def main(argv=None) -> dict:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from nlp_transfer import TextClassifier, load_text_classification_dataset
    from nlp_transfer.text.onnx_backend import INT8_SETTINGS, OnnxModel, ensure_onnx

    args = parse_args(argv)
    info, machine = harness.run_info(script="int8_settings.py"), harness.machine()
    work, _ = harness.workspace(args, "int8_settings")
    model_dir = work / "model"
    shutil.copytree(args.model_dir, model_dir, ignore=shutil.ignore_patterns("*.onnx*", "plots"))
    split = load_text_classification_dataset(args.dataset_name, seed=args.seed)["validation"]
    if args.max_samples:
        split = split.select(range(min(args.max_samples, len(split))))
    texts, gold = list(split["text"]), np.asarray(split["label"])

    reference = TextClassifier.from_pretrained(model_dir, device="cpu")
    torch_probs = reference.predict_proba(texts, args.batch_size)
    torch_labels = torch_probs.argmax(axis=1)
    fp32 = ensure_onnx(model_dir)
    rows = []
    for name, settings in CANDIDATES.items():
        path = work / f"{name.replace(' ', '_').replace(',', '')}.onnx"
        quantize_dynamic(
            fp32, path, weight_type=QuantType.QInt8, **{k: v for k, v in settings.items() if v}
        )
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        classifier = TextClassifier(
            OnnxModel(session, path),
            reference.tokenizer,
            reference.threshold,
            reference.max_seq_length,
            reference.config,
        )
        classifier.predict_proba(texts[: args.batch_size], args.batch_size)  # warm-up
        start = time.perf_counter()
        probs = classifier.predict_proba(texts, args.batch_size)
        elapsed = time.perf_counter() - start
        labels = probs.argmax(axis=1)
        rows.append(
            {
                "setting": name,
                "quantize_dynamic": {"weight_type": "QInt8", **settings},
                "label_agreement": float(np.mean(labels == torch_labels)),
                "validation_accuracy": float(np.mean(labels == gold)),
                "max_abs_probability_diff": float(np.abs(probs - torch_probs).max()),
                "size_mib": path.stat().st_size / 2**20,
                "predict_s": elapsed,
            }
        )
        print(rows[-1], flush=True)
    chosen = choose(rows)
    current = {"per_channel": INT8_SETTINGS["per_channel"]}
    current["op_types_to_quantize"] = INT8_SETTINGS["op_types_to_quantize"]
    summary = {
        "chosen": chosen["setting"],
        "torch_validation_accuracy": float(np.mean(torch_labels == gold)),
        "num_texts": len(texts),
        "split": "validation",
        "library_setting_is_chosen": chosen["quantize_dynamic"]
        == {"weight_type": INT8_SETTINGS["weight_type"], **current},
    }
    table = harness.markdown_table(
        ["setting", "labels kept vs torch", "validation accuracy", "max prob. diff",
         "size MiB", "predict s"],
        [
            [r["setting"] + (" (chosen)" if r is chosen else ""), f"{r['label_agreement']:.4f}",
             f"{r['validation_accuracy']:.4f}", f"{r['max_abs_probability_diff']:.4f}",
             f"{r['size_mib']:.1f}", f"{r['predict_s']:.2f}"]
            for r in rows
        ],
    )  # fmt: skip
    md = (
        f"On {machine['cpu']}; {len(texts):,} validation sentences of `{args.dataset_name}` "
        f"(torch's validation accuracy {summary['torch_validation_accuracy']:.4f}); the rule: "
        "most labels kept, ties within 0.1 points to the faster.\n\n"
        f"{table}\n\nThe library's INT8_SETTINGS are the chosen setting: "
        f"{summary['library_setting_is_chosen']}.\n"
    )
    settings = {k: v for k, v in vars(args).items() if k not in ("output_dir", "log_dir")}
    document = harness.result_document(info, machine, settings, summary=summary, rows=rows)
    paths = harness.write_result("int8_settings", document, md, Path(args.output_dir))
    print(md)
    print(f"wrote {paths[0]} and {paths[1]}")
    return document


if __name__ == "__main__":
    main()
