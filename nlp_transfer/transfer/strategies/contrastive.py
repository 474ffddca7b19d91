"""Contrastive transfer (SetFit's first stage, Tunstall et al. 2022): before the head is trained,
the encoder is tuned on pairs drawn from the training labels with a sentence-transformers loss
(:mod:`nlp_transfer.transfer.contrastive`). The head stage is whatever else the run says:
``--feature_extraction`` fits a head on the tuned embeddings (SetFit's way; the few-shot
default), fine-tuning continues end to end (with ``--freeze_layers k`` only the blocks above k
are tuned in both stages; with ``--peft lora|ia3`` only the adapters)."""

from __future__ import annotations

from dataclasses import dataclass

from ...args import arg, check_choice, check_optional_positive, check_positive
from ..contrastive import LOSS_CHOICES, TRIPLET_LOSSES
from .base import TransferStrategy, register_strategy
from .freeze import TRANSFER


@dataclass
class ContrastiveArguments:
    contrastive: str | None = arg(
        None,
        "Contrastive transfer (SetFit): first tune the encoder on in-batch pairs of training "
        f"examples with this loss: {', '.join(LOSS_CHOICES)} or none; unset: cosine if few-shot.",
        TRANSFER,
    )
    contrastive_pairs_per_example: int | None = arg(
        None,
        "Contrastive: partners each example meets; unset: 7.5 per example, in [240, 480].",
        TRANSFER,
    )
    contrastive_learning_rate: float = arg(5e-5, "Contrastive: peak learning rate.", TRANSFER)


class Contrastive(TransferStrategy):
    """The encoder tuned contrastively before the head stage (:meth:`before_training`)."""

    name = "contrastive"
    arguments = ContrastiveArguments
    shared = False  # text only: text's config adds its flags

    def label(self, config) -> str:
        return f"contrastive ({config.contrastive})"

    def enabled(self, config) -> bool:
        return config.contrastive not in (None, "none")

    def flags_set(self, config) -> list[str]:
        return ["--contrastive"] if self.enabled(config) else []

    def needs_block_view(self, config) -> bool:
        return False

    def check(self, config) -> None:
        check_choice(config, "contrastive", ("none", *LOSS_CHOICES), optional=True)
        check_optional_positive(config, "contrastive_pairs_per_example")
        check_positive(config, "contrastive_learning_rate")
        if self.enabled(config) and config.per_device_train_batch_size < 4:
            raise ValueError(
                "--contrastive needs --per_device_train_batch_size of at least 4 (each batch "
                "holds every label at least twice)."
            )
        if self.enabled(config) and getattr(config, "peft", "none") == "prompt_tuning":
            raise ValueError(
                "--contrastive tunes the encoder's weights (or LoRA/IA3 adapters inside it); "
                "prompt tuning's virtual tokens live outside the encoder: use --peft lora."
            )
        multi = getattr(config, "problem_type", None) == "multi_label_classification"
        if self.enabled(config) and multi and config.contrastive in TRIPLET_LOSSES:
            raise ValueError(
                f"--contrastive {config.contrastive} needs one label per example; multi-label "
                "data takes cosine or cosent (pairs scored by their labels' overlap)."
            )

    def refuses(self, config):
        return (
            ("bitfit", "gradual_unfreezing"),
            "--contrastive tunes the encoder's weights before the head stage",
        )

    def before_training(self, model, plan, stage) -> dict:
        """Tune ``model``'s encoder on the training split's pairs (``stage``: a
        :class:`~nlp_transfer.transfer.contrastive_stage.StageInputs`); its report for the log and
        the description."""
        from ..contrastive_stage import run_contrastive_stage

        return run_contrastive_stage(model, plan.config, stage)

    def describe(self, config, plan) -> dict:
        return {}  # the stage's report joins the description through the plan's details


register_strategy(Contrastive())
