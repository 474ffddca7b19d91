"""The shared benchmark harness: every arm a separate process, timed end to end, repeated.

Every benchmark script builds :class:`Arm` s (a command line of ours or a peer's, plus where the
arm writes its metrics) and hands them to :func:`run_repeats`. Each arm runs as a fresh process;
its time runs from process start to process exit (the metrics file written), in wall seconds
and CPU seconds (user + system of the process and the children it waited for, from
``os.wait4``), with its peak RSS. Before each arm the 1-minute load average is read; an arm
started while the load exceeds ``max_load_per_core`` per core (both the load average and the
CPU busy over the second before, see :func:`check_load`) is marked ``loaded: true`` (or refused
with ``--refuse_when_loaded``). Repeats run round-robin (arm A, arm B, arm A, arm B...)
so that the ratios of one repeat are measured under the same conditions; figures are reported as
median with min-max over repeats.

The pure parts (:func:`summarize`, :func:`paired_ratios`, :func:`is_loaded`,
:func:`result_document`, :func:`markdown_table`, :func:`phases_from_ours`) are unit-tested in
``tests/test_benchmarks.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from machine_info import git_sha, machine, run_info

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
__all__ = ["Arm", "git_sha", "machine", "run_arm", "run_info", "run_repeats", "summarize"]


class MachineLoadedError(RuntimeError):
    """The machine was busy before an arm and ``--refuse_when_loaded`` was given."""


@dataclass
class Arm:
    """One benchmarked configuration, run as its own process.

    Attributes:
        name: Label of the arm in results and tables.
        command: The full command line (``[sys.executable, "recipes/sentiment.py", ...]``).
        metrics_path: The JSON file the process writes its figures to (parsed after exit);
            ``None`` if the arm prints nothing to parse.
        phases: ``f(metrics, log_text) -> {phase: seconds}``: the arm's time by phase.
        env: Extra environment variables for the process.
        extra: Anything to copy into each repeat's record (settings, FLOP counts...).
    """

    name: str
    command: list[str]
    metrics_path: Path | None = None
    phases: Callable[[dict, str], dict] | None = None
    env: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Load


def is_loaded(load_1m: float, cores: int, max_load_per_core: float = 0.5) -> bool:
    """Whether a 1-minute load average means another heavy process shares the CPU."""
    return load_1m > max_load_per_core * max(cores, 1)


def busy_cores(interval_s: float = 1.0) -> float | None:
    """Cores' worth of CPU busy (any process) over the next ``interval_s``, from /proc/stat.

    Unlike the load average, this does not remember our previous arm: it has exited.
    ``None`` where /proc/stat cannot be read.
    """

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval_s)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = max(total1 - total0, 1)
    return (total - (idle1 - idle0)) / total * (os.cpu_count() or 1)


def check_load(max_load_per_core: float = 0.5, settle_s: float = 0.0) -> dict:
    """The machine's load before an arm: ``{"load_1m", "busy_cores", "loaded"}``.

    ``loaded`` is true when the 1-minute load average exceeds ``max_load_per_core`` per core
    AND so does the CPU busy in the last second (where /proc/stat is readable): the load average
    alone still counts our previous arm for about a minute after it exits (two busy threads decay
    to one in ~42 s), the 1-s sample alone would flag a momentary blip. ``settle_s`` > 0 waits up
    to that long for the load average itself to fall first.
    """
    cores = os.cpu_count() or 1
    deadline = time.monotonic() + settle_s
    while is_loaded(os.getloadavg()[0], cores, max_load_per_core) and time.monotonic() < deadline:
        time.sleep(5)
    busy = busy_cores()
    load = os.getloadavg()[0]
    loaded = is_loaded(load, cores, max_load_per_core) and (
        busy is None or is_loaded(busy, cores, max_load_per_core)
    )
    return {"load_1m": load, "busy_cores": busy, "loaded": loaded}


# ---------------------------------------------------------------------------------------------
# One arm


def run_arm(
    arm: Arm,
    log_dir: Path,
    repeat: int = 0,
    *,
    settle_s: float = 0.0,
    max_load_per_core: float = 0.5,
    refuse_when_loaded: bool = False,
) -> dict:
    """Run one arm once as a fresh process and return its record.

    Returns:
        ``{"arm", "repeat", "wall_s", "cpu_s", "peak_rss_mib", "load_1m_before",
        "busy_cores_before", "loaded", "returncode", "log", "metrics", "phases", **arm.extra}``;
        ``wall_s`` runs from the process's start to its exit (its metrics file written);
        ``loaded`` as :func:`check_load` decides.

    Raises:
        MachineLoadedError: The load stayed high and ``refuse_when_loaded`` was set.
        RuntimeError: The process failed (the message names its log).
    """
    before = check_load(max_load_per_core, settle_s)
    load, loaded = before["load_1m"], before["loaded"]
    if loaded and refuse_when_loaded:
        raise MachineLoadedError(
            f"1-minute load {load:.2f}, {before['busy_cores']:.2f} cores busy, on "
            f"{os.cpu_count()} cores before {arm.name}: another "
            "process shares the CPU; run again when it is idle, or drop --refuse_when_loaded "
            "to run and mark the arm loaded"
        )
    log = log_dir / f"{arm.name}-r{repeat}.log"
    if arm.metrics_path is not None and arm.metrics_path.exists():
        arm.metrics_path.unlink()
    env = os.environ | {"TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"} | arm.env
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(arm.command, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{arm.name} (repeat {repeat}) exited {proc.returncode}; see {log}")
    metrics = json.loads(arm.metrics_path.read_text()) if arm.metrics_path else {}
    text = log.read_text(errors="replace")
    return {
        "arm": arm.name,
        "repeat": repeat,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "load_1m_before": load,
        "busy_cores_before": before["busy_cores"],
        "loaded": loaded,
        "returncode": proc.returncode,
        "log": str(log),
        "metrics": metrics,
        "phases": arm.phases(metrics, text) if arm.phases else {},
        **arm.extra,
    }


def run_repeats(
    arms: Sequence[Arm], repeats: int, log_dir: Path, echo: bool = True, **kwargs
) -> list[dict]:
    """Run every arm ``repeats`` times, round-robin; ``kwargs`` go to :func:`run_arm`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for repeat in range(repeats):
        for arm in arms:
            record = run_arm(arm, log_dir, repeat, **kwargs)
            records.append(record)
            if echo:
                flag = "  LOADED" if record["loaded"] else ""
                print(
                    f"[{repeat + 1}/{repeats}] {arm.name:<36} {record['wall_s']:7.1f} s wall "
                    f"{record['cpu_s']:7.1f} s CPU  load {record['load_1m_before']:.2f}{flag}",
                    flush=True,
                )
    return records


