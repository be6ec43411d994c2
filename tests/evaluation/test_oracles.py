"""Second oracles: torchmetrics' retrieval metrics, and DistributedSampler shards gathered as under DDP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler
from torchmetrics.retrieval import RetrievalMAP, RetrievalPrecision

from sbir_bench.evaluation.engine import evaluate, gather_embeddings

from . import reference


@pytest.mark.parametrize("k", [1, 5, 30, 80])  # 80 > the gallery
@pytest.mark.parametrize("seed", [0, 1])
def test_map_at_k_and_p_at_k_equal_torchmetrics(k, seed):
    # torchmetrics treats scores <= 0 as not retrieved: scores 3 - cosine distance lie in [1, 3]; random
    # float64 vectors have no tied scores
    rng = np.random.default_rng(seed)
    queries, gallery = rng.standard_normal((25, 6)), rng.standard_normal((60, 6))
    query_labels, gallery_labels = rng.integers(0, 5, 25), rng.integers(0, 4, 60)  # class 4: no relevant
    scores = torch.as_tensor(3.0 - reference.distance_matrix(queries, gallery, "cosine"))
    assert (scores > 0).all() and all(len(np.unique(row)) == 60 for row in scores.numpy())
    target = torch.as_tensor(query_labels[:, None] == gallery_labels[None, :])
    indexes = torch.arange(25)[:, None].expand(25, 60)
    oracle_map = RetrievalMAP(top_k=k)(scores.flatten(), target.flatten(), indexes=indexes.flatten())
    oracle_p = RetrievalPrecision(top_k=k)(scores.flatten(), target.flatten(), indexes=indexes.flatten())
    result = evaluate(queries, query_labels, gallery, gallery_labels, metrics=(f"map@{k}", f"p@{k}"))
    assert result[f"map@{k}"] == pytest.approx(float(oracle_map), abs=1e-6)
    assert result[f"p@{k}"] == pytest.approx(float(oracle_p), abs=1e-6)


def _shards_as_gathered(n_items: int, world_size: int) -> torch.Tensor:
    """Global indices in the order all_gather concatenates the ranks' shards (padding repeats included)."""
    return torch.cat(
        [
            torch.tensor(list(DistributedSampler(range(n_items), world_size, rank, seed=5)))
            for rank in range(world_size)
        ]
    )


@pytest.mark.parametrize("world_size", [3, 4, 7])
def test_simulated_ddp_shards_give_the_single_process_metrics(world_size):
    generator = torch.Generator().manual_seed(world_size)
    queries, gallery = torch.randn(23, 5, generator=generator), torch.randn(38, 5, generator=generator)
    query_labels = torch.randint(0, 3, (23,), generator=generator)
    gallery_labels = torch.randint(0, 3, (38,), generator=generator)
    names = ("p@5", "map@10", "map@all", "map@10_voc", "p@5_minr")
    single = evaluate(queries, query_labels, gallery, gallery_labels, metrics=names)
    gathered = {}
    for name, embeddings, labels in (("query", queries, query_labels), ("gallery", gallery, gallery_labels)):
        order = _shards_as_gathered(len(embeddings), world_size)
        assert len(order) > len(embeddings)  # the sampler padded the shards with repeats
        gathered[name] = gather_embeddings(
            embeddings[order], labels[order], order, n_expected=len(embeddings)
        )
    assert evaluate(*gathered["query"], *gathered["gallery"], metrics=names) == single
