"""Rankings equal exact (rational) or float64 brute force: exact ties, every scale, float64 inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbir_bench.evaluation.engine import evaluate
from sbir_bench.evaluation.search import top_k

from . import reference

ALL_NAMES = (
    "p@1", "p@5", "p@60", "p@5_minr", "map@5", "map@60", "map@5_yelamarthi", "map@5_voc", "map@60_voc",
    "map@all", "map@all_voc",
)  # fmt: skip


def _full_ranking(queries, gallery, distance):
    return top_k(queries, gallery, len(gallery), distance=distance)[1].numpy()


def test_cosine_ties_of_the_issue_follow_the_gallery_index():
    # both cosine distances are exactly 1.2: gallery index 0 (label 0, the query's) comes first
    query, gallery = np.array([[1.0, -1, 1, 1, -1]]), np.array([[1.0, 1, 1, -1, 1], [-1.0, 1, -1, 1, -1]])
    result = evaluate(query, np.array([0]), gallery, np.array([0, 1]), metrics=("p@1", "map@all"))
    assert (result["p@1"], result["map@all"]) == (1.0, 1.0)
    assert _full_ranking(query, gallery, "cosine").tolist() == [[0, 1]]


@pytest.mark.parametrize("dim", [32, 48, 128, 512])
def test_cosine_and_euclidean_on_sign_codes_rank_exactly_as_hamming(dim):
    # on +-1 codes cos = 1 - 2 hamming / d and euclidean = sqrt(4 hamming): same order, same ties
    rng = np.random.default_rng(dim)
    queries = np.where(rng.random((40, dim)) < 0.5, 1.0, -1.0).astype(np.float32)
    gallery = np.where(rng.random((300, dim)) < 0.5, 1.0, -1.0).astype(np.float32)
    query_labels, gallery_labels = rng.integers(0, 3, 40), rng.integers(0, 3, 300)
    hamming = _full_ranking(queries, gallery, "hamming")
    for distance in ("cosine", "euclidean"):
        np.testing.assert_array_equal(_full_ranking(queries, gallery, distance), hamming)
    names = ("p@10", "map@200", "map@all", "map@200_voc")
    by_hamming = evaluate(queries, query_labels, gallery, gallery_labels, distance="hamming", metrics=names)
    assert evaluate(queries, query_labels, gallery, gallery_labels, metrics=names) == by_hamming


def _integer_case(seed: int, multi: int = 0):
    """Small integer vectors: exact ties everywhere; gallery rows 10..13 are scaled copies of rows 0..3."""
    rng = np.random.default_rng(seed)
    shape = (12, multi, 4) if multi else (12, 4)
    queries = rng.integers(-2, 3, shape).astype(np.float64)
    gallery = rng.integers(-2, 3, (30, 4)).astype(np.float64)
    gallery[10:14] = gallery[:4] * np.array([3.0, 0.5, 6.0, 1.0])[:, None]
    gallery[20] = gallery[5]
    return queries, gallery


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_ties_and_scaled_copies_rank_as_exact_arithmetic(distance, seed):
    queries, gallery = _integer_case(seed)
    expected = reference.exact_ranking(queries, gallery, distance)
    np.testing.assert_array_equal(_full_ranking(queries, gallery, distance), expected)
    np.testing.assert_array_equal(_full_ranking(queries.astype(np.float32), gallery, distance), expected)


@pytest.mark.parametrize("scale", [3 * 2.0**-90, 3.0, 7.0, 1e19])
def test_cosine_is_scale_free(scale):
    # integer vectors times these scales are exact in float64: the exact ranking may not change
    queries, gallery = _integer_case(4)
    expected = reference.exact_ranking(queries, gallery, "cosine")
    np.testing.assert_array_equal(_full_ranking(queries, gallery * scale, "cosine"), expected)
    np.testing.assert_array_equal(_full_ranking(queries * scale, gallery, "cosine"), expected)


def test_tiny_norm_vectors_rank_by_their_direction():
    query, gallery = np.array([[1.0, 0.0]]), np.array([[1e-25, 1e-25], [1.0, 0.1]])
    assert _full_ranking(query, gallery, "cosine").tolist() == [[1, 0]]
    assert _full_ranking(query, gallery.astype(np.float32), "cosine").tolist() == [[1, 0]]


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_float64_inputs_beyond_the_float32_range_rank_exactly(distance):
    rng = np.random.default_rng(3)
    queries, gallery = rng.standard_normal((8, 3)) * 1e39, rng.standard_normal((25, 3)) * 1e39
    gallery[4, 0], queries[2, 1] = 1e-39, 4e-39  # components below float32's range too
    expected = reference.exact_ranking(queries, gallery, distance)
    np.testing.assert_array_equal(_full_ranking(queries, gallery, distance), expected)
    labels = rng.integers(0, 2, 25)
    result = evaluate(queries, labels[:8], gallery, labels, distance=distance, metrics=("p@1", "map@all"))
    oracle = reference.per_query(expected, labels[:8], labels, ("p@1", "map@all"))
    assert result["p@1"] == pytest.approx(np.mean(oracle["p@1"]), abs=1e-12)
    assert result["map@all"] == pytest.approx(np.nanmean(oracle["map@all"]), abs=1e-12)


def test_euclidean_with_a_large_common_offset_does_not_cancel():
    _, indices = top_k(np.array([[10000.0]]), np.array([[9999.0], [10000.5]]), 2, distance="euclidean")
    assert indices.tolist() == [[1, 0]]
    distances, _ = top_k(np.array([[10000.0]]), np.array([[9999.0], [10000.5]]), 2, distance="euclidean")
    np.testing.assert_allclose(distances.numpy(), [[0.5, 1.0]])
    rng = np.random.default_rng(4)
    offset = rng.standard_normal(16)
    offset *= 1e4 / np.linalg.norm(offset)
    queries = (rng.standard_normal((30, 16)) + offset).astype(np.float32)
    gallery = (rng.standard_normal((400, 16)) + offset).astype(np.float32)
    expected = reference.ranking(reference.distance_matrix(queries, gallery, "euclidean"))
    np.testing.assert_array_equal(_full_ranking(queries, gallery, "euclidean"), expected)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_random_float64_inputs_match_the_float64_reference(distance):
    rng = np.random.default_rng(5)
    queries, gallery = rng.standard_normal((60, 24)), rng.standard_normal((700, 24))
    expected = reference.ranking(reference.distance_matrix(queries, gallery, distance))
    for k in (1, 17, 200, 700):
        np.testing.assert_array_equal(
            top_k(queries, gallery, k, distance=distance)[1].numpy(), expected[:, :k]
        )


def test_inputs_no_float_format_can_rank_are_refused_naming_the_row():
    gallery = np.array([[1e300, 0.0], [1e-300, 0.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match=r"gallery row 1 cannot be ranked by Euclidean distance"):
        top_k(np.array([[1e300, 1.0]]), gallery, 1, distance="euclidean")


@pytest.mark.parametrize("distance", ["cosine", "euclidean", "hamming"])
@pytest.mark.parametrize("seed", [0, 1])
def test_per_query_values_match_brute_force(distance, seed):
    rng = np.random.default_rng(seed)
    if distance == "hamming":
        queries, gallery = rng.random((25, 6)) < 0.5, rng.random((47, 6)) < 0.5
        order = reference.ranking(reference.distance_matrix(queries, gallery, "hamming"))
    else:
        queries, gallery = _integer_case(seed)[0], rng.integers(-2, 3, (47, 4)).astype(np.float32)
        gallery[[7, 20]] = gallery[11]
        order = reference.exact_ranking(queries, gallery, distance)
    query_labels = rng.integers(0, 6, len(queries))
    gallery_labels = rng.integers(0, 5, len(gallery))  # class 5: queries without a relevant item
    expected = reference.per_query(order, query_labels, gallery_labels, ALL_NAMES)
    for row in range(len(queries)):
        single = evaluate(
            queries[row : row + 1], query_labels[row : row + 1], gallery, gallery_labels,
            distance=distance, metrics=ALL_NAMES,
        )  # fmt: skip
        for name in ALL_NAMES:
            assert single[name] == pytest.approx(expected[name][row], abs=1e-12, nan_ok=True), (row, name)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_multi_vector_queries_through_evaluate(distance):
    queries, gallery = _integer_case(6, multi=3)
    rng = np.random.default_rng(6)
    query_labels, gallery_labels = rng.integers(0, 3, len(queries)), rng.integers(0, 3, len(gallery))
    expected = reference.per_query(
        reference.exact_ranking(queries, gallery, distance), query_labels, gallery_labels, ALL_NAMES
    )
    result = evaluate(queries, query_labels, gallery, gallery_labels, distance=distance, metrics=ALL_NAMES)
    for name in ALL_NAMES:
        assert result[name] == pytest.approx(np.nanmean(expected[name]), abs=1e-12), name


def test_half_precision_tensors_are_accepted():
    # bfloat16 / float16 tensors rank as the exact values they hold
    rng = np.random.default_rng(7)
    queries = torch.as_tensor(rng.integers(-3, 4, (20, 5)) * 0.375).bfloat16()  # exact in bfloat16
    gallery = torch.as_tensor(rng.standard_normal((60, 5))).half()
    gallery[[3, 9]] = gallery[30].clone()
    query_labels, gallery_labels = rng.integers(0, 3, 20), rng.integers(0, 3, 60)
    expected = reference.per_query(
        reference.exact_ranking(queries.double().numpy(), gallery.double().numpy(), "cosine"),
        query_labels, gallery_labels, ALL_NAMES,
    )  # fmt: skip
    result = evaluate(queries, query_labels, gallery, gallery_labels, metrics=ALL_NAMES)
    for name in ALL_NAMES:
        assert result[name] == pytest.approx(np.nanmean(expected[name]), abs=1e-12), name