# ---------------------------------------------------------------------------------------------
# Figures


def summarize(values: Sequence[float]) -> dict:
    """Median, min and max of repeated measurements (``None`` values dropped).

    Returns:
        ``{"median", "min", "max", "n", "values"}``; the three figures are ``None`` when no
        value is left.
    """
    kept = [float(v) for v in values if v is not None]
    if not kept:
        return {"median": None, "min": None, "max": None, "n": 0, "values": []}
    return {
        "median": statistics.median(kept),
        "min": min(kept),
        "max": max(kept),
        "n": len(kept),
        "values": kept,
    }


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> dict:
    """Ratios taken per repeat (same run, same conditions), then summarised.

    Raises:
        ValueError: The two lists differ in length (repeats must pair up).
    """
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} vs {len(denominators)} repeats: cannot pair them")
    return summarize([n / d for n, d in zip(numerators, denominators, strict=True) if d])


def figures(records: Sequence[dict], arm: str, key: Callable[[dict], float | None]) -> dict:
    """:func:`summarize` of ``key(record)`` over the repeats of one arm, in repeat order."""
    mine = sorted((r for r in records if r["arm"] == arm), key=lambda r: r["repeat"])
    return summarize([key(r) for r in mine])


def fmt_range(summary: dict, digits: int = 1, suffix: str = "") -> str:
    """``"12.3 (11.9-13.0)"``: median with min-max; one value alone; a dash when none."""
    if summary["median"] is None:
        return "—"
    median = f"{summary['median']:.{digits}f}{suffix}"
    if summary["n"] < 2:
        return median
    return f"{median} ({summary['min']:.{digits}f}-{summary['max']:.{digits}f})"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; cells are ``str()``-ed, ``|`` escaped."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |"]
    lines.append("| " + " | ".join("---" for _ in headers) + " |")
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, the table {len(headers)}: {row!r}")
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def result_document(info: dict, machine_info: dict, settings: dict, **figures_: object) -> dict:
    """The JSON shape every benchmark writes: ``run_info``, ``machine``, ``settings``, figures.

    ``run_info`` gains ``any_loaded`` (whether any record carries ``loaded: true``), looked up in
    a ``records`` figure when there is one.
    """
    records = figures_.get("records") or []
    info = info | {"any_loaded": any(r.get("loaded") for r in records)}  # type: ignore[union-attr]
    return {"run_info": info, "machine": machine_info, "settings": settings, **figures_}


