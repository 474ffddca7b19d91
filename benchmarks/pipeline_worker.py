"""The peer arm of ``inference.py``: ``transformers.pipeline("text-classification")``, one process.

    python benchmarks/pipeline_worker.py '{"model_dir": "...", "input": "test.jsonl", ...}'

Uses only transformers (and torch under it): the pipeline as its documentation shows it, on the
CPU (``device=-1``), with ``batch_size`` given (the pipeline's own batching; 1 is its default)
and the same truncation as ours (``truncation=True, max_length=`` the model's saved
``max_seq_length``), so both sides see the same tokens. Reads the texts of a JSON Lines file
(``{"text": ...}`` per line), writes ``{"text", "label", "score"}`` per line, and a JSON file of
phases (seconds): ``data`` (reading the texts), ``model_load`` (building the pipeline),
``predict`` (classifying every text and writing the lines), ``run_total`` (after the imports).
"""

from __future__ import annotations

import json
import sys
import time


def main(spec: dict) -> dict:
    start = time.perf_counter()
    from transformers import pipeline

    imported = time.perf_counter()
    with open(spec["input"], encoding="utf-8") as lines:
        texts = [json.loads(line)["text"] for line in lines if line.strip()]
    read = time.perf_counter()
    classify = pipeline("text-classification", model=spec["model_dir"], device=-1)
    loaded = time.perf_counter()
    results = classify(
        texts, batch_size=spec["batch_size"], truncation=True, max_length=spec["max_length"]
    )
    with open(spec["output"], "w", encoding="utf-8") as out:
        for text, result in zip(texts, results, strict=True):
            line = {"text": text, "label": result["label"], "score": result["score"]}
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    done = time.perf_counter()
    metrics = {
        "rows": len(texts),
        "phases": {
            "imports": imported - start,
            "data": read - imported,
            "model_load": loaded - read,
            "predict": done - loaded,
            "run_total": done - imported,
        },
    }
    with open(spec["metrics_path"], "w", encoding="utf-8") as out:
        json.dump(metrics, out)
    return metrics


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
