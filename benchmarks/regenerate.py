"""Regenerate the committed benchmark results whose code changed, one after another.

    python benchmarks/regenerate.py --list                 # every result: its commit, minutes, current or stale
    python benchmarks/regenerate.py --dry_run              # the commands a run would start
    python benchmarks/regenerate.py --max_hours 2.5        # run the stale ones that fit in 2.5 h
    python benchmarks/regenerate.py --only frozen_vs_full,inference

Every result JSON under ``benchmarks/results/`` records the command that produced it and the
commit it ran at (``run_info``, written by ``machine_info.run_info``). A result is **current**
when none of the code it measures changed between that commit and ``HEAD``: the library
(``nlp_transfer/``), the recipes, ``pyproject.toml``, ``constraints.txt``, the benchmarks' shared
helpers and peer workers (``MEASURED_CODE``) and the result's own script. Otherwise it is **stale**:
a different commit's code produced it, or its commit had uncommitted changes (``+dirty``), or
the commit is not in this repository, or it was made on another CPU (another model name or other
instruction-set flags of ``machine_info.CPU_FLAGS_OF_INTEREST`` than this machine's: a speed or
even an accuracy figure from another CPU does not describe this one).

A run starts each stale result's recorded command again from the repository root, one at a time
(never two benchmarks on the CPU at once), in the order of ``--list``, and stops starting new
ones when the next one's last duration would not fit in ``--max_hours``. Because "current" is
decided by the code, not by the session, a full regeneration can span several sessions: commit
the rewritten results after each run; the next run skips them as long as the measured code stays
unchanged. Machine-specific paths in a recorded command are replaced: ``--log_dir`` by a folder
under ``--logs``, and the ``--model_dir`` of ``inference.py`` and ``int8_settings.py`` (a run of
the main job) by
``--model_dir`` here, or, when that is missing, by a run of ``recipes/sentiment.py`` on its
defaults made first. The work tree must be clean (results aside), or the harness would mark
every result ``+dirty``.

Each benchmark runs with ``TMPDIR`` pointing at a scratch folder of its own: the arms' models,
caches and default per-arm logs (several GB for ``few_shot_setfit`` or ``frozen_vs_full``) go
there, and the folder is deleted when the benchmark succeeds, so a regeneration does not fill the
disk. A failed benchmark's scratch folder is kept, and its path printed, to read its logs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from machine_info import CPU_FLAGS_OF_INTEREST, EXCLUDE_RESULTS, cpu_model_and_flags

REPO = Path(__file__).resolve().parent.parent
# Benchmarks whose --model_dir is a run of the main job (recipes/sentiment.py on its defaults).
MAIN_JOB_MODEL_SCRIPTS = ("inference.py", "int8_settings.py", "serve_load.py")
RESULTS = REPO / "benchmarks" / "results"
# The code every result depends on (git pathspecs), besides its own script: the library, the
# recipes, the dependencies and the benchmarks' shared helpers and peer workers. Documentation,
# other benchmark scripts and other results are not.
MEASURED_CODE = (
    "nlp_transfer",
    "recipes",
    "pyproject.toml",
    "constraints.txt",
    "benchmarks/harness.py",
    "benchmarks/machine_info.py",
    "benchmarks/tfidf.py",
    "benchmarks/*_worker.py",
    "benchmarks/pipeline_server.py",
)
# Minutes assumed for a result whose file does not record its duration (short scripts).
UNKNOWN_MINUTES = 10.0


@dataclass
class Result:
    """One committed result file and what regenerating it takes."""

    path: Path
    command: str | None
    git_sha: str | None
    date: str | None
    minutes: float | None
    state: str = "unknown"
    reason: str = ""
    root: Path = RESULTS
    cpu: dict | None = None  # {"cpu": model name, "cpu_flags": {flag: bool}} of the machine

    @property
    def name(self) -> str:
        """The path under the results folder, without ``.json`` (``few_shot_setfit_spam/few_shot_setfit``)."""
        return str(self.path.relative_to(self.root).with_suffix(""))

    @property
    def estimate_minutes(self) -> float:
        return self.minutes if self.minutes is not None else UNKNOWN_MINUTES


def find_results(results_dir: Path = RESULTS) -> list[Result]:
    """Every result JSON under ``results_dir`` (recursively), sorted by path.

    Raises:
        ValueError: A file is not valid JSON (say which).
    """
    found = []
    for path in sorted(results_dir.rglob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        info = document.get("run_info") if isinstance(document, dict) else None
        info = info if isinstance(info, dict) else {}
        wall = info.get("wall_time_s")
        if not isinstance(wall, (int, float)):  # older scripts: the sum of their arms' times
            records = document.get("records") if isinstance(document, dict) else None
            walls = [r.get("wall_s") for r in records or [] if isinstance(r, dict)]
            wall = sum(walls) if walls and all(isinstance(w, (int, float)) for w in walls) else None
        found.append(
            Result(
                path=path,
                command=info.get("command"),
                git_sha=info.get("git_sha"),
                date=info.get("date"),
                minutes=wall / 60 if wall is not None else None,
                cpu=_cpu_of(document.get("machine") if isinstance(document, dict) else None),
                root=results_dir,
            )
        )
    return found


def _cpu_of(machine: object) -> dict | None:
    """The CPU part of a result's ``machine`` record (model name, flags of interest), or None."""
    if not isinstance(machine, dict) or "cpu" not in machine:
        return None
    flags = machine.get("cpu_flags") if isinstance(machine.get("cpu_flags"), dict) else {}
    return {"cpu": machine["cpu"], "cpu_flags": {k: bool(v) for k, v in flags.items()}}


