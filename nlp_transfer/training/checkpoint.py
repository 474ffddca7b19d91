"""Checkpoints a run can be resumed from exactly, written atomically.

A checkpoint directory ``output_dir/checkpoints/checkpoint-<global_step>`` holds:

- what ``accelerator.save_state`` writes: model (safetensors), optimizer, LR scheduler, gradient
  scaler, and the RNG states (Python, NumPy, torch, CUDA) of every process;
- ``trainer_state.json``: the epoch in progress and the batches of it already done, optimizer
  steps, the per-epoch history, the best epoch and metric so far, the early-stopping count, and
  the run's shape (processes, batches per epoch) so that a mismatched resume is refused;
- ``process_<rank>.safetensors``: each process's running loss and the training-pass logits and
  labels of the current epoch (for the epoch's training metrics);
- ``best_model.safetensors``: the best epoch's trainable weights when they are not the current
  ones (``load_best_model_at_end``).

The data order is not stored: it is a function of ``seed`` and the epoch (our samplers), so a
resumed run skips the batches already seen (``accelerator.skip_first_batches``, which skips
indices, not loaded data) and then sees exactly the batches an uninterrupted run would.

Writing goes to ``checkpoint-<step>.tmp`` first and is renamed when complete, so a crash while
writing never leaves a directory that looks like a finished checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from safetensors.torch import load_file, save_file

from .state import ProcessState, TrainerState

logger = get_logger(__name__)

SAVE_STRATEGIES = ("no", "epoch", "steps")
STATE_FILE = "trainer_state.json"
BEST_FILE = "best_model.safetensors"
_NAME = re.compile(r"^checkpoint-(\d+)$")
# Accelerate logs one INFO line per file it saves or loads (about eight per checkpoint).
ACCELERATE_STATE_LOGGERS = ("accelerate.accelerator", "accelerate.checkpointing")


@contextmanager
def quiet_loggers(names: tuple[str, ...] = ACCELERATE_STATE_LOGGERS, level: int = logging.WARNING):
    """Raise the level of the loggers ``names`` to at least ``level`` inside the block.

    Used around ``accelerator.save_state``/``load_state`` so that a checkpoint is one log
    line (ours), not one per file; their warnings and errors still show.
    """
    loggers = [logging.getLogger(name) for name in names]
    previous = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(level, lg.getEffectiveLevel()))
    try:
        yield
    finally:
        for lg, old in zip(loggers, previous, strict=True):
            lg.setLevel(old)


class Checkpointer:
    """Decides when to checkpoint, writes checkpoints atomically, prunes and finds them.

    Args:
        output_dir: The run's output directory; checkpoints go to ``output_dir/checkpoints``.
        save_strategy: ``"no"``, ``"epoch"`` (after each epoch's evaluation) or ``"steps"``
            (every ``save_steps`` optimizer steps, and after each epoch).
        save_steps: Optimizer steps between checkpoints under ``"steps"``.
        save_total_limit: Keep at most this many checkpoints (oldest deleted first); None
            keeps all.

    Raises:
        ValueError: Unknown ``save_strategy``, or a non-positive ``save_steps`` /
            ``save_total_limit``.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        save_strategy: str = "no",
        save_steps: int = 500,
        save_total_limit: int | None = None,
    ):
        if save_strategy not in SAVE_STRATEGIES:
            raise ValueError(
                f"--save_strategy must be one of {', '.join(SAVE_STRATEGIES)}, got {save_strategy!r}."
            )
        if save_steps <= 0:
            raise ValueError(f"--save_steps must be positive, got {save_steps}.")
        if save_total_limit is not None and save_total_limit <= 0:
            raise ValueError(f"--save_total_limit must be positive, got {save_total_limit}.")
        self.dir = Path(output_dir).expanduser() / "checkpoints"
        self.save_strategy = save_strategy
        self.save_steps = save_steps
        self.save_total_limit = save_total_limit
        self.last_saved: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.save_strategy != "no"

    def due_after_step(self, global_step: int) -> bool:
        """Whether to checkpoint after optimizer step ``global_step``."""
        return self.save_strategy == "steps" and global_step % self.save_steps == 0

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (unfinished ``.tmp`` directories excluded)."""
        if not self.dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := _NAME.match(p.name))]
        return [p for _, p in sorted(found) if (p / STATE_FILE).exists()]

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        found = self.checkpoints()
        return found[-1] if found else None

    def save(
        self,
        accelerator: Accelerator,
        state: TrainerState,
        process: ProcessState,
        best_state: dict[str, torch.Tensor] | None,
    ) -> Path:
        """Write a checkpoint of the current step (collective: every process must call it).

        Returns:
            The checkpoint directory.
        """
        final = self.dir / f"checkpoint-{state.global_step}"
        tmp = self.dir / f"checkpoint-{state.global_step}.tmp"
        if accelerator.is_main_process:
            for stale in self.dir.glob("checkpoint-*.tmp"):  # left by a crash mid-write
                shutil.rmtree(stale, ignore_errors=True)
            tmp.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        with quiet_loggers():
            accelerator.save_state(str(tmp), safe_serialization=True)
        save_file(
            {
                "loss_sum": process.loss_sum.detach().reshape(1).cpu().float(),
                "loss_count": torch.tensor([process.loss_count]),
                "logits": torch.cat(process.logits) if process.logits else torch.zeros(0),
                "labels": torch.cat(process.labels) if process.labels else torch.zeros(0),
            },
            str(tmp / f"process_{accelerator.process_index}.safetensors"),
        )
        accelerator.wait_for_everyone()
        state.has_best_state = best_state is not None
        state.epochs_completed = len(state.history)
        if accelerator.is_main_process:
            if best_state is not None:
                save_file({k: v.contiguous() for k, v in best_state.items()}, str(tmp / BEST_FILE))
            (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=2), encoding="utf-8")
            if final.exists():  # a checkpoint of the same step from an earlier attempt
                shutil.rmtree(final)
            os.replace(tmp, final)
            self._prune()
        accelerator.wait_for_everyone()
        self.last_saved = final
        logger.info(f"Checkpoint saved: {final} (step {state.global_step}, {state.position()})")
        return final

    def _prune(self) -> None:
        if self.save_total_limit is None:
            return
        for old in self.checkpoints()[: -self.save_total_limit]:
            shutil.rmtree(old, ignore_errors=True)

    @staticmethod
    def load(
        accelerator: Accelerator,
        path: str | os.PathLike,
        num_batches_per_epoch: int | None = None,
    ) -> tuple[TrainerState, ProcessState, dict[str, torch.Tensor] | None]:
        """Restore model, optimizer, scheduler, scaler and RNG states from ``path``; return the rest.

        Call it after ``accelerator.prepare`` (and after anything that draws random numbers
        during set-up), so that the restored RNG states are the ones training continues with.

        Args:
            accelerator: The run's Accelerator, holding the prepared objects.
            path: A checkpoint directory.
            num_batches_per_epoch: This run's training batches per epoch, checked against the
                checkpoint's.

        Returns:
            ``(trainer_state, this_process_state, best_state_or_None)``.

        Raises:
            FileNotFoundError: ``path`` is not a complete checkpoint.
            ValueError: The checkpoint comes from a run with another number of processes or of
                batches per epoch.
        """
        path = Path(path).expanduser()
        if not (path / STATE_FILE).exists():
            raise FileNotFoundError(
                f"--resume_from_checkpoint {path}: not a complete checkpoint ({STATE_FILE} missing)."
            )
        process_file = path / f"process_{accelerator.process_index}.safetensors"
        state = TrainerState(**json.loads((path / STATE_FILE).read_text(encoding="utf-8")))
        if state.num_processes != accelerator.num_processes:
            raise ValueError(
                f"--resume_from_checkpoint {path} was written by a run on {state.num_processes} "
                f"process(es); this one has {accelerator.num_processes}. Resume with the same "
                "number of processes (the data order and optimizer state are per process)."
            )
        if (
            num_batches_per_epoch is not None
            and state.num_batches_per_epoch != num_batches_per_epoch
        ):
            raise ValueError(
                f"--resume_from_checkpoint {path} was written by a run with "
                f"{state.num_batches_per_epoch} training batches per epoch; this one has "
                f"{num_batches_per_epoch}. Resume with the same data, --per_device_train_batch_size "
                "and --max_train_samples as the interrupted run."
            )
        with quiet_loggers():
            accelerator.load_state(str(path))
        saved = load_file(str(process_file))
        process = ProcessState(
            loss_sum=saved["loss_sum"].reshape(()).to(accelerator.device),
            loss_count=int(saved["loss_count"].item()),
            logits=[saved["logits"]] if saved["logits"].numel() else [],
            labels=[saved["labels"].long()] if saved["labels"].numel() else [],
        )
        best = load_file(str(path / BEST_FILE)) if state.has_best_state else None
        logger.info(f"Resumed from {path}: {state.position()}, step {state.global_step}")
        return state, process, best


def resolve_resume_path(output_dir: str | os.PathLike, resume_from_checkpoint: str) -> Path:
    """``--resume_from_checkpoint``: ``latest`` (newest in ``output_dir/checkpoints``) or a path.

    Raises:
        FileNotFoundError: No checkpoint found.
    """
    if resume_from_checkpoint == "latest":
        latest = Checkpointer(output_dir).latest()
        if latest is None:
            raise FileNotFoundError(
                f"--resume_from_checkpoint latest: no complete checkpoint in "
                f"{Path(output_dir) / 'checkpoints'}; was the run started with --save_strategy "
                "epoch or steps?"
            )
        return latest
    path = Path(resume_from_checkpoint).expanduser()
    if not (path / STATE_FILE).exists():
        raise FileNotFoundError(
            f"--resume_from_checkpoint {resume_from_checkpoint}: not a complete checkpoint "
            f"({STATE_FILE} missing)."
        )
    return path


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM after writing a checkpoint.

    A ``KeyboardInterrupt``, so code that handles Ctrl-C keeps working.

    Attributes:
        signum: The signal received.
        checkpoint: The checkpoint written before stopping.
    """

    def __init__(self, signum: int, checkpoint: Path):
        super().__init__(
            f"Training interrupted by {signal.Signals(signum).name}; checkpoint saved to "
            f"{checkpoint}. Continue with --resume_from_checkpoint {checkpoint} (or latest)."
        )
        self.signum = signum
        self.checkpoint = checkpoint


