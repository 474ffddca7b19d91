"""Hyperparameter search with Optuna over any task's run: ``nlp-transfer search``.

    from nlp_transfer import search
    study = search(config, "nlp_transfer/configs/search_space.yaml", n_trials=12)

Each trial is one run of the task (the shared training loop) into
``output_dir/trials/trial_N`` with the trial's values replacing the config's. Optuna's TPE
sampler proposes the values; its median pruner stops a trial whose validation
``--metric_for_best_model`` after an epoch is worse than the median of earlier trials at that
epoch (through the run's epoch-end callback). The study lives in ``output_dir/study.db``
(SQLite), so a search killed at any point resumes where it stopped when started again with the
same ``output_dir`` and finishes the planned number of trials. At the end: the best trial's
configuration as ``best_config.yaml`` (usable with ``--config``), ``search.json``, and Optuna's
optimisation-history and parameter-importance plots in ``plots/``.

Source: Akiba et al. 2019, "Optuna: A Next-generation Hyperparameter Optimization Framework";
``optuna.create_study``, ``TPESampler``, ``MedianPruner``, ``optuna.visualization.matplotlib``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .metrics import greater_is_better
from .reporting.config_file import save_config
from .training.callbacks import TrainerCallback

if TYPE_CHECKING:
    import optuna

    from .training.arguments import TrainingConfig

logger = logging.getLogger(__name__)

# in the package (and the wheel): nlp_transfer/configs/search_space.yaml
DEFAULT_SPACE = Path(__file__).resolve().parent / "configs" / "search_space.yaml"
STUDY_NAME = "nlp_transfer_search"
KINDS = ("float", "int", "categorical")
# Settings that only mean something with one adapter method.
ONLY_WITH_PEFT = {"lora_r": "lora", "lora_alpha": "lora", "lora_dropout": "lora"}


def load_search_space(path: str | Path, config: TrainingConfig) -> dict[str, dict]:
    """Read and check a search-space YAML file against ``config``'s fields.

    Args:
        path: The YAML file (format in ``nlp_transfer/configs/search_space.yaml``).
        config: The task config the trials start from.

    Returns:
        ``{setting: spec}`` of the settings to search (LoRA settings dropped without
        ``--peft lora``).

    Raises:
        FileNotFoundError: No such file.
        ValueError: An unknown setting, an unknown ``type``, an empty range or no choices; the
            message names the setting and the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--search_space {path}: no such file.")
    space = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(space, dict) or not space:
        raise ValueError(f"--search_space {path} must map settings to ranges; it is empty.")
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(space) - fields)
    if unknown:
        raise ValueError(
            f"--search_space {path}: unknown setting(s) {', '.join(unknown)}; a setting is a "
            f"flag of the task (e.g. learning_rate, per_device_train_batch_size)."
        )
    for name, spec in space.items():
        _check_spec(name, spec, path)
    peft = getattr(config, "peft", "none")
    skipped = [n for n in space if n in ONLY_WITH_PEFT and ONLY_WITH_PEFT[n] != peft]
    if peft == "prompt_tuning" and "freeze_layers" in space:
        skipped.append("freeze_layers")  # prompt tuning trains no layer
    if skipped:
        logger.info(f"Not searched with --peft {peft}: {', '.join(skipped)}")
    return {n: s for n, s in space.items() if n not in skipped}


def _check_spec(name: str, spec: object, path: Path) -> None:
    where = f"--search_space {path}: {name}"
    if not isinstance(spec, dict) or spec.get("type") not in KINDS:
        raise ValueError(f"{where} needs a type among {', '.join(KINDS)}.")
    if spec["type"] == "categorical":
        if not spec.get("choices"):
            raise ValueError(f"{where}: empty choices.")
        return
    low, high = spec.get("low"), spec.get("high")
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        raise ValueError(f"{where} needs numbers low and high.")
    if low > high or (spec["type"] == "float" and low == high):
        raise ValueError(f"{where}: empty range [{low}, {high}].")
    if spec.get("log") and low <= 0:
        raise ValueError(f"{where}: a log range needs low > 0, got {low}.")


def suggest(trial, space: dict[str, dict]) -> dict:
    """The trial's values of every setting in ``space``."""
    values = {}
    for name, spec in space.items():
        if spec["type"] == "float":
            values[name] = trial.suggest_float(
                name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log"))
            )
        elif spec["type"] == "int":
            values[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]))
        else:
            values[name] = trial.suggest_categorical(name, list(spec["choices"]))
    return values


