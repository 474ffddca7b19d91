"""Does bf16 autocast speed up training of the default model on this machine? Measured, not assumed.

    python benchmarks/bf16_cpu.py                # 8 timed steps per precision, batch 32
    python benchmarks/bf16_cpu.py --steps 4

Times full fine-tuning steps (forward, backward, fused AdamW) of the packaged all-MiniLM-L6-v2 on
real length-grouped batches of the built-in sentiment data (the recipe's token batch sizes), in
float32 and under ``torch.autocast(dtype=torch.bfloat16)``, alternating precisions so that both
see the same machine load, and reports the median step time of each, the bf16/fp32 ratio paired
per batch (each batch's bf16 time over the same batch's fp32 time; median with min-max of those
ratios, not a ratio of medians over different batches), the 1-minute load average before the
run, and whether the CPU has native bfloat16 (AVX512-BF16 / AMX-BF16). The result decides the
default of ``--mixed_precision``. Writes ``<output_dir>/bf16_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def make_step(batch_size: int = 32, phases=None):
    """A full fine-tuning step of the default model on the sentiment sentences, to time.

    Returns ``step(i, bf16) -> (seconds, padded_tokens)``: batch ``i`` of a length-grouped order
    (as training uses), forward (bf16 autocast when ``bf16``), cross-entropy, backward and a
    fused AdamW step; tokenization is outside the timed part. ``phases(name)``, when given,
    returns a context manager wrapped around each of ``forward``, ``backward`` and
    ``optimizer`` (``torch.profiler.record_function`` in ``profile_step.py``).
    """
    import contextlib

    import torch
    import torch.nn.functional as F

    from nlp_transfer import (
        LengthGroupedSampler,
        build_text_classifier,
        load_text_classification_dataset,
    )

    phase = phases or (lambda name: contextlib.nullcontext())
    train = load_text_classification_dataset("rotten_tomatoes_sentences", seed=42)["train"]
    torch.manual_seed(0)
    model, tokenizer = build_text_classifier(None, label_names=["negative", "positive"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01, fused=True)
    model.train()
    texts, labels = list(train["text"]), list(train["label"])
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=128)["input_ids"]]
    order = list(iter(LengthGroupedSampler(lengths, batch_size, seed=0)))

    def step(i: int, bf16: bool) -> tuple[float, int]:
        rows = order[i * batch_size : (i + 1) * batch_size]
        batch = tokenizer(
            [texts[r] for r in rows],
            padding=True,
            truncation=True,
            max_length=128,
            return_tensors="pt",
        )
        target = torch.tensor([labels[r] for r in rows])
        start = time.perf_counter()
        with phase("forward"):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(**batch).logits
            loss = F.cross_entropy(logits.float(), target)
        with phase("backward"):
            loss.backward()
        with phase("optimizer"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start, int(batch["input_ids"].numel())

    return step


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="Timed steps per precision.")
    parser.add_argument("--per_device_train_batch_size", type=int, default=32)
    parser.add_argument("--output_dir", default=str(RESULTS))
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]

    import harness
    import torch

    step, size = make_step(args.per_device_train_batch_size), args.per_device_train_batch_size

    step(0, False), step(0, True)  # warm-up
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    tokens = []
    for i in range(1, args.steps + 1):  # the same batch for both precisions, alternating
        for name in ("fp32", "bf16"):
            seconds, n = step(i, name == "bf16")
            times[name].append(seconds)
        tokens.append(n)
    median = {name: statistics.median(t) for name, t in times.items()}
    # Paired per batch: each batch's bf16 time over the same batch's fp32 time, then the median.
    per_batch = harness.paired_ratios(times["bf16"], times["fp32"])
    machine = harness.machine()
    flags = machine["cpu_flags"]
    result = harness.result_document(
        harness.run_info(script="bf16_cpu.py"),
        machine,
        {"steps": args.steps, "batch_size": size, "load_1m_before": load_before},
        native_bf16=bool(flags.get("avx512_bf16") or flags.get("amx_bf16")),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        mean_tokens_per_batch=statistics.fmean(tokens),
        median_step_s=median,
        bf16_over_fp32_paired=per_batch,
        step_s=times,
    )
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bf16_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"median step: fp32 {median['fp32']:.2f} s, bf16 autocast {median['bf16']:.2f} s; "
        f"bf16/fp32 per batch: {harness.fmt_range(per_batch, 2, 'x')} (median (min-max) of the "
        f"paired ratios); native bf16: {result['native_bf16']}"
    )
    return result


if __name__ == "__main__":
    main()
