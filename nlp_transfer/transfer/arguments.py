"""The transfer-strategy arguments shared by the text and image tasks (and, in part, adaptation).

:class:`FrozenPrefixConfig` adds to the training arguments what freezing the lower blocks needs
(how many, their cache, the head's learning rate); :class:`TransferConfig` adds the strategies
that act on the whole block view: layer-wise LR decay, L2-SP, gradual unfreezing and feature
extraction. :func:`~nlp_transfer.transfer.plan.plan_transfer` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..training.arguments import (
    TrainingConfig,
    arg,
    check_choice,
    check_non_negative,
    check_positive,
)

TRANSFER = "Transfer strategy"
CACHE_CHOICES = ("auto", "memory", "disk", "no")
CACHE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
HEAD_CHOICES = ("linear", "mlp", "logistic_regression")
PEFT_CHOICES = ("none", "lora", "ia3", "prompt_tuning")


@dataclass
class FrozenPrefixConfig(TrainingConfig):
    """Training arguments plus freezing the lower blocks and caching their output.

    Raises:
        ValueError: A value out of range or not among a flag's choices; the message names the flag.
    """

    freeze_layers: int = arg(
        0,
        "Freeze the embeddings (the stem, for images) and the lower k encoder layers (stages); "
        "0 = full fine-tuning.",
        TRANSFER,
    )
    head_learning_rate: float | None = arg(
        None,
        "Learning rate of the classification head; unset: --learning_rate. A frozen encoder "
        "wants a much larger one.",
        TRANSFER,
    )
    cache_frozen_prefix: str = arg(
        "auto",
        "Frozen-prefix caching with --freeze_layers k: compute the frozen blocks once and train "
        "only the blocks above: auto (memory, or a memory-mapped file when large or with several "
        "processes), memory, disk, or no.",
        TRANSFER,
    )
    cache_dtype: str = arg(
        "float16",
        "Storage type of the frozen-prefix cache: float16, bfloat16 (memory only) or float32.",
        TRANSFER,
    )

    # The cache storages a task supports (images: no disk cache).
    cache_choices = CACHE_CHOICES

    def validate(self) -> None:
        super().validate()
        check_non_negative(self, "freeze_layers")
        if self.head_learning_rate is not None and self.head_learning_rate <= 0:
            raise ValueError(
                f"--head_learning_rate must be positive, got {self.head_learning_rate}."
            )
        check_choice(self, "cache_frozen_prefix", self.cache_choices)
        check_choice(self, "cache_dtype", tuple(CACHE_DTYPES))
        if self.cache_dtype == "bfloat16" and self.cache_frozen_prefix == "disk":
            raise ValueError("--cache_dtype bfloat16 works only in memory; use float16 on disk.")


@dataclass
class TransferConfig(FrozenPrefixConfig):
    """Every transfer strategy of the block view: freezing, LR decay, L2-SP, gradual unfreezing,
    feature extraction.

    Raises:
        ValueError: A value out of range, or strategies that do not combine (feature extraction
            with any other); the message names the flags.
    """

    layer_lr_decay: float = arg(
        1.0,
        "Layer-wise LR decay xi in (0, 1]: each block trains at xi times the LR of the block "
        "above (Sun et al. 2019); 1 = off.",
        TRANSFER,
    )
    l2sp_alpha: float = arg(
        0.0,
        "L2-SP: alpha/2 * ||w - w0||^2 on trainable pretrained weights (Li et al. 2018); 0 = off. "
        "Replaces weight decay there.",
        TRANSFER,
    )
    l2sp_beta: float = arg(
        0.0, "L2-SP: beta/2 * ||w||^2 on the new head (used when --l2sp_alpha > 0).", TRANSFER
    )
    gradual_unfreezing: bool = arg(
        False,
        "Gradual unfreezing (Howard & Ruder 2018, ULMFiT): the head trains alone, then one more "
        "block from the top each epoch (or every --unfreeze_every_n_steps).",
        TRANSFER,
    )
    unfreeze_every_n_steps: int = arg(
        0,
        "Gradual unfreezing: unfreeze the next block every N optimizer steps; 0 = every epoch.",
        TRANSFER,
    )
    feature_extraction: str = arg(
        "none",
        "Feature extraction: freeze the whole encoder, compute pooled features once, and fit a "
        "head on them: linear, mlp (torch, trained for num_train_epochs at head_learning_rate, "
        "default 1e-3) or logistic_regression (scikit-learn); none = fine-tuning.",
        TRANSFER,
    )
    peft: str = arg(
        "none",
        "Adapters through peft: lora (Hu et al. 2021), ia3 (Liu et al. 2022) or prompt_tuning "
        "(Lester et al. 2021; text only); the pretrained weights stay frozen, the new head trains "
        "in full. With --freeze_layers k, adapters go into layers k and above only.",
        TRANSFER,
    )
    lora_r: int = arg(8, "LoRA rank r.", TRANSFER)
    lora_alpha: float = arg(
        16.0, "LoRA scaling alpha (the update is scaled by alpha / r).", TRANSFER
    )
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
        "Save the LoRA/IA3 model merged in the usual Hugging Face layout in output_dir (the "
        "adapter alone always goes to output_dir/adapter); false: output_dir holds the adapter.",
        TRANSFER,
    )
    bitfit: bool = arg(
        False,
        "BitFit (Ben Zaken et al. 2022): train only the bias terms and the head (with "
        "--freeze_layers k, only the biases of layers k and above).",
        TRANSFER,
    )

    def validate(self) -> None:
        super().validate()
        self.check_parameter_efficient()
        if not 0 < self.layer_lr_decay <= 1:
            raise ValueError(f"--layer_lr_decay must be in (0, 1], got {self.layer_lr_decay}.")
        check_non_negative(self, "l2sp_alpha", "l2sp_beta", "unfreeze_every_n_steps")
        check_choice(self, "feature_extraction", ("none", *HEAD_CHOICES))
        if self.feature_extraction != "none":
            self.check_feature_extraction_alone()

    def feature_extraction_clashes(self) -> dict[str, object]:
        """``{flag: value}`` of the settings feature extraction cannot combine with."""
        return {
            "--freeze_layers": self.freeze_layers,
            "--gradual_unfreezing": self.gradual_unfreezing,
            "--layer_lr_decay": self.layer_lr_decay != 1.0,
            "--l2sp_alpha": self.l2sp_alpha,
            "--peft": self.peft != "none",
            "--bitfit": self.bitfit,
        }

    def check_parameter_efficient(self) -> None:
        """Raises ValueError naming the flags of an adapter setting that means nothing."""
        check_choice(self, "peft", PEFT_CHOICES)
        check_positive(self, "lora_r", "lora_alpha", "num_virtual_tokens")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"--lora_dropout must be in [0, 1), got {self.lora_dropout}.")
        if self.peft == "none":
            return
        if self.bitfit:
            raise ValueError("--peft and --bitfit are two methods; choose one.")
        if self.l2sp_alpha:
            raise ValueError(
                "--l2sp_alpha with --peft: the pretrained weights stay frozen and the adapter's "
                "weights have no pretrained start to pull towards; drop one of them."
            )
        if self.peft == "prompt_tuning":
            used = {
                "--freeze_layers": self.freeze_layers,
                "--gradual_unfreezing": self.gradual_unfreezing,
                "--layer_lr_decay": self.layer_lr_decay != 1.0,
                "--head_learning_rate": self.head_learning_rate,
            }
            used = [flag for flag, value in used.items() if value]
            if used:
                raise ValueError(
                    "--peft prompt_tuning trains virtual input tokens, not layers; it does not "
                    f"combine with {', '.join(used)}."
                )

    def check_feature_extraction_alone(self) -> None:
        """Raises ValueError naming the flags set beside ``--feature_extraction``."""
        if self.resume_from_checkpoint:
            raise ValueError(
                "--resume_from_checkpoint: feature-extraction runs write no checkpoints (the "
                "head trains in seconds on features computed once); run it again instead."
            )
        used = [flag for flag, value in self.feature_extraction_clashes().items() if value]
        if used:
            raise ValueError(
                "--feature_extraction freezes the whole encoder and computes its features once; "
                f"it does not combine with {', '.join(used)}."
            )

    @property
    def find_unused_parameters(self) -> bool:
        return self.gradual_unfreezing
