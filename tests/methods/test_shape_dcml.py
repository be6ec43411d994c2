"""DCML (Dai et al., AAAI'17): each loss term against values worked out by hand, the view pooling, shapes
of the embeddings, bad arguments, and a tiny fit on separable fake data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sbir_bench.methods.components.correlated_metric import (
    class_couples,
    contrastive_terms,
    correlation_loss,
    cross_domain_loss,
    dcml_total_loss,
    distance_structure_loss,
    weight_penalty,
    within_domain_loss,
)
from sbir_bench.methods.components.multiview_pooling import MultiViewEncoder, softmax_view_pool
from sbir_bench.methods.shape_dcml import DCML
from tests.methods.shape_batches import class_batches, fit, info, nearest_neighbour_accuracy, separable_data
from tests.methods.test_cvae import one_thread  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_contrastive_terms_pull_same_class_and_hinge_different_class():
    distance = torch.tensor([1.0, 3.0, 0.5])
    same = torch.tensor([True, False, False])
    # same: 1² = 1; different beyond the margin: max(0, 2 − 3)² = 0; different inside: (2 − 0.5)² = 2.25
    assert contrastive_terms(distance, same, margin=2.0).tolist() == pytest.approx([1.0, 0.0, 2.25])


def test_within_domain_loss_averages_the_pairs_i_below_j():
    points = torch.tensor([[0.0], [1.0], [2.5]])
    labels = torch.tensor([0, 0, 1])
    # pairs: (0,1) same, D = 1 → 1; (0,2) different, D = 2.5 ≥ h = 2 → 0;
    # (1,2) different, D = 1.5 → 0.5² = 0.25
    # mean over the 3 pairs: 1.25 / 3
    assert within_domain_loss(points, labels, margin=2.0).item() == pytest.approx(1.25 / 3)


def test_cross_domain_loss_averages_every_sketch_shape_pair():
    sketch, sketch_labels = torch.tensor([[0.0], [3.0]]), torch.tensor([0, 1])
    shape, shape_labels = torch.tensor([[1.0], [2.5]]), torch.tensor([0, 1])
    # (s0,t0) same D=1 → 1; (s0,t1) different D=2.5 → 0; (s1,t0) different D=2 → 0; (s1,t1) same D=0.5 → 0.25
    # mean over 4 pairs: 1.25 / 4 = 0.3125
    assert cross_domain_loss(sketch, sketch_labels, shape, shape_labels, margin=2.0).item() == pytest.approx(
        0.3125
    )


def test_class_couples_rotate_through_the_shapes_of_the_class():
    sketch_labels = torch.tensor([0, 0, 1, 1, 0])
    shape_labels = torch.tensor([1, 0, 0])
    sketches, shapes = class_couples(sketch_labels, shape_labels)
    # class 0: sketches 0, 1, 4 with its shapes 1, 2, 1 (r mod 2); class 1: sketches 2, 3 with its one shape 0
    assert list(zip(sketches.tolist(), shapes.tolist(), strict=True)) == [
        (0, 1),
        (1, 2),
        (4, 1),
        (2, 0),
        (3, 0),
    ]
    none = class_couples(torch.tensor([2]), torch.tensor([0]))
    assert none[0].numel() == 0 and none[1].numel() == 0


def test_distance_structure_term_matches_same_class_distances_and_hinges_the_others():
    sketch_distance, shape_distance = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.5])
    same = torch.tensor([True, False])
    # same-class pair: R = (1 − 2)² = 1; other pair: |3 − 2.5| = 0.5 → max(0, 1 − 0.5)² = 0.25; mean 0.625
    value = distance_structure_loss(sketch_distance, shape_distance, same, margin=1.0)
    assert value.item() == pytest.approx(0.625)


def test_correlation_loss_on_a_small_batch():
    sketch, sketch_labels = torch.tensor([[0.0], [1.0], [5.0]]), torch.tensor([0, 0, 1])
    shape, shape_labels = torch.tensor([[0.0], [4.0]]), torch.tensor([0, 1])
    l1c, l2c = correlation_loss(sketch, sketch_labels, shape, shape_labels, margin=2.0)
    # L1c over 6 pairs: (s0,t0) same 0 → 0; (s0,t1) diff 4 → 0; (s1,t0) same 1 → 1; (s1,t1) diff 3 → 0;
    # (s2,t0) diff 5 → 0; (s2,t1) same 1 → 1  ⇒ 2/6
    # couples: s0–t0, s1–t0 (class 0, one shape), s2–t1. pairs i<j of couples:
    # (c0,c1) same: D_s = 1, D_t = 0 → 1; (c0,c2) diff: D_s = 5, D_t = 4 → |1| → max(0, 2−1)² = 1;
    # (c1,c2) diff: D_s = 4, D_t = 4 → 0 → (2 − 0)² = 4  ⇒ L2c = 6/3 = 2
    assert l1c.item() == pytest.approx(2 / 6)
    assert l2c.item() == pytest.approx(2.0)


def test_weight_penalty_sums_squared_weights_not_biases():
    first, second = nn.Linear(2, 1), nn.Linear(1, 1)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 2.0]]))
        first.bias.fill_(5.0)
        second.weight.fill_(3.0)
    # 1² + 2² = 5, 3² = 9 ⇒ 14 (the biases, 5 and whatever, are left out)
    assert weight_penalty([first, second]).item() == pytest.approx(14.0)


def test_total_loss_weighs_the_terms():
    # 0.25·4 + 0.75·8 + 0.1·10 = 1 + 6 + 1 = 8
    value = dcml_total_loss(
        torch.tensor(4.0), torch.tensor(8.0), torch.tensor(10.0), alpha=0.25, weight_decay=0.1
    )
    assert value.item() == pytest.approx(8.0)


def test_softmax_view_weights_start_as_the_mean_and_weigh_views():
    views = torch.tensor([[[1.0, 0.0], [3.0, 2.0]]])  # one shape, 2 views
    assert softmax_view_pool(views, torch.zeros(2)).tolist() == [[2.0, 1.0]]
    # logits (ln 3, 0): weights 3/4, 1/4 → 0.75·[1, 0] + 0.25·[3, 2] = [1.5, 0.5]
    weighted = softmax_view_pool(views, torch.tensor([torch.log(torch.tensor(3.0)).item(), 0.0]))
    assert weighted.tolist()[0] == pytest.approx([1.5, 0.5])


def test_view_encoder_checks_the_view_count():
    encoder = MultiViewEncoder(4, (3,), pooling="softmax_weights", num_views=2)
    assert encoder(torch.rand(5, 2, 4)).shape == (5, 3)
    with pytest.raises(ValueError, match="has 3 views but the learned view weights were built for 2"):
        encoder(torch.rand(5, 3, 4))
    with pytest.raises(ValueError, match="need the number of views"):
        MultiViewEncoder(4, (3,), pooling="softmax_weights", num_views=0)


def test_embeddings_have_the_configured_width():
    method = DCML(info(dim=16), widths=(8, 6), pooling="softmax_weights", num_views=3)
    assert method.hparams.num_views == 3
    assert method.embed_query(torch.rand(5, 16)).shape == (5, 6)
    assert method.embed_gallery(torch.rand(4, 3, 16)).shape == (4, 6)


@pytest.mark.parametrize(("kwargs", "message"), [({"margin": 0.0}, "margin"), ({"alpha": 1.5}, "alpha")])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DCML(info(), **kwargs)


def test_a_tiny_fit_separates_the_classes_across_domains():
    data = separable_data()
    torch.manual_seed(0)
    method = DCML(info(), widths=(32, 8), pooling="softmax_weights", num_views=3, margin=2.0, lr=3e-3)
    before = nearest_neighbour_accuracy(method, data)
    fit(method, class_batches(data, classes=4, n=4, m=2, num_batches=8), epochs=8)
    after = nearest_neighbour_accuracy(method, data)
    assert after >= 0.9 and after > before, (before, after)
