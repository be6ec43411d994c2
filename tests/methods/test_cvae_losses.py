"""CVAE loss terms against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from sbir_bench.methods.components.losses import (
    cvae_reconstruction_loss,
    cvae_total_loss,
    kl_divergence_standard_normal,
    sketch_regression_loss,
)


def test_reconstruction_is_mean_over_dims_then_batch():
    generated = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    # squared errors: [1, 0] and [4, 9] -> per-sample means 0.5 and 6.5 -> batch mean 3.5
    # (a sum over dims would give 7.0, a sum over everything 14.0)
    assert cvae_reconstruction_loss(generated, target).item() == pytest.approx(3.5)


def test_kl_is_summed_over_latent_dims_and_averaged_over_batch():
    mu = torch.tensor([[0.0, 1.0], [0.5, 0.0]])
    log_var = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # sample 1: dim 1: 1 + 0 - 1 - 0 = 0; dim 2: 2 + 1 - 1 - ln 2 = 2 - ln 2; half the sum: 1 - ln(2)/2
    # sample 2: dim 1: 1 + 0.25 - 1 - 0 = 0.25; dim 2: 0; half the sum: 0.125
    expected = ((1.0 - math.log(2.0) / 2.0) + 0.125) / 2.0  # = 0.38921...
    assert kl_divergence_standard_normal(mu, log_var).item() == pytest.approx(expected)


def test_kl_of_standard_normal_with_itself_is_zero():
    zeros = torch.zeros(3, 5)
    assert kl_divergence_standard_normal(zeros, zeros).item() == 0.0


def test_sketch_regression_is_mean_squared_error():
    regressed = torch.tensor([[2.0, 0.0, 1.0]])
    sketch = torch.tensor([[1.0, 0.0, 3.0]])
    # squared errors 1, 0, 4 -> mean 5/3
    assert sketch_regression_loss(regressed, sketch).item() == pytest.approx(5.0 / 3.0)


def test_total_weights_the_terms():
    total = cvae_total_loss(
        torch.tensor(1.0), torch.tensor(0.5), torch.tensor(0.1), kl_weight=2.0, regulariser_weight=10.0
    )
    # 1 + 2 * 0.5 + 10 * 0.1 = 3
    assert total.item() == pytest.approx(3.0)
    # released weights by default: 1 + 1 * 0.5 + 10 * 0.1 = 2.5
    default = cvae_total_loss(torch.tensor(1.0), torch.tensor(0.5), torch.tensor(0.1))
    assert default.item() == pytest.approx(2.5)