def this_cpu() -> dict:
    """This machine's CPU as results record it (``machine_info.machine()``'s CPU part)."""
    model, flags = cpu_model_and_flags()
    return {"cpu": model, "cpu_flags": {f: f in flags for f in CPU_FLAGS_OF_INTEREST}}


def cpu_difference(recorded: dict | None, here: dict) -> str | None:
    """How a result's CPU differs from this one, or None when it is the same (or unrecorded)."""
    if recorded is None:
        return None
    if recorded["cpu"] != here["cpu"]:
        return f"made on another CPU ({recorded['cpu']}; this one: {here['cpu']})"
    differ = sorted(
        f
        for f in set(recorded["cpu_flags"]) & set(here["cpu_flags"])
        if recorded["cpu_flags"][f] != here["cpu_flags"][f]
    )
    if differ:
        shown = ", ".join(f"{f} {'on' if recorded['cpu_flags'][f] else 'off'}" for f in differ)
        return f"made on a {recorded['cpu']} with other instruction sets ({shown} there)"
    return None


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=repo)


def script_of(command: str | None) -> str | None:
    """``benchmarks/<script>.py`` of a recorded ``python benchmarks/<script>.py ...`` command."""
    words = shlex.split(command or "")
    if len(words) >= 2 and words[1].startswith("benchmarks/") and words[1].endswith(".py"):
        return words[1]
    return None


def code_changes(sha: str, script: str | None = None, repo: Path = REPO) -> list[str] | None:
    """Files of the measured code (and ``script``) that differ between ``sha`` and ``HEAD``.

    Returns:
        Paths relative to the repository, or None when ``sha`` is not a commit here.
    """
    if _git(repo, "cat-file", "-e", f"{sha}^{{commit}}").returncode != 0:
        return None
    paths = [*MEASURED_CODE, *([script] if script else [])]
    diff = _git(repo, "diff", "--name-only", sha, "HEAD", "--", *paths)
    if diff.returncode != 0:
        return None
    return [line for line in diff.stdout.splitlines() if line]


def classify(result: Result, repo: Path = REPO, cpu: dict | None = None) -> Result:
    """Set ``result.state`` to ``current``, ``stale`` or ``no command`` and say why.

    Args:
        result: A committed result.
        repo: The repository (its commits decide which code changed).
        cpu: This machine's CPU (:func:`this_cpu`); None: looked up.
    """
    if not result.command:
        result.state, result.reason = "no command", "the file records no command (run_info)"
        return result
    sha = result.git_sha or ""
    other_cpu = cpu_difference(result.cpu, cpu or this_cpu())
    if other_cpu:
        result.state, result.reason = "stale", other_cpu
    elif not sha:
        result.state, result.reason = "stale", "no commit recorded"
    elif sha.endswith("+dirty"):
        result.state, result.reason = "stale", "ran with uncommitted changes"
    else:
        changed = code_changes(sha, script_of(result.command), repo)
        if changed is None:
            result.state, result.reason = "stale", f"commit {sha[:7]} is not in this repository"
        elif changed:
            shown = ", ".join(changed[:3]) + (
                f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            )
            result.state, result.reason = (
                "stale",
                f"{len(changed)} file{'s' if len(changed) > 1 else ''} changed since: {shown}",
            )
        else:
            result.state, result.reason = "current", f"no measured code changed since {sha[:7]}"
    return result


