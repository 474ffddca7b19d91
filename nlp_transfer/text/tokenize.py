"""Tokenization and dataloaders for text classification (dynamic padding)."""

from __future__ import annotations

import logging

import pyarrow.compute as pc
import torch
from datasets import DatasetDict
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from ..data.columns import arrow_column, numpy_column, sequence_lengths
from ..data.samplers import (
    ClassBalancedSampler,
    EpochShuffleSampler,
    LengthGroupedSampler,
    LengthSortedSampler,
)
from .windows import CHUNKS, DOCUMENT_COLUMN, TRUNCATE, LongTextSettings, encode_documents

logger = logging.getLogger(__name__)

# Above this share of a split cut at --max_seq_length, the truncation is a warning, not a note.
TRUNCATION_WARNING_SHARE = 0.05


def tokenize_dataset(
    dataset: DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 128,
    num_proc: int | None = None,
    long_text: LongTextSettings | None = None,
) -> DatasetDict:
    """Tokenize the ``text`` column of every split, truncating to ``max_seq_length`` tokens.

    Texts longer than that are cut as ``long_text`` says (:mod:`~nlp_transfer.text.windows`):
    their first tokens (``truncate``, the default), their head and tail, or ``chunks``:
    overlapping windows, one row each, carrying the document's label and its row number in
    the split (a ``document`` column, by which evaluation pools the windows' logits).

    No padding here: batches are padded to their own longest sequence by the collator
    (dynamic padding), which on short sentences saves most of the compute.

    One ``Dataset.map(batched=True, num_proc=num_proc)`` per split. For a split backed by
    ``datasets``' cache files (read from a file), the tokens are written to a cache file beside
    them, named by the split's fingerprint and this function's arguments (tokenizer included),
    and a later run with the same data, tokenizer and ``max_seq_length`` loads them instead of
    tokenizing again, whatever its ``num_proc``. An in-memory split (a DataFrame, a built-in
    dataset) is tokenized in memory, every run.

    Args:
        dataset: Splits with a ``text`` column and (usually) ``label``.
        tokenizer: A Hugging Face tokenizer.
        max_seq_length: Maximum sequence length in tokens, special tokens included.
        num_proc: Processes that tokenize (``--preprocessing_num_workers``); None or 1: this
            process only.
        long_text: How texts longer than ``max_seq_length`` are read; None: ``truncate``.

    Returns:
        Splits with ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the model
        uses them) and ``labels`` (for splits that have a ``label`` column); with ``chunks``,
        one row per window and a ``document`` column.

    Raises:
        ValueError: If ``max_seq_length`` or ``num_proc`` is not positive, or ``--stride`` is
            too large for ``max_seq_length``.
    """
    if num_proc is not None and num_proc <= 0:
        raise ValueError(f"--preprocessing_num_workers must be positive, got {num_proc}.")
    if max_seq_length <= 0:
        raise ValueError(f"--max_seq_length must be positive, got {max_seq_length}.")
    model_max = getattr(tokenizer, "model_max_length", None) or 10**9
    if max_seq_length > model_max:
        logger.warning(
            f"--max_seq_length {max_seq_length} exceeds the model's maximum of {model_max} "
            f"tokens; using {model_max}."
        )
        max_seq_length = model_max

    # a sentence pair (a ``text_pair`` column) is encoded together, truncated longest first
    pairs = "text_pair" in next(iter(dataset.values())).column_names
    long_text = long_text or LongTextSettings()
    if long_text.strategy == TRUNCATE:
        tokenized = dataset.map(
            _encoder(tokenizer, max_seq_length, pairs),
            batched=True,
            num_proc=num_proc if num_proc and num_proc > 1 else None,
            remove_columns=["text", "text_pair"] if pairs else ["text"],
            desc="Tokenizing",
        )
    else:
        tokenized = _tokenize_documents(dataset, tokenizer, max_seq_length, num_proc, long_text)
    _warn_truncated(tokenized, max_seq_length, model_max, long_text)
    tokenized = tokenized.remove_columns("truncated")
    return DatasetDict(  # unlabelled splits (domain adaptation's target texts) stay unlabelled
        {
            split: ds.rename_column("label", "labels") if "label" in ds.column_names else ds
            for split, ds in tokenized.items()
        }
    )


