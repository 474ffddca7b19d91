"""What ``nlp-transfer serve``'s batching wait and model threads cost: its defaults against the
alternatives, per backend.

    python benchmarks/serve_settings.py --model_dir outputs/sentiment        # ~8 min on 2 cores

The same model, texts and closed-loop client as ``serve_load.py`` (one sentence per request,
the client on the same machine), ``--duration_s`` per row after a 3 s warm-up. Arms, each a
server started with these flags:

- ``torch`` and ``int8 --dynamic_batching`` (``--backend onnxruntime --quantize int8``, whose
  default is no batching): the defaults otherwise (``--max_wait_ms 0``; threads: torch every
  core, onnxruntime one fewer than the cores);
- ``... --max_wait_ms 5``: the oldest request waits up to 5 ms for others to join its batch;
- ``torch --num_threads 1`` and ``int8 --num_threads <cores>``: the other thread count.

Per arm and concurrency: requests/s, p50/p99 latency (ms), the mean texts per forward pass and
the share of the time the model was busy (both from the server's ``/metrics``).

Writes ``<output_dir>/serve_settings.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import harness
from serve_load import free_port, load, load_parser, start_server, stop_server


def parse_args(argv=None) -> argparse.Namespace:
    return load_parser(__doc__, "1,8,32", 10.0).parse_args(argv)


def arms() -> dict[str, list[str]]:
    int8 = ["--backend", "onnxruntime", "--quantize", "int8", "--dynamic_batching"]
    cores = str(os.cpu_count() or 1)
    return {
        "torch": [],
        "torch --max_wait_ms 5": ["--max_wait_ms", "5"],
        "torch --num_threads 1": ["--num_threads", "1"],
        "int8 --dynamic_batching": int8,
        "int8 --dynamic_batching --max_wait_ms 5": [*int8, "--max_wait_ms", "5"],
        f"int8 --dynamic_batching --num_threads {cores}": [*int8, "--num_threads", cores],
    }


def metric(text: str, name: str) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    found = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def run_arm(name: str, flags: list[str], args, model: Path, texts, log_dir: Path) -> list[dict]:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    harness.check_load(settle_s=10)
    command = [sys.executable, "-m", "nlp_transfer", "serve", "--model_dir", str(model)]
    safe = re.sub(r"\W+", "_", name)
    process = start_server([*command, *flags, "--port", str(port)], url, log_dir / f"{safe}.log")
    rows = []
    try:
        for clients in args.concurrency_list:
            asyncio.run(load(url, texts, 1, clients, 3.0))  # warm-up
            before = httpx.get(f"{url}/metrics").text
            row = asyncio.run(load(url, texts, 1, clients, args.duration_s))
            after = httpx.get(f"{url}/metrics").text

            def delta(key, before=before, after=after):
                return metric(after, key) - metric(before, key)

            batches = delta("nlp_transfer_batch_size_count")
            row |= {
                "arm": name,
                "flags": flags,
                "mean_batch_texts": delta("nlp_transfer_batch_size_sum") / max(batches, 1),
                "model_busy_share": delta("nlp_transfer_batch_seconds_sum") / row["seconds"],
            }
            rows.append(row)
            print(
                f"{name} c={clients}: {row['requests_per_s']:.1f} req/s, p50 {row['p50_ms']:.0f} "
                f"ms, p99 {row['p99_ms']:.0f} ms, batch {row['mean_batch_texts']:.1f}, busy "
                f"{row['model_busy_share']:.0%}",
                flush=True,
            )
    finally:
        stop_server(process)
    return rows


def markdown(rows: list[dict], cpu: str, args) -> str:
    table = harness.markdown_table(
        ["server", "clients", "requests/s", "p50 ms", "p99 ms", "texts per pass", "model busy"],
        [
            [r["arm"], r["clients"], f"{r['requests_per_s']:.1f}", f"{r['p50_ms']:.0f}",
             f"{r['p99_ms']:.0f}", f"{r['mean_batch_texts']:.1f}", f"{r['model_busy_share']:.0%}"]
            for r in rows
        ],
    )  # fmt: skip
    return (
        f"On {cpu}. One sentence per request, closed-loop clients on the same machine, "
        f"{args.duration_s:.0f} s per row after a 3 s warm-up; one run per row.\n\n{table}\n"
    )


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.concurrency_list = [int(c) for c in args.concurrency.split(",") if c]
    info, machine = harness.run_info(script="serve_settings.py"), harness.machine()
    work = Path(tempfile.mkdtemp(prefix="serve_settings-"))
    log_dir = work / "logs"
    log_dir.mkdir()
    model = work / "model"
    shutil.copytree(
        args.model_dir, model, ignore=shutil.ignore_patterns("checkpoints", "plots", "*.onnx")
    )
    from nlp_transfer import TextClassifier, load_text_classification_dataset

    texts = list(
        load_text_classification_dataset(args.dataset_name, seed=args.seed)["test"]["text"]
    )
    TextClassifier.from_pretrained(model, backend="onnxruntime", quantize="int8")  # made once
    rows = []
    for name, flags in arms().items():
        rows += run_arm(name, flags, args, model, texts, log_dir)
    settings = {k: v for k, v in vars(args).items() if k != "output_dir"}
    document = harness.result_document(info, machine, settings, rows=rows)
    md = markdown(rows, machine["cpu"], args)
    paths = harness.write_result("serve_settings", document, md, Path(args.output_dir))
    print(md)
    print(f"wrote {paths[0]} and {paths[1]}")
    return document


if __name__ == "__main__":
    main()
