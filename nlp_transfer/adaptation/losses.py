"""Domain-alignment objectives on pooled features: gradient reversal (DANN), Deep CORAL, MK-MMD.

Each takes a batch of source features ``(n_s, d)`` and a batch of target features ``(n_t, d)``
(one vector per text, e.g. the mean-pooled encoder output) and returns a scalar that is small
when the two batches look alike, so adding it to the source classification loss pulls the
encoder towards a feature space shared by both domains:

- **DANN** (Ganin et al. 2016, "Domain-Adversarial Training of Neural Networks", JMLR 17): a
  domain classifier learns to tell the domains apart; a gradient-reversal layer in front of it
  makes the encoder *maximise* that classifier's loss, with a weight that ramps up over training
  (:func:`dann_lambda`).
- **Deep CORAL** (Sun & Saenko 2016, "Deep CORAL: Correlation Alignment for Deep Domain
  Adaptation", ECCV workshops): the distance between the two batches' feature covariances.
- **MK-MMD** (Long et al. 2015, "Learning Transferable Features with Deep Adaptation Networks",
  ICML): the maximum mean discrepancy under a sum of Gaussian kernels of several bandwidths.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..transfer.features import FeatureHead


class _GradientReversalFunction(torch.autograd.Function):
    """Identity forward; the backward multiplies the incoming gradient by ``-coefficient``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coefficient * grad_output, None


