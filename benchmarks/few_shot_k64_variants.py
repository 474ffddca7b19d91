"""Few-shot sentiment at 64 per class: our default's contrastive stage against two variants, on
held-out seeds and the VALIDATION split (so that the choice is not made on the test split).

    python benchmarks/few_shot_k64_variants.py            # seeds 10-12, ~25 min on 2 cores
    python benchmarks/few_shot_k64_variants.py default,cosent

For seeds 10, 11 and 12 (not the benchmark's 0-4), 64 sentences per class are drawn from the
training split of the seed-42 built-in rotten_tomatoes_sentences; the whole validation split
(1,008 sentences) scores each variant: ``default`` (no flags: cosine + logistic regression,
contrastive learning rate 5e-5), ``lr2e-5`` (SetFit's learning rate), ``cosent`` (CoSENT loss).
Appends one JSON line per run to ``benchmarks/results/few_shot_k64_variants/runs.jsonl``.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from few_shot_setfit import sample_per_class, write_csv

from nlp_transfer import load_text_classification_dataset

work = Path(tempfile.mkdtemp(prefix="k64-"))
work.mkdir(parents=True, exist_ok=True)
data = load_text_classification_dataset("rotten_tomatoes_sentences", seed=42)
train, val = data["train"], data["validation"]
names = train.features["label"].names
variants = {
    "default": [],
    "lr2e-5": ["--contrastive_learning_rate=2e-5"],
    "cosent": ["--contrastive=cosent", "--feature_extraction=logistic_regression"],
}
only = sys.argv[1].split(",") if len(sys.argv) > 1 else list(variants)
RUNS = Path(__file__).parent / "results" / "few_shot_k64_variants" / "runs.jsonl"
for seed in (10, 11, 12):
    picked = sample_per_class(list(train["label"]), 64, seed)
    here = work / f"s{seed}"
    here.mkdir(exist_ok=True)
    write_csv(
        here / "train.csv",
        [train[i]["text"] for i in picked],
        [names[train[i]["label"]] for i in picked],
    )
    write_csv(here / "val.csv", val["text"], [names[y] for y in val["label"]])
    for v in only:
        o = here / v
        cmd = [
            sys.executable,
            "-m",
            "nlp_transfer.cli",
            "train",
            "--task",
            "text",
            f"--train_file={here / 'train.csv'}",
            f"--validation_file={here / 'train.csv'}",
            f"--test_file={here / 'val.csv'}",
            f"--seed={seed}",
            "--save_strategy=no",
            "--no_run_baseline",
            "--overwrite_output_dir",
            "--no_load_best_model_at_end",
            f"--output_dir={o}",
            *variants[v],
        ]
        t = time.perf_counter()
        with open(here / f"{v}.log", "w") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
        m = json.loads((o / "metrics.json").read_text())
        rec = {
            "seed": seed,
            "variant": v,
            "acc": m["test"]["accuracy"],
            "wall_s": time.perf_counter() - t,
        }
        print(rec, flush=True)
        with RUNS.open("a") as out:
            out.write(json.dumps(rec) + "\n")
