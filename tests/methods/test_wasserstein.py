"""LWBR (Xie et al., CVPR'17): the entropic barycentre against POT, histograms and ground cost, each loss term
against values worked out by hand, the non-convergence error, shapes of the embeddings, bad arguments and a
tiny fit on separable fake data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sbir_bench.methods.components.barycentric_metric import (
    barycentric_total_loss,
    between_class_hinge,
    cross_domain_loss,
    scatter_loss,
    within_class_scatter,
)
from sbir_bench.methods.components.wasserstein_barycenter import (
    BarycenterNotConverged,
    barycenter,
    correlation_ground_cost,
    feature_histograms,
)
from sbir_bench.methods.shape_wasserstein import WassersteinBarycentric
from tests.methods.shape_batches import class_batches, fit, info, nearest_neighbour_accuracy, separable_data
from tests.methods.test_cvae import one_thread  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def _problem(seed: int, items: int, views: int, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hist = torch.rand(items, views, bins, generator=g, dtype=torch.float64) + 0.05
    hist = hist / hist.sum(dim=-1, keepdim=True)
    cost = torch.rand(bins, bins, generator=g, dtype=torch.float64)
    cost = (cost + cost.T) / 2
    cost.fill_diagonal_(0.0)
    return hist, cost


@pytest.mark.parametrize(("seed", "views", "bins", "reg"), [(0, 3, 5, 0.1), (1, 12, 8, 0.05), (2, 2, 6, 0.5)])
def test_barycentre_matches_pot(seed, views, bins, reg):
    ot = pytest.importorskip("ot")
    hist, cost = _problem(seed, items=2, views=views, bins=bins)
    ours, iterations, residual = barycenter(hist, cost, reg, tol=1e-12, max_iter=20000)
    assert iterations < 20000 and float(residual.max()) < 1e-12
    for item in range(2):
        theirs = ot.bregman.barycenter(
            hist[item].T.numpy(), cost.numpy(), reg, numItermax=100000, stopThr=1e-15
        )
        np.testing.assert_allclose(ours[item].numpy(), theirs, atol=1e-6)


def test_weighted_barycentre_matches_pot_log_domain():
    # POT 0.9.7's plain "sinkhorn" barycentre starts from the unweighted geometric mean, which it keeps as
    # an invariant, so with unequal weights it lands elsewhere; its log-domain and stabilised solvers keep
    # Σ_k w_k log v_k = 0 (Benamou et al.'s fixed point) and agree with ours
    ot = pytest.importorskip("ot")
    hist, cost = _problem(3, items=1, views=3, bins=4)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    ours, _, _ = barycenter(hist, cost, 0.2, weights=weights, tol=1e-12, max_iter=20000)
    for method in ("sinkhorn_log", "sinkhorn_stabilized"):
        theirs = ot.bregman.barycenter(
            hist[0].T.numpy(),
            cost.numpy(),
            0.2,
            weights=weights.numpy(),
            method=method,
            numItermax=100000,
            stopThr=1e-15,
        )
        np.testing.assert_allclose(ours[0].numpy(), theirs, atol=1e-6)


def test_barycentre_of_identical_histograms_on_a_zero_cost_diagonal_is_close_to_them():
    # with a tiny ε and cost 1 off the diagonal, K ≈ I: the barycentre of equal histograms is that histogram
    h = torch.tensor([[[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]]], dtype=torch.float64)
    cost = 1.0 - torch.eye(3, dtype=torch.float64)
    b, _, _ = barycenter(h, cost, 0.01, tol=1e-12)
    assert b[0].tolist() == pytest.approx([0.2, 0.3, 0.5], abs=1e-9)


def test_non_convergence_names_the_method_item_step_iterations_and_residual():
    hist, cost = _problem(0, items=3, views=4, bins=6)
    with pytest.raises(
        BarycenterNotConverged,
        match=r"wasserstein: .* item \d \(batch position\) at step 7 .*"
        r"residual .* after 2 iterations",
    ):
        barycenter(hist, cost, 0.01, tol=1e-14, max_iter=2, what="wasserstein", step=7)


def test_histograms_clip_normalise_and_mix_the_uniform():
    x = torch.tensor([[3.0, -1.0, 1.0, 0.0]])
    # clipped [3, 0, 1, 0] / 4 = [0.75, 0, 0.25, 0]; 0.8 of it + 0.2 / 4 = 0.05 → [0.65, 0.05, 0.25, 0.05]
    assert feature_histograms(x, uniform_mix=0.2)[0].tolist() == pytest.approx([0.65, 0.05, 0.25, 0.05])
    with pytest.raises(ValueError, match="item 1 .* no positive feature value"):
        feature_histograms(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), what="wasserstein")


def test_correlation_cost_is_zero_for_co_firing_dimensions():
    x = torch.tensor([[1.0, 2.0, 3.0, 5.0], [2.0, 4.0, 1.0, 5.0], [3.0, 6.0, 2.0, 5.0]])
    cost = correlation_ground_cost(x)
    # dims 0 and 1 proportional: corr 1 → cost 0; dim 3 constant: corr 0 → cost 1/2;
    # dims 0 [1,2,3] and 2 [3,1,2]: centred [-1,0,1], [1,-1,0] → corr (−1 + 0 + 0)/2 = −1/2 → cost 3/4
    assert cost[0, 1].item() == pytest.approx(0.0, abs=1e-12)
    assert cost[0, 3].item() == pytest.approx(0.5)
    assert cost[0, 2].item() == pytest.approx(0.75)
    assert torch.diagonal(cost).tolist() == [0.0] * 4


def test_cross_domain_loss_averages_every_sketch_shape_pair():
    sketch, sketch_labels = torch.tensor([[0.0], [3.0]]), torch.tensor([0, 1])
    shape, shape_labels = torch.tensor([[1.0], [2.5]]), torch.tensor([0, 1])
    # squared distances: (s0,t0) same 1 → 1; (s0,t1) different 6.25 ≥ α = 2 → 0;
    # (s1,t0) different 4 → 0; (s1,t1) same 0.25 → 0.25  ⇒ mean 1.25 / 4 = 0.3125
    value = cross_domain_loss(sketch, sketch_labels, shape, shape_labels, margin=2.0)
    assert value.item() == pytest.approx(0.3125)
    # α = 5: (s1,t0) different, 5 − 4 = 1 is added ⇒ 2.25 / 4
    value = cross_domain_loss(sketch, sketch_labels, shape, shape_labels, margin=5.0)
    assert value.item() == pytest.approx(2.25 / 4)


def test_scatter_terms_by_hand():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [1.0, 3.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # class means μ0 = (1, 0), μ1 = (1, 2); squared distances to them: 1, 1, 1, 1 ⇒ within scatter 1
    assert within_class_scatter(z, labels).item() == pytest.approx(1.0)
    # ‖μ0 − μ1‖² = 4: α = 6 → 6 − 4 = 2; α = 3 → 0
    assert between_class_hinge(z, labels, margin=6.0).item() == pytest.approx(2.0)
    assert between_class_hinge(z, labels, margin=3.0).item() == pytest.approx(0.0)
    assert scatter_loss(z, labels, margin=6.0).item() == pytest.approx(3.0)
    assert between_class_hinge(z, torch.zeros(4, dtype=torch.long), margin=6.0).item() == 0.0


def test_total_loss_weighs_the_scatter_terms():
    # 1 + 0.5·(2 + 4) = 4
    value = barycentric_total_loss(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0), 0.5)
    assert value.item() == pytest.approx(4.0)


def test_embeddings_have_the_configured_width():
    method = WassersteinBarycentric(info(dim=16), widths=(8, 6))
    x = torch.rand(4, 3, 16)
    assert method.embed_query(torch.rand(5, 16)).shape == (5, 6)
    assert method.embed_gallery(x).shape == (4, 6)
    assert method.barycentres(x).sum(dim=-1).tolist() == pytest.approx([16.0] * 4, rel=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"margin": 0.0}, "margin"), ({"reg": -1.0}, "reg"), ({"scatter_weight": -1.0}, "scatter_weight")],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=f"wasserstein: {message}"):
        WassersteinBarycentric(info(), **kwargs)


def test_a_tiny_fit_separates_the_classes_across_domains():
    data = separable_data()
    data["sketch"], data["shape"] = data["sketch"].abs(), data["shape"].abs()  # histograms need mass
    torch.manual_seed(0)
    method = WassersteinBarycentric(info(), widths=(32, 8), margin=2.0, lr=3e-3)
    before = nearest_neighbour_accuracy(method, data)
    fit(method, class_batches(data, classes=4, n=4, m=2, num_batches=8), epochs=10)
    assert bool(method.cost_ready) and len(method._barycentre_cache) > 0
    after = nearest_neighbour_accuracy(method, data)
    assert after >= 0.9 and after > before, (before, after)
    assert math.isfinite(float(method.ground_cost.sum()))