class OptunaPruningCallback(TrainerCallback):
    """Reports every epoch's validation ``metric`` to an Optuna trial, and stops the trial's
    training when Optuna prunes it (``optuna.TrialPruned``, which the study records as pruned).

    Args:
        trial: The ``optuna.Trial`` being run.
        metric: The validation metric reported (``--metric_for_best_model``).
    """

    def __init__(self, trial: optuna.Trial, metric: str):
        self.trial, self.metric = trial, metric

    def on_evaluate(self, trainer, metrics: dict) -> None:
        import optuna

        epoch, value = trainer.state.epoch, float(metrics[self.metric])
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} ({self.metric} {value})")


def _objective(config, space: dict, run: Callable, output_dir: Path) -> Callable:

    metric = config.metric_for_best_model

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, space)
        trial_config = dataclasses.replace(
            config,
            **values,
            output_dir=str(output_dir / "trials" / f"trial_{trial.number}"),
            overwrite_output_dir=True,  # a trial interrupted earlier left its directory
            resume_from_checkpoint=None,
        )
        trial_config.validate()

        result = run(trial_config, [OptunaPruningCallback(trial, metric)])
        if result.get("best_metric") is None:
            raise ValueError("nlp-transfer search needs a task whose run reports best_metric.")
        return float(result["best_metric"])

    return objective


def _progress(n_trials: int, start: float, done_before: int) -> Callable:
    """Optuna callback: trial i/n, its value, the best so far and the time left."""
    from optuna.trial import TrialState

    def report(study, trial) -> None:
        finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        ran = max(len(finished) - done_before, 1)
        left = (time.perf_counter() - start) / ran * max(n_trials - len(finished), 0)
        best = _best(study)
        best_text = f"{best.value:.4f} (trial {best.number})" if best else "none yet"
        value = f"{trial.value:.4f}" if trial.value is not None else trial.state.name.lower()
        logger.info(
            f"search: trial {len(finished)}/{n_trials} ({trial.number}) {value} | best so far "
            f"{best_text} | about {left / 60:.1f} min left"
        )

    return report


def _best(study):
    from optuna.trial import TrialState

    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not done:
        return None
    sign = 1 if study.direction.name == "MAXIMIZE" else -1
    return max(done, key=lambda t: sign * t.value)


def open_study(output_dir: Path, greater_is_better: bool, seed: int):
    """Create or resume the study in ``output_dir/study.db``; trials a killed process left
    running are marked failed (one search process per study)."""
    import optuna
    from optuna.trial import TrialState

    output_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=f"sqlite:///{output_dir / 'study.db'}",
        load_if_exists=True,
        direction="maximize" if greater_is_better else "minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
    )
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        logger.info(f"search: trial {trial.number} was interrupted; it is run again as a new trial")
    return study


def search(
    config: TrainingConfig,
    space_path: str | Path | None = None,
    n_trials: int = 20,
    *,
    run: Callable[[object, list], dict] | None = None,
    plots: bool = True,
) -> optuna.Study:
    """Search the hyperparameters of ``space_path`` for the task run of ``config``.

    Args:
        config: The task config trials start from; its ``output_dir`` holds the study, the
            trials and the results; its ``metric_for_best_model`` (validation) is the objective,
            maximised unless its name contains ``loss``.
        space_path: Search-space YAML; None: ``nlp_transfer/configs/search_space.yaml``.
        n_trials: Trials to finish (completed or pruned), counting those of an earlier,
            interrupted search in the same ``output_dir``.
        run: ``(config, callbacks) -> metrics`` of one trial, passing ``callbacks`` (the
            pruning) to its Trainer; None: the run of ``config``'s task.
        plots: Write Optuna's matplotlib plots to ``output_dir/plots/``.

    Returns:
        The ``optuna.Study``.

    Raises:
        ValueError, FileNotFoundError: A bad search space (see :func:`load_search_space`) or
            trial settings; the message names the setting.
    """
    from optuna.trial import TrialState

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "nlp-transfer search runs its trials one after another in one process; start it "
            "without accelerate launch / torchrun (or give each trial one process)."
        )
    space = load_search_space(space_path or DEFAULT_SPACE, config)
    output_dir = Path(config.output_dir).expanduser()
    metric = objective_metric(config)
    if metric != config.metric_for_best_model:
        logger.info(f"search: the objective is validation {metric}, this problem type's default")
        config = dataclasses.replace(config, metric_for_best_model=metric)
    if getattr(config, "contrastive", "none") is None:  # trials tune fine-tuning's epochs
        config = dataclasses.replace(config, contrastive="none")  # not the few-shot default's
    study = open_study(output_dir, greater_is_better(metric), config.seed)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    if done:
        logger.info(f"search: resuming {output_dir / 'study.db'}: {done}/{n_trials} finished")
    start = time.perf_counter()
    while done < n_trials:
        study.optimize(
            _objective(config, space, run or _default_run(config), output_dir),
            n_trials=n_trials - done,
            callbacks=[_progress(n_trials, start, done)],
            catch=(FloatingPointError,),  # a diverging trial fails; the search goes on
        )
        now = len(study.get_trials(deepcopy=False, states=finished))
        if now == done:  # every trial failed: do not loop for ever
            break
        done = now
    write_results(study, config, space, output_dir, plots)
    return study