def grad_reverse(x: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
    """The gradient-reversal layer ``R_lambda`` of Ganin et al. (2016), eq. 13.

    Forward: ``R(x) = x``. Backward: ``dR/dx = -coefficient * I``, so whatever minimises a loss
    computed after it is pushed, below it, to maximise that loss (scaled by ``coefficient``).

    Args:
        x: Any tensor, e.g. features ``(batch, d)``.
        coefficient: ``lambda >= 0``, the scale of the reversed gradient.

    Returns:
        ``x`` (a view), whose gradient is reversed and scaled.
    """
    return _GradientReversalFunction.apply(x, float(coefficient))


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """The reversal weight schedule of Ganin et al. (2016): ``2 / (1 + exp(-gamma p)) - 1``.

    It rises from 0 at the start of training (``p = 0``), when the domain classifier's signal is
    noise, to almost 1 at the end (``p = 1``: 0.9999 for ``gamma = 10``).

    Args:
        progress: Training progress ``p`` in [0, 1] (batches done / batches in the run).
        gamma: Steepness (10 in the paper).

    Returns:
        ``lambda_p`` in [0, 1).
    """
    p = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


class DomainDiscriminator(nn.Module):
    """DANN's domain classifier behind a gradient-reversal layer: features -> (source, target) logits.

    The classifier is :class:`~nlp_transfer.transfer.features.FeatureHead` ``"mlp"`` (one hidden
    layer of ``d`` units, GELU, dropout); Ganin et al. used one hidden layer for text too.

    Args:
        hidden_size: Feature size ``d``.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.classifier = FeatureHead(hidden_size, 2, "mlp")

    def forward(
        self, source: torch.Tensor, target: torch.Tensor, coefficient: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The domain loss and accuracy of one source batch and one target batch.

        Args:
            source: ``(n_s, d)`` source features (domain 0).
            target: ``(n_t, d)`` target features (domain 1).
            coefficient: Scale of the reversed gradient reaching the features.

        Returns:
            ``(loss, accuracy)``: mean cross-entropy of the domain labels (the discriminator
            minimises it; through the reversal the encoder maximises it) and the share of
            correct domain guesses (detached).
        """
        features = grad_reverse(torch.cat([source, target]), coefficient)
        logits = self.classifier(features.float())
        domains = torch.cat(
            [
                torch.zeros(len(source), dtype=torch.long, device=logits.device),
                torch.ones(len(target), dtype=torch.long, device=logits.device),
            ]
        )
        accuracy = (logits.detach().argmax(dim=1) == domains).float().mean()
        return F.cross_entropy(logits, domains), accuracy


def _covariance(x: torch.Tensor) -> torch.Tensor:
    """Unbiased covariance ``(d, d)`` of the rows of ``x`` ``(n, d)``, n >= 2."""
    centred = x - x.mean(dim=0, keepdim=True)
    return centred.T @ centred / (x.shape[0] - 1)


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL loss (Sun & Saenko 2016, eq. 1): ``||C_S - C_T||_F^2 / (4 d^2)``.

    ``C_S`` and ``C_T`` are the unbiased feature covariances of the source and target batches.
    It is 0 when the two batches have the same covariance (e.g. the same rows), and it ignores
    the means, as in the paper. Computed in float32.

    Args:
        source: ``(n_s, d)`` source features, ``n_s >= 2``.
        target: ``(n_t, d)`` target features, ``n_t >= 2``.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: A batch has fewer than 2 rows or the feature sizes differ.
    """
    if source.shape[0] < 2 or target.shape[0] < 2 or source.shape[1] != target.shape[1]:
        raise ValueError(
            f"CORAL needs two batches of >= 2 rows with the same feature size, got "
            f"{tuple(source.shape)} and {tuple(target.shape)}."
        )
    d = source.shape[1]
    diff = _covariance(source.float()) - _covariance(target.float())
    return (diff * diff).sum() / (4 * d * d)


def gaussian_kernels(
    x: torch.Tensor, y: torch.Tensor, kernel_mul: float = 2.0, kernel_num: int = 5
) -> torch.Tensor:
    """Sum of Gaussian kernels ``exp(-||a - b||^2 / s_i)`` over the pooled rows of ``x`` and ``y``.

    The bandwidths are ``s_i = s * kernel_mul ** (i - kernel_num // 2)``, ``i = 0..kernel_num-1``,
    around ``s``, the mean squared distance between distinct rows of the pooled sample
    (detached): the family of kernels with equal weights that Long et al. (2015) use in their
    released DAN code.

    Args:
        x: ``(n, d)``.
        y: ``(m, d)``.
        kernel_mul: Ratio between neighbouring bandwidths.
        kernel_num: Number of kernels.

    Returns:
        ``(n + m, n + m)`` kernel matrix of ``[x; y]``.
    """
    pooled = torch.cat([x, y]).float()
    distances = torch.cdist(pooled, pooled).pow(2)
    n = pooled.shape[0]
    bandwidth = distances.detach().sum() / max(n * n - n, 1)
    bandwidth = bandwidth.clamp_min(1e-12)
    scales = [bandwidth * kernel_mul ** (i - kernel_num // 2) for i in range(kernel_num)]
    return sum(torch.exp(-distances / s) for s in scales)


def mmd_loss(
    source: torch.Tensor, target: torch.Tensor, kernel_mul: float = 2.0, kernel_num: int = 5
) -> torch.Tensor:
    """Multi-kernel maximum mean discrepancy (Long et al. 2015), squared, biased estimate.

    ``MMD^2 = mean k(s, s') + mean k(t, t') - 2 mean k(s, t)`` over all pairs (the V-statistic of
    Gretton et al. 2012, which is >= 0 and exactly 0 for identical batches), with the kernels of
    :func:`gaussian_kernels`.

    Args:
        source: ``(n_s, d)`` source features.
        target: ``(n_t, d)`` target features.
        kernel_mul: Ratio between neighbouring bandwidths.
        kernel_num: Number of Gaussian kernels.

    Returns:
        A scalar tensor (float32).

    Raises:
        ValueError: A batch is empty or the feature sizes differ.
    """
    if not len(source) or not len(target) or source.shape[1] != target.shape[1]:
        raise ValueError(
            f"MMD needs two non-empty batches with the same feature size, got "
            f"{tuple(source.shape)} and {tuple(target.shape)}."
        )
    kernels = gaussian_kernels(source, target, kernel_mul, kernel_num)
    n = len(source)
    ss, tt, st = kernels[:n, :n], kernels[n:, n:], kernels[:n, n:]
    return ss.mean() + tt.mean() - 2 * st.mean()
