"""The race under several processes (``accelerate launch --num_processes N``).

Every process trains each candidate together (its data-parallel share); the main process alone
keeps the Optuna study, fits the TF-IDF candidate, reads the finished runs and writes the
leaderboard. Whatever the main process decides (a candidate resumed or skipped, its leaderboard
row, the result) reaches the others through ``accelerate.utils.broadcast_object_list``, so that
every process takes the same path and none waits alone in a collective operation.
"""

from __future__ import annotations

from typing import Any

__all__ = ["is_main_process", "process_state", "share", "wait_for_everyone"]


def process_state():
    """The process state, on the CPU where there is no GPU, as the training runs'
    ``Accelerator`` has it (created first without ``cpu=True``, a CPU run under ``accelerate
    launch --multi_gpu`` would be one process per launch, unaware of the others)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    """Whether this is the process that keeps the study and writes the outputs."""
    return process_state().is_main_process


def share(value: Any) -> Any:
    """The main process's ``value`` on every process (picklable; returned as is on one).

    Every process must call it at the same point, as with any collective operation.
    """
    state = process_state()
    if state.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value if state.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def wait_for_everyone() -> None:
    """A barrier: returns once every process reached it."""
    process_state().wait_for_everyone()
