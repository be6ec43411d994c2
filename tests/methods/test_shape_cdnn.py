"""cdnn / pcdnn (Zhu, Xie & Fang, AAAI'16; methods/shape_cdnn.py): the class targets, the regression and
weight decay terms against hand-computed values, the pyramid's level slices, forward shapes on fake class
batches, a tiny fit on separable data, bad input and a checkpoint that loads alone."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from sbir_bench.data.records import DataInfo
from sbir_bench.methods.components.shape_cdnn import (
    class_target_codes,
    pyramid_slices,
    target_regression_loss,
    weight_penalty,
)
from sbir_bench.methods.shape_cdnn import CDNN, PCDNN
from sbir_bench.registry import METHODS

CHANNELS, CLASSES, VIEWS = 4, 4, 3
PYRAMID_DIM = CHANNELS * 21  # levels 1, 2, 4: 1 + 4 + 16 cells of CHANNELS values


def info(feature_dim: int | None = PYRAMID_DIM, **extra) -> DataInfo:
    return DataInfo(num_classes=CLASSES, seen_classes=tuple(range(CLASSES)), feature_dim=feature_dim, **extra)


def separable(n_per_class: int, views: int = 0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Items of CLASSES classes around well-separated centres (a shape: V noisy views of a shifted domain)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.zeros(CLASSES, PYRAMID_DIM)
    for start in (0, CHANNELS, 5 * CHANNELS):  # the class shows in every level's part
        centres[:, start : start + CLASSES] = 3.0 * torch.eye(CLASSES)
    labels = torch.arange(CLASSES).repeat_interleave(n_per_class)
    size = (len(labels), views, PYRAMID_DIM) if views else (len(labels), PYRAMID_DIM)
    noise = 0.3 * torch.randn(*size, generator=generator)
    return (centres[labels].unsqueeze(1) + 0.5 + noise if views else centres[labels] + noise), labels


def class_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """A class batch as the DataModule serves it: 4 classes x 4 sketches, 4 classes x 2 shapes x 3 views."""
    sketch, sketch_label = separable(4, seed=seed)
    shape, shape_label = separable(2, views=VIEWS, seed=seed + 100)
    return {"sketch": sketch, "sketch_label": sketch_label, "shape": shape, "shape_label": shape_label}


def test_class_targets_are_fixed_orthonormal_codes():
    targets = class_target_codes(5, 8, seed=3)
    assert targets.shape == (5, 8)
    assert torch.allclose(targets @ targets.T, torch.eye(5), atol=1e-6)  # unit rows, pairwise orthogonal
    assert torch.equal(targets, class_target_codes(5, 8, seed=3))
    assert not torch.equal(targets, class_target_codes(5, 8, seed=4))
    with pytest.raises(ValueError, match="num_classes <= dim"):
        class_target_codes(5, 4, seed=0)


def test_target_regression_loss_by_hand():
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    output = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 1.0]])
    labels = torch.tensor([0, 1, 0])
    # ‖t_0 − (1, 0)‖² = 0;  ‖t_1 − (0, 0)‖² = 0² + 1² = 1;  ‖t_0 − (2, 1)‖² = (1 − 2)² + (0 − 1)² = 2
    # mean over the 3 items: (0 + 1 + 2) / 3 = 1
    assert target_regression_loss(output, labels, targets).item() == pytest.approx(1.0)


def test_weight_penalty_by_hand():
    first, second = nn.Linear(2, 1), nn.Linear(1, 1)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 2.0]]))
        first.bias.fill_(5.0)  # biases are not decayed
        second.weight.fill_(3.0)
    # 1² + 2² + 3² = 1 + 4 + 9 = 14
    assert weight_penalty([nn.Sequential(first, nn.ReLU()), second]).item() == pytest.approx(14.0)


def test_pyramid_slices_are_level_major():
    # d = 2 channels: level 1 → 2 values, level 2 → 4·2 = 8, level 4 → 16·2 = 32; total 2·21 = 42
    assert pyramid_slices(42, (1, 2, 4)) == [slice(0, 2), slice(2, 10), slice(10, 42)]
    assert pyramid_slices(7, (1,)) == [slice(0, 7)]
    with pytest.raises(ValueError, match="width d·21; got features of width 43"):
        pyramid_slices(43, (1, 2, 4))


@pytest.mark.parametrize(("name", "cls", "levels"), [("cdnn", CDNN, ()), ("pcdnn", PCDNN, (1, 2, 4))])
def test_registered_with_its_data_contract(name, cls, levels):
    model = METHODS.create(name, data=info())
    assert type(model) is cls and model.needs_training
    assert (model.inputs, model.train_sampling, model.distance) == (
        "view_features",
        "class_batches",
        "euclidean",
    )
    assert model.feature_pyramid == levels and model.class_batch == (8, 4, 2)
    assert model.hparams.target_dim == CLASSES and "data" not in model.hparams  # 0 resolved to the classes
    assert model.targets.shape == (CLASSES, CLASSES)


def test_cdnn_loss_is_the_sum_of_its_terms_and_shapes_are_mean_pooled():
    model = CDNN(info(), hidden=(16,), lam=0.5)
    batch = class_batch()
    loss, terms = model.loss_terms(batch)
    expected_sketch = target_regression_loss(
        model.sketch_nets[0](batch["sketch"]), batch["sketch_label"], model.targets
    )
    pooled = batch["shape"].mean(dim=1)
    expected_shape = target_regression_loss(model.shape_nets[0](pooled), batch["shape_label"], model.targets)
    assert torch.allclose(terms["sketch_regression"], expected_sketch)
    assert torch.allclose(terms["shape_regression"], expected_shape)
    assert torch.allclose(loss, expected_sketch + expected_shape + 0.5 * terms["weight_decay"])
    with torch.no_grad():
        assert model.embed_query(batch["sketch"]).shape == (16, CLASSES)
        assert torch.allclose(
            model.embed_gallery(batch["shape"]), model.embed_gallery(pooled)
        )  # [B, d]: 1 view


def test_pcdnn_has_a_network_per_level_and_concatenates_their_encodings():
    model = PCDNN(info(), hidden=(16,), target_dim=6).eval()
    assert [net[0].in_features for net in model.sketch_nets] == [CHANNELS, 4 * CHANNELS, 16 * CHANNELS]
    batch = class_batch()
    with torch.no_grad():
        query, gallery = model.embed_query(batch["sketch"]), model.embed_gallery(batch["shape"])
        assert query.shape == (16, 3 * 6) and gallery.shape == (8, 3 * 6)
        changed = batch["sketch"].clone()
        changed[:, 5 * CHANNELS :] += 1.0  # only level 4's cells
        moved = (model.embed_query(changed) - query).abs().amax(dim=0)
    assert moved[:12].max() == 0 and moved[12:].min() > 0  # levels 1 and 2 unchanged, level 4 moved
    loss, terms = model.loss_terms(batch)  # regression summed over the 3 levels
    sketch = sum(
        target_regression_loss(net(batch["sketch"][:, part]), batch["sketch_label"], model.targets)
        for net, part in zip(model.sketch_nets, model.slices, strict=True)
    )
    assert torch.allclose(terms["sketch_regression"], sketch)


@pytest.mark.parametrize("cls", [CDNN, PCDNN])
def test_a_few_steps_on_separable_data_fit_the_classes(cls):
    torch.manual_seed(0)
    model = cls(info(), hidden=(32,), lr=3e-3)
    optimiser = model.configure_optimizers()
    losses = []
    for step in range(100):
        loss, _ = model.loss_terms(class_batch(seed=step))
        losses.append(float(loss.detach()))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert losses[-1] < 0.2 * losses[0]
    test = class_batch(seed=999)
    with torch.no_grad():
        distance = torch.cdist(model.embed_query(test["sketch"]), model.embed_gallery(test["shape"]))
    nearest = test["shape_label"][distance.argmin(dim=1)]
    assert (nearest == test["sketch_label"]).float().mean() == 1.0


def test_bad_input_fails_clearly():
    with pytest.raises(ValueError, match="width d·21; got features of width 85"):
        PCDNN(info(PYRAMID_DIM + 1))
    with pytest.raises(ValueError, match="feature_dim is None"):
        CDNN(info(None))
    with pytest.raises(ValueError, match="lam must be >= 0"):
        CDNN(info(), lam=-1.0)
    with pytest.raises(ValueError, match="num_classes <= dim"):
        CDNN(info(), target_dim=2)
    model = CDNN(info(), hidden=(8,))
    batch = class_batch()
    with pytest.raises(KeyError, match="sketch_label"):
        model.training_step({k: v for k, v in batch.items() if k != "sketch_label"}, 0)
    batch["shape"][0, 0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="cdnn: the training loss"):
        model.training_step(batch, 0)


@pytest.mark.skipif(
    "feature_levels" not in DataInfo.__dataclass_fields__, reason="DataInfo has no levels yet"
)
def test_the_served_pyramid_must_match_the_method():
    with pytest.raises(ValueError, match=r"pcdnn reads feature pyramid levels \(1, 2, 4\)"):
        PCDNN(info(feature_levels=(1, 2)))
    with pytest.raises(ValueError, match="cdnn reads feature pyramid levels"):
        CDNN(info(feature_levels=(1, 2, 4)))
    assert PCDNN(info(feature_levels=(1, 2, 4)), hidden=(8,)).slices[-1] == slice(5 * CHANNELS, PYRAMID_DIM)


def test_a_checkpoint_loads_alone(tmp_path):
    model = PCDNN(info(), hidden=(8,), target_dim=5, target_seed=7, eval_metrics=["map@all"])
    batch = class_batch()

    def loader(inputs: torch.Tensor, labels: torch.Tensor) -> DataLoader:
        pairs = zip(inputs, labels, strict=True)
        return DataLoader(
            [{"input": x, "label": int(y), "index": i} for i, (x, y) in enumerate(pairs)], batch_size=4
        )

    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    loaders = [loader(batch["sketch"], batch["sketch_label"]), loader(batch["shape"], batch["shape_label"])]
    trainer.test(model, dataloaders=loaders, verbose=False)
    trainer.save_checkpoint(tmp_path / "pcdnn.ckpt")
    loaded = PCDNN.load_from_checkpoint(tmp_path / "pcdnn.ckpt")
    assert dict(loaded.hparams) == dict(model.hparams) and torch.equal(loaded.targets, model.targets)
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded.embed_query(batch["sketch"]), model.embed_query(batch["sketch"]))
        assert torch.equal(loaded.embed_gallery(batch["shape"]), model.embed_gallery(batch["shape"]))
