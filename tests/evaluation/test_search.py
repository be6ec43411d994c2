"""Exact top-k search and full-ranking ranks against brute force; ties, Hamming packing, chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sbir_bench.evaluation import search
from sbir_bench.evaluation.search import (
    PairwiseScorer,
    default_chunk_size,
    first_identical_rows,
    integer_factors,
    relevant_ranks,
    smallest_k,
    top_k,
)

from .reference import distance_matrix, ranking


def _float_data(seed: int, n_queries: int = 23, n_gallery: int = 41, dim: int = 6) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    queries = rng.standard_normal((n_queries, dim)).astype(np.float32)
    gallery = rng.standard_normal((n_gallery, dim)).astype(np.float32)
    gallery[[4, 9, 30]] = gallery[17]  # exact duplicates: tied distances for every query
    queries[3] = gallery[17]
    return queries, gallery


def _integer_data(seed: int, n_queries: int = 19, n_gallery: int = 37) -> tuple[np.ndarray, ...]:
    """Small integers: float32 Euclidean keys are exact, so ties are everywhere and exact."""
    rng = np.random.default_rng(seed)
    return (
        rng.integers(-2, 3, (n_queries, 3)).astype(np.float32),
        rng.integers(-2, 3, (n_gallery, 3)).astype(np.float32),
    )


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 5, 40, 41, 100])
def test_top_k_matches_brute_force_with_duplicates(distance, k):
    queries, gallery = _float_data(0)
    reference = distance_matrix(queries, gallery, distance)
    distances, indices = top_k(queries, gallery, k, distance=distance)
    expected = ranking(reference)[:, :k]
    assert indices.shape == expected.shape == (len(queries), min(k, len(gallery)))
    np.testing.assert_array_equal(indices.numpy(), expected)
    # distances come from the exact float64 keys: no float32 cancellation
    np.testing.assert_allclose(distances.numpy(), np.take_along_axis(reference, expected, 1), atol=1e-9)


@pytest.mark.parametrize("k", [1, 3, 8, 36, 37])
def test_top_k_breaks_exact_ties_by_gallery_index(k):
    queries, gallery = _integer_data(1)
    reference = distance_matrix(queries, gallery, "euclidean")
    assert (np.diff(np.sort(reference, axis=1), axis=1) == 0).any(axis=1).all()  # ties in every row
    distances, indices = top_k(queries, gallery, k, distance="euclidean", chunk_size=4)
    np.testing.assert_array_equal(indices.numpy(), ranking(reference)[:, :k])


@pytest.mark.parametrize("bits", [1, 7, 64, 65, 130])
@pytest.mark.parametrize("encoding", ["bool", "uint8", "signs"])
def test_hamming_packed_popcount_matches_brute_force(bits, encoding):
    rng = np.random.default_rng(bits)
    query_bits, gallery_bits = rng.random((17, bits)) < 0.5, rng.random((29, bits)) < 0.5
    encode = {
        "bool": lambda b: b,
        "uint8": lambda b: b.astype(np.uint8),
        "signs": lambda b: np.where(b, 1.0, -1.0),
    }
    queries, gallery = encode[encoding](query_bits), encode[encoding](gallery_bits)
    reference = distance_matrix(query_bits, gallery_bits, "hamming")
    distances, indices = top_k(torch.as_tensor(queries), torch.as_tensor(gallery), 29, distance="hamming")
    np.testing.assert_array_equal(indices.numpy(), ranking(reference))
    np.testing.assert_array_equal(distances.numpy(), np.sort(reference, axis=1))


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (np.array([[0.0, 1.0]]), r"-1 or \+1"),
        (np.array([[0, 2]], dtype=np.uint8), "bits 0/1"),
        (np.array([[0.5, -1.0]]), r"-1 or \+1"),
    ],
)
def test_hamming_refuses_codes_that_are_not_binary(codes, message):
    with pytest.raises(ValueError, match=message):
        top_k(codes, codes, 1, distance="hamming")


@pytest.mark.parametrize("distance", ["cosine", "euclidean", "hamming"])
def test_chunk_size_does_not_change_the_result(distance):
    # BLAS results depend on the shape of the GEMM: keys come from fixed blocks whatever the chunks
    rng = np.random.default_rng(2)
    queries = rng.standard_normal((600, 48)).astype(np.float32)
    gallery = rng.standard_normal((500, 48)).astype(np.float32)
    if distance == "hamming":
        queries, gallery = queries > 0, gallery > 0
    results = [
        top_k(queries, gallery, 50, distance=distance, chunk_size=size) for size in (1, 64, 100, 192, None)
    ]
    for distances, indices in results[1:]:
        assert torch.equal(indices, results[0][1]) and torch.equal(distances, results[0][0])


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_identical_gallery_vectors_are_exact_ties_wherever_they_sit(distance):
    # BLAS may round the same dot product differently in different columns; identical vectors must tie.
    # Reference: float64 distances of the distinct vectors, copied to the duplicates (exact ties).
    rng = np.random.default_rng(7)
    queries = rng.standard_normal((150, 64)).astype(np.float32)
    gallery = rng.standard_normal((700, 64)).astype(np.float32)
    copies = [3, 250, 511, 640, 699]
    gallery[copies] = gallery[100]
    distinct = np.setdiff1d(np.arange(700), copies)
    expected_distances = np.empty((150, 700))
    expected_distances[:, distinct] = distance_matrix(queries, gallery[distinct], distance)
    expected_distances[:, copies] = expected_distances[:, [100]]
    _, indices = top_k(queries, gallery, 700, distance=distance)
    np.testing.assert_array_equal(indices.numpy(), ranking(expected_distances))
    positions = np.argsort(indices.numpy(), axis=1)[:, [3, 100, 250, 511, 640, 699]]
    assert (np.diff(positions, axis=1) == 1).all()  # adjacent, by ascending index


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_the_float64_gemm_path_gives_the_same_rankings(distance, monkeypatch):
    # with no budget for re-scoring pairs, every block takes the float64 GEMM path
    queries, gallery = _float_data(8, n_queries=40, n_gallery=300)
    expected = top_k(queries, gallery, 50, distance=distance)
    monkeypatch.setattr(search, "_RESCORED_SHARE_LIMIT", 0.0)
    assert torch.equal(top_k(queries, gallery, 50, distance=distance)[1], expected[1])


def test_integer_factors():
    rows = np.array([[3.0, -6.0, 9.0], [1e19, 2e19, 0.0], [0.1, 0.2, 0.3], [0.0, 0.0, 0.0], [0.5, 1.5, 2.0]])
    assert integer_factors(rows).tolist() == [3.0, 1e19, 0.0, 0.0, 0.5]


def test_first_identical_rows():
    rows = np.array([[1, 2], [3, 4], [1, 2], [0, 0], [3, 4], [1, 2]], dtype=np.float32)
    assert first_identical_rows(rows).tolist() == [0, 1, 0, 3, 1, 0]


def test_zero_vectors_have_cosine_distance_one_and_rank_by_index():
    queries = np.array([[0.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    gallery = np.array([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    distances, indices = top_k(queries, gallery, 3)
    assert indices.tolist() == [[0, 1, 2], [2, 0, 1]]
    np.testing.assert_allclose(distances.numpy(), [[1, 1, 1], [0, 1, 1]], atol=1e-6)


@pytest.mark.parametrize(
    ("queries", "gallery", "message"),
    [
        (np.ones((2, 3)), np.ones((4, 2)), "dimension 3"),
        (np.ones((0, 3)), np.ones((4, 3)), "queries is empty"),
        (np.ones((2, 3)), np.ones((4, 0)), "gallery is empty"),
        (np.array([[1.0, np.nan]]), np.ones((4, 2)), "NaN or inf"),
        (np.ones((2, 2)), np.array([[1.0, np.inf]]), "NaN or inf"),
        (np.ones(3), np.ones((4, 3)), "2-D"),
        (np.ones((2, 2), dtype=complex), np.ones((2, 2)), "real numbers"),
    ],
)
def test_bad_inputs_are_refused(queries, gallery, message):
    with pytest.raises(ValueError, match=message):
        top_k(queries, gallery, 1)


def test_unknown_distance_and_bad_k_are_refused():
    with pytest.raises(ValueError, match="known: cosine, euclidean, hamming"):
        top_k(np.ones((1, 2)), np.ones((1, 2)), 1, distance="manhattan")
    with pytest.raises(ValueError, match="k must be"):
        top_k(np.ones((1, 2)), np.ones((1, 2)), 0)


def test_default_chunk_size_follows_the_memory_budget():
    assert default_chunk_size(10_453, workers=2) == 256  # capped for cache locality
    assert default_chunk_size(50_000, workers=2) == 67
    assert default_chunk_size(10**12, workers=2) == 1


# integer-valued keys with many ties, and strictly increasing maps that are exact on them in float32
monotone_maps = [lambda x: 3 * x + 7, lambda x: x**3, lambda x: np.exp(x / 4)]


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_gallery=st.integers(1, 30),
    k=st.integers(1, 35),
    map_index=st.integers(0, len(monotone_maps) - 1),
)
def test_selection_is_invariant_to_monotone_transforms_and_exact_with_ties(seed, n_gallery, k, map_index):
    rng = np.random.default_rng(seed)
    keys = rng.integers(-6, 7, (5, n_gallery)).astype(np.float32)
    transformed = monotone_maps[map_index](keys).astype(np.float32)
    expected_order = ranking(keys.astype(np.float64))
    for candidate in (keys, transformed):
        np.testing.assert_array_equal(smallest_k(candidate, k), expected_order[:, :k])
    relevant = np.sort(rng.choice(n_gallery, size=rng.integers(1, n_gallery + 1), replace=False))
    expected_ranks = np.sort(np.argsort(expected_order, axis=1)[:, relevant] + 1, axis=1)
    for candidate in (keys, transformed):
        np.testing.assert_array_equal(relevant_ranks(candidate, relevant), expected_ranks)


def test_relevant_ranks_with_many_shared_keys_use_the_exact_row_path():
    # keys tied in pairs (and a row of one value): every relevant key is shared, 60 > the counting limit
    pairs = np.arange(100, dtype=np.float32) // 2
    keys = np.stack([pairs, pairs[::-1], np.full(100, 0.5, dtype=np.float32)])
    relevant = np.unique(np.concatenate([np.arange(1, 100, 2), np.arange(0, 100, 10)]))
    expected = np.sort(np.argsort(ranking(keys.astype(np.float64)), axis=1)[:, relevant] + 1, axis=1)
    np.testing.assert_array_equal(relevant_ranks(keys, relevant), expected)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_float32_keys_lie_within_their_bounds_of_the_exact_keys(distance):
    rng = np.random.default_rng(3)
    queries = rng.standard_normal((50, 300)) * rng.uniform(0.1, 10, (50, 1)) + 5.0
    gallery = rng.standard_normal((400, 300)) * rng.uniform(0.1, 10, (400, 1)) + 5.0
    scorer = PairwiseScorer(queries, gallery, distance)
    rows = np.arange(50)
    exact, float32 = scorer.exact_keys(rows), scorer.float32_keys(rows).astype(np.float64)
    if distance == "cosine":  # float32 keys are -cos, exact keys -sign(cos) cos^2
        exact = -np.sign(-exact) * np.sqrt(np.abs(exact))
    error = np.abs(float32 - exact).max(axis=1)
    assert (error <= scorer.bounds(rows)).all()
    assert (error > 0).any()  # the float32 keys are not exact: the bound is exercised
    np.testing.assert_array_equal(
        ranking(scorer.exact_keys(rows)), ranking(distance_matrix(queries, gallery, distance))
    )


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_multi_vector_queries_rank_by_their_closest_vector(distance: str) -> None:
    rng = np.random.default_rng(5)
    queries = rng.standard_normal((9, 4, 6)).astype(np.float32)
    gallery = rng.standard_normal((30, 6)).astype(np.float32)
    per_vector = np.stack([distance_matrix(queries[:, c], gallery, distance) for c in range(4)])
    closest = per_vector.min(axis=0)  # [Q, G]
    distances, indices = top_k(queries, gallery, 7, distance=distance)
    expected = np.argsort(closest, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(indices.numpy(), expected)
    np.testing.assert_allclose(distances.numpy(), np.take_along_axis(closest, expected, 1), atol=1e-9)


def test_multi_vector_queries_refuse_hamming() -> None:
    with pytest.raises(ValueError, match="multi-vector"):
        PairwiseScorer(np.ones((2, 3, 8), dtype=bool), np.ones((4, 8), dtype=bool), "hamming")
