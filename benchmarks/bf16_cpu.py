"""Does bf16 autocast speed up training of the default model on this machine? Measured, not assumed.

    python benchmarks/bf16_cpu.py                # 8 timed steps per precision, batch 32
    python benchmarks/bf16_cpu.py --steps 4

Times full fine-tuning steps (forward, backward, fused AdamW) of the packaged all-MiniLM-L6-v2 on
real length-grouped batches of the built-in sentiment data (the recipe's token batch sizes), in
float32 and under ``torch.autocast(dtype=torch.bfloat16)``, alternating precisions so that both
see the same machine load, and reports the median step time of each, the ratio, and whether the
CPU has native bfloat16 (AVX512-BF16 / AMX-BF16). The result decides the default of
``--mixed_precision``. Writes ``benchmarks/results/bf16_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="Timed steps per precision.")
    parser.add_argument("--per_device_train_batch_size", type=int, default=32)
    parser.add_argument("--output_dir", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F
    from accelerate import PartialState

    from nlp_transfer import TextClassificationConfig
    from nlp_transfer.data.samplers import LengthGroupedSampler
    from nlp_transfer.models.text import build_text_classifier
    from nlp_transfer.text.loaders import load_data
    from nlp_transfer.training.loop import create_optimizer
    from nlp_transfer.training.setup import cpu_has_native_bf16

    PartialState(cpu=True)
    train = load_data(TextClassificationConfig(dataset_name="rotten_tomatoes_sentences"))["train"]
    torch.manual_seed(0)
    model, tokenizer = build_text_classifier(None, label_names=["negative", "positive"])
    optimizer = create_optimizer(model, 5e-5, 0.01)
    model.train()
    texts = list(train["text"])
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=128)["input_ids"]]
    order = list(iter(LengthGroupedSampler(lengths, args.per_device_train_batch_size, seed=0)))
    size = args.per_device_train_batch_size

    def step(i: int, bf16: bool) -> tuple[float, int]:
        rows = order[i * size : (i + 1) * size]
        batch = tokenizer(
            [texts[r] for r in rows],
            padding=True,
            truncation=True,
            max_length=128,
            return_tensors="pt",
        )
        labels = torch.tensor([train[r]["label"] for r in rows])
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(**batch).logits
        F.cross_entropy(logits.float(), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start, int(batch["input_ids"].numel())

    step(0, False), step(0, True)  # warm-up
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    tokens = []
    for i in range(1, args.steps + 1):  # the same batch for both precisions, alternating
        for name in ("fp32", "bf16"):
            seconds, n = step(i, name == "bf16")
            times[name].append(seconds)
        tokens.append(n)
    median = {name: statistics.median(t) for name, t in times.items()}
    cpu = (
        next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            None,
        )
        if Path("/proc/cpuinfo").exists()
        else None
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    ).stdout.strip()
    result = {
        "run": {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": "python benchmarks/bf16_cpu.py " + " ".join(argv or []),
            "git_commit": commit,
            "cpu": cpu,
            "threads": torch.get_num_threads(),
            "native_bf16": cpu_has_native_bf16(),
            "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        },
        "batch_size": size,
        "mean_tokens_per_batch": statistics.fmean(tokens),
        "median_step_s": median,
        "bf16_over_fp32": median["bf16"] / median["fp32"],
        "step_s": times,
    }
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bf16_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"median step: fp32 {median['fp32']:.2f} s, bf16 autocast {median['bf16']:.2f} s "
        f"({result['bf16_over_fp32']:.1f}x the fp32 time); native bf16: {result['run']['native_bf16']}"
    )
    return result


if __name__ == "__main__":
    main()
