"""Feature extraction: the whole encoder frozen, its pooled features computed once, and a head
(linear, MLP, or scikit-learn's logistic regression) fitted on them."""

from __future__ import annotations

from dataclasses import dataclass

from ...args import arg, check_choice
from ..freeze import FreezeReport
from .base import TransferStrategy, register_strategy
from .freeze import TRANSFER

HEAD_CHOICES = ("linear", "mlp", "logistic_regression")


@dataclass
class FeatureExtractionArguments:
    feature_extraction: str = arg(
        "none",
        "Feature extraction: pool the frozen encoder's features once, fit a head on them: "
        "linear, mlp (torch, at head_learning_rate, default 1e-3) or logistic_regression; none.",
        TRANSFER,
    )


class FeatureExtraction(TransferStrategy):
    """Everything but the head frozen; the task computes the features and fits the head."""

    name = "feature_extraction"
    arguments = FeatureExtractionArguments
    selects_parameters = True
    priority = 10
    prefix_cacheable = False  # the features themselves are the cache
    describes_helpers = False  # a head on fixed features: no fine-tuning settings apply

    def label(self, config) -> str:
        return "feature extraction"

    def enabled(self, config) -> bool:
        return config.feature_extraction != "none"

    def flags_set(self, config) -> list[str]:
        return ["--feature_extraction"] if self.enabled(config) else []

    def needs_block_view(self, config) -> bool:
        return False

    def check(self, config) -> None:
        check_choice(config, "feature_extraction", ("none", *HEAD_CHOICES))
        if self.enabled(config) and config.resume_from_checkpoint:
            raise ValueError(
                "--resume_from_checkpoint: feature-extraction runs write no checkpoints (the "
                "head trains in seconds on features computed once); run it again instead."
            )

    def refuses(self, config):
        return (
            ("freeze", "gradual_unfreezing", "layer_lr_decay", "l2sp", "peft", "bitfit"),
            "--feature_extraction freezes the whole encoder and computes its features once",
        )

    def apply(self, model, view, config):
        """Everything but the head frozen; the counts are the encoder's (the head is fitted
        later)."""
        if view is None:
            encoder = getattr(model, "base_model", model)
            total = sum(p.numel() for p in encoder.parameters())
            return FreezeReport(["encoder"], ["head"], 0, total), None, view
        total = sum(p.numel() for b in view.blocks for p in b.parameters())
        return FreezeReport([b.name for b in view.blocks], ["head"], 0, total), None, view

    def describe(self, config, plan) -> dict:
        return {"name": "feature_extraction", "head": config.feature_extraction}


register_strategy(FeatureExtraction())