def _encoder(tokenizer: PreTrainedTokenizerBase, max_seq_length: int, pairs: bool):
    """The batched map function: tokens of ``text`` (and ``text_pair``), and ``truncated``.

    A closure, so that ``datasets`` hashes its code (and the tokenizer) into the fingerprint
    of the tokenized split: a change to either is never served from an old cache file.
    """

    def encode(batch: dict) -> dict:
        # One token over the limit tells which texts are cut; only those are encoded again.
        second = batch["text_pair"] if pairs else None
        encoded = tokenizer(batch["text"], second, truncation=True, max_length=max_seq_length + 1)
        long = [i for i, ids in enumerate(encoded["input_ids"]) if len(ids) > max_seq_length]
        if long:
            again = tokenizer(
                [batch["text"][i] for i in long],
                [second[i] for i in long] if pairs else None,
                truncation=True,
                max_length=max_seq_length,
            )
            for key in again:
                for j, i in enumerate(long):
                    encoded[key][i] = again[key][j]
        encoded["truncated"] = [False] * len(batch["text"])
        for i in long:
            encoded["truncated"][i] = True
        return encoded

    return encode


def _tokenize_documents(dataset, tokenizer, max_seq_length, num_proc, long_text) -> DatasetDict:
    """``tokenize_dataset`` for ``head_tail`` and ``chunks``: a split's rows may multiply, so
    every column is rebuilt (:func:`_document_encoder`)."""
    long_text.stride_for(max_seq_length)  # a bad --stride fails before any work
    pairs = "text_pair" in next(iter(dataset.values())).column_names
    return DatasetDict(
        {
            split: ds.map(
                _document_encoder(tokenizer, max_seq_length, pairs, long_text),
                batched=True,
                with_indices=True,
                num_proc=num_proc if num_proc and num_proc > 1 else None,
                remove_columns=ds.column_names,
                desc="Tokenizing" if long_text.strategy != CHUNKS else "Windowing",
            )
            for split, ds in dataset.items()
        }
    )


def _document_encoder(
    tokenizer: PreTrainedTokenizerBase, max_seq_length: int, pairs: bool, long_text
):
    """The batched map function of ``head_tail`` and ``chunks``
    (:func:`~nlp_transfer.text.windows.encode_documents`): tokens, every other column repeated
    for each of a document's rows, ``document`` (its row number in the split) and
    ``truncated`` (on its first row: whether it lost tokens)."""

    def encode(batch: dict, indices: list[int]) -> dict:
        texts = batch["text"]
        encoded, document, cut = encode_documents(
            tokenizer, texts, batch["text_pair"] if pairs else None, max_seq_length, long_text
        )
        out = dict(encoded)
        for column, values in batch.items():
            if column not in ("text", "text_pair"):
                out[column] = [values[d] for d in document]
        first = [r == 0 or document[r - 1] != d for r, d in enumerate(document)]
        out["truncated"] = [f and cut[d] for f, d in zip(first, document, strict=True)]
        out[DOCUMENT_COLUMN] = [indices[d] for d in document]
        return out

    return encode


