"""siamese3d (Wang, Kang & Li, CVPR'15; methods/shape_siamese.py): the exponential contrastive loss and the
pairs of a class batch against hand-computed values, the min-over-views distance, forward shapes on fake
class batches, a tiny fit on separable data, bad input and a checkpoint that loads alone."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from sbir_bench.data.records import DataInfo
from sbir_bench.methods.components.shape_siamese import (
    balanced_pair_loss,
    batch_pairs,
    exponential_contrastive_loss,
    min_view_distance,
)
from sbir_bench.methods.shape_siamese import Siamese3D
from sbir_bench.registry import METHODS

DIM, CLASSES, VIEWS = 16, 4, 2


def info(feature_dim: int | None = DIM) -> DataInfo:
    return DataInfo(num_classes=CLASSES, seen_classes=tuple(range(CLASSES)), feature_dim=feature_dim)


def separable(n_per_class: int, views: int = 0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Items of CLASSES classes around well-separated centres (the views of a shape: a shifted domain)."""
    generator = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.eye(CLASSES, DIM)
    labels = torch.arange(CLASSES).repeat_interleave(n_per_class)
    if not views:
        return centres[labels] + 0.3 * torch.randn(len(labels), DIM, generator=generator), labels
    shift = torch.linspace(-1, 1, DIM)
    items = (
        centres[labels].unsqueeze(1) + shift + 0.3 * torch.randn(len(labels), views, DIM, generator=generator)
    )
    return items, labels


def class_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """A class batch as the DataModule serves it: 4 classes x 4 sketches, 4 classes x 2 shapes x 2 views."""
    sketch, sketch_label = separable(4, seed=seed)
    shape, shape_label = separable(2, views=VIEWS, seed=seed + 100)
    return {"sketch": sketch, "sketch_label": sketch_label, "shape": shape, "shape_label": shape_label}


def test_exponential_contrastive_loss_by_hand():
    distance = torch.tensor([0.5, 1.0, 0.0, 2.0])
    dissimilar = torch.tensor([False, True, True, False])  # y = 0: a similar pair
    # similar: α·D² = (1/0.2)·0.5² = 5·0.25 = 1.25;  and 5·2² = 20
    # dissimilar: β·e^{γD} = 10·exp(−2.77/10 · 1) = 10·e^{−0.277} = 7.580545;  at D = 0: 10·e⁰ = 10
    expected = torch.tensor([1.25, 7.580545, 10.0, 20.0])
    assert torch.allclose(exponential_contrastive_loss(distance, dissimilar), expected, atol=1e-5)
    # other constants: C_p = 0.5 → α = 2, 2·0.5² = 0.5; C_n = 2 → β = 2, γ = −1.385: 2·e^{−1.385} = 0.500746
    other = exponential_contrastive_loss(distance[:2], dissimilar[:2], cp=0.5, cn=2.0)
    assert torch.allclose(other, torch.tensor([0.5, 2 * math.exp(-1.385)]), atol=1e-6)


def test_pairs_within_a_set_and_across_two_sets():
    a = torch.tensor([[0.0], [1.0], [3.0]])
    labels = torch.tensor([0, 0, 1])
    within = batch_pairs(a, labels)
    # unordered pairs (0,1), (0,2), (1,2): D = 1, 3, 2; only (0,1) shares a class
    assert torch.allclose(within.distance, torch.tensor([1.0, 3.0, 2.0]))
    assert within.dissimilar.tolist() == [False, True, True]
    # balanced: similar mean 5·1² = 5; dissimilar mean (10·e^{−0.831} + 10·e^{−0.554}) / 2
    #   = (4.356135 + 5.746466) / 2 = 5.051300; total 10.051300
    assert balanced_pair_loss(within).item() == pytest.approx(10.0513004, abs=1e-5)

    b = torch.tensor([[0.0], [4.0]])
    across = batch_pairs(a, labels, b, torch.tensor([1, 0]))
    # rows a_i, columns b_j: D = |a_i − b_j| = [[0, 4], [1, 3], [3, 1]]; same class where labels agree
    assert torch.allclose(across.distance, torch.tensor([0.0, 4.0, 1.0, 3.0, 3.0, 1.0]))
    assert across.dissimilar.tolist() == [True, False, True, False, False, True]
    # similar pairs D = 4, 3, 3: 5·(16 + 9 + 9)/3 = 56.666667; dissimilar D = 0, 1, 1:
    #   10·(e⁰ + 2·e^{−0.277}) / 3 = (10 + 15.161090) / 3 = 8.387030; total 65.053697
    assert balanced_pair_loss(across).item() == pytest.approx(65.053697, abs=1e-4)


def test_a_set_with_only_dissimilar_pairs_adds_no_similar_term():
    pairs = batch_pairs(torch.tensor([[0.0], [1.0]]), torch.tensor([0, 1]))
    assert balanced_pair_loss(pairs).item() == pytest.approx(7.580545, abs=1e-5)  # 10·e^{−0.277·1}