def objective_metric(config) -> str:
    """The validation metric the trials are compared on: the one each run selects its epoch on
    (a text run's, :func:`~nlp_transfer.text.loaders.selection_metric`)."""
    from .text.config import TextClassificationConfig
    from .text.loaders import selection_metric

    is_text = isinstance(config, TextClassificationConfig)
    return selection_metric(config) if is_text else config.metric_for_best_model


def _default_run(config) -> Callable[[object, list], dict]:
    from .tasks import task_of_config

    task = task_of_config(config)
    return lambda c, callbacks: task.run(c, callbacks)


def write_results(study, config, space: dict, output_dir: Path, plots: bool = True) -> dict:
    """``best_config.yaml`` (usable with ``--config``; its ``output_dir`` is ``output_dir/best``),
    ``search.json`` (every trial) and, with ``plots``, ``plots/optimization_history.png`` and
    ``plots/param_importances.png``.

    Returns:
        The content of ``search.json``.
    """
    best = _best(study)
    summary = {
        "objective": f"validation {config.metric_for_best_model} (best epoch)",
        "direction": study.direction.name.lower(),
        "search_space": space,
        "best_trial": None,
        "trials": [
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "params": t.params,
                "epochs_reported": len(t.intermediate_values),
                "duration_s": t.duration.total_seconds() if t.duration else None,
            }
            for t in study.trials
        ],
    }
    if best is not None:
        summary["best_trial"] = {"number": best.number, "value": best.value, "params": best.params}
        best_config = dataclasses.replace(
            config, **best.params, output_dir=str(output_dir / "best"), overwrite_output_dir=False
        )
        save_config(best_config, output_dir / "best_config.yaml")
        logger.info(
            f"search: best trial {best.number}: {config.metric_for_best_model} {best.value:.4f} "
            f"with {best.params}; configuration in {output_dir / 'best_config.yaml'}"
        )
    (output_dir / "search.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if plots and best is not None:
        write_search_plots(study, output_dir / "plots")
    return summary


def write_search_plots(study, plots_dir: Path) -> list[Path]:
    """Optuna's matplotlib optimisation history and parameter importances (the latter needs
    two completed trials and a parameter that varied; skipped with a log line otherwise)."""
    import warnings

    import matplotlib
    from optuna.exceptions import ExperimentalWarning

    matplotlib.use("Agg")
    warnings.filterwarnings("ignore", category=ExperimentalWarning)
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    plots_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (
        ("optimization_history", optuna_plots.plot_optimization_history),
        ("param_importances", optuna_plots.plot_param_importances),
    ):
        try:
            axes = draw(study)
        except (ValueError, RuntimeError) as error:
            logger.info(f"search: no {name} plot ({error})")
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.tight_layout()
        figure.savefig(plots_dir / f"{name}.png", dpi=120)
        plt.close(figure)
        written.append(plots_dir / f"{name}.png")
    return written


def search_main(argv: Sequence[str]) -> int:
    """``nlp-transfer search [--task TASK] [--search_space FILE] [--n_trials N] [task flags]``."""
    from .cli.config import parse_config
    from .tasks import DEFAULT_TASK, get_task, list_tasks
    from .training.checkpoint import exit_on_interrupt

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--task", default=DEFAULT_TASK, choices=list_tasks(searchable_only=True))
    pre.add_argument("--search_space", default=str(DEFAULT_SPACE))
    pre.add_argument("--n_trials", type=int, default=20)
    known, rest = pre.parse_known_args(argv)
    if known.n_trials < 1:
        raise SystemExit(f"error: --n_trials must be >= 1, got {known.n_trials}.")
    config = parse_config(
        get_task(known.task).config_class,
        rest,
        prog=f"nlp-transfer search --task {known.task} [--search_space FILE] [--n_trials N]",
    )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with exit_on_interrupt():
        search(
            config,
            known.search_space,
            known.n_trials,
            run=get_task(known.task).run,
        )
    return 0
