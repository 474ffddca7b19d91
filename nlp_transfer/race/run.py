"""``--strategy auto``: a budgeted race between transfer strategies on validation.

    nlp-transfer train --train_file reviews.csv --strategy auto --time_budget 20m

The candidates (:mod:`.candidates`: TF-IDF, cached feature extraction, contrastive tuning for
few-shot data, the upper half fine-tuned over a cached frozen half, LoRA, full fine-tuning) run
one after another, cheapest first, each into ``output_dir/race/<name>`` on the same splits. The
candidates that train epoch by epoch report their validation metric after each epoch, and one
stops (``pruned``) once it is behind the best value an earlier candidate had at that epoch by
more than validation noise (:mod:`.pruning`, a race in the sense of Maron and Moore 1994). The time budget covers the whole race (data, caching,
every candidate): a candidate that would not fit is skipped, one that trains epochs stops after
the last epoch that fits (its best epoch kept), and 5% is kept for the end. The study lives in
``output_dir/race/study.db`` (SQLite), so a killed race started again with the same command
resumes: finished candidates are not run again, and the time already spent counts.

The winner (best validation ``--metric_for_best_model``) is copied into ``output_dir``, an
ordinary run directory (a TF-IDF winner as ``tfidf.skops``, which ``TextClassifier``,
``predict`` and ``evaluate`` load), with the leaderboard in ``metrics.json`` (``race``),
``race.json``, ``plots/race.png`` and the model card.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..metrics import greater_is_better
from ..search import OptunaPruningCallback
from ..training.callbacks import CallbackError
from ..training.setup import check_output_dir, keep_process_group, setup_logging
from .budget import BudgetCallback, TimeBudget, parse_duration
from .candidates import CANDIDATE_NAMES, Candidate, DataFacts, choose_candidates
from .processes import is_main_process, process_state, share, wait_for_everyone
from .pruning import NoiseMarginPruner
from .report import leaderboard_rows, write_race_outputs
from .tfidf import run_tfidf_candidate
from .winner import default_candidate, pick_winner

if TYPE_CHECKING:
    from datasets import DatasetDict

    from ..data.read import DataSource
    from ..text.config import TextClassificationConfig

logger = logging.getLogger(__name__)

RACE_DIR = "race"
STUDY_NAME = "nlp_transfer_race"


@dataclasses.dataclass
class RaceContext:
    """What every candidate of one race shares."""

    config: object
    dataset: object
    metric: str
    greater_is_better: bool
    budget: TimeBudget | None
    race_dir: Path
    run: Callable
    facts: DataFacts


def race(
    config: TextClassificationConfig,
    dataset: DataSource | DatasetDict | None = None,
    *,
    run: Callable | None = None,
    clock: Callable[[], float] = time.monotonic,
    plots: bool = True,
) -> dict:
    """Race the transfer strategies on ``config``'s data and keep the best as ``output_dir``.

    Args:
        config: A text config with ``strategy="auto"``; ``time_budget`` (e.g. ``"20m"``; None:
            no limit) bounds the whole race; ``race_candidates`` (None: all that apply)
            restricts it; every other setting applies to each candidate.
        dataset: In-memory data or prepared splits, as :func:`~nlp_transfer.text.run.
            run_text_classification` takes; None loads what ``config`` names.
        run: ``(config, dataset, callbacks) -> metrics`` of one candidate's training run;
            None: :func:`~nlp_transfer.text.run.run_text_classification`.
        clock: Monotonic seconds (tests pass a fake clock).
        plots: Write ``plots/race.png``.

    Returns:
        The winner's ``metrics.json`` content, with the leaderboard under ``race``.

    Raises:
        FileExistsError: ``output_dir`` holds something other than an earlier race of it and
            ``overwrite_output_dir`` is False.
        ValueError: A bad ``--time_budget`` or ``--race_candidates``; every candidate failed.
    """
    if getattr(config, "audit", False):
        raise ValueError(
            "--audit with --strategy auto: audit the data once first (nlp-transfer audit), "
            "then race without --audit."
        )
    # refuses a non-empty output_dir unless overwriting; an earlier race's race/ folder alone
    # does not count: the race resumes from it
    output_dir = check_output_dir(
        config.output_dir, config.overwrite_output_dir, ignore=(RACE_DIR,)
    )
    with keep_process_group():  # each candidate's run ends; the processes go on together
        return _race(config, dataset, output_dir, run, clock, plots)


def _race(config, dataset, output_dir: Path, run, clock, plots: bool) -> dict:
    """The race itself (:func:`race`, once ``output_dir`` is checked)."""
    ctx, facts = _prepare(config, dataset, output_dir / RACE_DIR, run, clock)
    candidates, skipped = choose_candidates(facts, _only(config))
    wait_for_everyone()  # every process checked output_dir before the main one writes there
    study = _open_study(ctx) if is_main_process() else None  # the main process keeps it
    if ctx.budget is not None:
        spent = float(study.user_attrs.get("spent_s", 0.0)) if study is not None else None
        ctx.budget.spent_before = share(spent)
    logger.info(
        f"race: {', '.join(c.name for c in candidates)} on validation {ctx.metric}"
        + (f" within {ctx.budget.total:.0f} s" if ctx.budget else " (no time budget)")
        + "".join(f"; {name} sits out: {why}" for name, why in skipped.items())
    )
    rows = {
        name: {"candidate": name, "state": "skipped", "note": why} for name, why in skipped.items()
    }
    for candidate in candidates:
        rows[candidate.name] = _race_one(ctx, study, candidate)
        if ctx.budget is not None and study is not None:
            study.set_user_attr("spent_s", ctx.budget.spent)
    board = leaderboard_rows([rows[n] for n in CANDIDATE_NAMES if n in rows], ctx.greater_is_better)
    finished = [r for r in board if r["state"] == "complete" and r.get("value") is not None]
    if not finished:
        states = "; ".join(
            f"{r['candidate']}: {r['state']} {r.get('note', '')}".strip() for r in board
        )
        raise ValueError(f"--strategy auto: no candidate finished ({states}).")
    n_validation = ctx.dataset["validation"].num_rows
    winner, why = pick_winner(
        finished, default_candidate(candidates), n_validation, ctx.greater_is_better
    )
    logger.info(f"race: {winner['candidate']} wins ({ctx.metric} {winner['value']:.4f}): {why}")
    result = None
    if is_main_process():
        _promote(Path(winner["output_dir"]), output_dir)
        spent = ctx.budget.spent if ctx.budget else None
        result = write_race_outputs(
            output_dir, board, winner | {"reason": why}, ctx.metric, spent, ctx.budget, plots,
            n_validation,
        )  # fmt: skip
    return share(result)


def run_or_race(
    config: TextClassificationConfig,
    dataset: DataSource | DatasetDict | None = None,
    task_name: str = "text classification",
    callbacks: Sequence = (),
) -> dict:
    """A text run as ``config`` says: the race with ``--strategy auto``, else one run of
    :func:`~nlp_transfer.text.run.run_text_classification` (what the recipes, ``nlp-transfer
    train`` and ``nlp_transfer.train`` call).

    Returns:
        The metrics written to ``output_dir/metrics.json``.
    """
    if getattr(config, "strategy", "manual") == "auto":
        return race(config, dataset)
    from ..text.run import run_text_classification

    return run_text_classification(config, dataset, task_name, callbacks=callbacks)


def _only(config) -> tuple[str, ...] | None:
    names = getattr(config, "race_candidates", None)
    if not names:
        return None
    return tuple(n.strip() for n in str(names).split(",") if n.strip())


def _prepare(config, dataset, race_dir: Path, run, clock) -> tuple[RaceContext, DataFacts]:
    """Load the splits once, find the problem type, the selection metric and the facts."""
    from transformers import AutoConfig

    from ..text.loaders import is_prepared, load_data, selection_metric
    from ..text.model import resolve_model_path
    from ..text.problem import problem_type_of
    from ..text.run import run_text_classification

    setup_logging(process_state())  # the process state first; the race's lines from the start
    budget = None
    if getattr(config, "time_budget", None):
        budget = TimeBudget(parse_duration(config.time_budget), clock=clock)
    if not is_prepared(dataset):
        with process_state().main_process_first():  # one process fills the datasets cache
            dataset = load_data(config, dataset)
    problem = problem_type_of(dataset)
    metric = selection_metric(dataclasses.replace(config, problem_type=problem))
    name, local_only = resolve_model_path(config.model_name_or_path)
    model_config = AutoConfig.from_pretrained(name, local_files_only=local_only)
    layers = int(getattr(model_config, "num_hidden_layers", 0) or 0)

    def default_run(trial_config, data, callbacks):
        return run_text_classification(trial_config, dataset=data, callbacks=callbacks)

    facts = DataFacts.of(dataset, problem, layers)
    ctx = RaceContext(
        config, dataset, metric, greater_is_better(metric), budget, race_dir,
        run or default_run, facts,
    )  # fmt: skip
    return ctx, facts


def _open_study(ctx: RaceContext):
    import optuna
    from optuna.trial import TrialState

    ctx.race_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=f"sqlite:///{ctx.race_dir / 'study.db'}",
        load_if_exists=True,
        direction="maximize" if ctx.greater_is_better else "minimize",
        pruner=NoiseMarginPruner(ctx.dataset["validation"].num_rows, ctx.greater_is_better),
    )
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        logger.info(f"race: {trial.params.get('candidate')} was interrupted; it runs again")
    return study


def _finished_row(study, name: str) -> dict | None:
    """The leaderboard row of ``name`` when an earlier process of this race finished it."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False):
        if trial.params.get("candidate") == name and trial.state in (
            TrialState.COMPLETE,
            TrialState.PRUNED,
        ):
            return dict(trial.user_attrs.get("row", {}), resumed=True)
    return None


