"""Splitting a batch of unrelated texts by length: a forward pass's fixed cost, and the gain.

    python benchmarks/length_batches.py --model_dir outputs/sentiment       # ~5 min on 2 cores
    python benchmarks/length_batches.py --model_dir M --batches 10 --output_dir /tmp/lb

A server's dynamic batch holds texts of unrelated lengths: sorted and padded to the longest,
a batch of 32 of the built-in sentiment test sentences holds about twice the tokens of its
texts. ``length_batches`` splits such a batch where the padding would cost more than another
forward pass. This script measures, on this machine, for the torch model (float32) and its
onnxruntime int8 export:

1. the forward time of ``k`` texts of ``L`` tokens (k 1-32, L 8-64, median of 7), fitted as
   ``a + b * k * L`` in relative error: ``a / b`` is a forward pass's fixed cost in tokens of work, the value
   ``call_cost_tokens`` needs;
2. ``TextClassifier.predict_logits`` on ``--batches`` random batches of 8 and 32 test sentences
   (the server's case), with fixed batches and with length batches at the fixed cost just
   measured (``nlp_transfer.text.inference.CPU_CALL_COST_TOKENS`` holds the packaged values,
   recorded beside it): texts per second (median of 3 passes over the same batches), and that
   the logits are the same.

Writes ``<output_dir>/length_batches.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import harness
import numpy as np


def forward_cost(run_batch, vocab_low: int = 1000) -> dict:
    """Median forward seconds of (k, L) batches of random ids; the fitted ``a + b*k*L``."""
    rows = []
    for k in (1, 2, 4, 8, 16, 32):
        for length in (8, 16, 32, 64):
            ids = np.random.default_rng(0).integers(vocab_low, vocab_low + 1000, (k, length))
            batch = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            run_batch(batch)  # warm-up
            times = []
            for _ in range(7):
                start = time.perf_counter()
                run_batch(batch)
                times.append(time.perf_counter() - start)
            rows.append({"texts": k, "tokens": length, "seconds": statistics.median(times)})
    fixed, per_token = fit_forward_cost(rows)
    return {
        "grid": rows,
        "call_s": float(fixed),
        "token_s": float(per_token),
        "call_cost_tokens": float(fixed / per_token),
    }


def fit_forward_cost(rows: list[dict]) -> tuple[float, float]:
    """``a + b * texts * tokens`` fitted to the seconds in relative terms (each row weighs
    1/seconds: a small batch's time says most about ``a``, a large one's about ``b``)."""
    seconds = np.array([r["seconds"] for r in rows])
    design = np.array([[1.0, r["texts"] * r["tokens"]] for r in rows]) / seconds[:, None]
    fixed, per_token = np.linalg.lstsq(design, np.ones(len(rows)), rcond=None)[0]
    return float(fixed), float(per_token)


def throughput(classifier, batches: list[list[str]], cost: float | None) -> tuple[float, list]:
    """Texts per second over ``batches`` (median of 3 passes) and the logits of the last."""
    rates, logits = [], []
    for _ in range(3):
        start, logits = time.perf_counter(), []
        for texts in batches:
            logits.append(classifier.predict_logits(texts, len(texts), call_cost_tokens=cost))
        rates.append(sum(map(len, batches)) / (time.perf_counter() - start))
    return statistics.median(rates), logits


def torch_run_batch(classifier):
    import torch

    def run(batch):
        with torch.inference_mode():
            tensors = {k: torch.as_tensor(v) for k, v in batch.items()}
            return classifier.model(**tensors).logits.numpy()

    return run


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_dir", required=True, help="A run of recipes/sentiment.py.")
    parser.add_argument("--batches", type=int, default=60, help="Random batches per size.")
    parser.add_argument("--output_dir", default=str(harness.RESULTS))
    args = parser.parse_args(argv)
    from nlp_transfer import TextClassifier, load_text_classification_dataset
    from nlp_transfer.text.inference import CPU_CALL_COST_TOKENS

    before = harness.check_load()
    texts = list(load_text_classification_dataset("rotten_tomatoes_sentences")["test"]["text"])
    rng = np.random.default_rng(0)
    backends = {
        "torch": TextClassifier.from_pretrained(args.model_dir, device="cpu"),
        "int8": TextClassifier.from_pretrained(
            args.model_dir, backend="onnxruntime", quantize="int8"
        ),
    }
    results = {"packaged_cost_tokens": dict(CPU_CALL_COST_TOKENS)}
    for name, classifier in backends.items():
        run = torch_run_batch(classifier) if name == "torch" else classifier.model.run_batch
        forward = forward_cost(run)
        cost = max(0, round(forward["call_cost_tokens"]))  # this machine's, measured just now
        results[name] = {"forward": forward, "used_cost_tokens": cost}
        for size in (8, 32):
            batches = [
                [texts[i] for i in rng.choice(len(texts), size, replace=False)]
                for _ in range(args.batches)
            ]
            fixed, a = throughput(classifier, batches, None)
            split, b = throughput(classifier, batches, cost)
            same = max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))
            agree = float(np.mean(np.concatenate(a).argmax(1) == np.concatenate(b).argmax(1)))
            results[name][f"batch_{size}"] = {
                "fixed_texts_per_s": fixed,
                "length_texts_per_s": split,
                "speedup": split / fixed,
                "max_logit_difference": same,
                "same_label": agree,
            }
            print(f"{name} batch {size}: {fixed:.0f} -> {split:.0f} texts/s", flush=True)
    document = harness.result_document(
        harness.run_info(script="length_batches.py"),
        harness.machine(),
        {"batches": args.batches, "load_before": before},
        results=results,
    )
    harness.write_result("length_batches", document, markdown(results), Path(args.output_dir))
    print(markdown(results))
    return document


def backends_of(results: dict) -> list[tuple[str, dict]]:
    return [(name, r) for name, r in results.items() if name != "packaged_cost_tokens"]


def markdown(results: dict) -> str:
    forward = harness.markdown_table(
        ["backend", "fixed cost per forward pass", "per token", "fixed cost in tokens", "used"],
        [
            [name, f"{1000 * r['forward']['call_s']:.2f} ms", f"{1e6 * r['forward']['token_s']:.1f} us",
             f"{r['forward']['call_cost_tokens']:.0f}", f"{r['used_cost_tokens']:.0f}"]
            for name, r in backends_of(results)
        ],
    )  # fmt: skip
    gain = harness.markdown_table(
        ["backend", "texts in the batch", "fixed batches, texts/s", "length batches, texts/s",
         "speed-up", "max logit difference", "same label"],
        [
            [name, size, f"{r[f'batch_{size}']['fixed_texts_per_s']:.0f}",
             f"{r[f'batch_{size}']['length_texts_per_s']:.0f}",
             f"{r[f'batch_{size}']['speedup']:.2f}x",
             f"{r[f'batch_{size}']['max_logit_difference']:.1e}",
             f"{r[f'batch_{size}']['same_label']:.1%}"]
            for name, r in backends_of(results) for size in (8, 32)
        ],
    )  # fmt: skip
    return (
        "Forward time fitted as a fixed cost per pass plus a cost per token (texts x padded "
        f"length):\n\n{forward}\n\nRandom batches of built-in sentiment test sentences, as a "
        f"server's dynamic batch holds them:\n\n{gain}\n\nint8 quantizes activations per "
        "batch (onnxruntime's dynamic quantization: one scale per tensor), so an int8 text's "
        "logits depend on the texts batched with it; float32's do not (up to rounding).\n"
    )


if __name__ == "__main__":
    main()
