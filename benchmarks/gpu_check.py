"""The GPU check: the main job, the frozen-prefix path and an image run on one CUDA GPU, < 8 min.

    python benchmarks/gpu_check.py                 # on a CUDA machine: results/gpu_check.json
    python benchmarks/gpu_check.py --dry_run --output /tmp/gpu_check.json \\
        --model_name_or_path tiny_bert/ --train_file toy.csv --image_train_dir stripes/

Three steps, each a fresh subprocess that runs a recipe's ``main`` on the GPU with bf16 mixed
precision (``--mixed_precision bf16``), so peak GPU memory is the step's own:

- ``main_bf16``: the sentiment recipe (built-in Rotten Tomatoes sentences, packaged
  all-MiniLM-L6-v2), full fine-tuning, its default 2 epochs;
- ``frozen_prefix``: the same with ``--freeze_layers 4`` (embeddings + lower 4 layers frozen
  and cached: they run once, before the timed training window);
- ``image``: the image recipe on Fashion-MNIST (``--dataset_name fashion_mnist``, 20,000 training
  images, 1 epoch, ResNet-18 from scratch), or on ``--image_train_dir``.

Each step records training samples/s, peak GPU memory (``torch.cuda.max_memory_allocated``),
peak RSS and the model FLOPs utilisation: training FLOP/s divided by the bf16 matmul peak
measured in the same run (best of 10 square 8192 products). Training FLOPs per sample: text,
6 x non-embedding parameters of the trained blocks and head x real (non-pad) tokens per training
example (the cached frozen prefix runs outside the timed window and is not counted); image,
3 x the forward FLOPs of one image counted by ``torch.utils.flop_counter``. Attention score
FLOPs and padding are left out, so the MFU is a lower bound.

``--dry_run`` runs every step on the CPU at tiny size (64 training examples, 1 epoch; a tiny
model and data when given), so the script is exercised by the tests on machines without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from machine_info import matmul_flops_per_s

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
STEP_TIMEOUT_S = {"main_bf16": 200, "frozen_prefix": 120, "image": 120}


def measure_bf16_peak(device: str, size: int, repeats: int = 10) -> dict:
    """Best-of-``repeats`` FLOP/s of a ``size`` x ``size`` bf16 matmul on ``device``.

    Returns:
        ``{"flops_per_s", "matrix_size", "device", "dtype"}``; FLOPs are 2 * size**3 per product.
    """
    flops = matmul_flops_per_s(device, size, "bfloat16", repeats)
    return {"flops_per_s": flops, "matrix_size": size, "device": device, "dtype": "bf16"}


def _flags(values: dict[str, str | None]) -> list[str]:
    return [item for key, value in values.items() if value is not None for item in (key, value)]


def step_commands(args: argparse.Namespace, work: Path) -> dict[str, list[str]]:
    """The recipe command line of every step (without the interpreter)."""
    tiny = {"--max_train_samples": "64", "--max_eval_samples": "32", "--num_train_epochs": "1"}
    common = {"--mixed_precision": "bf16", "--save_strategy": "no"}
    if args.dry_run:
        common["--use_cpu"] = "true"
    text = {
        **common,
        "--model_name_or_path": args.model_name_or_path,
        "--train_file": args.train_file,
        "--text_column": args.text_column if args.train_file else None,
        "--label_column": args.label_column if args.train_file else None,
        **(tiny if args.dry_run else {}),
        "--run_baseline": "false",
    }
    image = {
        **common,
        "--train_dir": args.image_train_dir,
        "--dataset_name": None if args.image_train_dir else "fashion_mnist",
        "--max_train_samples": None if args.image_train_dir else "20000",
        "--max_eval_samples": None if args.image_train_dir else "2000",
        "--num_train_epochs": "1",
        "--per_device_train_batch_size": "256",
        **(
            {**tiny, "--per_device_train_batch_size": "16", "--image_size": "16"}
            if args.dry_run
            else {}
        ),
    }
    sentiment = str(REPO / "recipes" / "sentiment.py")
    return {
        "main_bf16": [sentiment, *_flags(text), "--output_dir", str(work / "main_bf16")],
        "frozen_prefix": [
            sentiment,
            *_flags({**text, "--freeze_layers": str(args.freeze_layers)}),
            *("--output_dir", str(work / "frozen_prefix")),
        ],
        "image": [
            str(REPO / "recipes" / "image_classification.py"),
            *_flags(image),
            *("--output_dir", str(work / "image")),
        ],
    }


def text_flops_per_sample(output_dir: Path, metrics: dict) -> float:
    """6 x trained non-embedding parameters x mean real tokens per training example."""
    import yaml
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from nlp_transfer import get_block_view, load_text_classification_dataset

    config = yaml.safe_load((output_dir / "config.yaml").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(output_dir)
    view = get_block_view(model)
    frozen = set(metrics["parameters"]["frozen_blocks"])
    trained = [b for b in [*view.blocks[1:], view.head] if b.name not in frozen]
    params = sum(p.numel() for b in trained for p in b.parameters())
    data = load_text_classification_dataset(
        config["train_file"] or config["dataset_name"],
        text_column=config["text_column"],
        label_column=config["label_column"],
        seed=config["seed"],
        cache_dir=config["cache_dir"],
    )["train"]
    if config["max_train_samples"]:
        data = data.select(range(min(config["max_train_samples"], len(data))))
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    max_length = min(config["max_seq_length"], tokenizer.model_max_length)
    lengths = [
        len(ids)
        for ids in tokenizer(list(data["text"]), truncation=True, max_length=max_length)[
            "input_ids"
        ]
    ]
    return 6.0 * params * sum(lengths) / len(lengths)


def image_flops_per_sample(output_dir: Path) -> float:
    """3 x the forward FLOPs of one image (forward + backward), counted by torch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from nlp_transfer.vision.predict import load_image_classifier

    model, _ = load_image_classifier(output_dir, "cpu")
    size = model.config.image_size
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return 3.0 * counter.get_total_flops()


