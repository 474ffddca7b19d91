"""Training budget, learning rate and truncation length chosen from the user's data ("auto"
settings of a text run).

:class:`~nlp_transfer.text.config.TextClassificationConfig` leaves ``--num_train_epochs`` and
``--learning_rate`` unset by default; :func:`resolve_auto_settings` turns them into numbers at
the start of the run, logs them and the rule, and the resolved values are what ``config.yaml``
records. The sentiment and spam recipes set both explicitly and never reach this code.

The rule, from the measurements in issue 20 (all-MiniLM-L6-v2, 2-core CPU):

* Sentiment sentences, 2 classes, 8,000 training examples: 2 epochs at 5e-5 are enough
  (~500 optimizer steps at batch 32).
* A 5-class set of 4,000 passages: 2 epochs at 5e-5 (200 steps) stop with the training accuracy
  at 0.59 and still rising, test accuracy 0.55, 11 points below TF-IDF; 6 epochs at 1e-4 reach
  0.695, best at epoch 5 (~500 steps).
* 20 Newsgroups, 20 classes, 4,000 posts (``benchmarks/results/defaults_many_class.md``): 8
  epochs at 1e-4 (1,000 steps) end with the validation accuracy still rising (0.867, 0.872,
  0.878 over the last three epochs) and the test accuracy level with TF-IDF (0.7975 vs 0.7991):
  the head of a many-class task needs more steps. With the budget below (10 epochs, 1,250
  steps) the same command reaches 0.8084 against TF-IDF's 0.7991.

Hence:

* ``num_train_epochs`` is a *maximum*: enough epochs for about :data:`TARGET_OPTIMIZER_STEPS`
  optimizer steps, times ``sqrt(num_labels / MANY_CLASSES)`` when there are more than
  :data:`MANY_CLASSES` classes (2,000 steps for 20 classes), within [:data:`MIN_EPOCHS`,
  :data:`MAX_EPOCHS`]. Early stopping
  (``--early_stopping_patience``, 2 by default for this config) ends the run once the
  validation metric stops improving, and the best epoch's weights are kept.
* ``learning_rate`` is 5e-5 (the upper end of the BERT paper's grid {2e-5, 3e-5, 5e-5}), doubled
  to 1e-4 for small data (< :data:`SMALL_DATA` training examples) or many classes
  (>= :data:`MANY_CLASSES`), where fewer steps must move the new head further; halved for large
  encoders (hidden size >= 1024, known to diverge at high rates: Mosbach et al. 2021); 1e-3 when
  every encoder block is frozen (only the head trains, which wants a much larger rate).
* ``max_seq_length`` (:func:`auto_max_seq_length`) covers :data:`SEQ_LENGTH_PERCENTILE`% of
  the training texts (pairs: both texts together), measured on a sample of
  :data:`SEQ_LENGTH_SAMPLE`, rounded up to a multiple of :data:`SEQ_LENGTH_MULTIPLE`; never below
  :data:`MIN_AUTO_SEQ_LENGTH` (the old fixed default: sentence-level sets keep their length and,
  with dynamic padding, their speed), never above the model's maximum, and on a CPU never above
  :data:`MAX_AUTO_SEQ_LENGTH_CPU` (measured: on pairs of paragraphs 256 tokens took 2.2x the time
  of 128 for no better test accuracy; ``--max_seq_length`` given explicitly goes further). So
  on a CPU the length stays 128 and the log says how many texts that cuts; on a GPU it follows
  the data up to the model's maximum.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from accelerate.logging import get_logger
from datasets import Dataset
from transformers import PreTrainedTokenizerBase
from transformers import logging as hf_logging

from .few_shot import resolve_contrastive
from .windows import windows_per_text

logger = get_logger(__name__)

TARGET_OPTIMIZER_STEPS = 1000
MIN_EPOCHS = 3
MAX_EPOCHS = 10
BASE_LEARNING_RATE = 5e-5
SMALL_DATA = 5000
MANY_CLASSES = 5
LARGE_HIDDEN_SIZE = 1024
HEAD_ONLY_LEARNING_RATE = 1e-3
SEQ_LENGTH_PERCENTILE = 95
SEQ_LENGTH_SAMPLE = 2000
SEQ_LENGTH_MULTIPLE = 32
MIN_AUTO_SEQ_LENGTH = 128
# On a CPU: 256 instead of 128 tokens on pairs of paragraphs (98% cut at 128, 39% at 256) took
# 2.2x the time for no better test accuracy (0.6433 vs 0.6467; benchmarks/results/seq_length.md).
MAX_AUTO_SEQ_LENGTH_CPU = 128


def target_optimizer_steps(num_labels: int | None = None) -> int:
    """Optimizer steps to aim for: :data:`TARGET_OPTIMIZER_STEPS`, more for many classes.

    Args:
        num_labels: Number of classes (None or up to :data:`MANY_CLASSES`: the base budget).

    Returns:
        ``TARGET_OPTIMIZER_STEPS * sqrt(num_labels / MANY_CLASSES)`` rounded, never below
        ``TARGET_OPTIMIZER_STEPS`` (1,000 for 2-5 classes, 1,414 for 10, 2,000 for 20).
    """
    if num_labels is None or num_labels <= MANY_CLASSES:
        return TARGET_OPTIMIZER_STEPS
    return round(TARGET_OPTIMIZER_STEPS * math.sqrt(num_labels / MANY_CLASSES))


def auto_num_train_epochs(
    num_train_examples: int, batch_size: int, target_steps: int = TARGET_OPTIMIZER_STEPS
) -> int:
    """The maximum number of epochs: about ``target_steps`` optimizer steps, within [3, 10].

    Args:
        num_train_examples: Size of the training split.
        batch_size: Examples per optimizer step, all processes and accumulation included.
        target_steps: Optimizer steps to aim for (:func:`target_optimizer_steps`).

    Returns:
        ``ceil(target_steps / steps_per_epoch)`` clipped to [MIN_EPOCHS, MAX_EPOCHS].
    """
    steps_per_epoch = max(1, math.ceil(num_train_examples / max(batch_size, 1)))
    return min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(target_steps / steps_per_epoch)))


def auto_learning_rate(
    num_train_examples: int, num_labels: int, hidden_size: int | None, head_only: bool = False
) -> tuple[float, str]:
    """The peak learning rate for the data, model and strategy, with the reason (for the log).

    Args:
        num_train_examples: Size of the training split.
        num_labels: Number of classes.
        hidden_size: The encoder's hidden size (None if unknown).
        head_only: Every encoder block is frozen; only the head trains.

    Returns:
        ``(learning_rate, reason)``.
    """
    if head_only:
        return HEAD_ONLY_LEARNING_RATE, "encoder frozen, head only"
    rate, reasons = BASE_LEARNING_RATE, []
    if num_train_examples < SMALL_DATA:
        reasons.append(f"{num_train_examples:,} < {SMALL_DATA:,} training examples")
    if num_labels >= MANY_CLASSES:
        reasons.append(f"{num_labels} >= {MANY_CLASSES} classes")
    if reasons:
        rate *= 2
    if hidden_size is not None and hidden_size >= LARGE_HIDDEN_SIZE:
        rate /= 2
        reasons.append(f"large encoder (hidden size {hidden_size})")
    return rate, "; ".join(reasons) or "base rate"


def resolve_auto_settings(
    config,
    num_train_examples: int,
    num_labels: int,
    model=None,
    *,
    num_processes: int = 1,
    rows_per_example: float = 1.0,
):
    """``config`` with its unset (auto) ``num_train_epochs`` and ``learning_rate`` chosen; logged.

    Args:
        config: A :class:`~nlp_transfer.text.config.TextClassificationConfig`.
        num_train_examples: Size of the training split.
        num_labels: Number of classes.
        model: The classifier (its ``config.hidden_size`` and ``num_hidden_layers`` are read).
        num_processes: Training processes (the global batch is per-device x processes x
            accumulation).
        rows_per_example: Training rows per example (``--long_text_strategy chunks``: the
            expected windows per text); the epochs are sized on rows, so that windows do not
            multiply the step budget.

    Returns:
        The same config when nothing is unset, else a copy with numbers in place of None.
    """
    changes = {}
    batch = config.per_device_train_batch_size * config.gradient_accumulation_steps * num_processes
    if config.num_train_epochs is None:
        target = target_optimizer_steps(num_labels)
        rows = math.ceil(num_train_examples * rows_per_example)
        epochs = auto_num_train_epochs(rows, batch, target)
        changes["num_train_epochs"] = epochs
        steps = math.ceil(rows / batch)
        for_classes = f" for {num_labels} classes" if target != TARGET_OPTIMIZER_STEPS else ""
        logger.info(
            f"--num_train_epochs auto: at most {epochs} epochs ({steps} steps each"
            + (f", {rows_per_example:.2f} windows per text" if rows_per_example != 1.0 else "")
            + f"; about "
            f"{target:,} steps in all{for_classes}, within [{MIN_EPOCHS}, {MAX_EPOCHS}]), early "
            f"stopping patience {config.early_stopping_patience}"
        )
    if config.learning_rate is None:
        model_config = getattr(model, "config", None)
        hidden = getattr(model_config, "hidden_size", None)
        layers = getattr(model_config, "num_hidden_layers", None)
        head_only = layers is not None and config.freeze_layers >= layers
        rate, reason = auto_learning_rate(num_train_examples, num_labels, hidden, head_only)
        changes["learning_rate"] = rate
        logger.info(f"--learning_rate auto: {rate:g} ({reason})")
    return dataclasses.replace(config, **changes) if changes else config


def token_lengths(
    split: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    sample: int = SEQ_LENGTH_SAMPLE,
    seed: int = 0,
) -> np.ndarray:
    """Token counts (special tokens included, untruncated) of up to ``sample`` rows of ``split``
    (a seeded random sample): ``text``, or ``text`` + ``text_pair`` encoded together."""
    rows = np.arange(len(split))
    if len(rows) > sample:
        rows = np.sort(np.random.default_rng(seed).choice(rows, sample, replace=False))
    part = split.select(rows)
    second = list(part["text_pair"]) if "text_pair" in part.column_names else None
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "longer than the model's maximum" is what is measured
    try:
        encoded = tokenizer(list(part["text"]), second, truncation=False)["input_ids"]
    finally:
        hf_logging.set_verbosity(verbosity)
    return np.array([len(ids) for ids in encoded])


def auto_max_seq_length(lengths: np.ndarray, model_max: int, on_cpu: bool) -> tuple[int, str, bool]:
    """The truncation length for texts of these token ``lengths``, why, and whether a cap bites.

    Args:
        lengths: Token counts of (a sample of) the training texts.
        model_max: The model's maximum (the tokenizer's ``model_max_length``).
        on_cpu: Training runs on a CPU (caps the length at :data:`MAX_AUTO_SEQ_LENGTH_CPU`).

    Returns:
        ``(max_seq_length, reason, capped)``; ``capped`` when the model's maximum or the CPU cap
        leaves more than ``100 - SEQ_LENGTH_PERCENTILE``% of the texts cut.
    """
    need = int(np.percentile(lengths, SEQ_LENGTH_PERCENTILE)) if len(lengths) else 0
    length = max(MIN_AUTO_SEQ_LENGTH, math.ceil(need / SEQ_LENGTH_MULTIPLE) * SEQ_LENGTH_MULTIPLE)
    reason = f"{SEQ_LENGTH_PERCENTILE}% of {len(lengths):,} sampled training texts fit in {need}"
    reason += " tokens"
    cap, why = model_max, "the model's maximum"
    if on_cpu and cap > MAX_AUTO_SEQ_LENGTH_CPU:
        cap, why = (
            MAX_AUTO_SEQ_LENGTH_CPU,
            (
                "the cap on a CPU (256 took 2.2x the time for no better accuracy on long pairs: "
                "benchmarks/results/seq_length.md)"
            ),
        )
    capped = need > cap
    if capped:
        longer = float(np.mean(lengths > cap))
        reason += f"; {cap} is {why}, so {longer:.0%} of the texts are cut"
    elif length == MIN_AUTO_SEQ_LENGTH and need < MIN_AUTO_SEQ_LENGTH:
        reason += f"; {MIN_AUTO_SEQ_LENGTH} is the least"
    if length > cap and not capped:
        reason += f" (the model's maximum, {cap})" if cap == model_max else f" (capped at {cap})"
    return min(length, cap), reason, capped


def resolve_max_seq_length(
    config, train: Dataset, tokenizer: PreTrainedTokenizerBase, on_cpu: bool
):
    """``config`` with an unset ``max_seq_length`` sized to the training texts; logged (a
    warning when a cap leaves many texts cut).

    Returns:
        The same config when ``max_seq_length`` is set, else a copy with the chosen length.
    """
    if config.max_seq_length is not None:
        return config
    model_max = getattr(tokenizer, "model_max_length", None) or 512
    model_max = min(model_max, 10**6)  # tokenizers without a limit report ~1e30
    length, reason, capped = auto_max_seq_length(
        token_lengths(train, tokenizer, seed=config.seed), model_max, on_cpu
    )
    message = f"--max_seq_length auto: {length} ({reason})"
    if capped:
        logger.warning(message + "; set --max_seq_length to keep more.")
    else:
        logger.info(message)
    return dataclasses.replace(config, max_seq_length=length)


# Above this share of sampled training texts longer than --max_seq_length, an unset
# --long_text_strategy reads them other than by truncation.
LONG_TEXT_SHARE = 0.25


def auto_long_text_strategy(lengths: np.ndarray, max_seq_length: int) -> tuple[str, str]:
    """The ``--long_text_strategy`` for training texts of these token ``lengths``, and why.

    ``truncate``, whatever the share of long texts, as measured on 20 Newsgroups
    (``benchmarks/results/long_texts.md``, 92% of the posts longer than 128 tokens): windows of
    128 tokens beat the first 128 tokens by 17 points at the same number of epochs, but that
    lead came from their 3.4 times as many optimizer steps: truncation trained for as many
    steps did better than the windows, in about the same time; keeping head and tail lost 3
    points to the head alone. Above :data:`LONG_TEXT_SHARE` of the texts cut, the reason says
    so and names the other strategies, for texts whose end matters more than news posts'.
    """
    longer = float(np.mean(lengths > max_seq_length)) if len(lengths) else 0.0
    share = (
        f"{longer:.0%} of {len(lengths):,} sampled training texts are longer than "
        f"{max_seq_length} tokens"
    )
    if longer <= LONG_TEXT_SHARE:
        return "truncate", f"{share} (at most {LONG_TEXT_SHARE:.0%})"
    return "truncate", (
        f"{share}; on long news posts, truncation trained for as many steps beat windows "
        "(benchmarks/results/long_texts.md); where the rest of a text matters, try "
        "--long_text_strategy chunks or head_tail"
    )


def resolve_long_text_strategy(config, train: Dataset, tokenizer: PreTrainedTokenizerBase):
    """``config`` with an unset ``long_text_strategy`` chosen from the training texts
    (:func:`auto_long_text_strategy`); logged.

    Returns:
        The same config when ``long_text_strategy`` is set, else a copy with the choice.
    """
    if getattr(config, "long_text_strategy", "truncate") is not None:
        return config
    lengths = token_lengths(train, tokenizer, seed=config.seed)
    strategy, reason = auto_long_text_strategy(lengths, config.max_seq_length)
    logger.info(f"--long_text_strategy auto: {strategy} ({reason})")
    return dataclasses.replace(config, long_text_strategy=strategy)


def resolve_data_sized(
    config,
    train: Dataset,
    num_labels: int,
    model,
    tokenizer: PreTrainedTokenizerBase,
    on_cpu: bool,
    num_processes: int = 1,
):
    """``config`` with its unset truncation length, long-text strategy, contrastive stage, budget
    and learning rate chosen from the training split, in that order; each logged with its reason. The budget
    counts training rows: a text read as several windows (``chunks``) counts as that many.

    Returns:
        The config, a copy where anything was unset.
    """
    config = resolve_max_seq_length(config, train, tokenizer, on_cpu)
    config = resolve_long_text_strategy(config, train, tokenizer)
    config = resolve_contrastive(config, train, num_labels)
    rows = 1.0
    if config.num_train_epochs is None and config.long_text_settings().windowed:
        lengths = token_lengths(train, tokenizer, seed=config.seed)
        special = tokenizer.num_special_tokens_to_add(pair="text_pair" in train.features)
        rows = windows_per_text(
            lengths, config.max_seq_length, config.long_text_settings(), special
        )
    return resolve_auto_settings(
        config, len(train), num_labels, model, num_processes=num_processes, rows_per_example=rows
    )
