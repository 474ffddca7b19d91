"""Contrastive transfer: the encoder tuned on pairs drawn from the labels, before its head is fitted.

SetFit's first stage (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts"): a
sentence encoder learns from pairs of labelled examples, same label -> similar embeddings,
different labels -> dissimilar; a simple head is then fitted on the tuned embeddings. The losses
and the label-grouped batch sampler are sentence-transformers' (the library SetFit builds on);
what differs from SetFit is where the pairs come from:

- SetFit draws a list of pairs and embeds both texts of each pair: ``2 x pairs`` encoder passes.
- Here each batch of ``B`` examples (sentence-transformers' ``GroupByLabelBatchSampler``: every
  label in it at least twice) is embedded once and **every pair inside it** is scored: the pair
  losses (``cosine``: SetFit's ``CosineSimilarityLoss``; ``cosent``: CoSENT) see ``B(B-1)/2``
  pairs for ``B`` passes, the batch triplet losses (Hermans et al. 2017) every triplet. The
  number of pairs a run sees is chosen from the data (:func:`~nlp_transfer.transfer.contrastive_stage.contrastive_epochs`).

The encoder is tuned in place; which of its blocks train is the caller's choice (``trainable``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase, get_scheduler

from ..console import progress_bar
from .features import pool

logger = logging.getLogger(__name__)

PAIR_LOSSES = ("cosine", "cosent")
TRIPLET_LOSSES = ("batch_all_triplet", "batch_hard_triplet", "batch_hard_soft_margin_triplet")
LOSS_CHOICES = PAIR_LOSSES + TRIPLET_LOSSES
CONTRASTIVE_BATCH_SIZE = 16  # examples per batch at most (SetFit's batch size; 120 pairs each)
# sentence-transformers' class of each loss (sentence_transformers.sentence_transformer.losses)
LOSS_CLASSES = {
    "cosine": "CosineSimilarityLoss",
    "cosent": "CoSENTLoss",
    "batch_all_triplet": "BatchAllTripletLoss",
    "batch_hard_triplet": "BatchHardTripletLoss",
    "batch_hard_soft_margin_triplet": "BatchHardSoftMarginTripletLoss",
}


class SentenceEmbedder(nn.Module):
    """An encoder and a pooling behind the interface sentence-transformers' losses call:
    ``embedder(features)["sentence_embedding"]``, ``(batch, hidden)``.

    Args:
        encoder: A Hugging Face encoder (``last_hidden_state`` output); tuned in place.
        pooling: ``mean`` or ``cls`` (:func:`~nlp_transfer.transfer.features.pool`).
    """

    def __init__(self, encoder: nn.Module, pooling: str = "mean"):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = {k: v for k, v in features.items() if k != "sentence_embedding"}
        hidden = self.encoder(**inputs).last_hidden_state
        embedding = pool(hidden, features["attention_mask"], self.pooling)
        return {**features, "sentence_embedding": embedding}


def make_loss(name: str, embedder: nn.Module) -> nn.Module:
    """sentence-transformers' loss ``name`` (:data:`LOSS_CLASSES`) around ``embedder``.

    Raises:
        ValueError: Unknown ``name`` (the message lists the choices).
    """
    if name not in LOSS_CLASSES:
        raise ValueError(f"--contrastive must be one of {', '.join(LOSS_CHOICES)}, got {name!r}.")
    from sentence_transformers.sentence_transformer import losses

    return getattr(losses, LOSS_CLASSES[name])(embedder)


def in_batch_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every unordered pair of a batch and its target similarity.

    Args:
        labels: ``(B,)`` class ids, or ``(B, C)`` multi-hot rows (multi-label: a pair's target
            is the Jaccard similarity of the two label sets, 1 for equal sets, 0 for disjoint).

    Returns:
        ``(first, second, target)``: index tensors ``(B(B-1)/2,)`` and float targets in [0, 1].
    """
    first, second = torch.triu_indices(len(labels), len(labels), offset=1, device=labels.device)
    if labels.dim() == 1:
        return first, second, (labels[first] == labels[second]).float()
    a, b = labels[first].bool(), labels[second].bool()
    union = (a | b).sum(1).clamp(min=1)
    return first, second, (a & b).sum(1).float() / union.float()


def batch_loss(name: str, loss: nn.Module, embeddings: torch.Tensor, labels: torch.Tensor):
    """The loss of one batch of embeddings ``(B, hidden)``: over every in-batch pair for the pair
    losses, over the in-batch triplets for the triplet losses."""
    if name in PAIR_LOSSES:
        first, second, target = in_batch_pairs(labels)
        return loss.compute_loss_from_embeddings([embeddings[first], embeddings[second]], target)
    return loss.compute_loss_from_embeddings([embeddings], labels)


@dataclass
class ContrastiveReport:
    """What the contrastive stage did (``metrics.json``'s ``transfer_strategy.contrastive``)."""

    loss: str
    epochs: int
    steps: int
    batch_size: int
    pairs_seen: int
    examples_used: int
    learning_rate: float
    seconds: float
    loss_first: float | None = None
    loss_last: float | None = None
    trainable_params: int = 0
    losses: list[float] = field(default_factory=list, repr=False)

    def describe(self) -> dict:
        """The report as a dict (the per-step losses left out)."""
        out = {k: v for k, v in self.__dict__.items() if k != "losses"}
        out["seconds"] = round(self.seconds, 2)
        return out


