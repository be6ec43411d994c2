"""Siamese-1/2 and coarse/fine triplet baselines (siamese.py, triplet.py): structure, embeddings, distance,
the pairs a Siamese network forms, and that a few optimisation steps on a toy separable batch lower the
loss."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from sbir_bench.data.records import DataInfo
from sbir_bench.methods.components.metric_losses import contrastive_loss
from sbir_bench.methods.shared_branch import SharedBranchMethod
from sbir_bench.methods.siamese import Siamese1, Siamese2
from sbir_bench.methods.triplet import TripletCoarse, TripletFine
from sbir_bench.registry import METHODS

NAMES = {
    "siamese1": Siamese1,
    "siamese2": Siamese2,
    "triplet_coarse": TripletCoarse,
    "triplet_fine": TripletFine,
}
SMALL = dict(hidden=(32,), embedding_dim=8)


def info(feature_dim: int | None = 16) -> DataInfo:
    return DataInfo(num_classes=4, seen_classes=(0, 1, 2, 3), feature_dim=feature_dim)


def toy_batch(n: int = 32, dim: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """Two classes far apart along feature 0: positives of the sketch's class, negatives of the other."""
    generator = torch.Generator().manual_seed(seed)
    label = torch.arange(n) % 2
    centre = torch.zeros(2, dim)
    centre[1, 0] = 4.0

    def around(labels: torch.Tensor) -> torch.Tensor:
        return centre[labels] + 0.3 * torch.randn(len(labels), dim, generator=generator)

    return {
        "sketch": around(label),
        "positive": around(label),
        "negative": around(1 - label),
        "label": label,
        "positive_label": label,
        "negative_label": 1 - label,
    }


@pytest.mark.parametrize("name", sorted(NAMES))
def test_registered_with_sampling_and_distance(name):
    model = METHODS.create(name, data=info(), **SMALL)
    assert type(model) is NAMES[name] and isinstance(model, SharedBranchMethod)
    assert model.inputs == "features" and model.distance == "euclidean" and model.needs_training
    expected = "fine_triplets" if name == "triplet_fine" else "class_triplets"
    assert model.train_sampling == expected
    assert model.hparams.hidden == (32,) and "data" not in model.hparams


@pytest.mark.parametrize("name", sorted(NAMES))
def test_default_sizes_and_shared_branch(name):
    model = METHODS.create(name, data=info(512)).eval()
    layers = " ".join(type(m).__name__ for m in model.branch)
    assert layers == "Linear ReLU Linear"  # BatchNorm off by default (see shared_branch.py)
    x = torch.rand(5, 512)
    query, gallery = model.embed_query(x), model.embed_gallery(x)
    assert query.shape == gallery.shape == (5, model.hparams.embedding_dim)
    assert torch.equal(query, gallery)  # one branch, shared weights, for sketches and photos


def test_paper_sizes_from_a_deeper_branch():
    model = Siamese2(info(4096), hidden=(2048, 1024), embedding_dim=512, batch_norm=True, q=500.0).eval()
    assert " ".join(type(m).__name__ for m in model.branch) == (
        "Linear ReLU BatchNorm1d Linear ReLU BatchNorm1d Linear"
    )
    assert model.embed_query(torch.rand(2, 4096)).shape == (2, 512)


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="feature_dim"):
        Siamese1(info(None))
    with pytest.raises(ValueError, match="margin must be a finite positive number"):
        TripletCoarse(info(), margin=0.0)
    with pytest.raises(ValueError, match="q must be a finite positive number"):
        Siamese2(info(), q=-1.0)
    with pytest.raises(ValueError, match="embedding_dim"):
        TripletFine(info(), embedding_dim=0)


def test_hyperparameters_from_hydra_load_with_weights_only(tmp_path):
    kwargs = OmegaConf.create({"hidden": [32, 16], "embedding_dim": 8, "eval_metrics": ["map@all"]})
    model = Siamese1(info(), **kwargs)
    torch.save({"hyper_parameters": dict(model.hparams)}, tmp_path / "hparams.pt")
    loaded = torch.load(tmp_path / "hparams.pt", weights_only=True)["hyper_parameters"]
    assert loaded["hidden"] == (32, 16) and loaded["eval_metrics"] == ("map@all",)


def test_siamese_pairs_are_one_positive_and_one_negative_per_item():
    model = Siamese1(info(), **SMALL).eval()
    batch = toy_batch(6)
    batch["negative_label"][0] = batch["label"][
        0
    ]  # a negative photo of the sketch's own class counts as same
    distance, same = model.pairs(batch)
    assert distance.shape == same.shape == (12,)
    assert same[:6].all() and same[6:].tolist() == [True] + [False] * 5
    sketch = model.branch(batch["sketch"])
    expected = torch.linalg.vector_norm(sketch - model.branch(batch["negative"]), dim=-1)
    assert torch.allclose(distance[6:], expected)
    with torch.no_grad():
        loss, _ = model.loss_terms(batch)
    assert loss.item() == pytest.approx(contrastive_loss(distance, same, margin=5.0).item(), rel=1e-6)


@pytest.mark.parametrize("name", sorted(NAMES))
def test_a_few_adam_steps_on_a_separable_batch_lower_the_loss(name):
    torch.manual_seed(0)
    model = METHODS.create(name, data=info(), **SMALL, lr=1e-2)
    optimiser = model.configure_optimizers()
    assert isinstance(optimiser, torch.optim.Adam)
    batch = toy_batch()
    losses = []
    for _ in range(30):
        loss, _ = model.loss_terms(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.eval()  # and the classes come apart under the Euclidean distance of the embeddings
    with torch.no_grad():
        sketch = model.embed_query(batch["sketch"])
        positive = torch.linalg.vector_norm(sketch - model.embed_gallery(batch["positive"]), dim=-1)
        negative = torch.linalg.vector_norm(sketch - model.embed_gallery(batch["negative"]), dim=-1)
    assert (positive < negative).float().mean() > 0.9


def test_training_step_checks_keys_and_finite_loss():
    model = TripletCoarse(info(), **SMALL)
    batch = toy_batch(4)
    del batch["negative_label"]
    with pytest.raises(KeyError, match="negative_label"):
        model.training_step(batch, 0)
    batch = toy_batch(4)
    batch["sketch"][0, 0] = float("nan")
    with pytest.raises(
        FloatingPointError,
        match=r"^triplet_coarse: the training loss is nan at epoch 0, step 0 .*triplet loss=nan",
    ):
        model.training_step(batch, 0)
