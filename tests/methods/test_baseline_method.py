"""The untrained baseline: features in, features out, ranked by cosine distance."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from sbir_bench.data.records import DataInfo
from sbir_bench.methods.baseline import Baseline
from sbir_bench.registry import METHODS


def test_embeddings_are_the_features_unchanged():
    model = METHODS.create("baseline", data=DataInfo(num_classes=3, seen_classes=(0, 1), feature_dim=4))
    assert isinstance(model, Baseline)
    assert not model.needs_training and model.inputs == "features" and model.distance == "cosine"
    x = torch.randn(5, 4)
    assert torch.equal(model.embed_query(x), x) and torch.equal(model.embed_gallery(x), x)
    assert model.configure_optimizers() is None


def evaluation_loader(features: list[list[float]], labels: list[int]) -> DataLoader:
    items = [
        {"input": torch.tensor(f), "label": torch.tensor(y), "index": torch.tensor(i)}
        for i, (f, y) in enumerate(zip(features, labels, strict=True))
    ]
    return DataLoader(items, batch_size=2)


def test_test_loop_ranks_raw_features_by_cosine():
    queries = evaluation_loader([[0.0, 1.0]], [0])
    gallery = evaluation_loader([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [0, 1, 0])
    model = Baseline(DataInfo(num_classes=2, seen_classes=(0, 1), feature_dim=2), eval_metrics=["map@all"])
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.test(model, dataloaders=[queries, gallery], verbose=False)
    # cosine distances to the query: 1, 0, 1 - 1/sqrt(2) -> ranking [g1 (other class), g2, g0]
    # AP = (1/2 + 2/3) / 2 = 7/12
    assert model.last_metrics["map@all"] == pytest.approx(7 / 12)
