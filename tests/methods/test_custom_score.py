"""A method's own test-time score (``distance = "custom"``) reaches the engine through its interface."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbir_bench.evaluation.engine import evaluate
from sbir_bench.methods.base import RetrievalMethod

DATA = {"num_classes": 3, "seen_classes": (0, 1, 2), "feature_dim": 2, "image_size": 32, "semantics_dim": 0}


class ManhattanMethod(RetrievalMethod):
    distance = "custom"
    train_sampling = "none"

    def embed_query(self, x: torch.Tensor) -> torch.Tensor:
        return x

    embed_gallery = embed_query

    def pairwise_distance(self, queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
        return torch.cdist(queries, gallery, p=1)


def test_the_engine_ranks_by_the_methods_own_score():
    method = ManhattanMethod(DATA)
    queries = np.array([[0.0, 0.0], [3.0, 0.0]], dtype=np.float32)
    gallery = np.array([[2.0, 2.0], [3.0, 0.5], [0.0, 2.5]], dtype=np.float32)
    # L1 from query 0: 4, 3.5, 2.5 -> item 2 first (Euclidean would rank 2 then 0: 2.83 < 3.04)
    score = method.ranking_distance
    assert np.allclose(score(queries, gallery), [[4.0, 3.5, 2.5], [3.0, 0.5, 5.5]])
    result = evaluate(
        queries, np.array([2, 1]), gallery, np.array([0, 1, 2]), distance=score, metrics=["acc@1"]
    )
    assert result["acc@1"] == 1.0
    assert evaluate(
        queries, np.array([0, 1]), gallery, np.array([0, 1, 2]), distance=score, metrics=["acc@1"]
    )["acc@1"] == pytest.approx(0.5)


def test_named_distances_pass_through_and_a_missing_score_is_named():
    class Plain(ManhattanMethod):
        distance = "euclidean"

    assert Plain(DATA).ranking_distance == "euclidean"

    class Forgot(RetrievalMethod):
        distance = "custom"

    with pytest.raises(
        NotImplementedError, match="Forgot sets distance='custom' but has no pairwise_distance"
    ):
        Forgot(DATA).ranking_distance(np.zeros((1, 2)), np.zeros((1, 2)))
    assert ManhattanMethod(DATA)._test_triplets() is None  # no trainer: triplet_acc is left out