def uncommitted_changes(repo: Path = REPO) -> list[str]:
    """Uncommitted changes that would mark a new result ``+dirty`` (``git status --porcelain``).

    The same rule as ``machine_info.git_sha``: any tracked file but the results counts.
    """
    paths = [".", EXCLUDE_RESULTS]
    status = _git(repo, "status", "--porcelain", "--untracked-files=no", "--", *paths)
    return [line for line in status.stdout.splitlines() if line]


def _replace_flag(words: list[str], flag: str, value: str) -> list[str]:
    """Give ``flag`` (``--flag V`` or ``--flag=V``) the value ``value``, where it is present."""
    if not any(w == flag or w.startswith(flag + "=") for w in words):
        return words
    out, skip = [], False
    for word in words:
        if skip:
            skip = False
            continue
        if word == flag:
            skip = True
            continue
        if word.startswith(flag + "="):
            continue
        out.append(word)
    return [*out, flag, value]


def command_for(result: Result, logs: Path, model_dir: Path) -> list[str]:
    """The recorded command with this machine's interpreter and paths.

    Raises:
        ValueError: The recorded command is not ``python benchmarks/<script>.py ...``.
    """
    words = shlex.split(result.command or "")
    if len(words) < 2 or words[0] != "python" or not words[1].startswith("benchmarks/"):
        raise ValueError(
            f"{result.path}: recorded command {result.command!r} is not "
            "'python benchmarks/<script>.py ...'; regenerate it by hand"
        )
    words = [sys.executable, *words[1:]]
    words = _replace_flag(words, "--log_dir", str(logs / result.name.replace("/", "_")))
    if Path(words[1]).name in MAIN_JOB_MODEL_SCRIPTS:
        words = _replace_flag(words, "--model_dir", str(model_dir))
    return words


def plan(results: list[Result], max_hours: float | None) -> tuple[list[Result], list[Result]]:
    """Stale results to run now (in order, within ``max_hours`` by their last durations) and later."""
    now, later, budget = [], [], (max_hours * 60 if max_hours is not None else float("inf"))
    for result in results:
        if result.state != "stale":
            continue
        if result.estimate_minutes <= budget and not later:
            now.append(result)
            budget -= result.estimate_minutes
        else:
            later.append(result)
    return now, later


def _table(results: list[Result]) -> str:
    lines = [f"{'result':<46} {'commit':<8} {'min':>5}  state: why"]
    for r in results:
        minutes = f"{r.minutes:5.0f}" if r.minutes is not None else "    ?"
        sha = (r.git_sha or "-")[:7] + ("+" if (r.git_sha or "").endswith("+dirty") else "")
        lines.append(f"{r.name:<46} {sha:<8} {minutes}  {r.state}: {r.reason}")
    return "\n".join(lines)


def _ensure_model(model_dir: Path, log: Path) -> None:
    """Train the main job on its defaults into ``model_dir`` (the input of
    :data:`MAIN_JOB_MODEL_SCRIPTS`)."""
    if (model_dir / "config.json").exists():
        return
    print(
        f"{', '.join(MAIN_JOB_MODEL_SCRIPTS)} need a trained model: running recipes/sentiment.py into {model_dir}"
    )
    command = [sys.executable, "recipes/sentiment.py", "--output_dir", str(model_dir)]
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"recipes/sentiment.py failed (exit {done.returncode}); see {log}")


