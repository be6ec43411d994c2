"""Losses of the Siamese and triplet baselines (components/metric_losses.py) against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from sbir_bench.methods.components.metric_losses import (
    check_positive,
    chopra_energy_loss,
    contrastive_loss,
    euclidean_distance,
    triplet_margin_loss,
)


def test_euclidean_distance_by_hand_and_its_gradient_at_zero():
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]], requires_grad=True)
    b = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    d = euclidean_distance(a, b)
    assert d.tolist() == pytest.approx([5.0, 0.0])  # sqrt(3² + 4²) = 5; identical rows: 0
    d.sum().backward()
    assert torch.isfinite(a.grad).all()
    assert a.grad[1].tolist() == [0.0, 0.0]  # the subgradient 0 where a == b, not NaN
    assert a.grad[0].tolist() == pytest.approx([-0.6, -0.8])  # (a - b) / d = (-3, -4) / 5


def test_contrastive_loss_by_hand():
    d = torch.tensor([0.5, 0.5, 2.0, 3.0])
    same = torch.tensor([True, False, False, True])
    # margin 2: y=1: 0.5² = 0.25; y=0: max(0, 2 − 0.5)² = 2.25; y=0, d = m: the hinge at zero, 0;
    # y=1: 3² = 9. Mean: (0.25 + 2.25 + 0 + 9) / 4 = 11.5 / 4 = 2.875
    assert contrastive_loss(d, same, margin=2.0).item() == pytest.approx(2.875)
    # a negative pair beyond the margin costs nothing: max(0, 2 − 2.5) = 0
    assert contrastive_loss(torch.tensor([2.5]), torch.tensor([False]), margin=2.0).item() == 0.0
    # the flags may be 0/1 numbers: y = 1 → d² = 0.25, y = 0 → (1 − 0.5)² = 0.25
    assert contrastive_loss(torch.tensor([0.5, 0.5]), torch.tensor([1, 0]), margin=1.0).item() == 0.25


def test_chopra_energy_loss_by_hand():
    q = 10.0
    d = torch.tensor([2.0, 0.0, 10.0])
    same = torch.tensor([1.0, 0.0, 0.0])
    # y=1, d=2: (2/10)·4 = 0.8; y=0, d=0: 2·10·exp(0) = 20;
    # y=0, d=10: 20·exp(−2.77) = 20 · 0.0626620 = 1.253240
    expected = (0.8 + 20.0 + 20.0 * math.exp(-2.77)) / 3  # = (20.8 + 1.253240) / 3 = 7.351080
    assert chopra_energy_loss(d, same, q=q).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(7.351080, abs=1e-6)
    # a genuine pair at d = 0 costs 0, an impostor pair far away almost nothing (20·e^−27.7 ≈ 1.9e−11)
    assert chopra_energy_loss(torch.tensor([0.0]), torch.tensor([1.0]), q=q).item() == 0.0
    assert chopra_energy_loss(torch.tensor([100.0]), torch.tensor([0.0]), q=q).item() < 1e-10


def test_triplet_margin_loss_by_hand():
    positive = torch.tensor([1.0, 1.0, 3.0])
    negative = torch.tensor([1.5, 3.0, 1.0])
    # margin 1: max(0, 1 + 1 − 1.5) = 0.5; max(0, 1 + 1 − 3) = 0 (the hinge at zero); max(0, 1 + 3 − 1) = 3
    # mean (0.5 + 0 + 3) / 3 = 3.5 / 3
    assert triplet_margin_loss(positive, negative, margin=1.0).item() == pytest.approx(3.5 / 3)
    # exactly at the hinge: 1 + 1 − 2 = 0
    assert triplet_margin_loss(torch.tensor([1.0]), torch.tensor([2.0]), margin=1.0).item() == 0.0


def test_margins_and_q_must_be_positive():
    check_positive("margin", 0.5)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="margin must be a finite positive number"):
            check_positive("margin", bad)
