"""One arm of ``text_scaling.py`` that is not a training run: the data phase, or the baseline.

    python benchmarks/text_scaling_worker.py '{"phase": "data", "train_file": "...", ...}'

``data``: what a text run does before the model: read the file (``datasets``' Arrow cache),
check and encode the labels, split, and tokenize every split (``--preprocessing_num_workers``
processes), through the library's own functions (``load_data``, ``tokenize_dataset``).
``baseline``: the same data (its cache files reused), then the TF-IDF + logistic regression
baseline as a run fits it (training rows capped at 100,000; every validation and test row
scored). Writes a JSON file of phases (seconds), sizes and the process's peak RSS after each
phase (MiB, ``getrusage``; the harness records the whole process's, children included).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(spec: dict) -> dict:
    start = time.perf_counter()
    from accelerate import PartialState

    from nlp_transfer.data.columns import sequence_lengths
    from nlp_transfer.text import TextClassificationConfig
    from nlp_transfer.text.loaders import load_data
    from nlp_transfer.text.tokenize import tokenize_dataset

    PartialState(cpu=True)  # the library logs through accelerate
    imported = time.perf_counter()
    config = TextClassificationConfig(
        train_file=spec["train_file"],
        cache_dir=spec["cache_dir"],
        preprocessing_num_workers=spec.get("preprocessing_num_workers"),
        max_seq_length=spec.get("max_seq_length", 128),
        model_name_or_path=spec.get("model_name_or_path"),
        output_dir=str(Path(spec["metrics_path"]).with_suffix(".out")),  # never written
        seed=spec.get("seed", 42),
    )
    dataset = load_data(config)
    loaded = time.perf_counter()
    metrics = {
        "rows": {split: len(ds) for split, ds in dataset.items()},
        "phases": {"imports": imported - start, "load_and_check": loaded - imported},
        "peak_rss_mib": {"load_and_check": _peak_rss_mib()},
    }
    if spec["phase"] == "data":
        from transformers import AutoTokenizer

        from nlp_transfer.text.model import resolve_model_path

        path, local_only = resolve_model_path(config.model_name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
        tokenized = tokenize_dataset(
            dataset, tokenizer, config.max_seq_length, config.preprocessing_num_workers
        )
        metrics["phases"]["tokenize"] = time.perf_counter() - loaded
        metrics["peak_rss_mib"]["tokenize"] = _peak_rss_mib()
        metrics["tokens"] = {s: int(sequence_lengths(d).sum()) for s, d in tokenized.items()}
        metrics["cache_files"] = {s: len(d.cache_files) for s, d in tokenized.items()}
    else:
        from nlp_transfer.text.baseline import tfidf_logreg_baseline

        baseline = tfidf_logreg_baseline(dataset, seed=config.seed)
        metrics["phases"]["baseline"] = baseline["fit_runtime_s"]
        metrics["peak_rss_mib"]["baseline"] = _peak_rss_mib()
        metrics["baseline"] = {
            k: baseline[k] for k in ("accuracy", "C", "train_samples", "train_rows")
        } | {"scored_rows": len(dataset["validation"]) + len(dataset["test"])}
    metrics["phases"]["run_total"] = time.perf_counter() - imported
    with open(spec["metrics_path"], "w", encoding="utf-8") as out:
        json.dump(metrics, out)
    return metrics


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