def run_in_scratch(command: list[str], log: Path, name: str) -> tuple[int, Path | None]:
    """Run ``command`` from the repository root, its output to ``log``, with ``TMPDIR`` set to a
    new scratch folder; delete the folder when the command succeeds.

    Returns:
        The command's exit code, and the scratch folder when it was kept (a failure), else None.
    """
    scratch = Path(tempfile.mkdtemp(prefix=f"regenerate-{name}-"))
    env = {**os.environ, "TMPDIR": str(scratch)}
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        return done.returncode, scratch
    shutil.rmtree(scratch, ignore_errors=True)
    return 0, None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--list", action="store_true", help="Show every result's state; run nothing."
    )
    parser.add_argument("--dry_run", action="store_true", help="Print the commands; run nothing.")
    parser.add_argument(
        "--max_hours",
        type=float,
        default=None,
        help="Start a result only while its last duration fits in what is left (unset: all).",
    )
    parser.add_argument(
        "--only", default="", help="Comma list of result names (as --list shows them)."
    )
    parser.add_argument(
        "--logs",
        default=str(REPO / "outputs" / "regenerate"),
        help="Where each benchmark's log and per-arm logs go.",
    )
    parser.add_argument(
        "--model_dir",
        default=None,
        help="inference.py's and int8_settings.py's model (a run of recipes/sentiment.py); default: <logs>/sentiment_model, "
        "trained first when missing.",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    results = [classify(r) for r in find_results()]
    if args.only:
        wanted = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = wanted - {r.name for r in results}
        if unknown:
            print(
                f"error: --only {', '.join(sorted(unknown))}: no such result; "
                f"choose from {', '.join(r.name for r in results)}",
                file=sys.stderr,
            )
            return 2
        results = [r for r in results if r.name in wanted]
    print(_table(results))
    if args.list:
        return 0
    now, later = plan(results, args.max_hours)
    skipped = [r for r in results if r.state == "no command"]
    for r in skipped:
        print(f"cannot regenerate {r.name}: {r.reason}", file=sys.stderr)
    if not now:
        print("nothing to run" + (f" within {args.max_hours} h" if later else ": all current"))
        return 0
    logs = Path(args.logs)
    model_dir = Path(args.model_dir) if args.model_dir else logs / "sentiment_model"
    commands = [(r, command_for(r, logs, model_dir)) for r in now]
    total = sum(r.estimate_minutes for r in now)
    print(
        f"\n{len(now)} to run (about {total:.0f} min by their last runs); {len(later)} left for later"
    )
    for _, command in commands:
        print("  " + shlex.join(command))
    if args.dry_run:
        return 0
    dirty = uncommitted_changes()
    if dirty:
        print(
            "error: the work tree has uncommitted changes; commit or stash them first, or "
            "every result would be marked +dirty:\n  " + "\n  ".join(dirty),
            file=sys.stderr,
        )
        return 2
    if any("few_shot_setfit" in r.name for r in now) and not importlib.util.find_spec("setfit"):
        print(
            "error: few_shot_setfit needs the SetFit peer: "
            "pip install -r benchmarks/requirements-setfit.txt",
            file=sys.stderr,
        )
        return 2
    logs.mkdir(parents=True, exist_ok=True)
    failed = []
    for number, (result, command) in enumerate(commands, 1):
        log = logs / f"{result.name.replace('/', '_')}.log"
        if Path(command[1]).name in MAIN_JOB_MODEL_SCRIPTS:
            _ensure_model(model_dir, logs / "sentiment_model.log")
        print(
            f"[{number}/{len(commands)}] {result.name} (last run {result.estimate_minutes:.0f} min), "
            f"log {log}",
            flush=True,
        )
        start = time.perf_counter()
        returncode, kept = run_in_scratch(command, log, result.name.replace("/", "_"))
        minutes = (time.perf_counter() - start) / 60
        status = "done" if returncode == 0 else f"FAILED (exit {returncode}; scratch kept: {kept})"
        print(
            f"[{number}/{len(commands)}] {result.name}: {status} in {minutes:.0f} min", flush=True
        )
        if returncode != 0:
            failed.append(result.name)
    print(
        "\nCommit the rewritten files under benchmarks/results/ and update the docs that quote them."
        + (f" Failed: {', '.join(failed)}." if failed else "")
        + (f" Left for a later run: {', '.join(r.name for r in later)}." if later else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
