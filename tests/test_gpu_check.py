"""benchmarks/gpu_check.py: its dry run on the CPU, so the GPU check cannot rot between GPU loans."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, toy_sentiment_frame, write_image_folder

SCRIPT = REPO / "benchmarks" / "gpu_check.py"
TINY_NON_EMBEDDING = 20_076 - (100 + 64 + 2) * 32 - 2 * 32  # total minus embeddings (+ LayerNorm)
TINY_TRAINABLE_FREEZE_1 = 7_911  # layer_1 + pooler + classifier (test_recipe.py)
TOY_TOKENS = 7  # every toy sentence is 5 words: [CLS] + 5 + [SEP]
RESNET18_TWO_CLASSES = 11_177_538


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCRIPT.parent))  # it imports its sibling machine_info
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_asks_for_the_dry_run():
    gpu_check = _module()
    with pytest.raises(SystemExit, match="--dry_run"):
        gpu_check.main([])
    with pytest.raises(SystemExit):
        gpu_check.main(["--dry_run"])  # argparse: --dry_run needs --output


def test_the_step_commands_are_the_recipes_with_bf16_and_the_frozen_prefix(tmp_path):
    gpu_check = _module()
    args = gpu_check.parse_args([])
    commands = gpu_check.step_commands(args, tmp_path)
    assert set(commands) == {"main_bf16", "frozen_prefix", "image"}
    for argv in commands.values():
        assert argv[argv.index("--mixed_precision") + 1] == "bf16"
        assert "--use_cpu" not in argv
    for name in ("main_bf16", "frozen_prefix"):  # the whole built-in data set
        assert "--max_train_samples" not in commands[name] and "--train_file" not in commands[name]
    assert commands["main_bf16"][0].endswith("recipes/sentiment.py")
    assert commands["frozen_prefix"][-4:-2] == ["--freeze_layers", "4"]
    image = commands["image"]
    assert image[0].endswith("recipes/image_classification.py")
    assert image[image.index("--dataset_name") + 1] == "fashion_mnist"


@pytest.mark.slow
def test_dry_run_writes_every_figure_of_every_step(tiny_bert_dir, tmp_path):
    toy = tmp_path / "toy.csv"
    toy_sentiment_frame(200).to_csv(toy, index=False)
    images = write_image_folder(tmp_path / "images")
    output = tmp_path / "results" / "gpu_check.json"
    cmd = [sys.executable, str(SCRIPT), "--dry_run", "--output", str(output)]
    cmd += ["--model_name_or_path", str(tiny_bert_dir), "--train_file", str(toy)]
    cmd += ["--image_train_dir", str(images), "--freeze_layers", "1"]
    cmd += ["--work_dir", str(tmp_path)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(output.read_text())

    info = result["run_info"]
    assert info["dry_run"] is True
    if (REPO / ".git").exists():  # a checkout (a worktree's .git is a file); None outside one
        assert len(info["git_sha"]) == 40
    machine = info["machine"]
    assert machine["torch"] == torch.__version__ and machine["cuda"] == torch.version.cuda
    assert {"gpu", "gpu_count", "gpu_memory_bytes", "cpu", "transformers"} <= set(machine)
    assert result["bf16_peak"]["device"] == "cpu" and result["bf16_peak"]["flops_per_s"] > 0

    steps = result["steps"]
    assert set(steps) == {"main_bf16", "frozen_prefix", "image"}
    for name, step in steps.items():
        assert step["ok"], (name, step.get("error"))
        assert step["environment"] == {
            "num_processes": 1,
            "device": "cpu",
            "mixed_precision": "bf16",
        }
        assert step["train_samples_per_second"] > 0 and step["peak_rss_bytes"] > 0
        assert step["peak_gpu_memory_bytes"] is None
        # MFU is a ratio of two timings (and the dry run's peak is a 256^2 matmul): only its
        # arithmetic is checked here, not its size, which depends on the machine's load.
        assert step["mfu"] == pytest.approx(
            step["train_flops_per_s"] / result["bf16_peak"]["flops_per_s"]
        )
        assert step["train_flops_per_s"] == pytest.approx(
            step["train_flops_per_sample"] * step["train_samples_per_second"]
        )
    # 6 x trained non-embedding parameters x real tokens: the frozen prefix is not counted.
    assert steps["main_bf16"]["trainable_params"] == 20_076
    assert steps["main_bf16"]["train_flops_per_sample"] == 6 * TINY_NON_EMBEDDING * TOY_TOKENS
    assert steps["frozen_prefix"]["frozen_blocks"] == ["embeddings", "layer_0"]
    assert steps["frozen_prefix"]["train_flops_per_sample"] == (
        6 * TINY_TRAINABLE_FREEZE_1 * TOY_TOKENS
    )
    assert steps["image"]["trainable_params"] == RESNET18_TWO_CLASSES
    # ResNet-18 at 16 px counts 2.1e8 (forward and backward, torch's FLOP counter); a count off by
    # an order of magnitude fails here.
    assert 5e7 < steps["image"]["train_flops_per_sample"] < 1e9
    assert "--image_size 16" in steps["image"]["command"]
    assert result["total_wall_s"] > sum(s["train_runtime_s"] for s in steps.values())
    assert list(tmp_path.glob("tmp*")) == []  # the runs' directories are removed