def write_result(stem: str, document: dict, markdown: str, output_dir: Path) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` (with the command and commit as a header)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output_dir / f"{stem}.json", output_dir / f"{stem}.md"
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    info, mach = document["run_info"], document["machine"]
    header = (
        f"<!-- {info['command']} @ {info['git_sha']} -->\n"
        f"{info['date']}; {mach['cpu']}, {mach['cores']} cores, {mach['torch_threads']} torch "
        f"threads, GPU {mach['gpu'] or 'none'}; torch {mach['versions']['torch']}, transformers "
        f"{mach['versions']['transformers']}."
        + (" **Some arms ran on a loaded machine.**" if info.get("any_loaded") else "")
        + "\n\n"
    )
    md_path.write_text(header + markdown, encoding="utf-8")
    return json_path, md_path


# ---------------------------------------------------------------------------------------------
# Phases of our recipe runs, from metrics.json and the log

_CACHE_RE = re.compile(r"Frozen-prefix cache: .* in ([0-9.]+) s;")
_FEATURES_RE = re.compile(r"Features \([^)]*\) computed once: (.*)$", re.MULTILINE)
_SPLIT_S_RE = re.compile(r"(\w+) ([0-9.]+)s")
_FITTED_RE = re.compile(r"Fitted .* feature vectors in ([0-9.]+)s")


def finish(stem: str, args, info: dict, machine_info: dict, markdown_text: str, work, **figures_):
    """Write ``<args.output_dir>/<stem>.{json,md}`` (the settings: ``args`` less the output and
    log directories), print the table and where the files went; return the JSON document."""
    settings = {k: v for k, v in vars(args).items() if k not in ("output_dir", "log_dir")}
    document = result_document(info, machine_info, settings, **figures_)
    paths = write_result(stem, document, markdown_text, Path(args.output_dir))
    print(markdown_text)
    print(f"wrote {paths[0]} and {paths[1]}; work files and logs in {work}")
    return document


def phases_from_ours(metrics: dict, log_text: str) -> dict:
    """Time by phase of an ``nlp_transfer`` text run, from its ``metrics.json`` and log.

    Phases (seconds): ``cache_build`` (the frozen prefix, computed once; log line),
    ``feature_encoding`` (feature extraction's once-only encoding of all splits; log line),
    ``training`` (the training steps of every epoch, encoding excluded), ``validation`` (the
    per-epoch validation), ``run_total`` (the run function, start to metrics written) and
    ``other`` (``run_total`` minus the above: data, tokenization, model loading, test, saving).
    Process start-up (imports) is the arm's ``wall_s`` minus ``run_total``.
    """
    timings = metrics.get("timings", {})
    phases: dict[str, float] = {}
    if match := _CACHE_RE.search(log_text):
        phases["cache_build"] = float(match.group(1))
    encoding_train = 0.0
    if match := _FEATURES_RE.search(log_text):
        per_split = {s: float(t) for s, t in _SPLIT_S_RE.findall(match.group(1))}
        phases["feature_encoding"] = sum(per_split.values())
        encoding_train = per_split.get("train", 0.0)
    # The log gives the encoding in whole seconds: the training time is clamped at 0, or taken
    # from the scikit-learn head's own log line ("Fitted ... in 0.3s") where there is one.
    training = max(float(timings.get("train_runtime_s") or 0.0) - encoding_train, 0.0)
    if match := _FITTED_RE.search(log_text):
        training = float(match.group(1))
    phases["training"] = training
    epochs = metrics.get("validation") or []
    epoch_total = sum(float(e.get("epoch_runtime_s", 0.0)) for e in epochs)
    if epoch_total:
        phases["validation"] = max(epoch_total - training, 0.0)
    if timings.get("total_runtime_s") is not None:
        total = float(timings["total_runtime_s"])
        phases["run_total"] = total
        named = sum(v for k, v in phases.items() if k != "run_total")
        phases["other"] = max(total - named, 0.0)
    return phases


def harness_arguments(parser: argparse.ArgumentParser, repeats: int = 3) -> None:
    """Add the flags every harness-driven script shares."""
    group = parser.add_argument_group("harness")
    group.add_argument("--repeats", type=int, default=repeats, help="Runs of each arm.")
    group.add_argument(
        "--refuse_when_loaded",
        action="store_true",
        help="Stop instead of marking an arm loaded when the load average is above "
        "--max_load_per_core per core before it.",
    )
    group.add_argument("--max_load_per_core", type=float, default=0.5)
    group.add_argument(
        "--settle_s",
        type=float,
        default=0.0,
        help="Wait up to this long before each arm for the 1-minute load average to fall.",
    )
    group.add_argument("--output_dir", default=str(RESULTS), help="Where the JSON and .md go.")
    group.add_argument("--log_dir", default=None, help="Per-arm logs (default: a temp dir).")


def workspace(args: argparse.Namespace, prefix: str) -> tuple[Path, Path]:
    """A fresh temporary directory for the arms' runs and the per-arm log directory
    (``--log_dir``, else ``<work>/logs``), both created; returns ``(work, log_dir)``."""
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    log_dir = Path(args.log_dir) if args.log_dir else work / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    return work, log_dir


def harness_kwargs(args: argparse.Namespace) -> dict:
    """The :func:`run_arm` keyword arguments from :func:`harness_arguments`' flags."""
    return {
        "settle_s": args.settle_s,
        "max_load_per_core": args.max_load_per_core,
        "refuse_when_loaded": args.refuse_when_loaded,
    }


def per_seed_rows(records: list[dict], accuracy_of: Callable[[dict], float]) -> list[dict]:
    """One row per arm of seeded runs: test accuracy per seed, its mean and standard deviation,
    the median training and whole-process seconds, and whether a run started on a loaded
    machine. ``records`` in arm order; each has ``arm``, ``seed``, ``wall_s``, ``phases``."""
    rows = []
    for name in dict.fromkeys(r["arm"] for r in records):
        mine = [r for r in records if r["arm"] == name]
        accuracies = [accuracy_of(r) for r in mine]
        training = [r["phases"].get("training") for r in mine]
        rows.append(
            {
                "arm": name,
                "seeds": [r["seed"] for r in mine],
                "accuracy": accuracies,
                "accuracy_mean": statistics.mean(accuracies),
                "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                "wall_s": summarize([r["wall_s"] for r in mine]),
                "training_s": summarize([t for t in training if t is not None]),
                "loaded": any(r["loaded"] for r in mine),
            }
        )
    return rows


def per_seed_cells(row: dict) -> list[str]:
    """A :func:`per_seed_rows` row's first table cells: arm (``*`` when loaded), accuracy mean
    ± std (per seed), median training and whole-process seconds."""
    return [
        row["arm"] + (" *" if row["loaded"] else ""),
        f"{row['accuracy_mean']:.4f} ± {row['accuracy_std']:.4f} ("
        + ", ".join(f"{a:.4f}" for a in row["accuracy"])
        + ")",
        f"{row['training_s']['median']:.0f}",
        f"{row['wall_s']['median']:.0f}",
    ]


def saved_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of scripts that read saved runs of ``benchmarks/calibration.py``: the runs,
    their seeds, their dataset and its calibration split (parse with :func:`saved_runs`)."""
    parser.add_argument("--model_dirs", required=True, help="Comma list of saved runs.")
    parser.add_argument("--seeds", required=True, help="Comma list: each run's --seed.")
    parser.add_argument("--dataset_name", default="rotten_tomatoes_sentences")
    parser.add_argument("--calibration_split_size", type=float, default=0.5)


def validation_halves(validation, size: float, seed: int) -> tuple:
    """A saved run's two validation parts, as ``text/uncertainty.hold_out_calibration_split``
    drew them: ``(selection, held)``, the rows that chose the epoch and fitted the calibration
    and the ``size`` share held out for the conformal scores (stratified by label)."""
    held = round(len(validation) * size)
    parts = validation.train_test_split(test_size=held, seed=seed, stratify_by_column="label")
    return parts["train"], parts["test"]


def saved_runs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """``--model_dirs`` / ``--seeds`` of scripts that read saved runs, as ``args.dir_list`` and
    ``args.seed_list`` (one seed per run: the ``--seed`` it was trained with)."""
    args.dir_list = args.model_dirs.split(",")
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    if len(args.dir_list) != len(args.seed_list):
        parser.error("--model_dirs and --seeds must name as many runs as each other")
    return args