def _warn_truncated(
    tokenized: DatasetDict,
    max_seq_length: int,
    model_max: int,
    long_text: LongTextSettings | None = None,
) -> None:
    """Log how many texts of each split were cut at ``max_seq_length`` tokens: a warning when
    more than :data:`TRUNCATION_WARNING_SHARE` of a split is (the model misses the end of many
    texts), else for information. ``head_tail`` and ``chunks`` say what they kept instead."""
    long_text = long_text or LongTextSettings()
    hint = (
        f"raise --max_seq_length (up to the model's {model_max}) to keep more"
        if max_seq_length < model_max
        else "that is the model's maximum"
    )
    if long_text.strategy == TRUNCATE:
        hint += "; or --long_text_strategy head_tail or chunks"
    for split, ds in tokenized.items():
        cut = pc.sum(arrow_column(ds, "truncated")).as_py() or 0
        if long_text.windowed:
            documents = len(pc.unique(arrow_column(ds, DOCUMENT_COLUMN)))
            logger.info(
                f"{split}: {documents:,} text(s) read as {len(ds):,} windows of "
                f"{max_seq_length} tokens ({len(ds) / max(documents, 1):.2f} per text; "
                f"{long_text.describe(max_seq_length)}); {cut:,} had more than --max_chunks "
                f"{long_text.max_chunks} windows and lost some of their middle."
            )
            continue
        if cut and long_text.strategy != TRUNCATE:
            logger.info(
                f"{split}: {cut:,} of {len(ds):,} text(s) longer than {max_seq_length} tokens "
                f"kept their beginning and end ({long_text.describe(max_seq_length)})."
            )
            continue
        if cut:
            level = logging.WARNING if cut > TRUNCATION_WARNING_SHARE * len(ds) else logging.INFO
            logger.log(
                level,
                f"Truncated {cut:,} of {len(ds):,} {split} text(s) ({cut / len(ds):.1%}) longer "
                f"than --max_seq_length {max_seq_length} tokens; the model sees only their "
                f"beginning ({hint}).",
            )


def build_dataloaders(
    tokenized: DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    *,
    per_device_train_batch_size: int,
    per_device_eval_batch_size: int,
    pad_to_multiple_of: int | None = None,
    group_by_length: bool = True,
    sampling: str = "none",
    seed: int = 42,
    num_workers: int = 0,
    wrap_collator=None,
) -> dict[str, DataLoader]:
    """One DataLoader per split; ``train`` shuffles, the others go longest first.

    Evaluation batches are sorted by length (:class:`LengthSortedSampler`), which removes most
    padding; :func:`~nlp_transfer.training.evaluation.predict_logits` puts results back in dataset
    order.

    Args:
        tokenized: Output of :func:`tokenize_dataset`.
        tokenizer: Supplies the padding token for ``DataCollatorWithPadding``.
        per_device_train_batch_size: Examples per training batch on each process.
        per_device_eval_batch_size: Examples per evaluation batch on each process.
        pad_to_multiple_of: Pad sequence lengths up to a multiple of this (8 suits tensor
            cores and AMX under mixed precision).
        group_by_length: Train on batches of similar length (:class:`LengthGroupedSampler`),
            which removes most padding; otherwise shuffle uniformly.
        sampling: ``"oversample"``/``"undersample"`` for class-balanced training batches
            (:class:`ClassBalancedSampler`; takes precedence over ``group_by_length``).
        seed: Seed of the training order.
        num_workers: DataLoader worker processes.
        wrap_collator: ``(split, collator) -> collator``, e.g. to add cached inputs per split.

    Returns:
        ``{split: DataLoader}``; each batch is a dict of ``(batch, seq_len)`` tensors plus
        ``labels`` of shape ``(batch,)``.
    """
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)
    loaders = {}
    for split, ds in tokenized.items():
        train = split == "train"
        batch_size = per_device_train_batch_size if train else per_device_eval_batch_size
        sampler = None
        if not train:  # sorted by length: little padding; predict_logits restores the order
            sampler = LengthSortedSampler(sequence_lengths(ds))
        if train:
            sampler = EpochShuffleSampler(len(ds), seed=seed)
            if sampling != "none":
                sampler = ClassBalancedSampler(numpy_column(ds, "labels"), sampling, seed=seed)
            elif group_by_length:
                sampler = LengthGroupedSampler(sequence_lengths(ds), batch_size, seed=seed)
        loaders[split] = DataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=wrap_collator(split, collator) if wrap_collator else collator,
            num_workers=num_workers,
            # Its own generator: starting an epoch then draws no number from the global RNG, so
            # a run resumed mid-epoch gets the same dropout masks as an uninterrupted one.
            generator=torch.Generator().manual_seed(seed),
        )
    return loaders
