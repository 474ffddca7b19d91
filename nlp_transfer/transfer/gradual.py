"""Gradual unfreezing (Howard & Ruder 2018, ULMFiT): train the head first, then one more block."""

from __future__ import annotations

from torch import nn

from ..models.blocks import BlockView, get_block_view


class GradualUnfreezer:
    """Unfreeze the blocks of a model one at a time, from the top, as training goes on.

    Howard & Ruder (2018), "Universal Language Model Fine-tuning for Text Classification"
    (ULMFiT), section 3.3: "we first unfreeze the last layer and fine-tune all unfrozen layers for
    one epoch. We then unfreeze the next lower frozen layer and repeat". Here the head trains
    alone in the first stage; stage ``s`` (0-based) trains the head plus the top ``s`` blocks.
    A stage lasts one epoch (``unfreeze_every_n_steps=0``) or ``unfreeze_every_n_steps``
    optimizer steps. Only blocks that were trainable when the unfreezer was made are ever
    unfrozen, so it composes with ``--freeze_layers`` (those stay frozen).

    Create it *before* building the optimizer (every block it will unfreeze must be in the
    optimizer; AdamW keeps no state for a parameter until it first gets a gradient), then call
    :meth:`start`, and :meth:`update` at the start of every epoch and step (``fit`` does).

    Args:
        model: A model :func:`~nlp_transfer.models.blocks.get_block_view` supports, with any
            ``--freeze_layers`` freezing already applied.
        unfreeze_every_n_steps: Steps per stage; 0 = one stage per epoch.
        view: A precomputed block view.

    Raises:
        ValueError: If ``unfreeze_every_n_steps < 0``.
    """

    def __init__(
        self, model: nn.Module, unfreeze_every_n_steps: int = 0, view: BlockView | None = None
    ):
        if unfreeze_every_n_steps < 0:
            raise ValueError(
                f"--unfreeze_every_n_steps must be >= 0, got {unfreeze_every_n_steps}."
            )
        view = view or get_block_view(model)
        self.unfreeze_every_n_steps = unfreeze_every_n_steps
        # Top first: the order in which blocks are unfrozen.
        self.blocks = [
            b for b in reversed(view.blocks) if any(p.requires_grad for p in b.parameters())
        ]
        # Only the parameters trainable now are ever switched (adapters, BitFit: the rest of a
        # block stays frozen when the block is "unfrozen").
        self._params = [[p for p in b.parameters() if p.requires_grad] for b in self.blocks]
        self.stage = -1

    @property
    def num_stages(self) -> int:
        """Stages until everything it manages trains: head only, then one block more each."""
        return len(self.blocks) + 1

    def stage_at(self, epoch: int, global_step: int) -> int:
        """The stage for 1-based ``epoch`` after ``global_step`` optimizer steps."""
        if self.unfreeze_every_n_steps:
            stage = global_step // self.unfreeze_every_n_steps
        else:
            stage = epoch - 1
        return min(stage, len(self.blocks))

    def trainable_blocks(self) -> list[str]:
        """Names of the blocks unfrozen so far, top first (the head is always trainable)."""
        return [b.name for b in self.blocks[: max(self.stage, 0)]]

    def start(self) -> None:
        """Freeze every managed block: stage 0, the head trains alone."""
        self._set_stage(0)

    def update(self, epoch: int, global_step: int) -> bool:
        """Move to the stage of ``(epoch, global_step)``; True if blocks were unfrozen."""
        stage = self.stage_at(epoch, global_step)
        if stage == self.stage:
            return False
        self._set_stage(stage)
        return True

    def _set_stage(self, stage: int) -> None:
        self.stage = stage
        for i, params in enumerate(self._params):
            for p in params:
                p.requires_grad_(i < stage)
