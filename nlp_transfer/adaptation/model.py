"""The adapted network: encoder -> pooled features -> label head, plus a domain-alignment loss.

:class:`DomainAdaptationModel` is what :class:`~nlp_transfer.training.trainer.Trainer` trains. Its
forward takes a *joint* batch (a labelled source batch and an unlabelled target batch, see
:mod:`nlp_transfer.adaptation.data`) and returns the source logits, so the loop's
cross-entropy sees source labels only; on the way it computes the alignment loss between the
two batches' pooled features and keeps it for :meth:`DomainAdaptationModel.alignment_loss`,
which the loop adds to the loss as its ``regularizer``. Evaluation batches (no target part)
just get logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ..models.blocks import Block, BlockView, get_block_view
from ..transfer.cache import PREFIX_INPUT, PrefixFeeder
from ..transfer.features import FeatureExtractionClassifier, FeatureHead, pool
from .losses import DomainDiscriminator, coral_loss, dann_lambda, mmd_loss

TARGET_PREFIX = "target_"


class DomainAdaptationModel(nn.Module):
    """A text classifier on pooled encoder features, trained with a domain-alignment loss.

    The network is the encoder of ``classifier`` (``classifier.base_model``), mean (or CLS)
    pooling, and a new linear head on the pooled features: the features all-MiniLM-L6-v2 was
    trained to produce, and the ones the alignment acts on. The classifier's own head (BERT's
    pooler and classification layer) is unused and frozen.

    Methods (``method``):

    - ``source_only``: no alignment loss (the baseline; also the in-domain oracle's network);
    - ``dann``: a :class:`~nlp_transfer.adaptation.losses.DomainDiscriminator` behind a
      gradient-reversal layer whose coefficient is ``weight * schedule(p)``; the loss added is
      the discriminator's cross-entropy;
    - ``coral`` / ``mmd``: ``weight * schedule(p) * coral_loss`` / ``mmd_loss``.

    ``schedule`` is ``ramp`` (:func:`~nlp_transfer.adaptation.losses.dann_lambda`) or
    ``constant`` (1); ``p`` is the share of this process's training batches done, counted by the
    model itself (``total_steps`` must be set before training).

    Args:
        classifier: A sequence-classification model (block view supported when
            ``prefix_layers > 0``), its lower layers already frozen as wanted.
        method: One of ``source_only``, ``dann``, ``coral``, ``mmd``.
        weight: The method's weight (``--dann_weight``...).
        schedule: ``ramp`` or ``constant``.
        pooling: ``mean`` or ``cls``.
        prefix_layers: ``k >= 1``: batches carry ``prefix_hidden`` (and ``target_prefix_hidden``)
            from a frozen-prefix cache of the embeddings and lower ``k`` layers; 0: no cache.
        mmd_kernels: Gaussian kernels of MK-MMD.
        mmd_kernel_mul: Ratio between their bandwidths.

    Raises:
        ValueError: Unknown ``method``.
    """

    def __init__(
        self,
        classifier: PreTrainedModel,
        method: str = "source_only",
        weight: float = 1.0,
        *,
        schedule: str = "ramp",
        pooling: str = "mean",
        prefix_layers: int = 0,
        mmd_kernels: int = 5,
        mmd_kernel_mul: float = 2.0,
    ):
        super().__init__()
        if method not in ("source_only", "dann", "coral", "mmd"):
            raise ValueError(f"Unknown domain-adaptation method {method!r}.")
        self.classifier = classifier
        for p in get_block_view(classifier).head.parameters():
            p.requires_grad_(False)  # BERT's pooler and classifier: replaced by self.head
        hidden = classifier.config.hidden_size
        self.head = FeatureHead(hidden, classifier.config.num_labels, "linear")
        self.discriminator = DomainDiscriminator(hidden) if method == "dann" else None
        self.method, self.weight, self.schedule, self.pooling = method, weight, schedule, pooling
        self.mmd_kernels, self.mmd_kernel_mul = mmd_kernels, mmd_kernel_mul
        self.feeder = PrefixFeeder(classifier, prefix_layers) if prefix_layers else None
        self.total_steps = 1
        self.steps_done = 0
        self.trace: list[dict[str, float]] = []  # per training batch: coefficient, loss, ...
        self._alignment: torch.Tensor | None = None

    @property
    def config(self):
        return self.classifier.config

    @property
    def adapts(self) -> bool:
        """Whether training batches need a target part (every method but ``source_only``)."""
        return self.method != "source_only"

    def new_modules(self) -> list[nn.Module]:
        """The freshly initialised modules (label head, domain classifier): their own LR."""
        return [m for m in (self.head, self.discriminator) if m is not None]

    def block_view(self) -> BlockView:
        """The encoder's blocks, and the new modules as the head (the transfer plan's view).

        The classifier's own head (pooler, classification layer) is unused, frozen, and in no
        block, so no strategy trains it.
        """
        blocks = get_block_view(self.classifier).blocks
        new = self.new_modules()
        return BlockView(blocks=blocks, head=Block("head", new), new=Block("new", new))

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs):
        """Pooled features ``(batch, hidden)`` of one tokenized batch.

        ``inputs`` may hold ``prefix_hidden`` ``(batch, seq, hidden)`` (cached prefix output)
        and ``token_type_ids``.
        """
        prefix = inputs.pop(PREFIX_INPUT, None)
        encoder = self.classifier.base_model
        if prefix is not None:
            if self.feeder is None:
                raise RuntimeError("prefix_hidden given to a model built with prefix_layers=0.")
            with self.feeder.feeding(prefix):
                hidden = encoder(input_ids=input_ids, attention_mask=attention_mask, **inputs)
        else:
            hidden = encoder(input_ids=input_ids, attention_mask=attention_mask, **inputs)
        return pool(hidden.last_hidden_state, attention_mask, self.pooling)

    def coefficient(self) -> float:
        """The alignment weight at the current training progress."""
        progress = self.steps_done / max(self.total_steps, 1)
        ramp = dann_lambda(progress) if self.schedule == "ramp" else 1.0
        return self.weight * ramp

    def forward(self, **batch: torch.Tensor) -> SequenceClassifierOutput:
        """Source logits ``(batch, num_labels)``; in training, also the alignment loss.

        Args:
            **batch: The source batch (``input_ids``, ``attention_mask``, optional
                ``prefix_hidden``/``token_type_ids``) and, for adaptation during training, the
                target batch under the same names prefixed ``target_``. Labels are never
                passed in (the loop removes them); target batches carry none.
        """
        target = {
            k.removeprefix(TARGET_PREFIX): v
            for k, v in batch.items()
            if k.startswith(TARGET_PREFIX)
        }
        source = {k: v for k, v in batch.items() if not k.startswith(TARGET_PREFIX)}
        source_features = self.features(**source)
        logits = self.head(source_features.float())
        self._alignment = None
        if self.training and self.adapts and target:
            target_features = self.features(**target)
            self._alignment = self._align(source_features.float(), target_features.float())
            self.steps_done += 1
        return SequenceClassifierOutput(logits=logits)

    def _align(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        coefficient = self.coefficient()
        record = {"coefficient": coefficient}
        if self.method == "dann":
            assert self.discriminator is not None
            loss, accuracy = self.discriminator(source, target, coefficient)
            record["domain_accuracy"] = float(accuracy)
        elif self.method == "coral":
            raw = coral_loss(source, target)
            loss = coefficient * raw
        else:
            raw = mmd_loss(source, target, self.mmd_kernel_mul, self.mmd_kernels)
            loss = coefficient * raw
        record["loss"] = float(loss.detach() if self.method == "dann" else raw.detach())
        self.trace.append(record)
        return loss

    def alignment_loss(self) -> torch.Tensor:
        """The alignment loss of the last training batch (0 when there was none).

        Pass this bound method to :class:`~nlp_transfer.training.trainer.Trainer` as ``regularizer``.
        """
        if self._alignment is None:
            return torch.zeros((), device=self.head.net.weight.device)
        return self._alignment

    def as_classifier(self) -> FeatureExtractionClassifier:
        """The trained network as a saveable classifier (encoder + pooling + head).

        ``save_pretrained`` of the result writes the Hugging Face encoder, ``head.safetensors``
        and ``feature_extraction.json``, which :func:`nlp_transfer.predict` loads. The prefix
        cache is switched off first (the model computes its prefix again).
        """
        if self.feeder is not None:
            self.feeder.disable()
        return FeatureExtractionClassifier(self.classifier.base_model, self.head, self.pooling)


def trace_summary(trace: Sequence[dict[str, float]], num_epochs: int) -> list[dict[str, float]]:
    """Mean of each traced quantity per epoch (``trace`` holds one record per batch)."""
    if not trace:
        return []
    per_epoch = max(len(trace) // num_epochs, 1)
    out = []
    for e in range(num_epochs):
        chunk = trace[e * per_epoch : (e + 1) * per_epoch if e < num_epochs - 1 else None]
        if chunk:
            keys = chunk[0].keys()
            out.append({k: sum(r[k] for r in chunk) / len(chunk) for k in keys} | {"epoch": e + 1})
    return out