def _race_one(ctx: RaceContext, study, candidate: Candidate) -> dict:
    """Run ``candidate`` as one trial of the study (or reuse its finished trial). ``study`` is
    None on the processes other than the main one: they train with it and take its row."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    if (row := share(_decided_before(ctx, study, candidate))) is not None:
        return row
    trial = None
    if study is not None:
        study.enqueue_trial({"candidate": candidate.name})
        trial = study.ask({"candidate": CategoricalDistribution(list(CANDIDATE_NAMES))})
    out = ctx.race_dir / candidate.name
    start = time.perf_counter()
    row = {
        "candidate": candidate.name,
        "description": candidate.description,
        "output_dir": str(out),
    }
    try:
        if candidate.is_tfidf and study is not None:
            row |= run_tfidf_candidate(ctx.config, ctx.dataset, out, ctx.metric)
        elif not candidate.is_tfidf:
            _run_training(ctx, candidate, trial, out, row)
        row["state"] = "complete"
    except optuna.TrialPruned as pruned:
        row |= {"state": "pruned", "note": str(pruned)}
    except CallbackError:  # pruned or stopped on the main process: its row follows
        row["state"] = "pruned"
    except (RuntimeError, ValueError, MemoryError) as error:  # the race goes on without it
        logger.warning(f"race: {candidate.name} failed: {error}")
        row |= {"state": "failed", "note": f"{type(error).__name__}: {error}"}
    row["seconds"] = time.perf_counter() - start
    if study is None:
        return share(None)
    row |= _read_run(out, ctx.metric, row)
    trial.set_user_attr("row", row)
    state = {"complete": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}[row["state"]]
    value = row.get("value") if row["state"] == "complete" else None
    if state == "COMPLETE" and value is None:
        state = "FAIL"
    study.tell(trial, value, state=getattr(optuna.trial.TrialState, state))
    value_text = "n/a" if row.get("value") is None else f"{row['value']:.4f}"
    logger.info(f"race: {candidate.name} {row['state']}, {ctx.metric} {value_text}")
    return share(row)


def _decided_before(ctx: RaceContext, study, candidate: Candidate) -> dict | None:
    """On the main process: ``candidate``'s row when it needs no run (finished by an earlier
    process of this race, or no time left); None: run it."""
    if study is None:
        return None
    if (row := _finished_row(study, candidate.name)) is not None:
        logger.info(f"race: {candidate.name} finished before ({row.get('state')}); not rerun")
        return row
    if ctx.budget is not None and ctx.budget.remaining <= 0:
        return {"candidate": candidate.name, "state": "skipped", "note": "time budget spent"}
    return None


def _run_training(ctx: RaceContext, candidate: Candidate, trial, out: Path, row: dict) -> None:
    """A candidate that is a training run of the toolkit, with the race's callbacks (``row``
    gets its overrides, and its best validation value so far even when it is pruned)."""
    overrides = candidate.overrides(ctx.facts)
    trial_config = dataclasses.replace(
        ctx.config,
        strategy="manual",
        time_budget=None,
        race_candidates=None,
        run_baseline=False,  # TF-IDF is a candidate of its own
        output_dir=str(out),
        overwrite_output_dir=True,  # an interrupted candidate left its directory
        resume_from_checkpoint=None,
        **overrides,
    )
    trial_config.validate()
    callbacks, pruning = [], RacePruning(trial, ctx.metric, ctx.greater_is_better)
    budget = None if ctx.budget is None else BudgetCallback(ctx.budget, candidate.name)
    if candidate.trains_epochs:
        callbacks += [pruning] + ([budget] if budget else [])
    row["overrides"] = overrides
    try:
        ctx.run(trial_config, ctx.dataset, callbacks)
    finally:  # pruned: its best epoch before it was stopped
        row["value"] = pruning.best
        row["epochs_run"] = pruning.epochs
        if budget is not None and budget.stopped_at is not None:  # cut short by the budget
            row["stopped_by_budget"] = int(budget.stopped_at)  # the last epoch it trained


class RacePruning(OptunaPruningCallback):
    """The epoch reports to the study's pruner, remembering the best value and the epochs run."""

    def __init__(self, trial, metric: str, greater_is_better: bool):
        super().__init__(trial, metric)
        self.sign, self.best, self.epochs = 1 if greater_is_better else -1, None, 0

    def on_evaluate(self, trainer, metrics: dict) -> None:
        value, self.epochs = float(metrics[self.metric]), self.epochs + 1
        if self.best is None or self.sign * value > self.sign * self.best:
            self.best = value
        if self.trial is not None:  # the main process decides; the others stop with it
            super().on_evaluate(trainer, metrics)


