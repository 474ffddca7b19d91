"""Run info and machine description for benchmark results (re-exported by ``harness``)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXCLUDE_RESULTS = ":(exclude)benchmarks/results"
CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def git_sha() -> str | None:
    """The repository's HEAD commit (with ``+dirty`` when the work tree has changes).

    Changes under ``benchmarks/results/`` do not count: they are other benchmarks' outputs
    (a queue of runs writes them one after another), not code the result depends on.
    """
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", EXCLUDE_RESULTS],
            capture_output=True,
            text=True,
            cwd=REPO,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "")


def run_info(argv: Sequence[str] | None = None, script: str | None = None) -> dict:
    """Date (UTC), git commit and the command line that produced a result."""
    argv = list(sys.argv if argv is None else argv)
    script = script or Path(argv[0]).name
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "git_sha": git_sha(),
        "command": " ".join(["python", f"benchmarks/{script}", *argv[1:]]),
    }


def cpu_model_and_flags() -> tuple[str | None, set[str]]:
    """This CPU's model name and instruction-set flags (``/proc/cpuinfo``; empty elsewhere)."""
    model, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model is None:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model or platform.processor() or None, flags


def machine() -> dict:
    """CPU model and flags, cores, threads, GPU and library versions of this machine."""
    import accelerate
    import torch
    import transformers

    model, flags = cpu_model_and_flags()
    return {
        "cpu": model,
        "cpu_flags": {flag: flag in flags for flag in CPU_FLAGS_OF_INTEREST},
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "accelerate": accelerate.__version__,
        },
    }


def matmul_flops_per_s(device: str, size: int, dtype: str = "float32", repeats: int = 10) -> float:
    """Best-of-``repeats`` FLOP/s of a ``size`` x ``size`` matmul in ``dtype`` on ``device``
    (2 * size**3 FLOPs per product; one warm-up product first, for kernel selection): the peak
    that MFU figures divide by, measured in the same run as the figures."""
    import torch

    a = torch.randn(size, size, device=device, dtype=getattr(torch, dtype))
    b = torch.randn(size, size, device=device, dtype=getattr(torch, dtype))

    def seconds() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    seconds()
    return 2 * size**3 / min(seconds() for _ in range(repeats))
