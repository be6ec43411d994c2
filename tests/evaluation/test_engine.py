"""``evaluate`` against brute-force NumPy/sklearn, invariances, chunking and input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sbir_bench.evaluation.engine import DEFAULT_METRICS, evaluate

from . import reference

KS = (1, 5, 12, 60)  # 60 > every gallery below: K larger than the gallery
ALL_METRICS = tuple(
    f"{kind}@{k}{suffix}" for k in KS for kind, suffix in (("p", ""), ("map", ""), ("map", "_yelamarthi"))
)
ALL_METRICS += ("map@all",)


def _case(seed: int, distance: str, n_queries: int = 30, n_gallery: int = 47, ties: bool = True):
    """Random embeddings; classes 0..5 for queries but 0..4 in the gallery (class 5: no relevant item),
    class 4 with only 2 gallery items (fewer than K), duplicated gallery rows (exact ties)."""
    rng = np.random.default_rng(seed)
    query_labels = rng.integers(0, 6, n_queries)
    gallery_labels = rng.integers(0, 4, n_gallery)
    gallery_labels[:2] = 4
    if distance == "hamming":
        queries, gallery = rng.random((n_queries, 9)) < 0.5, rng.random((n_gallery, 9)) < 0.5
    else:
        queries = rng.standard_normal((n_queries, 5)).astype(np.float32)
        gallery = rng.standard_normal((n_gallery, 5)).astype(np.float32)
        if ties:
            gallery[[7, 20, 33]] = gallery[11]
            queries[[0, 1]] = gallery[11]
    return queries, query_labels, gallery, gallery_labels


def _assert_matches(result: dict[str, float], expected: dict[str, float]) -> None:
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, abs=1e-12, nan_ok=True), name


@pytest.mark.parametrize("distance", ["cosine", "euclidean", "hamming"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_brute_force(distance, seed):
    queries, query_labels, gallery, gallery_labels = _case(seed, distance)
    result = evaluate(queries, query_labels, gallery, gallery_labels, distance=distance, metrics=ALL_METRICS)
    expected = reference.metrics(
        reference.distance_matrix(queries, gallery, distance), query_labels, gallery_labels, KS
    )
    assert expected["n_queries_without_relevant"] > 0
    _assert_matches(result, expected)
    assert (result["n_queries"], result["n_gallery"]) == (len(queries), len(gallery))
    assert list(result)[: len(ALL_METRICS)] == list(ALL_METRICS)


def test_hamming_with_heavy_ties_matches_brute_force():
    # 4-bit codes for 200 gallery items: each distance value is shared by dozens of items
    rng = np.random.default_rng(5)
    queries, gallery = rng.random((40, 4)) < 0.5, rng.random((200, 4)) < 0.5
    query_labels, gallery_labels = rng.integers(0, 3, 40), rng.integers(0, 3, 200)
    result = evaluate(queries, query_labels, gallery, gallery_labels, distance="hamming", metrics=ALL_METRICS)
    expected = reference.metrics(
        reference.distance_matrix(queries, gallery, "hamming"), query_labels, gallery_labels, KS
    )
    _assert_matches(result, expected)


def test_torch_tensors_and_numpy_arrays_give_the_same_numbers():
    queries, query_labels, gallery, gallery_labels = _case(3, "cosine")
    from_numpy = evaluate(queries, query_labels, gallery, gallery_labels)
    from_torch = evaluate(*(torch.as_tensor(x) for x in (queries, query_labels, gallery, gallery_labels)))
    assert from_numpy == from_torch
    assert set(from_numpy) == {*DEFAULT_METRICS, "n_queries", "n_gallery", "n_queries_without_relevant"}


@pytest.mark.parametrize("distance", ["cosine", "euclidean", "hamming"])
def test_chunk_size_does_not_change_the_metrics(distance):
    queries, query_labels, gallery, gallery_labels = _case(4, distance, n_queries=600, n_gallery=400)
    results = [
        evaluate(
            queries,
            query_labels,
            gallery,
            gallery_labels,
            distance=distance,
            metrics=ALL_METRICS,
            chunk_size=size,
        )
        for size in (1, 64, 100, 300, None)
    ]
    assert all(result == results[0] for result in results[1:])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_gallery=st.integers(1, 40),
    distance=st.sampled_from(["cosine", "euclidean"]),
)
def test_permuting_the_gallery_without_ties_changes_nothing(seed, n_gallery, distance):
    queries, query_labels, gallery, gallery_labels = _case(
        seed, distance, n_queries=8, n_gallery=n_gallery, ties=False
    )
    permutation = np.random.default_rng(seed).permutation(n_gallery)
    original = evaluate(
        queries, query_labels, gallery, gallery_labels, distance=distance, metrics=ALL_METRICS
    )
    permuted = evaluate(
        queries,
        query_labels,
        gallery[permutation],
        gallery_labels[permutation],
        distance=distance,
        metrics=ALL_METRICS,
    )
    for name in ALL_METRICS:
        assert permuted[name] == pytest.approx(original[name], abs=1e-12, nan_ok=True)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_bits=st.integers(1, 12))
def test_monotone_transform_euclidean_is_sqrt_of_hamming_on_bits(seed, n_bits):
    # on {0, 1} codes, Euclidean distance = sqrt(Hamming distance), exactly, ties included
    rng = np.random.default_rng(seed)
    queries, gallery = rng.random((9, n_bits)) < 0.5, rng.random((25, n_bits)) < 0.5
    query_labels, gallery_labels = rng.integers(0, 3, 9), rng.integers(0, 3, 25)
    hamming = evaluate(
        queries, query_labels, gallery, gallery_labels, distance="hamming", metrics=ALL_METRICS
    )
    euclidean = evaluate(
        queries.astype(np.float32), query_labels, gallery.astype(np.float32), gallery_labels,
        distance="euclidean", metrics=ALL_METRICS,
    )  # fmt: skip
    assert hamming == euclidean


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), n_bits=st.integers(2, 40), scale=st.sampled_from([3.0, 0.1, 7e-30, 1e19])
)
def test_monotone_transforms_of_cosine_distance_change_nothing(seed, n_bits, scale):
    # +-1 codes: Hamming = d (cosine distance) / 2 and Euclidean = sqrt(2 d (cosine distance)), a
    # non-linear monotone map; ties are everywhere and exact. Scaling every vector by a factor that is not
    # a power of two must leave the cosine ranking, ties included, unchanged.
    rng = np.random.default_rng(seed)
    queries = np.where(rng.random((9, n_bits)) < 0.5, 1.0, -1.0)
    gallery = np.where(rng.random((40, n_bits)) < 0.5, 1.0, -1.0)
    query_labels, gallery_labels = rng.integers(0, 3, 9), rng.integers(0, 3, 40)
    hamming = evaluate(
        queries, query_labels, gallery, gallery_labels, distance="hamming", metrics=ALL_METRICS
    )
    for distance, factor in (("cosine", 1.0), ("euclidean", 1.0), ("cosine", scale)):
        transformed = evaluate(
            queries * factor, query_labels, gallery * factor, gallery_labels, distance=distance,
            metrics=ALL_METRICS,
        )  # fmt: skip
        assert transformed == hamming, (distance, factor)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"metrics": ("p@100", "ndcg")}, ValueError, "known forms"),
        ({"distance": "manhattan"}, ValueError, "unknown distance"),
        ({"backend": "faiss"}, ValueError, "available: torch"),
        ({"chunk_size": 0}, ValueError, "chunk_size must be >= 1"),
        ({"query_embeddings": np.full((3, 2), np.nan)}, ValueError, "NaN or inf"),
        ({"gallery_embeddings": np.ones((0, 2))}, ValueError, "gallery is empty"),
        ({"gallery_embeddings": np.ones((4, 3))}, ValueError, "dimension"),
        ({"query_labels": np.array([0, 1])}, ValueError, "2 labels for 3 embeddings"),
        ({"gallery_labels": np.array([0.0, 1.0, 0.0, 1.0])}, ValueError, "integer"),
        ({"query_labels": np.zeros((3, 1), dtype=int)}, ValueError, "1-D"),
        ({"query_embeddings": [[1.0, 2.0]] * 3}, TypeError, "torch.Tensor or a numpy.ndarray"),
    ],
)
def test_bad_arguments_are_refused_clearly(kwargs, error, message):
    arguments = {
        "query_embeddings": np.ones((3, 2)),
        "query_labels": np.array([0, 1, 0]),
        "gallery_embeddings": np.ones((4, 2)),
        "gallery_labels": np.array([0, 1, 0, 1]),
    }
    options = {
        key: kwargs.pop(key) for key in ("metrics", "distance", "backend", "chunk_size") if key in kwargs
    }
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        evaluate(**arguments, **options)