def _read_run(out: Path, metric: str, row: dict) -> dict:
    """Value, trainable parameters and stored size from a finished candidate's ``metrics.json``."""
    import json

    path = out / "metrics.json"
    if row["state"] != "complete" or not path.is_file():  # pruned or failed: nothing saved
        return {}
    metrics = json.loads(path.read_text(encoding="utf-8"))
    found = {"size_mb": _size_mb(out)}
    if metrics.get("best_metric") is not None:  # the best epoch's, as the run kept it
        found["value"] = float(metrics["best_metric"])
    params = metrics.get("parameters") or {}
    found["trainable_params"] = params.get("trainable")
    stage = (metrics.get("transfer_strategy") or {}).get("contrastive") or {}
    if found["trainable_params"] is not None and stage.get("trainable_params"):
        found["trainable_params"] += stage["trainable_params"]  # the encoder, tuned first
    found["epochs_run"] = len(metrics.get("validation") or [])
    test = metrics.get("test") or {}
    found["test"] = {k: v for k, v in test.items() if isinstance(v, int | float)}
    return found


def _size_mb(path: Path) -> float:
    """Mebibytes (2**20 bytes) of the saved model files in ``path`` (checkpoints and plots
    excluded); the leaderboard's ``size_mb``."""
    skip = ("checkpoint", "plots", "race")
    files = [
        p
        for p in path.rglob("*")
        if p.is_file() and not p.relative_to(path).parts[0].startswith(skip)
    ]
    return round(sum(p.stat().st_size for p in files) / 2**20, 1)


def _promote(winner: Path, output_dir: Path) -> None:
    """Copy the winner's run directory into ``output_dir`` (its ``race/`` folder stays)."""
    for item in winner.iterdir():
        if item.name.startswith("checkpoint"):
            continue
        target = output_dir / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)