def test_min_view_distance_by_hand():
    queries = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    views = torch.tensor([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 2.0], [6.0, 8.0]]])  # 2 shapes x 2 views
    # query 0: shape 0 min(5, 1) = 1, shape 1 min(2, 10) = 2; query 1: shape 0 min(0, √20) = 0,
    # shape 1 min(√(9+4) = 3.605551, √(9+16) = 5) = 3.605551
    expected = torch.tensor([[1.0, 2.0], [0.0, math.sqrt(13.0)]])
    assert torch.allclose(min_view_distance(queries, views), expected, atol=1e-6)


def test_registered_with_its_data_contract():
    model = METHODS.create("siamese3d", data=info())
    assert type(model) is Siamese3D and model.needs_training
    assert (model.inputs, model.train_sampling, model.views, model.distance) == (
        "view_features",
        "class_batches",
        "two",
        "custom",
    )
    assert model.class_batch == (8, 4, 2) and "data" not in model.hparams
    assert (model.hparams.cp, model.hparams.cn) == (0.2, 10.0)


def test_forward_shapes_and_the_custom_distance():
    model = Siamese3D(info(), hidden=(32,), embedding_dim=8).eval()
    batch = class_batch()
    with torch.no_grad():
        query = model.embed_query(batch["sketch"])
        gallery = model.embed_gallery(batch["shape"])
        assert query.shape == (16, 8) and gallery.shape == (8, VIEWS * 8)
        # the gallery row is the view network on each view, in view order
        assert torch.allclose(gallery[:, 8:], model.view_net(batch["shape"][:, 1]))
        distance = model.pairwise_distance(query, gallery)
        by_view = torch.cdist(query, model.view_net(batch["shape"].flatten(0, 1))).reshape(16, 8, VIEWS)
        assert torch.allclose(distance, by_view.amin(-1), atol=1e-5)
        assert model.embed_gallery(batch["sketch"]).shape == (16, 8)  # [B, d]: one view
    loss, terms = model.loss_terms(batch)
    assert set(terms) == {"sketch_sketch", "view_view", "sketch_view"}
    assert torch.allclose(loss, sum(terms.values())) and loss.requires_grad


def test_a_few_steps_on_separable_data_fit_the_classes():
    torch.manual_seed(0)
    model = Siamese3D(info(), hidden=(32,), embedding_dim=8, lr=3e-3)
    optimiser = model.configure_optimizers()
    first = None
    for step in range(150):
        loss, _ = model.loss_terms(class_batch(seed=step))
        first = float(loss.detach()) if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert float(loss.detach()) < 0.5 * first
    test = class_batch(seed=999)
    with torch.no_grad():
        distance = model.pairwise_distance(
            model.embed_query(test["sketch"]), model.embed_gallery(test["shape"])
        )
    nearest = test["shape_label"][distance.argmin(dim=1)]
    assert (nearest == test["sketch_label"]).float().mean() == 1.0


def test_bad_input_fails_clearly():
    with pytest.raises(ValueError, match="cp must be a finite positive"):
        Siamese3D(info(), cp=0.0)
    with pytest.raises(ValueError, match="feature_dim is None"):
        Siamese3D(info(None))
    model = Siamese3D(info(), hidden=(8,), embedding_dim=4)
    batch = class_batch()
    with pytest.raises(KeyError, match="shape_label"):
        model.training_step({k: v for k, v in batch.items() if k != "shape_label"}, 0)
    with pytest.raises(ValueError, match=r"\[B, V, d\]"):
        model.embed_gallery(torch.rand(2, 2, 2, DIM))
    with pytest.raises(ValueError, match="not V views"):
        model.pairwise_distance(torch.rand(3, 4), torch.rand(2, 7))
    batch["sketch"][0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="siamese3d: the training loss"):
        model.training_step(batch, 0)


def test_a_checkpoint_loads_alone(tmp_path):
    model = Siamese3D(info(), hidden=(8,), embedding_dim=4, eval_metrics=["map@all"])
    batch = class_batch()

    def loader(inputs: torch.Tensor, labels: torch.Tensor) -> DataLoader:
        items = [
            {"input": x, "label": int(y), "index": i}
            for i, (x, y) in enumerate(zip(inputs, labels, strict=True))
        ]
        return DataLoader(items, batch_size=4)

    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    queries, gallery = (
        loader(batch["sketch"], batch["sketch_label"]),
        loader(batch["shape"], batch["shape_label"]),
    )
    trainer.test(model, dataloaders=[queries, gallery], verbose=False)
    assert 0 <= model.last_metrics["map@all"] <= 1
    trainer.save_checkpoint(tmp_path / "siamese3d.ckpt")
    loaded = Siamese3D.load_from_checkpoint(tmp_path / "siamese3d.ckpt")
    assert dict(loaded.hparams) == dict(model.hparams)
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded.embed_gallery(batch["shape"]), model.embed_gallery(batch["shape"]))
