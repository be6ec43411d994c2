"""sketch2voxel (Wang et al., ACM MM'18): each loss and step against hand-computed values, the pooling of
the nearest views' shape codes, and the method's own pieces on tiny tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sbir_bench.data.records import DataInfo
from sbir_bench.methods.components.sketch_reconstruction import (
    VoxelDecoder,
    began_autoencoder_loss,
    began_convergence,
    began_discriminator_loss,
    began_k_update,
    feature_reconstruction_loss,
    nearest_view_models,
    neighbour_weights,
    pooled_codes,
    voxel_encoder,
    voxel_reconstruction_loss,
)
from sbir_bench.methods.shape_sketch2voxel import Sketch2Voxel

DATA = DataInfo(num_classes=3, seen_classes=(0, 1, 2), feature_dim=8, num_views=2)


def test_feature_reconstruction_is_the_mean_squared_error():
    # ((1 - 0)^2 + (2 - 4)^2) / 2 = 2.5
    assert feature_reconstruction_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])).item() == 2.5


def test_voxel_reconstruction_weighs_occupied_voxels():
    # occupied voxel, logit 0: -2 log sigmoid(0) = 2 ln 2; empty voxel, logit ln 3: -log(1 - 3/4) = ln 4;
    # mean (2 ln 2 + 2 ln 2) / 2 = 2 ln 2
    logits, target = torch.tensor([0.0, math.log(3.0)]), torch.tensor([1.0, 0.0])
    assert voxel_reconstruction_loss(logits, target, 2.0).item() == pytest.approx(2 * math.log(2), abs=1e-6)
    # unweighted: (ln 2 + ln 4) / 2 = 1.5 ln 2
    assert voxel_reconstruction_loss(logits, target).item() == pytest.approx(1.5 * math.log(2), abs=1e-6)


def test_began_terms_by_hand():
    grids, rebuilt = torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.tensor([0.5, 0.5, 1.0, 0.0])
    assert began_autoencoder_loss(grids, rebuilt).item() == 0.25  # (0.5 + 0.5 + 0 + 0) / 4
    real, fake = torch.tensor(0.3), torch.tensor(0.2)
    assert began_discriminator_loss(real, fake, 0.5).item() == pytest.approx(0.2)  # 0.3 - 0.5 * 0.2
    # k + lambda (gamma L(x) - L(G)) = 0.1 + 0.01 (0.5 * 0.4 - 0.1) = 0.101
    k = began_k_update(torch.tensor(0.1), torch.tensor(0.4), torch.tensor(0.1), 0.5, 0.01)
    assert k.item() == pytest.approx(0.101)
    assert began_k_update(torch.tensor(0.999), torch.tensor(9.0), torch.tensor(0.0), 0.5, 0.01).item() == 1.0
    assert began_k_update(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(5.0), 0.5, 0.01).item() == 0.0
    # M = L(x) + |gamma L(x) - L(G)| = 0.4 + |0.2 - 0.1| = 0.5
    assert began_convergence(torch.tensor(0.4), torch.tensor(0.1), 0.5).item() == pytest.approx(0.5)


def test_neighbour_weights_are_the_papers_normalised():
    assert torch.allclose(neighbour_weights(5), torch.tensor([5, 4, 3, 2, 1], dtype=torch.float64) / 15)
    assert torch.allclose(neighbour_weights(2), torch.tensor([5 / 9, 4 / 9], dtype=torch.float64))
    for k in (0, 6):
        with pytest.raises(ValueError, match="1 to 5 neighbours"):
            neighbour_weights(k)


def test_nearest_views_give_their_models_nearest_first_ties_by_position():
    # model 0 views at 3, 1; model 1 views at 2, 0.5: nearest views 0.5 (m1), 1 (m0), 2 (m1)
    distances = torch.tensor([[[3.0, 1.0], [2.0, 0.5]], [[1.0, 1.0], [1.0, 1.0]]])
    assert nearest_view_models(distances, 3).tolist() == [[1, 0, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="5 nearest views"):
        nearest_view_models(distances, 5)


def test_pooled_codes_are_the_weighted_sum():
    codes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    weights = torch.tensor([0.75, 0.25], dtype=torch.float64)
    # 0.75 * (2, 2) + 0.25 * (1, 0) = (1.75, 1.5)
    assert pooled_codes(codes, torch.tensor([[2, 0]]), weights).tolist() == [[1.75, 1.5]]


def test_voxel_nets_map_32_cubes_to_codes_and_back():
    grids = torch.zeros(2, 1, 32, 32, 32)
    codes = voxel_encoder(200, (4, 8, 16))(grids)
    assert codes.shape == (2, 200)
    assert VoxelDecoder(200, (16, 8, 4))(codes).shape == (2, 1, 32, 32, 32)


def _method(**kwargs) -> Sketch2Voxel:
    small = {
        "hidden": (8,),
        "latent_dim": 4,
        "code_dim": 6,
        "voxel_channels": (2,),
        "discriminator_channels": (2,),
    }
    return Sketch2Voxel(DATA, **{**small, **kwargs})


def test_mixed_codes_pool_each_shape_with_its_classmates_itself_first():
    method = _method()
    codes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 3.0]])
    mixed = method.mixed_codes(codes, torch.tensor([0, 0, 1]))
    # shape 0: 5/9 (1, 0) + 4/9 (0, 1); shape 1: 5/9 (0, 1) + 4/9 (1, 0); shape 2 alone: itself
    expected = torch.tensor([[5 / 9, 4 / 9], [4 / 9, 5 / 9], [3.0, 3.0]])
    assert torch.allclose(mixed, expected)


def test_ranking_is_by_the_nearest_view_and_codes_lie_on_the_unit_sphere():
    method = _method().eval()
    sketches, shapes = torch.randn(3, 8), torch.randn(5, 2, 8)
    queries, gallery = method.embed_query(sketches), method.embed_gallery(shapes)
    assert gallery.shape == (5, 2 * 4)
    assert torch.allclose(queries.norm(dim=1), torch.ones(3))
    views = gallery.reshape(5, 2, 4)
    expected = torch.cdist(queries, views.flatten(0, 1)).reshape(3, 5, 2).min(dim=2).values
    assert torch.allclose(method.pairwise_distance(queries, gallery), expected, atol=1e-6)


def test_reconstruction_pools_the_codes_of_the_nearest_views_models():
    method = _method(neighbours=2)
    queries = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # gallery of 3 models x 2 views: nearest views belong to model 2 (exact) then model 0
    views = torch.tensor(
        [[[0.9, 0.1, 0, 0], [0, 1, 0, 0]], [[0, 0, 1, 0], [0, 0, 0, 1]], [[1, 0, 0, 0], [0, 1, 0, 0]]]
    )
    grids = torch.zeros(3, 32, 32, 32, dtype=torch.bool)
    grids[0, :8], grids[2, :16] = True, True
    reconstruction, neighbours = method.reconstruct(queries, views.flatten(1), grids)
    assert neighbours.tolist() == [[2, 0]]
    method.eval()
    with torch.no_grad():
        codes = method.voxel_encoder(grids.unsqueeze(1).float())
        pooled = (5 / 9) * codes[2] + (4 / 9) * codes[0]
        expected = method.voxel_decoder(pooled[None])[0, 0] > 0
    assert torch.equal(reconstruction[0], expected)


def test_training_voxels_are_found_by_record_index():
    method = _method()
    voxels = np.zeros((2, 32, 32, 32), dtype=bool)
    voxels[1, 0, 0, 0] = True
    method.set_training_voxels(np.array([10, 4]), voxels)
    batch = method.batch_voxels(torch.tensor([4, 10, 4]))
    assert batch.shape == (3, 1, 32, 32, 32) and batch[[0, 2]].sum() == 2 and batch[1].sum() == 0
    with pytest.raises(KeyError, match="record 7"):
        method.batch_voxels(torch.tensor([7]))
    with pytest.raises(KeyError, match="record 99"):
        method.batch_voxels(torch.tensor([99]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"class_weight": -1.0}, "loss weights"),
        ({"temperature": 0.0}, "temperature"),
        ({"lambda_k": 2.0}, "lambda_k"),
        ({"neighbours": 6}, "1 to 5 neighbours"),
        ({"voxel_channels": ()}, "voxel_channels"),
    ],
)
def test_bad_settings_name_the_setting(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _method(**kwargs)
