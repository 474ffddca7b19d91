"""The strategies ``--strategy auto`` races, cheapest first, and when each one applies.

Each candidate is a set of config changes on top of the user's settings (its own learning rate
where the data-sized default does not fit it), or, for TF-IDF, a scikit-learn pipeline. What a
candidate does is the toolkit's own strategy of that name (:mod:`nlp_transfer.transfer`); the
race adds nothing to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from datasets import DatasetDict

from ..data.columns import arrow_column
from ..data.encode import MULTI_LABEL, SINGLE_LABEL
from ..text.few_shot import FEW_SHOT_PER_CLASS

# LoRA's learning rate: adapters need about 10x full fine-tuning's (benchmarks/results/
# adapters_vs_full.md trains LoRA r=16 at 5e-4 against full fine-tuning at 5e-5).
LORA_LEARNING_RATE = 5e-4


@dataclass(frozen=True)
class DataFacts:
    """What decides which candidates apply.

    Attributes:
        problem_type: ``single_label_classification``, ``multi_label_classification`` or
            ``regression``.
        train_rows: Training examples.
        min_per_class: Examples of the rarest label (0 for regression).
        num_layers: Encoder blocks of the model (for ``freeze_half``).
    """

    problem_type: str
    train_rows: int
    min_per_class: int
    num_layers: int

    @classmethod
    def of(cls, dataset: DatasetDict, problem_type: str, num_layers: int) -> DataFacts:
        """The facts of ``dataset``'s training split."""
        train = dataset["train"]
        counts: list[int] = []
        if problem_type == SINGLE_LABEL:
            counts = np.bincount(np.asarray(arrow_column(train, "label"))).tolist()
        elif problem_type == MULTI_LABEL:
            rows = arrow_column(train, "label")
            counts = np.bincount([int(i) for row in rows for i in row], minlength=1).tolist()
        present = [c for c in counts if c > 0]
        return cls(problem_type, len(train), min(present) if present else 0, num_layers)


@dataclass(frozen=True)
class Candidate:
    """One strategy in the race.

    Attributes:
        name: Its name in the leaderboard.
        description: What it is, for the leaderboard and the model card.
        overrides: ``facts -> config changes`` (empty for TF-IDF, which is not a training run).
        skip_reason: ``facts -> None`` when it applies, else why it sits out.
        trains_epochs: Whether it trains epoch by epoch (then the race's pruner can stop it
            early, and the time budget can end it after an epoch).
    """

    name: str
    description: str
    overrides: Callable[[DataFacts], dict]
    skip_reason: Callable[[DataFacts], str | None]
    trains_epochs: bool

    @property
    def is_tfidf(self) -> bool:
        return self.name == "tfidf"


def _always(facts: DataFacts) -> str | None:
    return None


def _single_label_only(facts: DataFacts) -> str | None:
    if facts.problem_type != SINGLE_LABEL:
        return "a scikit-learn head on features is for single-label data"
    return None


def _few_shot_only(facts: DataFacts) -> str | None:
    if reason := _single_label_only(facts):
        return reason
    if facts.min_per_class > FEW_SHOT_PER_CLASS:
        return (
            f"more than {FEW_SHOT_PER_CLASS} examples per class (its pair epochs grow with the "
            "data; fine-tuning is cheaper there)"
        )
    return None


def _has_layers_to_freeze(facts: DataFacts) -> str | None:
    return None if facts.num_layers >= 2 else "the encoder has fewer than 2 blocks"


CANDIDATES: tuple[Candidate, ...] = (
    Candidate(
        "tfidf",
        "TF-IDF word 1-2 grams + logistic regression (ridge for regression)",
        lambda facts: {},
        _always,
        trains_epochs=False,
    ),
    Candidate(
        "feature_extraction",
        "frozen encoder, cached mean-pooled features + logistic regression",
        lambda facts: {"feature_extraction": "logistic_regression", "contrastive": "none"},
        _single_label_only,
        trains_epochs=False,
    ),
    Candidate(
        "contrastive",
        "contrastive tuning on label pairs (SetFit's stage) + logistic regression",
        lambda facts: {"contrastive": "cosine", "feature_extraction": "logistic_regression"},
        _few_shot_only,
        trains_epochs=False,
    ),
    Candidate(
        "freeze_half",
        "lower half of the encoder frozen (its output cached), upper half fine-tuned",
        lambda facts: {"freeze_layers": facts.num_layers // 2, "contrastive": "none"},
        _has_layers_to_freeze,
        trains_epochs=True,
    ),
    Candidate(
        "lora",
        f"LoRA adapters (r=16) on the attention, learning rate {LORA_LEARNING_RATE:g}",
        lambda facts: {
            "peft": "lora",
            "learning_rate": LORA_LEARNING_RATE,
            "contrastive": "none",
        },
        _always,
        trains_epochs=True,
    ),
    Candidate(
        "full",
        "full fine-tuning at the data-sized learning rate",
        lambda facts: {"contrastive": "none"},
        _always,
        trains_epochs=True,
    ),
)
CANDIDATE_NAMES = tuple(c.name for c in CANDIDATES)


def choose_candidates(
    facts: DataFacts, only: tuple[str, ...] | None = None
) -> tuple[list[Candidate], dict[str, str]]:
    """The candidates that apply to ``facts`` (in race order) and why the others sit out.

    Args:
        facts: The data's :class:`DataFacts`.
        only: Restrict to these names (``--race_candidates``); None: all.

    Raises:
        ValueError: An unknown name in ``only``.
    """
    if only is not None:
        unknown = sorted(set(only) - set(CANDIDATE_NAMES))
        if unknown:
            raise ValueError(
                f"--race_candidates: unknown {', '.join(unknown)}; choose from "
                f"{', '.join(CANDIDATE_NAMES)}."
            )
    chosen, skipped = [], {}
    for candidate in CANDIDATES:
        if only is not None and candidate.name not in only:
            continue
        if reason := candidate.skip_reason(facts):
            skipped[candidate.name] = reason
        else:
            chosen.append(candidate)
    return chosen, skipped