def worker(name: str, argv: list[str], result_path: Path) -> None:
    """Run one step's recipe in this process and write its figures to ``result_path``."""
    import torch

    sys.path.insert(0, str(REPO / "recipes"))
    recipe = __import__(Path(argv[0]).stem)
    metrics = recipe.main(argv[1:])
    output_dir = Path(argv[argv.index("--output_dir") + 1])
    cuda = torch.cuda.is_available()
    if name == "image":
        flops = image_flops_per_sample(output_dir)
    else:
        flops = text_flops_per_sample(output_dir, metrics)
    result = {
        "train_runtime_s": metrics["timings"]["train_runtime_s"],
        "train_samples_per_second": metrics["timings"]["train_samples_per_second"],
        "test_accuracy": metrics["test"]["accuracy"],
        "trainable_params": metrics["parameters"]["trainable"],
        "frozen_blocks": metrics["parameters"]["frozen_blocks"],
        "environment": metrics["environment"],
        "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "train_flops_per_sample": flops,
    }
    result_path.write_text(json.dumps(result, indent=2), encoding="utf-8")


def run_step(name: str, argv: list[str], work: Path, peak: float) -> dict:
    """One step as a subprocess; its figures, MFU added, or its error."""
    result_path = work / f"{name}.json"
    cmd = [sys.executable, __file__, "--_worker", name, str(result_path), "--", *argv]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=STEP_TIMEOUT_S[name]
        )
        returncode, tail = proc.returncode, (proc.stdout + proc.stderr)[-2000:]
    except subprocess.TimeoutExpired as e:
        returncode, tail = None, f"timed out after {e.timeout} s"
    step = {"command": " ".join(["python", *argv]), "wall_s": time.perf_counter() - start}
    if returncode != 0 or not result_path.exists():
        return {**step, "ok": False, "error": tail}
    figures = json.loads(result_path.read_text())
    achieved = figures["train_flops_per_sample"] * figures["train_samples_per_second"]
    return {**step, "ok": True, **figures, "train_flops_per_s": achieved, "mfu": achieved / peak}


def run_info(dry_run: bool) -> dict:
    """Date, commit, command and the machine: CPU, GPU, torch/CUDA/transformers versions."""
    import accelerate
    import torch
    import transformers

    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        models = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = models[0] if models else cpu
    cuda = torch.cuda.is_available()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:]),
        "git_sha": commit or None,
        "dry_run": dry_run,
        "machine": {
            "gpu": torch.cuda.get_device_name() if cuda else None,
            "gpu_count": torch.cuda.device_count(),
            "gpu_memory_bytes": torch.cuda.get_device_properties(0).total_memory if cuda else None,
            "cpu": cpu,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "transformers": transformers.__version__,
            "accelerate": accelerate.__version__,
        },
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry_run", action="store_true", help="Every step on the CPU at tiny size.")
    p.add_argument("--output", help="JSON to write; default results/gpu_check.json (GPU runs).")
    p.add_argument("--model_name_or_path", help="Text model; default: the packaged MiniLM.")
    p.add_argument("--train_file", help="Labelled text file; default: the built-in sentences.")
    p.add_argument("--text_column", default="sentence", help="Text column of --train_file.")
    p.add_argument("--label_column", default="sentiment", help="Label column of --train_file.")
    p.add_argument("--image_train_dir", help="An ImageFolder; default: Fashion-MNIST.")
    p.add_argument("--freeze_layers", type=int, default=4, help="Frozen-prefix step's layers.")
    p.add_argument("--work_dir", help="Where the runs write; default: a temporary directory.")
    args = p.parse_args(argv)
    if args.dry_run and not args.output:
        p.error("--dry_run writes no committed result: pass --output PATH.")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import tempfile

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit(
            "error: no CUDA GPU here; run with --dry_run --output PATH to check the script."
        )
    start = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    peak = measure_bf16_peak(device, 8192 if device == "cuda" else 256)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        work = Path(tmp)
        steps = {
            name: run_step(name, argv, work, peak["flops_per_s"])
            for name, argv in step_commands(args, work).items()
        }
    result = {
        "run_info": run_info(args.dry_run),
        "bf16_peak": peak,
        "steps": steps,
        "total_wall_s": time.perf_counter() - start,
    }
    output = Path(args.output or RESULTS / "gpu_check.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, step in steps.items():
        line = (
            f"{step['train_samples_per_second']:.1f} samples/s, MFU {step['mfu']:.1%}"
            if step["ok"]
            else "FAILED"
        )
        print(f"{name}: {line}")
    print(f"wrote {output} ({result['total_wall_s']:.0f} s)")
    return result


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_worker":
        worker(sys.argv[2], sys.argv[5:], Path(sys.argv[3]))
    else:
        main()
