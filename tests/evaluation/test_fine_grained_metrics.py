"""acc@K, triplet_acc and a method's own score function in the engine: by hand, brute force, ties."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import comb

from sbir_bench.evaluation.chance import chance_and_ceiling
from sbir_bench.evaluation.engine import evaluate
from sbir_bench.evaluation.search import top_k
from tests.evaluation.reference import distance_matrix, ranking


def test_acc_at_k_by_hand():
    # one relevant item per query (fine-grained); Euclidean on 1-d points
    gallery = np.array([[0.0], [1.0], [2.0], [3.0]])
    queries = np.array([[0.1], [2.9], [1.4]])
    # query 0 (label 1 -> gallery item 1): ranking 0, 1, 2, 3 -> item 1 at rank 2
    # query 1 (label 0 -> item 0): ranking 3, 2, 1, 0 -> rank 4
    # query 2 (label 2 -> item 2): ranking 1, 2, 0, 3 -> rank 2
    result = evaluate(
        queries,
        np.array([1, 0, 2]),
        gallery,
        np.arange(4),
        distance="euclidean",
        metrics=["acc@1", "acc@2", "acc@3"],
    )
    assert result["acc@1"] == 0.0
    assert result["acc@2"] == pytest.approx(2 / 3)  # queries 0 and 2
    assert result["acc@3"] == pytest.approx(2 / 3)


def test_acc_at_k_ties_follow_the_engine_rule():
    # items 0 and 1 tie with the query; the relevant item 1 comes second by gallery index
    gallery = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    result = evaluate(
        np.array([[2.0, 0.0]]),
        np.array([7]),
        gallery,
        np.array([3, 7, 5]),
        distance="cosine",
        metrics=["acc@1", "acc@2"],
    )
    assert (result["acc@1"], result["acc@2"]) == (0.0, 1.0)


@pytest.mark.parametrize("distance", ["cosine", "euclidean", "hamming"])
def test_acc_at_k_matches_brute_force(distance):
    rng = np.random.default_rng(3)
    queries = rng.normal(size=(40, 6)) if distance != "hamming" else np.sign(rng.normal(size=(40, 6)))
    gallery = rng.normal(size=(30, 6)) if distance != "hamming" else np.sign(rng.normal(size=(30, 6)))
    query_labels, gallery_labels = rng.integers(0, 8, 40), rng.integers(0, 8, 30)
    relevance = gallery_labels[ranking(distance_matrix(queries, gallery, distance))] == query_labels[:, None]
    result = evaluate(
        queries,
        query_labels,
        gallery,
        gallery_labels,
        distance=distance,
        metrics=["acc@1", "acc@5", "acc@10"],
    )
    for k in (1, 5, 10):
        assert result[f"acc@{k}"] == pytest.approx(relevance[:, :k].any(axis=1).mean(), abs=1e-12)


def test_acc_at_k_chance_is_the_hypergeometric_complement():
    # R = 2 relevant among G = 10, K = 3: 1 - C(8, 3) / C(10, 3) = 1 - 56/120
    reference = chance_and_ceiling("acc@3", np.array([2, 2]), 10)
    assert reference.chance == pytest.approx(1 - comb(8, 3) / comb(10, 3)) == pytest.approx(64 / 120)
    assert reference.ceiling == 1.0 and reference.exact
    assert chance_and_ceiling("triplet_acc", np.array([1]), 10).chance == 0.5


def test_triplet_acc_by_hand_with_a_tie_counted_wrong():
    gallery = np.array([[0.0], [1.0], [2.0], [1.0]])
    queries = np.array([[0.0], [2.0]])
    triplets = np.array(
        [
            [0, 0, 1],  # d = 0 < 1: correct
            [0, 2, 1],  # d = 2 > 1: wrong
            [1, 2, 0],  # d = 0 < 2: correct
            [0, 1, 3],  # d = 1 = 1: a tie, wrong
        ]
    )
    result = evaluate(
        queries,
        np.array([0, 2]),
        gallery,
        np.arange(4),
        distance="euclidean",
        metrics=["triplet_acc"],
        triplets=triplets,
    )
    assert result["triplet_acc"] == pytest.approx(2 / 4) and result["n_triplets"] == 4.0


@pytest.mark.parametrize("distance", ["cosine", "euclidean", "hamming"])
def test_triplet_acc_matches_brute_force(distance):
    rng = np.random.default_rng(5)
    make = (
        (lambda n: np.sign(rng.normal(size=(n, 8))))
        if distance == "hamming"
        else (lambda n: rng.normal(size=(n, 8)))
    )
    queries, gallery = make(20), make(25)
    triplets = np.stack(
        [rng.integers(0, 20, 200), rng.integers(0, 25, 200), rng.integers(0, 25, 200)], axis=1
    )
    d = distance_matrix(queries, gallery, distance)
    expected = (d[triplets[:, 0], triplets[:, 1]] < d[triplets[:, 0], triplets[:, 2]]).mean()
    result = evaluate(
        queries,
        np.zeros(20, int),
        gallery,
        np.zeros(25, int),
        distance=distance,
        metrics=["triplet_acc"],
        triplets=triplets,
    )
    assert result["triplet_acc"] == pytest.approx(expected)


def test_triplet_acc_needs_triplets_in_range():
    args = (np.array([[0.0]]), np.array([0]), np.array([[0.0], [1.0]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="triplet_acc needs the annotated triplets"):
        evaluate(*args, metrics=["triplet_acc"])
    with pytest.raises(ValueError, match="triplet 1: negative index 2 is out of range 0..1"):
        evaluate(*args, metrics=["triplet_acc"], triplets=[[0, 0, 1], [0, 1, 2]])
    with pytest.raises(ValueError, match=r"integer array \[T, 3\]"):
        evaluate(*args, metrics=["triplet_acc"], triplets=[[0, 1]])


def _l1(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    return np.abs(queries[:, None, :] - gallery[None, :, :]).sum(-1)


def test_a_score_function_ranks_like_its_brute_force_matrix_ties_by_index():
    rng = np.random.default_rng(0)
    queries, gallery = rng.integers(0, 3, (30, 4)).astype(float), rng.integers(0, 3, (50, 4)).astype(float)
    query_labels, gallery_labels = rng.integers(0, 5, 30), rng.integers(0, 5, 50)
    scores = _l1(queries, gallery)  # integer L1 distances: many exact ties
    distances, indices = top_k(queries, gallery, 50, distance=_l1)
    assert np.array_equal(indices.numpy(), ranking(scores))
    assert np.array_equal(distances.numpy(), np.sort(scores, axis=1))
    relevance = gallery_labels[ranking(scores)] == query_labels[:, None]
    result = evaluate(
        queries, query_labels, gallery, gallery_labels, distance=_l1, metrics=["acc@1", "map@all", "p@10"]
    )
    assert result["acc@1"] == pytest.approx(relevance[:, 0].mean())
    assert result["p@10"] == pytest.approx(relevance[:, :10].mean())
    triplets = np.array([[0, 1, 2], [3, 4, 4]])
    result = evaluate(
        queries,
        query_labels,
        gallery,
        gallery_labels,
        distance=_l1,
        metrics=["triplet_acc"],
        triplets=triplets,
    )
    assert result["triplet_acc"] == pytest.approx(((scores[0, 1] < scores[0, 2]) + 0) / 2)


def test_a_score_function_returning_nonsense_is_refused():
    args = (np.array([[0.0], [1.0]]), np.array([0, 1]), np.array([[0.0], [1.0]]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"returned shape \(2,\) for 2 queries"):
        evaluate(*args, distance=lambda q, g: np.zeros(len(q)), metrics=["acc@1"])
    with pytest.raises(ValueError, match="non-finite scores for query row 1"):
        evaluate(*args, distance=lambda q, g: np.where(q > 0, np.nan, 0.0) + 0 * g.T, metrics=["acc@1"])
