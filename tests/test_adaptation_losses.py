"""Domain-alignment pieces against hand computations: gradient reversal, schedule, CORAL, MMD, PAD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nlp_transfer.adaptation.distance import proxy_a_distance
from nlp_transfer.adaptation.losses import (
    DomainDiscriminator,
    coral_loss,
    dann_lambda,
    grad_reverse,
    mmd_loss,
)


@pytest.mark.parametrize("coefficient", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_negates_and_scales_exactly(coefficient):
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(4, 3, dtype=torch.float64)
    y = grad_reverse(x, coefficient)
    assert torch.equal(y, x)  # identity forward
    (y * upstream).sum().backward()
    assert torch.equal(x.grad, -coefficient * upstream)


def test_discriminator_gradient_reaching_features_is_reversed_and_scaled():
    """Features get -c times the gradient the domain loss would give them without reversal;
    the discriminator's own parameters get the plain gradient (it still learns the domains)."""
    torch.manual_seed(0)
    disc = DomainDiscriminator(6).eval()  # eval: no dropout, so both passes compute the same
    source, target = torch.randn(5, 6), torch.randn(3, 6) + 1.0

    def grads(coefficient):
        s, t = source.clone().requires_grad_(), target.clone().requires_grad_()
        disc.zero_grad()
        loss, _ = disc(s, t, coefficient)
        loss.backward()
        return s.grad, t.grad, [p.grad.clone() for p in disc.parameters()]

    s0, t0, p0 = grads(0.0)
    s1, t1, p1 = grads(1.0)
    s7, t7, p7 = grads(0.7)
    assert torch.count_nonzero(s0) == 0 and torch.count_nonzero(t0) == 0
    assert torch.allclose(s7, 0.7 * s1) and torch.allclose(t7, 0.7 * t1)
    # without reversal, descending the domain loss w.r.t. the features: the opposite direction
    s_plain = source.clone().requires_grad_()
    logits = disc.classifier(torch.cat([s_plain, target]))
    labels = torch.tensor([0] * 5 + [1] * 3)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    assert torch.allclose(s1, -s_plain.grad, atol=1e-7)
    for a, b, c in zip(p0, p1, p7, strict=True):  # the discriminator's gradient ignores c
        assert torch.allclose(a, b) and torch.allclose(b, c)


def test_dann_schedule():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    values = [dann_lambda(p / 10) for p in range(11)]
    assert values == sorted(values) and values[-1] < 1
    assert dann_lambda(2.0) == dann_lambda(1.0)  # progress is clipped to [0, 1]


def test_coral_matches_the_formula_by_hand():
    source = np.array([[1.0, 2.0], [3.0, 1.0], [0.0, 0.0], [2.0, 5.0]])
    target = np.array([[1.0, 1.0], [2.0, 0.0], [4.0, 3.0]])
    cs, ct = np.cov(source, rowvar=False), np.cov(target, rowvar=False)  # unbiased, (n - 1)
    expected = ((cs - ct) ** 2).sum() / (4 * 2**2)
    got = coral_loss(torch.tensor(source), torch.tensor(target))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_coral_is_zero_for_identical_batches_and_ignores_a_mean_shift():
    x = torch.randn(16, 8)
    assert coral_loss(x, x).item() == pytest.approx(0.0, abs=1e-12)
    assert coral_loss(x, x + 3.0).item() == pytest.approx(0.0, abs=1e-9)
    assert coral_loss(x, 2 * x).item() > 0
    with pytest.raises(ValueError, match="CORAL needs"):
        coral_loss(x[:1], x)


def _mmd_by_hand(source, target, kernel_mul, kernel_num):
    pooled = np.concatenate([source, target])
    d2 = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1)
    n = len(pooled)
    bandwidth = d2.sum() / (n * n - n)
    k = sum(
        np.exp(-d2 / (bandwidth * kernel_mul ** (i - kernel_num // 2))) for i in range(kernel_num)
    )
    m = len(source)
    return k[:m, :m].mean() + k[m:, m:].mean() - 2 * k[:m, m:].mean()


def test_mmd_matches_a_hand_computation():
    # One kernel, 1-D: squared distances 1, 4, 1 -> bandwidth 12 / 6 = 2.
    source, target = np.array([[0.0], [1.0]]), np.array([[2.0]])
    e = math.exp
    expected = (2 + 2 * e(-0.5)) / 4 + 1 - 2 * (e(-2) + e(-0.5)) / 2
    got = mmd_loss(torch.tensor(source), torch.tensor(target), kernel_num=1)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # Five kernels, several dimensions: the formula of Long et al.'s code, by numpy.
    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(5, 3)), rng.normal(1.0, 1.0, size=(4, 3))
    got = mmd_loss(torch.tensor(source), torch.tensor(target), kernel_mul=2.0, kernel_num=5)
    assert got.item() == pytest.approx(_mmd_by_hand(source, target, 2.0, 5), rel=1e-5)


def test_mmd_is_zero_for_identical_batches_and_grows_with_the_shift():
    x = torch.randn(32, 8)
    assert mmd_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    shifts = [mmd_loss(x, x + s).item() for s in (0.25, 1.0, 4.0)]
    assert 0 < shifts[0] < shifts[1] < shifts[2]
    with pytest.raises(ValueError, match="MMD needs"):
        mmd_loss(x[:0], x)


def test_proxy_a_distance_of_separable_and_identical_domains():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 5))
    far = proxy_a_distance(a, rng.normal(6.0, 1.0, size=(300, 5)))
    assert far["proxy_a_distance"] == pytest.approx(2.0)  # perfectly separable
    assert far["examples_per_domain"] == 200
    same = proxy_a_distance(a, rng.normal(size=(200, 5)))
    assert abs(same["proxy_a_distance"]) < 0.5 and 0.35 < same["domain_accuracy"] < 0.65
    with pytest.raises(ValueError, match="Feature shapes"):
        proxy_a_distance(a, a[:, :3])
