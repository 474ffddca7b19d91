"""Samplers that cut padding: batches of similar length, still shuffled every epoch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler[int]):
    """A uniform shuffle that is a function of ``seed + epoch`` only (``RandomSampler`` is not).

    ``torch.utils.data.RandomSampler`` draws each epoch's order from a generator whose state
    carries over between epochs, so the order of epoch ``e`` cannot be recreated without
    replaying epochs ``1..e-1``. Here it can: a run resumed from a checkpoint sees exactly the
    batches an uninterrupted run would.

    Args:
        num_samples: Dataset size ``n``.
        seed: Base seed; epoch ``e`` uses ``seed + e``.
    """

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch (the permutation is a function of ``seed + epoch``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())


class LengthSortedSampler(Sampler[int]):
    """Evaluation order: longest example first, so each batch pads to almost nothing.

    Results come out in this order; :attr:`order` maps them back (``predict_logits`` does it):
    position ``j`` of the output is example ``order[j]``.

    Args:
        lengths: Length of every example (tokens), shape ``(n,)``.
    """

    def __init__(self, lengths: Sequence[int]) -> None:
        self.order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order.tolist())


class LengthGroupedSampler(Sampler[int]):
    """Random order in which each run of ``batch_size`` indices has similar lengths.

    Each epoch: shuffle all indices; cut them into megabatches of ``megabatch_factor *
    batch_size``; sort each megabatch by length; cut it into batches and shuffle the order of
    those batches. Batches are then nearly free of padding, while which examples meet in a batch
    and the order of batches stay random. The idea is that of ``--group_by_length`` in the
    Hugging Face Trainer (and of bucketing in fairseq/tensor2tensor).

    It yields indices, so DataLoader batching and Accelerate's sharding across processes work
    as with a plain shuffle: each process takes whole batches, and every process draws the
    same permutation (it depends only on ``seed`` and the epoch).

    Args:
        lengths: Length of every example (tokens), shape ``(n,)``.
        batch_size: Per-process batch size of the DataLoader using this sampler.
        seed: Base seed; the permutation of epoch ``e`` uses ``seed + e``.
        megabatch_factor: Megabatch size in batches; larger groups more tightly, shuffles less.

    Raises:
        ValueError: If ``batch_size`` or ``megabatch_factor`` is not positive.
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int = 0, megabatch_factor: int = 50
    ) -> None:
        if batch_size <= 0 or megabatch_factor <= 0:
            raise ValueError("batch_size and megabatch_factor must be positive")
        self.lengths = torch.as_tensor(np.asarray(lengths, dtype=np.int64))
        self.batch_size = batch_size
        self.seed = seed
        self.megabatch = batch_size * megabatch_factor
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch (the permutation is a function of ``seed + epoch``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.lengths), generator=generator)
        batches = []
        for start in range(0, len(order), self.megabatch):
            mega = order[start : start + self.megabatch]
            mega = mega[torch.argsort(self.lengths[mega], descending=True, stable=True)]
            batches += list(torch.split(mega, self.batch_size))
        # Whole batches move together; the short tail batch of the epoch keeps its place last
        # so that every other batch is full.
        head, tail = (batches[:-1], batches[-1:]) if len(order) % self.batch_size else (batches, [])
        shuffled = [head[i] for i in torch.randperm(len(head), generator=generator)] + tail
        return iter(torch.cat(shuffled).tolist() if shuffled else [])


SAMPLING_CHOICES = ("none", "oversample", "undersample")


class ClassBalancedSampler(Sampler[int]):
    """Each epoch, equally many examples of every class, in random order.

    ``oversample`` keeps every example and draws extra ones (with replacement) from the smaller
    classes up to the size of the largest; ``undersample`` draws (without replacement) as many
    of each class as the smallest has. Batches are then class-balanced in expectation. The
    permutation depends only on ``seed`` and the epoch, so under Accelerate every process draws
    the same one and takes its own share of the batches.

    Args:
        labels: Label id of every training example, shape ``(n,)``.
        mode: ``"oversample"`` or ``"undersample"``.
        seed: Base seed; epoch ``e`` uses ``seed + e``.

    Raises:
        ValueError: Unknown ``mode``, or a class without examples.
    """

    def __init__(self, labels: Sequence[int], mode: str, seed: int = 0) -> None:
        if mode not in ("oversample", "undersample"):
            raise ValueError(
                f"--sampling must be one of {', '.join(SAMPLING_CHOICES)}, got {mode!r}."
            )
        labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.by_class = [torch.nonzero(labels_t == c).flatten() for c in torch.unique(labels_t)]
        sizes = [len(ix) for ix in self.by_class]
        self.per_class = max(sizes) if mode == "oversample" else min(sizes)
        self.mode = mode
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch (the draw is a function of ``seed + epoch``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_class * len(self.by_class)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        chosen = []
        for indices in self.by_class:
            shuffled = indices[torch.randperm(len(indices), generator=generator)]
            if len(indices) >= self.per_class:
                chosen.append(shuffled[: self.per_class])
            else:  # oversample: all of them, plus random repeats
                extra = torch.randint(
                    len(indices), (self.per_class - len(indices),), generator=generator
                )
                chosen += [shuffled, indices[extra]]
        everything = torch.cat(chosen)
        return iter(everything[torch.randperm(len(everything), generator=generator)].tolist())
