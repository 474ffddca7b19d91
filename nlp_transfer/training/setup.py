"""Run set-up shared by every recipe: the Accelerator, logging, the output directory."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
import torch
import transformers
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, gather_object

from ..optional import require_tracker
from .progress import stderr_is_terminal

# Where a CPU's bf16 support cannot be read from its flags, `--mixed_precision auto` probes: bf16
# only when the median probe's bf16 step takes at most this fraction of its float32 step (the
# probe is matmul-heavy; a whole training step gains less).
BF16_MAX_PROBE_RATIO = 0.8
BF16_PROBE_ROUNDS = 5


# Set while several runs share one process group (the strategy race): end_run keeps the group.
_KEEP_PROCESS_GROUP = False


@contextlib.contextmanager
def keep_process_group() -> Iterator[None]:
    """Runs inside keep the process group at their end (:func:`end_run`), for the next run of
    the same processes (the strategy race); the group is destroyed on leaving, as
    ``Accelerator.end_training`` would have."""
    global _KEEP_PROCESS_GROUP
    before, _KEEP_PROCESS_GROUP = _KEEP_PROCESS_GROUP, True
    try:
        yield
    finally:
        _KEEP_PROCESS_GROUP = before
        if not before and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def end_run(accelerator: Accelerator) -> None:
    """``accelerator.end_training()`` (trackers finished, process group destroyed), except
    that the group stays inside :func:`keep_process_group`."""
    if not _KEEP_PROCESS_GROUP:
        accelerator.end_training()
        return
    for tracker in accelerator.trackers:
        tracker.finish()


def build_accelerator(
    mixed_precision: str | None = None,
    gradient_accumulation_steps: int = 1,
    use_cpu: bool = False,
    find_unused_parameters: bool = False,
    log_with: list[str] | None = None,
    project_dir: str | os.PathLike | None = None,
) -> Accelerator:
    """Create the run's ``Accelerator`` and set up logging; the topology comes from ``accelerate launch``.

    On a machine without a GPU the accelerator is put on the CPU explicitly, so that
    ``accelerate launch --multi_gpu --num_processes N`` runs N CPU processes (gloo backend), and
    each process gets its share of the cores (:func:`configure_cpu_threads`).

    Args:
        mixed_precision: ``"no"``, ``"fp16"``, ``"bf16"`` or ``"auto"`` (bf16 where the device
            computes it natively, else float32: see :func:`resolve_mixed_precision`); None
            defers to the launch config.
        gradient_accumulation_steps: Batches per optimizer step.
        use_cpu: Force the CPU even when a GPU is present.
        find_unused_parameters: Tell DDP that some parameters may get no gradient in a step
            (gradual unfreezing changes the trainable set after DDP is set up).
        log_with: Accelerate trackers (``tensorboard``, ``wandb``, ``mlflow``); each one's
            package must be installed.
        project_dir: Where trackers write (TensorBoard: ``project_dir/runs``).

    Returns:
        The Accelerator.

    Raises:
        ImportError: A tracker's package is missing (the message names the extra to install).
    """
    for tracker in log_with or []:
        require_tracker(tracker)
    cpu = use_cpu or not torch.cuda.is_available()
    auto_reason = None
    if mixed_precision == "auto":
        # The process state first: it binds each process to its own GPU, which the probe then uses.
        state = PartialState(cpu=cpu)
        mixed_precision, auto_reason = resolve_mixed_precision("cpu" if cpu else "cuda")
        if state.num_processes > 1:  # every process must train in the same precision
            choices = gather_object([mixed_precision])
            if len(set(choices)) > 1:
                mixed_precision = "no"
                auto_reason = f"the processes' probes disagreed ({', '.join(choices)})"
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=gradient_accumulation_steps,
        cpu=cpu,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)]
        if find_unused_parameters
        else None,
        log_with=log_with or None,
        project_config=ProjectConfiguration(
            project_dir=str(project_dir), logging_dir=str(Path(project_dir) / "runs")
        )
        if project_dir is not None
        else None,
    )
    setup_logging(accelerator)
    if auto_reason is not None:
        logging.getLogger(__name__).info(
            f"--mixed_precision auto: {'bf16' if mixed_precision == 'bf16' else 'float32 (no)'}, "
            f"because {auto_reason}."
        )
    if accelerator.device.type == "cpu":
        configure_cpu_threads(int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes)))
        if accelerator.mixed_precision == "bf16" and cpu_has_native_bf16() is False:
            logging.getLogger(__name__).warning(
                "--mixed_precision bf16 on this CPU, which has no native bfloat16 arithmetic "
                "(neither AVX512-BF16 nor AMX-BF16): PyTorch emulates it, and a training step of "
                "the default model ran about 18x slower than in float32 on such a CPU (AMD EPYC, "
                "AVX2; benchmarks/bf16_cpu.py). Use --mixed_precision no (or auto) here; bf16 "
                "pays off on GPUs and on CPUs with AVX512-BF16 or AMX."
            )
    return accelerator


def probe_bf16_speed(
    device: str, tokens: int = 1024, hidden: int = 384, repeats: int = 5
) -> tuple[float, float]:
    """Time a transformer feed-forward block's forward and backward in float32 and in bf16.

    The block is ``Linear(hidden, 4 * hidden)``, GELU, ``Linear(4 * hidden, hidden)`` (the
    shape of all-MiniLM-L6-v2's, the default model) on ``tokens`` x ``hidden`` inputs; bf16 runs
    under ``torch.autocast``, as Accelerate's ``mixed_precision="bf16"`` does. About 0.1 s on a
    2-core CPU.

    Args:
        device: ``"cpu"`` or ``"cuda"``.
        tokens: Rows of the input (tokens in a batch).
        hidden: Hidden size.
        repeats: Timed repeats per precision, after one warm-up; the fastest counts.

    Returns:
        ``(float32_seconds, bf16_seconds)``: the fastest forward + backward of each.
    """
    import time

    generator = torch.Generator().manual_seed(0)
    block = torch.nn.Sequential(
        torch.nn.Linear(hidden, 4 * hidden), torch.nn.GELU(), torch.nn.Linear(4 * hidden, hidden)
    ).to(device)
    x = torch.randn(tokens, hidden, generator=generator).to(device)

    def run(dtype: torch.dtype | None) -> float:
        best = float("inf")
        for i in range(repeats + 1):
            start = time.perf_counter()
            with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
                out = block(x)
            out.float().sum().backward()
            if device == "cuda":
                torch.cuda.synchronize()
            if i:  # the first run warms up
                best = min(best, time.perf_counter() - start)
        return best

    return run(None), run(torch.bfloat16)


def resolve_mixed_precision(
    device: str,
    native_bf16: bool | None = None,
    probe: Callable[[str], tuple[float, float]] | None = None,
) -> tuple[str, str]:
    """What ``--mixed_precision auto`` means on this device: ``"bf16"`` or ``"no"`` (float32).

    Decided by the hardware first: bf16 where it is computed natively (a CPU with AVX512-BF16 or
    AMX-BF16 in its flags; a GPU for which ``torch.cuda.is_bf16_supported()``), float32 where it
    is not (PyTorch emulates bf16 there, and a training step is about 18x slower:
    ``benchmarks/bf16_cpu.py``). A bf16 step took 0.66x float32's time on an AVX512-BF16 CPU
    (``benchmarks/results/bf16_cpu.json``). No timing is involved then, so a busy machine cannot
    flip the choice. Only where the CPU's flags cannot be read (``native_bf16`` None) does a probe
    decide: the median of :data:`BF16_PROBE_ROUNDS` probes (:func:`probe_bf16_speed`) must be at
    most :data:`BF16_MAX_PROBE_RATIO` of float32's time.

    Args:
        device: ``"cpu"`` or ``"cuda"``.
        native_bf16: Whether the device computes bf16 natively; None looks it up (and probes
            when even that is unknown).
        probe: ``probe(device) -> (float32_seconds, bf16_seconds)``; None:
            :func:`probe_bf16_speed`.

    Returns:
        ``(mixed_precision, reason)``: ``"bf16"`` or ``"no"``, and why, for the log.
    """
    if native_bf16 is None:
        native_bf16 = torch.cuda.is_bf16_supported() if device == "cuda" else cpu_has_native_bf16()
    if native_bf16 is True:
        what = "this GPU" if device == "cuda" else "this CPU (AVX512-BF16 or AMX-BF16)"
        return "bf16", f"{what} computes bf16 natively"
    if native_bf16 is False:
        what = "this GPU" if device == "cuda" else "this CPU (neither AVX512-BF16 nor AMX-BF16)"
        return "no", f"{what} has no native bf16"
    ratios = []
    for _ in range(BF16_PROBE_ROUNDS):
        fp32_s, bf16_s = (probe or probe_bf16_speed)(device)
        ratios.append(bf16_s / fp32_s)
    ratio = sorted(ratios)[len(ratios) // 2]
    timing = (
        f"its bf16 support is unknown and the median of {len(ratios)} probes' bf16 step took "
        f"{ratio:.2f}x the float32 step's time"
    )
    if ratio <= BF16_MAX_PROBE_RATIO:
        return "bf16", timing
    return "no", f"{timing} (bf16 needs at most {BF16_MAX_PROBE_RATIO}x)"


def cpu_has_native_bf16() -> bool | None:
    """Whether this CPU computes bfloat16 natively (``avx512_bf16`` or ``amx_bf16`` flags).

    Returns:
        True or False from ``/proc/cpuinfo`` (Linux); None where that cannot be read.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return None
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def configure_cpu_threads(local_processes: int = 1) -> int:
    """Give each CPU process its share of the cores.

    ``accelerate launch`` without ``--cpu`` sets ``OMP_NUM_THREADS=1``, which on a CPU-only
    machine leaves all cores but one idle (training runs about 2x slower on 2 cores). When that
    is what happened (running under ``accelerate launch``, ``OMP_NUM_THREADS=1``), use
    ``cores // local_processes`` threads instead. ``NLP_TRANSFER_NUM_THREADS`` overrides.

    Args:
        local_processes: Training processes on this machine.

    Returns:
        The number of intra-op threads now in use.
    """
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    wanted = os.environ.get("NLP_TRANSFER_NUM_THREADS")
    launched = any(key.startswith("ACCELERATE_") for key in os.environ)
    if wanted:
        threads = int(wanted)
    elif launched and os.environ.get("OMP_NUM_THREADS") == "1":
        threads = max(cores // max(local_processes, 1), 1)
    else:
        return torch.get_num_threads()
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
        logging.getLogger(__name__).info(
            f"Using {threads} CPU thread(s) per process ({cores} cores, {local_processes} "
            "local process(es)); set NLP_TRANSFER_NUM_THREADS to change."
        )
    return threads


def setup_logging(accelerator: Accelerator | PartialState) -> None:
    """INFO logs on the main process, warnings only elsewhere; quiet third-party libraries.

    Progress bars of datasets and transformers show only on a terminal, on the local main process.
    """
    logging.basicConfig(
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
        datefmt="%H:%M:%S",
        level=logging.INFO if accelerator.is_local_main_process else logging.WARNING,
        force=True,
    )
    datasets.utils.logging.set_verbosity_warning()
    transformers.utils.logging.set_verbosity_warning()
    if not accelerator.is_local_main_process or not stderr_is_terminal():
        # Without a terminal (CI, nohup, a log file) a bar is hundreds of carriage returns.
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def check_output_dir(
    output_dir: str | os.PathLike,
    overwrite_output_dir: bool = False,
    resuming: bool = False,
    ignore: tuple[str, ...] = (),
) -> Path:
    """Refuse to write into a non-empty ``output_dir`` unless overwriting or resuming was asked for.

    Call it before any work, so a run never spends its time and then loses its results (or
    silently replaces an earlier run's).

    Args:
        output_dir: The run's output directory.
        overwrite_output_dir: Allow writing into a non-empty directory.
        resuming: The run continues from a checkpoint (``--resume_from_checkpoint``), which
            may live in this directory.
        ignore: Entries the run itself wrote there first (``audit`` with ``--audit``), which
            do not make the directory "not empty".

    Returns:
        The path.

    Raises:
        FileExistsError: ``output_dir`` exists, is not empty, and neither overwriting nor
            resuming was asked for (the message names the flags; when the directory holds
            checkpoints of an interrupted run it says how to resume).
        NotADirectoryError: ``output_dir`` is a file.
    """
    path = Path(output_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"--output_dir {path} is a file, not a directory.")
    if resuming and (path / "metrics.json").exists() and not overwrite_output_dir:
        raise FileExistsError(
            f"--output_dir {path} holds a finished run (metrics.json): there is nothing to "
            "resume, and resuming would replace its results. Choose another --output_dir, or "
            "pass --overwrite_output_dir as well."
        )
    occupied = path.is_dir() and any(p.name not in ignore for p in path.iterdir())
    if occupied and not (overwrite_output_dir or resuming):
        hint = ""
        if (path / "checkpoints").is_dir() and not (path / "metrics.json").exists():
            hint = (
                " It holds checkpoints of a run that did not finish: continue it with "
                "--resume_from_checkpoint latest (and the same settings)."
            )
        raise FileExistsError(
            f"--output_dir {path} already exists and is not empty; it may hold an earlier run. "
            "Choose another --output_dir, or pass --overwrite_output_dir to write into it." + hint
        )
    return path