def label_batches(labels: Sequence, batch_size: int, seed: int, epochs: int) -> list[list[int]]:
    """Batches of example indices for ``epochs`` epochs, every label in a batch at least twice
    (sentence-transformers' ``GroupByLabelBatchSampler``; multi-label rows group by their label
    set). Labels with a single example are left out by the sampler (logged by the caller).

    Raises:
        ValueError: Fewer than two labels have two examples (the message says so).
    """
    from datasets import Dataset
    from sentence_transformers.base.sampler import GroupByLabelBatchSampler

    keys = [tuple(y) if isinstance(y, list | tuple) else y for y in labels]
    ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    dataset = Dataset.from_dict({"label": [ids[k] for k in keys]})
    try:
        sampler = GroupByLabelBatchSampler(
            dataset,
            batch_size=batch_size,
            drop_last=False,
            valid_label_columns=["label"],
            generator=torch.Generator(),
            seed=seed,
        )
    except ValueError as error:
        raise ValueError(
            f"--contrastive needs at least two labels with two training examples each: {error}"
        ) from error
    batches = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        batches += [list(b) for b in sampler if len(b) >= 2]
    return batches


def encode_batch(tokenizer: PreTrainedTokenizerBase, chosen: list, max_seq_length: int) -> dict:
    """Tokenize texts (or ``(text, text_pair)`` tuples, encoded together), padded to the longest."""
    pairs = bool(chosen) and isinstance(chosen[0], tuple)
    first = [a for a, _ in chosen] if pairs else list(chosen)
    second = [b for _, b in chosen] if pairs else None
    return tokenizer(
        first, second, truncation=True, max_length=max_seq_length, padding=True,
        return_tensors="pt",
    )  # fmt: skip


def label_tensor(labels: list, device) -> torch.Tensor:
    """Class ids as a long tensor ``(B,)``, or multi-hot rows as a float one ``(B, C)``."""
    multi_label = bool(labels) and isinstance(labels[0], list | tuple)
    return torch.tensor(labels, dtype=torch.float32 if multi_label else torch.long, device=device)


def contrastive_tune(
    encoder: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence,
    labels: Sequence,
    *,
    loss_name: str = "cosine",
    epochs: int = 1,
    batch_size: int = 16,
    learning_rate: float = 5e-5,
    max_seq_length: int = 128,
    pooling: str = "mean",
    seed: int = 42,
    device: torch.device | str = "cpu",
    autocast: Callable | None = None,
    warmup_ratio: float = 0.1,
    show_progress: bool = True,
) -> ContrastiveReport:
    """Tune ``encoder`` in place on the labels' pairs (SetFit's first stage, in-batch pairs):
    AdamW (no weight decay) over its parameters that require grad, linear warm-up
    (``warmup_ratio`` of the steps) and decay, one step per label-grouped batch.

    Args:
        encoder: A Hugging Face encoder; its ``requires_grad`` flags say what trains.
        tokenizer: Its tokenizer.
        texts: Training texts, or ``(text, text_pair)`` tuples.
        labels: Class ids, or multi-hot rows (lists) for multi-label data.
        loss_name: One of :data:`LOSS_CHOICES`.
        epochs: Passes over the examples (``contrastive_stage.contrastive_epochs``).
        batch_size: Examples per batch, even, >= 4 (the sampler's rule).
        learning_rate: Peak AdamW learning rate (5e-5 measured better here than SetFit's 2e-5).
        max_seq_length: Truncation, tokens.
        pooling: ``mean`` or ``cls``.
        seed: The batches' seed.
        device: The encoder's device.
        autocast: Mixed precision's context-manager factory (``accelerator.autocast``).
        show_progress: Show a progress bar.

    Returns:
        A :class:`ContrastiveReport` (steps, pairs seen, first and last loss, seconds).

    Raises:
        ValueError: Unknown loss, bad batch size, nothing trainable, < 2 labels of 2 examples.
    """
    if batch_size < 4 or batch_size % 2:
        raise ValueError(f"--contrastive batch size must be even and >= 4, got {batch_size}.")
    params = [p for p in encoder.parameters() if p.requires_grad]
    if not params:
        raise ValueError("--contrastive: no encoder parameter is trainable.")
    start = time.perf_counter()
    embedder = SentenceEmbedder(encoder, pooling)
    loss = make_loss(loss_name, embedder)
    batches = label_batches(labels, batch_size, seed, epochs)
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    warmup = math.ceil(warmup_ratio * len(batches))
    scheduler = get_scheduler("linear", optimizer, warmup, len(batches))
    report = ContrastiveReport(
        loss_name, epochs, len(batches), batch_size, 0, len({i for b in batches for i in b}),
        learning_rate, 0.0, trainable_params=sum(p.numel() for p in params),
    )  # fmt: skip
    encoder.train()
    bar = progress_bar(batches, "Contrastive tuning", enabled=show_progress)
    for batch in bar:
        encoded = encode_batch(tokenizer, [texts[i] for i in batch], max_seq_length)
        with autocast() if autocast is not None else contextlib.nullcontext():
            embeddings = embedder({k: v.to(device) for k, v in encoded.items()})
        target = label_tensor([labels[i] for i in batch], device)
        value = batch_loss(loss_name, loss, embeddings["sentence_embedding"].float(), target)
        value.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        report.losses.append(float(value.detach()))
        report.pairs_seen += len(batch) * (len(batch) - 1) // 2
    encoder.eval()
    report.seconds = time.perf_counter() - start
    if report.losses:
        report.loss_first, report.loss_last = report.losses[0], report.losses[-1]
    return report
