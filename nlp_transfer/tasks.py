"""The task registry: what ``nlp-transfer train --task``, ``predict``, ``evaluate``, ``export``,
``search`` and the model card dispatch through.

A task declares its name, config class, how to run it, how to recognise the ``output_dir`` it
saves, and how to export it (:class:`Task`); it registers itself with :func:`register_task` in
its package's ``task.py``. The built-in task packages are imported when a task is first looked
up, so this module imports nothing of the library and any layer may use it::

    from nlp_transfer.tasks import Task, register_task

    register_task(Task(name="ner", title="token classification", config_class=NerConfig,
                       modality="text", run=run_ner))

Modelled on timm's ``register_model``/``create_model``/``list_models`` and peft's per-method
registration: nothing outside a task's own package branches on its name.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The packages whose ``task`` module registers the built-in tasks, in this order.
BUILTIN_TASK_MODULES = (
    "nlp_transfer.text.task",
    "nlp_transfer.vision.task",
    "nlp_transfer.adaptation.task",
)
DEFAULT_TASK = "text"
# Checks a run can ask for before it trains (``--audit``): name -> the module registering it.
BUILTIN_DATA_CHECK_MODULES = {"audit": "nlp_transfer.audit.hook"}
_DATA_CHECKS: dict[str, Callable[..., Any]] = {}

_TASKS: dict[str, Task] = {}
_builtins_loaded = False


@dataclass(frozen=True)
class Task:
    """One task of ``nlp-transfer train --task NAME``.

    Attributes:
        name: The ``--task`` name.
        title: Title of the printed summary (``"sentiment"``).
        config_class: Its config dataclass (flags, defaults, checks).
        modality: What its saved models read at prediction: ``text`` or ``image``
            (``predict``/``evaluate`` read ``--text``/``--file`` or ``--image``/``--image_dir``;
            the model card's wording). None: it saves no single model (domain adaptation).
        run: ``run(config, callbacks) -> metrics``: train, evaluate and save; ``callbacks``
            (Trainer callbacks, e.g. a search's pruning) join the Trainer's defaults.
        recognizes: ``recognizes(model_dir) -> bool``: whether a directory holds a model this
            task saved. None: the task's models are recognised as another task's (the text
            tasks share the ``text`` task's).
        export: ``export(model_dir, output, *, opset, check, atol) -> dict``: ONNX export of a
            saved model, or None.
        searchable: Whether ``nlp-transfer search`` can tune it (one model per run, reporting
            ``best_metric``).
    """

    name: str
    title: str
    config_class: type
    modality: str | None
    run: Callable[[Any, Sequence[Any]], dict]
    recognizes: Callable[[Path], bool] | None = None
    export: Callable[..., dict] | None = None
    searchable: bool = True


def register_task(task: Task) -> Task:
    """Add ``task`` to the registry (the name must be new); returns it.

    Raises:
        ValueError: A task of that name is registered already.
    """
    if task.name in _TASKS:
        raise ValueError(f"A task named {task.name!r} is registered already.")
    _TASKS[task.name] = task
    return task


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_TASK_MODULES:
            importlib.import_module(module)


def list_tasks(searchable_only: bool = False) -> list[str]:
    """The registered task names, in registration order."""
    _load_builtins()
    return [n for n, t in _TASKS.items() if t.searchable or not searchable_only]


def get_task(name: str) -> Task:
    """The task registered as ``name``.

    Raises:
        ValueError: No such task (the message lists the ``--task`` choices).
    """
    _load_builtins()
    if name not in _TASKS:
        raise ValueError(f"--task {name!r} is not a task; choose one of {', '.join(_TASKS)}.")
    return _TASKS[name]


def task_of_config(config: object) -> Task:
    """The task whose config class ``config`` is (exactly, else the nearest base class).

    Raises:
        ValueError: No registered task takes this config class.
    """
    _load_builtins()
    for cls in type(config).__mro__:
        for task in _TASKS.values():
            if task.config_class is cls:
                return task
    raise ValueError(f"No registered task takes a {type(config).__name__}.")


def task_of_model_dir(model_dir: str | os.PathLike) -> Task:
    """The task that saved the model in ``model_dir``: the first whose ``recognizes`` says so,
    else the default ``text`` task (whose loader says what is missing)."""
    _load_builtins()
    path = Path(model_dir).expanduser()
    for task in _TASKS.values():
        if task.recognizes is not None and task.name != DEFAULT_TASK and task.recognizes(path):
            return task
    return _TASKS[DEFAULT_TASK]


def register_data_check(name: str, check: Callable[..., Any]) -> None:
    """Register ``check(config, dataset, accelerator)``, which a run calls on its loaded splits
    before training when asked (``--audit`` runs ``"audit"``).

    Raises:
        ValueError: A check of that name is registered already.
    """
    if name in _DATA_CHECKS:
        raise ValueError(f"A data check named {name!r} is registered already.")
    _DATA_CHECKS[name] = check


def run_data_check(name: str, *args: Any) -> Any:
    """Run the data check ``name`` (its package imported on first use) with ``args``.

    Raises:
        ValueError: No such check.
    """
    if name not in _DATA_CHECKS and name in BUILTIN_DATA_CHECK_MODULES:
        importlib.import_module(BUILTIN_DATA_CHECK_MODULES[name])
    if name not in _DATA_CHECKS:
        raise ValueError(f"No data check named {name!r}; known: {', '.join(_DATA_CHECKS)}.")
    return _DATA_CHECKS[name](*args)