class StopSignals:
    """Context manager: SIGINT and SIGTERM ask training to stop at the next step boundary.

    Inside the block the first SIGINT/SIGTERM only sets :attr:`received`; the training loop
    then writes a checkpoint and raises :class:`TrainingInterrupted`. A second signal aborts at
    once (the default behaviour). Handlers can only be installed from the main thread; elsewhere,
    or when ``enabled`` is False, this does nothing.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:  # second signal: give up waiting for the step to end
            signal.signal(signum, signal.SIG_DFL)
            raise KeyboardInterrupt
        self.received = signum
        logging.getLogger(__name__).warning(
            f"{signal.Signals(signum).name} received: saving a checkpoint after this step, "
            "then stopping (send it again to abort without saving)."
        )

    def __enter__(self) -> StopSignals:
        if self.enabled:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


@contextmanager
def exit_on_interrupt():
    """For a recipe's ``__main__``: turn :class:`TrainingInterrupted` into a message and exit code.

    The exit status is ``128 + signal`` (130 for SIGINT, 143 for SIGTERM), as a shell reports a
    process killed by that signal, so schedulers see the run as interrupted, not finished.
    """
    try:
        yield
    except TrainingInterrupted as interrupted:
        print(f"\n{interrupted}", file=sys.stderr)
        raise SystemExit(128 + interrupted.signum) from None


def step_flags(
    loss: torch.Tensor, signals: StopSignals | None, accelerator: Accelerator
) -> tuple[bool, bool]:
    """``(loss not finite on some process, a stop signal reached some process)``.

    One small all-reduce per batch under several processes, so that every process takes the
    same decision at the same batch (a process that stopped alone would hang the others).
    """
    received = signals is not None and signals.received is not None
    flags = torch.tensor(
        [float(not torch.isfinite(loss.detach()).item()), float(received)],
        device=accelerator.device,
    )
    if accelerator.num_processes > 1:
        flags = accelerator.reduce(flags, "sum")
    return bool(flags[0] > 0), bool(flags[1] > 0)


def nonfinite_loss_message(
    loss: torch.Tensor, state: TrainerState, checkpointer: Checkpointer
) -> str:
    """What to say when the loss became NaN or infinite: where, likely causes, the last good
    checkpoint to resume from."""
    last = checkpointer.last_saved or checkpointer.latest()
    where = (
        f"The last good checkpoint, {last}, is intact; resume from it with "
        f"--resume_from_checkpoint {last} after changing what diverged."
        if last is not None
        else "No checkpoint was written (see --save_strategy)."
    )
    return (
        f"The training loss is {loss.item()} at optimizer step {state.global_step + 1} (epoch "
        f"{state.epoch}, batch {state.batches_done + 1}); training stopped before this update. "
        f"Typical causes: a --learning_rate too high for this model, fp16 overflow "
        f"(--mixed_precision bf16 or no), or bad inputs. {where}"
    )
