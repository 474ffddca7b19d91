"""Adapters through peft: LoRA (Hu et al. 2021), IA3 (Liu et al. 2022) and prompt tuning
(Lester et al. 2021). The pretrained weights stay frozen; the new head trains in full."""

from __future__ import annotations

from dataclasses import dataclass

from ...args import arg, check_choice, check_positive
from ...models.blocks import get_block_view
from ..adapters import apply_adapter, describe_adapter
from .base import TransferStrategy, register_strategy
from .freeze import TRANSFER, fine_tuning_description

PEFT_CHOICES = ("none", "lora", "ia3", "prompt_tuning")
PROMPT_TUNING_REFUSES = (
    "freeze", "gradual_unfreezing", "layer_lr_decay", "head_learning_rate", "bitfit", "l2sp"
)  # fmt: skip


@dataclass
class PeftArguments:
    peft: str = arg(
        "none",
        "Adapters (peft): lora (Hu et al. 2021), ia3 (Liu et al. 2022) or prompt_tuning (Lester "
        "et al. 2021; text); pretrained weights frozen. With --freeze_layers k: layers >= k.",
        TRANSFER,
    )
    lora_r: int = arg(8, "LoRA rank r.", TRANSFER)
    lora_alpha: float = arg(16.0, "LoRA scaling alpha (update x alpha / r).", TRANSFER)
    lora_dropout: float = arg(0.1, "Dropout on the LoRA branch's input.", TRANSFER)
    lora_target_modules: str | None = arg(
        None,
        "Comma-separated module names inside a layer that LoRA wraps (e.g. query,value); unset: "
        "the family's attention projections (nlp_transfer.models.targets).",
        TRANSFER,
    )
    num_virtual_tokens: int = arg(20, "Prompt tuning: number of virtual tokens.", TRANSFER)
    merge_adapter: bool = arg(
        True,
        "Save LoRA/IA3 merged in output_dir, the adapter in output_dir/adapter; false: "
        "output_dir holds the adapter.",
        TRANSFER,
    )


class PeftAdapters(TransferStrategy):
    """``peft.get_peft_model`` on the task model (:func:`~nlp_transfer.transfer.adapters.
    apply_adapter`); with ``--freeze_layers k`` the adapters go into layers k and above."""

    name = "peft"
    arguments = PeftArguments
    selects_parameters = True
    priority = 20

    def enabled(self, config) -> bool:
        return config.peft != "none"

    def flags_set(self, config) -> list[str]:
        return ["--peft"] if self.enabled(config) else []

    def check(self, config) -> None:
        check_choice(config, "peft", PEFT_CHOICES)
        check_positive(config, "lora_r", "lora_alpha", "num_virtual_tokens")
        if not 0 <= config.lora_dropout < 1:
            raise ValueError(f"--lora_dropout must be in [0, 1), got {config.lora_dropout}.")

    def refuses(self, config):
        if config.peft == "prompt_tuning":
            return (
                PROMPT_TUNING_REFUSES,
                "--peft prompt_tuning trains virtual input tokens, not layers",
            )
        return (
            ("bitfit", "l2sp"),
            f"--peft {config.peft} keeps the pretrained weights frozen and trains adapters (no "
            "pretrained start for L2-SP to pull towards; BitFit is another method)",
        )

    def label(self, config) -> str:
        return f"{config.peft} adapters (peft)"

    def trains_wrapper(self, config) -> bool:
        return config.peft == "prompt_tuning"

    def apply(self, model, view, config):
        adapter, report = apply_adapter(model, config, view)
        # the head is wrapped now; prompt tuning changes the input, not the blocks
        view = None if config.peft == "prompt_tuning" else get_block_view(model)
        return report, adapter, view

    def describe(self, config, plan) -> dict:
        entry = fine_tuning_description(config, plan)
        return entry | {"name": config.peft, "peft": describe_adapter(config, plan.adapter)}


register_strategy(PeftAdapters())
