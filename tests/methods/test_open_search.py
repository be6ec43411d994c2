"""Open cross-domain search (Thong et al., CVIU'20): the prototype loss and the slerp refinement against
values worked out by hand, frozen prototypes, photos and shapes in the gallery, the refinement variant kept
apart, a clear error without class side information, and a tiny zero-shot fit on fake data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sbir_bench.methods.components.prototype_search import prototype_loss, refine_towards_nearest, slerp
from sbir_bench.methods.open_search import OpenSearch, OpenSearchRefine
from tests.methods.shape_batches import class_batches, fit, info, nearest_neighbour_accuracy
from tests.methods.test_cvae import one_thread  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

SEMANTICS = np.eye(4, dtype=np.float32)


def test_prototype_loss_is_cross_entropy_of_cosines_over_the_temperature():
    embeddings, prototypes = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    # cos = [1, 0]; T = 0.5 → logits [2, 0]; −log(e² / (e² + 1)) = log(1 + e^−2) = 0.126928...
    value = prototype_loss(embeddings, torch.tensor([0]), prototypes, temperature=0.5)
    assert value.item() == pytest.approx(math.log1p(math.exp(-2.0)))


def test_slerp_walks_the_great_circle():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    # 90° apart: weight 0.4 → 36° from a: [cos 36°, sin 36°] = [0.809017, 0.587785]
    assert slerp(a, b, 0.4).tolist()[0] == pytest.approx([0.809017, 0.587785], abs=1e-6)
    assert slerp(a, a, 0.4).tolist()[0] == pytest.approx([1.0, 0.0])  # parallel: no NaN


def test_refinement_moves_each_query_towards_its_nearest_gallery_item():
    queries, gallery = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    # nearest by cosine: [1, 1] (cos 0.707 against 0) at 45°; 0.4 of 45° = 18° → [0.951057, 0.309017]
    refined = refine_towards_nearest(queries, gallery, 0.4)
    assert refined.tolist()[0] == pytest.approx([0.951057, 0.309017], abs=1e-6)


def test_prototypes_are_a_frozen_buffer_and_embeddings_unit_vectors():
    method = OpenSearch(info(dim=16, semantics=SEMANTICS), hidden=(8,))
    assert "prototypes" in dict(method.named_buffers())
    assert all("prototypes" not in name for name, _ in method.named_parameters())
    query = method.embed_query(torch.rand(5, 16))
    assert query.shape == (5, 4) and torch.allclose(query.norm(dim=1), torch.ones(5))


def test_the_gallery_takes_shapes_and_photos():
    method = OpenSearch(info(dim=16, semantics=SEMANTICS), hidden=(8,))
    photos = torch.rand(3, 16)
    assert method.embed_gallery(torch.rand(2, 5, 16)).shape == (2, 4)  # shapes: [B, V, d]
    assert torch.allclose(method.embed_gallery(photos), method.embed_gallery(photos.unsqueeze(1)))  # photos


def test_no_class_side_information_names_the_option():
    with pytest.raises(ValueError, match=r"data\.semantics\.vectors"):
        OpenSearch(info(dim=16), hidden=(8,))


def test_refinement_is_its_own_method():
    with pytest.raises(ValueError, match="open_search_refine"):
        OpenSearch(info(dim=16, semantics=SEMANTICS), refine=True)
    refined = OpenSearchRefine(info(dim=16, semantics=SEMANTICS), hidden=(8,))
    assert refined.distance == "custom" and OpenSearch.distance == "cosine"
    queries, gallery = torch.nn.functional.normalize(torch.rand(3, 4), dim=1), torch.eye(4)
    distances = refined.pairwise_distance(queries, gallery)
    # each query is pulled towards its nearest gallery item, so that item stays nearest and gets nearer
    plain = 1 - queries @ gallery.T
    assert torch.equal(distances.argmin(dim=1), plain.argmin(dim=1))
    assert (distances.min(dim=1).values < plain.min(dim=1).values).all()


def zero_shot_data(seed: int = 0) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    """12 classes with 4-d class vectors; each domain's features a fixed linear map of the class vector, plus
    noise: what is learnt on classes 0-8 carries over to the held-out classes 9-11."""
    g = torch.Generator().manual_seed(seed)
    semantics = torch.randn(12, 4, generator=g)
    sketch_map, shape_map = torch.randn(4, 16, generator=g), torch.randn(4, 16, generator=g)
    labels = torch.arange(12).repeat_interleave(8)
    sketch = semantics[labels] @ sketch_map + 0.1 * torch.randn(len(labels), 16, generator=g)
    shape = (semantics[labels] @ shape_map).unsqueeze(1) + 0.1 * torch.randn(len(labels), 3, 16, generator=g)
    data = {"sketch": sketch, "sketch_label": labels, "shape": shape, "shape_label": labels.clone()}
    return semantics.numpy(), data


def test_a_tiny_fit_on_seen_classes_searches_unseen_ones():
    semantics, data = zero_shot_data()
    torch.manual_seed(0)
    data_info = info(num_classes=12, seen=tuple(range(9)), semantics=semantics)
    method = OpenSearch(data_info, hidden=(32,), lr=3e-3)
    seen = {k: v[data["sketch_label"] < 9] for k, v in data.items()}
    unseen = {k: v[data["sketch_label"] >= 9] for k, v in data.items()}
    before = nearest_neighbour_accuracy(method, unseen)
    fit(method, class_batches(seen, classes=6, n=4, m=2, num_batches=8), epochs=10)
    after = nearest_neighbour_accuracy(method, unseen)
    assert after >= 0.75 and after > before, (before, after)  # chance: 1/3
