"""The Trainer: one Accelerate training loop for every task (text, images, domain adaptation).

    trainer = Trainer(model, config, accelerator=accelerator, train_dataloader=loaders["train"],
                      eval_dataloader=loaders["validation"], compute_metrics=metrics, plan=plan)
    result = trainer.train()
    test_logits, test_labels = trainer.predict(loaders["test"])

It trains for whole epochs, validates after each and keeps the best epoch's weights, unchanged
on a CPU, one GPU, several GPUs or several CPU processes under ``accelerate launch``. The
training step, :meth:`Trainer.training_step`, reads like accelerate's ``examples/nlp_example.py``.

Everything else is a callback (:mod:`nlp_transfer.training.callbacks`): progress, checkpoints,
early stopping, gradual unfreezing, trackers, a search's pruning. With checkpointing on, a resumed run continues at the batch where it stopped and, given the same
settings, ends with the same weights and metrics as an uninterrupted run: the data order is a
function of the seed and epoch (the library's samplers), skipped batches are skipped by index
(never loaded), and the RNG states of every process are restored. SIGINT/SIGTERM then write a
checkpoint and stop cleanly, as does a NaN loss (before the bad update).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.data_loader import skip_first_batches
from accelerate.logging import get_logger
from accelerate.utils import gather_object
from torch import nn
from torch.utils.data import DataLoader

from ..metrics import greater_is_better
from ..transfer.freeze import set_train_mode
from ..transfer.optim import create_optimizer
from ..transfer.plan import TransferPlan
from .arguments import TrainingConfig
from .callbacks import CallbackHandler, TrainerCallback, TrainerControl
from .checkpoint import (
    Checkpointer,
    StopSignals,
    TrainingInterrupted,
    nonfinite_loss_message,
    step_flags,
)
from .default_callbacks import default_callbacks
from .evaluation import MetricsFn, evaluate, forward_logits, predict_logits, prepared
from .schedule import create_scheduler
from .state import FitResult, ProcessState, TrainerState, snapshot_weights

logger = get_logger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Trainer:
    """Trains a model with its transfer plan; owns the run's state (``state``, ``control``).

    Args:
        model: ``model(**batch_without_labels)`` gives logits ``(batch, num_labels)``;
            unprepared, with its transfer plan applied (frozen parameters set).
        args: The run's settings by their ``TrainingArguments`` names (``num_train_epochs``,
            ``learning_rate``, ``metric_for_best_model``, ``save_strategy``...).
        accelerator: The run's Accelerator (its ``gradient_accumulation_steps`` applies).
        train_dataloader: Unprepared dict batches with ``labels``; its sampler has
            ``set_epoch`` (the library's samplers).
        eval_dataloader: Unprepared validation batches.
        compute_metrics: ``(labels (n,), logits (n, C)) -> dict`` of metrics.
        loss_fn: ``(logits, labels) -> scalar``; cross-entropy by default.
        plan: The transfer plan: its optimizer groups, L2-SP and gradual unfreezing. None: plain
            AdamW over the trainable parameters (e.g. a feature head).
        regularizer: A task's own term added to every batch's loss, not logged (e.g. a
            domain-alignment loss), on top of the plan's L2-SP.
        callbacks: Added after the defaults that ``args`` asks for (progress, trackers,
            gradual unfreezing; then these; then early stopping and the checkpoint schedule).
        prefix_cache: A frozen-prefix wrapper of ``model`` that trains in its place (it
            exposes ``disable()``); the trained weights are ``model``'s.

    Raises:
        ValueError: No trainable parameter, or a strategy that needs a block view the model
            family lacks.
    """

    def __init__(
        self,
        model: nn.Module,
        args: TrainingConfig,
        *,
        accelerator: Accelerator,
        train_dataloader: DataLoader,
        eval_dataloader: DataLoader,
        compute_metrics: MetricsFn,
        loss_fn: LossFn = F.cross_entropy,
        plan: TransferPlan | None = None,
        regularizer: Callable[[], torch.Tensor] | None = None,
        callbacks: Iterable[TrainerCallback] = (),
        prefix_cache: nn.Module | None = None,
    ):
        self.args, self.accelerator = args, accelerator
        self.compute_metrics, self.loss_fn = compute_metrics, loss_fn
        self.pool = getattr(args, "chunk_pooling", "mean")  # a long text's windows: its logits
        # the unfreezer is made before the optimizer, which must hold every block
        unfreezer = plan.unfreezer(model) if plan is not None else None
        optimizer, l2sp = (
            plan.optimizer(model)
            if plan is not None
            else (create_optimizer(model, args.learning_rate, args.weight_decay), None)
        )
        self.regularizer = _sum_of(l2sp, regularizer)
        scheduler = create_scheduler(
            optimizer,
            num_batches_per_epoch=len(train_dataloader),
            num_train_epochs=args.num_train_epochs,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            warmup_ratio=args.warmup_ratio,
            lr_scheduler_type=args.lr_scheduler_type,
        )
        self.unprepared_model, self.prefix_cache = model, prefix_cache
        (
            self.model,
            self.optimizer,
            self.lr_scheduler,
            self.train_dataloader,
            self.eval_dataloader,
        ) = accelerator.prepare(
            prefix_cache if prefix_cache is not None else model,
            optimizer,
            scheduler,
            train_dataloader,
            eval_dataloader,
        )
        self.checkpointer = Checkpointer(
            args.output_dir, args.save_strategy, args.save_steps, args.save_total_limit
        )
        self.callback_handler = CallbackHandler(
            default_callbacks(args, accelerator, unfreezer, self.checkpointer, callbacks)
        )
        self.control = TrainerControl()
        self.state = TrainerState(
            num_processes=accelerator.num_processes,
            num_batches_per_epoch=len(self.train_dataloader),
        )
        self.process = ProcessState.empty(accelerator.device)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.signals: StopSignals | None = None
        self.stop_requested = False

    @property
    def num_batches(self) -> int:
        """Training batches per epoch, per process."""
        return self.state.num_batches_per_epoch

    @property
    def trained_model(self) -> nn.Module:
        """The model holding the trained weights: the prepared model, or the plain model when a
        prefix cache trained in its place (the cache is then disabled: the model computes its
        prefix again)."""
        if self.prefix_cache is None:
            return self.model
        if hasattr(self.prefix_cache, "disable"):
            self.prefix_cache.disable()
        return self.unprepared_model

    def train(self, resume_from_checkpoint: str | Path | None = None) -> FitResult:
        """Train for ``args.num_train_epochs`` epochs, validating after each.

        Args:
            resume_from_checkpoint: A checkpoint directory to continue from, exactly.

        Returns:
            A :class:`FitResult`; the model holds the best epoch's weights
            (``args.load_best_model_at_end``).

        Raises:
            KeyError: ``metric_for_best_model`` is not an evaluation metric.
            FloatingPointError: NaN or infinite loss; the message names the last good checkpoint.
            TrainingInterrupted: SIGINT or SIGTERM while checkpointing (after saving).
            ValueError: The checkpoint is from a run with other processes or batches per epoch.
            CallbackError: A callback raised on another process.
        """
        if resume_from_checkpoint is not None:
            self.state, self.process, self.best_state = Checkpointer.load(
                self.accelerator, resume_from_checkpoint, num_batches_per_epoch=self.num_batches
            )
        with StopSignals(enabled=self.checkpointer.enabled) as self.signals:
            try:
                self.callback_handler.on_train_begin(self)
                for epoch in range(self.state.epoch, self.args.num_train_epochs + 1):
                    if self.state.stopped_early or self.control.should_training_stop:
                        break
                    self._train_epoch(epoch)
                    self._evaluate_epoch(epoch)
                    self._end_epoch(epoch)
            finally:
                self.callback_handler.on_train_end(self)
        return self._finish()

    def _train_epoch(self, epoch: int) -> None:
        """Epoch ``epoch`` (1-based): its remaining batches, in the order of seed and epoch."""
        state = self.state
        state.epoch = epoch
        self.train_dataloader.set_epoch(epoch - 1)  # the order is a function of seed + epoch
        batches = self.train_dataloader
        if state.batches_done:  # resumed mid-epoch: skip seen batches by index
            batches = skip_first_batches(self.train_dataloader, state.batches_done)
            batches.set_epoch(epoch - 1)
        self.callback_handler.on_epoch_begin(self)
        set_train_mode(self.model)
        self._epoch_start, runtime_before = time.perf_counter(), state.train_runtime_s
        for batch in batches:
            self.callback_handler.on_step_begin(self)
            logits, loss = self.training_step(batch)
            state.batches_done += 1
            self.process.add(loss, logits, batch["labels"])
            if not self.accelerator.sync_gradients:
                self.callback_handler.on_substep_end(self)
                continue
            state.global_step += 1
            self.callback_handler.on_step_end(self)
            if self.control.should_save:
                state.train_runtime_s = runtime_before + time.perf_counter() - self._epoch_start
                self._save()
        state.train_runtime_s = runtime_before + time.perf_counter() - self._epoch_start

    def training_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, loss, backward and (at the end of an accumulation cycle) an optimizer step.

        Args:
            batch: A dict batch with ``labels``.

        Returns:
            ``(logits (batch, num_labels) float32, loss scalar)``, detached.

        Raises:
            FloatingPointError: The loss is NaN or infinite on some process (before the update).
        """
        accelerator = self.accelerator
        with accelerator.accumulate(self.model):
            logits = forward_logits(self.model, batch).float()
            loss = self.loss_fn(logits, batch["labels"])
            self._check_step(loss)
            if self.regularizer is not None:
                accelerator.backward(loss + self.regularizer())
            else:
                accelerator.backward(loss)
            if accelerator.sync_gradients and self.args.max_grad_norm:
                accelerator.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return logits.detach(), loss.detach()

    def evaluate(self, dataloader: DataLoader | None = None, desc: str = "Validation") -> dict:
        """Metrics of ``dataloader`` (default: the validation split), plus the mean ``loss``."""
        loader = prepared(self.accelerator, dataloader, self.eval_dataloader)
        return evaluate(self.model, loader, self.accelerator, self.compute_metrics, desc, self.pool)

    def predict(self, dataloader: DataLoader | None = None, desc: str = "Test"):
        """``(logits (n, C) float32, labels (n,))`` of every example, in dataset order.

        Args:
            dataloader: Unprepared (or prepared) batches; default the validation split.
            desc: The progress bar's title.
        """
        loader = prepared(self.accelerator, dataloader, self.eval_dataloader)
        return predict_logits(self.model, loader, self.accelerator, desc, self.pool)

    def _evaluate_epoch(self, epoch: int) -> None:
        """Training metrics of the epoch, validation, the epoch's record, the best epoch, then
        ``on_evaluate``.

        Raises:
            KeyError: ``metric_for_best_model`` is not among the validation metrics.
        """
        accelerator, process, args = self.accelerator, self.process, self.args
        count = torch.tensor(float(process.loss_count), device=accelerator.device)
        stats = accelerator.reduce(torch.stack([process.loss_sum, count]), "sum")
        train_metrics = self._training_metrics()
        metrics = self.evaluate()
        if args.metric_for_best_model not in metrics:
            raise KeyError(
                f"--metric_for_best_model {args.metric_for_best_model!r} is not an evaluation "
                f"metric; choose one of "
                f"{', '.join(k for k, v in metrics.items() if isinstance(v, float))}."
            )
        self.state.history.append(
            {
                "epoch": epoch,
                "train_loss": float(stats[0] / stats[1]),
                **{f"train_{k}": v for k, v in train_metrics.items() if k != "loss"},
                "learning_rate": self.lr_scheduler.get_last_lr()[0],
                **{f"eval_{k}": v for k, v in metrics.items()},
                "epoch_runtime_s": time.perf_counter() - self._epoch_start,
            }
        )
        self._keep_best(epoch, metrics[args.metric_for_best_model])
        self.callback_handler.on_evaluate(self, metrics)

    def _training_metrics(self) -> dict:
        """Scalar metrics of the epoch's training-pass predictions, gathered from every process.

        They come for free (the logits were computed for the loss) and show over- or
        under-fitting beside the validation metrics; they are measured with dropout on and
        weights changing, as in Keras' ``accuracy`` vs ``val_accuracy``.
        """
        local = (torch.cat(self.process.logits).numpy(), torch.cat(self.process.labels).numpy())
        parts = gather_object([local]) if self.accelerator.num_processes > 1 else [local]
        all_logits = np.concatenate([p[0] for p in parts])
        all_labels = np.concatenate([p[1] for p in parts])
        metrics = self.compute_metrics(all_labels, all_logits)
        return {k: v for k, v in metrics.items() if isinstance(v, float)}

    def _keep_best(self, epoch: int, value: float) -> None:
        """Record ``epoch`` as the best if ``value`` improves on the best so far; with
        ``load_best_model_at_end``, copy its weights (to CPU) unless it is the last epoch,
        whose weights the model holds at the end anyway."""
        state, args = self.state, self.args
        greater = greater_is_better(args.metric_for_best_model)
        best = state.best_metric
        if not (best is None or (value > best if greater else value < best)):
            state.epochs_without_improvement += 1
            return
        state.best_epoch, state.best_metric = epoch, value
        state.epochs_without_improvement = 0
        if args.load_best_model_at_end and epoch < args.num_train_epochs:
            self.best_state = snapshot_weights(
                self.accelerator.unwrap_model(self.model), self.optimizer
            )
        elif args.load_best_model_at_end:
            self.best_state = None  # the final weights are the best ones

    def _end_epoch(self, epoch: int) -> None:
        """The state moves to the next epoch; ``on_epoch_end``; the end-of-epoch checkpoint."""
        self.state.epoch, self.state.batches_done = epoch + 1, 0
        self.process = ProcessState.empty(self.accelerator.device)
        self.callback_handler.on_epoch_end(self)
        if self.control.should_save:
            self._save()

    def _save(self) -> None:
        """Write a checkpoint (collective), ``on_save``; stop here if a signal asked to.

        Raises:
            TrainingInterrupted: A stop signal arrived (after the checkpoint).
        """
        self.control.should_save = False
        saved = self.checkpointer.save(self.accelerator, self.state, self.process, self.best_state)
        self.callback_handler.on_save(self, saved)
        if self.stop_requested:
            raise TrainingInterrupted(self.signals.received or signal.SIGTERM, saved)

    def _check_step(self, loss: torch.Tensor) -> None:
        """Stop before the update on a non-finite loss; note a stop signal (agreed by every
        process: :func:`~nlp_transfer.training.checkpoint.step_flags`).

        Raises:
            FloatingPointError: The loss is NaN or infinite on some process.
        """
        nonfinite, signalled = step_flags(loss, self.signals, self.accelerator)
        if nonfinite:
            raise FloatingPointError(nonfinite_loss_message(loss, self.state, self.checkpointer))
        self.stop_requested = self.stop_requested or signalled

    def _finish(self) -> FitResult:
        """Restore the best epoch's weights (if asked and not the current ones); the result."""
        state = self.state
        if self.best_state is not None and self.args.load_best_model_at_end:
            self.accelerator.unwrap_model(self.model).load_state_dict(self.best_state, strict=False)
            logger.info(
                f"Restored the weights of epoch {state.best_epoch} "
                f"(best {self.args.metric_for_best_model} {state.best_metric:.4f})"
            )
        num_examples = len(self.train_dataloader.dataset)  # the whole dataset, all processes
        return FitResult(
            history=state.history,
            best_epoch=state.best_epoch,
            best_metric=state.best_metric,
            train_runtime_s=state.train_runtime_s,
            train_samples_per_second=(
                num_examples * len(state.history) / max(state.train_runtime_s, 1e-9)
            ),
            global_step=state.global_step,
            stopped_early=state.stopped_early,
        )


def _sum_of(*terms):
    """The sum of the loss terms that are not None (None when there is none)."""
    terms = [t for t in terms if t is not None]
    if len(terms) <= 1:
        return terms[0] if terms else None
    return lambda: sum(t() for t in terms)
