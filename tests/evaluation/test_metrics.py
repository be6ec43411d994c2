"""Hand-worked examples of every metric, through the metric functions and through the whole engine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sbir_bench.evaluation.engine import evaluate
from sbir_bench.evaluation.metrics import (
    accuracy_at_k,
    average_precision,
    average_precision_at_k,
    average_precision_at_k_voc,
    average_precision_at_k_yelamarthi,
    average_precision_voc,
    hits_at_k,
    parse_metric,
    precision_at_k,
    precision_at_min_k_r,
)

# One query of class 1 against 7 gallery items on a line, at distances 1..7 (so rank = position):
# labels by rank 1, 0, 1, 0, 0, 0, 1  ->  relevant at ranks 1, 3 and 7, R = 3.
GALLERY_POSITIONS = np.arange(1.0, 8.0)[:, None]
GALLERY_LABELS = np.array([1, 0, 1, 0, 0, 0, 1])
RELEVANCE = (GALLERY_LABELS == 1)[None, :]
R = np.array([3])
# A second case where interpolation matters: labels by rank 0, 1, 1, 0 (query class 1), R = 2.
INTERPOLATED = np.array([[False, True, True, False]])


def test_precision_at_k_by_hand():
    # p@5 = hits@5 / 5 = 2/5; p@10 with only 7 items: 3/10 (K stays 10)
    assert hits_at_k(RELEVANCE, 5).tolist() == [2]
    assert precision_at_k(RELEVANCE, 5, R).tolist() == [pytest.approx(0.4)]
    assert precision_at_k(RELEVANCE, 10, R).tolist() == [pytest.approx(0.3)]


def test_map_at_k_by_hand():
    # ranks 1 and 3 in the top 5: P(1) = 1, P(3) = 2/3, sum 5/3, divided by hits@5 = 2 -> 5/6
    assert average_precision_at_k(RELEVANCE, 5, R).tolist() == [pytest.approx(5 / 6)]
    # top 10 holds all three: (1 + 2/3 + 3/7) / 3
    assert average_precision_at_k(RELEVANCE, 10, R).tolist() == [pytest.approx((1 + 2 / 3 + 3 / 7) / 3)]
    # no relevant item within the top K: 0 by definition (not 0/0)
    assert average_precision_at_k(np.array([[False, True]]), 1, np.array([1])).tolist() == [0.0]


def test_map_at_k_yelamarthi_by_hand():
    # same sum 5/3 divided by K = 5 -> 1/3; at K = 10: (1 + 2/3 + 3/7) / 10
    assert average_precision_at_k_yelamarthi(RELEVANCE, 5, R).tolist() == [pytest.approx(1 / 3)]
    assert average_precision_at_k_yelamarthi(RELEVANCE, 10, R).tolist() == [
        pytest.approx((1 + 2 / 3 + 3 / 7) / 10)
    ]


def test_map_all_by_hand():
    # (1/1 + 2/3 + 3/7) / 3 = 0.698412...
    assert average_precision(np.array([[1, 3, 7]])).tolist() == [pytest.approx((1 + 2 / 3 + 3 / 7) / 3)]
    assert np.isnan(average_precision(np.zeros((2, 0), dtype=int))).all()


def test_precision_at_min_k_r_by_hand():
    # p@5_minr: min(5, R=3) = 3 -> hits@3 / 3 = 2/3; p@2_minr: hits@2 / 2 = 1/2; R = 0: undefined
    assert precision_at_min_k_r(RELEVANCE, 5, R).tolist() == [pytest.approx(2 / 3)]
    assert precision_at_min_k_r(RELEVANCE, 2, R).tolist() == [pytest.approx(1 / 2)]
    assert np.isnan(precision_at_min_k_r(np.zeros((1, 4), dtype=bool), 3, np.array([0]))).all()


def test_map_at_k_voc_by_hand():
    # relevant ranks 1, 3 within the top 5; interpolated P: max(P(1..5)) = 1 and max(P(3), P(4), P(5)) =
    # max(2/3, 1/2, 2/5) = 2/3; divided by min(5, R=3) = 3 -> 5/9
    assert average_precision_at_k_voc(RELEVANCE, 5, R).tolist() == [pytest.approx(5 / 9)]
    # ranks 2, 3 (R = 2): at K = 2 only rank 2 counts, P(2) = 1/2, / min(2, 2) -> 1/4; at K = 3 both
    # ranks take max(P(2), P(3)) = 2/3: (2/3 + 2/3) / 2 = 2/3 (non-interpolated map@3 would be 7/12)
    assert average_precision_at_k_voc(INTERPOLATED, 2, np.array([2])).tolist() == [pytest.approx(1 / 4)]
    assert average_precision_at_k_voc(INTERPOLATED, 3, np.array([2])).tolist() == [pytest.approx(2 / 3)]
    assert average_precision_at_k(INTERPOLATED, 3, np.array([2])).tolist() == [pytest.approx(7 / 12)]
    assert np.isnan(average_precision_at_k_voc(np.zeros((1, 3), dtype=bool), 3, np.array([0]))).all()


def test_map_all_voc_by_hand():
    # ranks 2, 3: P = 1/2, 2/3 -> interpolated 2/3, 2/3 -> 2/3 (map@all: (1/2 + 2/3) / 2 = 7/12)
    assert average_precision_voc(np.array([[2, 3]])).tolist() == [pytest.approx(2 / 3)]
    assert average_precision(np.array([[2, 3]])).tolist() == [pytest.approx(7 / 12)]
    # ranks 1, 3, 7: P = 1, 2/3, 3/7 already decreasing: equal to map@all
    assert average_precision_voc(np.array([[1, 3, 7]])).tolist() == [pytest.approx((1 + 2 / 3 + 3 / 7) / 3)]
    assert np.isnan(average_precision_voc(np.zeros((2, 0), dtype=int))).all()


def test_engine_reproduces_the_field_conventions_by_hand():
    # the INTERPOLATED case through the engine, plus a query of class 2 (no relevant item): left out of
    # map@K_voc, map@all_voc and p@K_minr (and counted), 0 in p@K
    result = evaluate(
        np.zeros((2, 1)),
        np.array([1, 2]),
        np.arange(1.0, 5.0)[:, None],
        np.array([0, 1, 1, 0]),
        distance="euclidean",
        metrics=("map@3_voc", "map@all_voc", "p@3_minr", "p@3", "map@all"),
    )
    assert result["map@3_voc"] == pytest.approx(2 / 3)
    assert result["map@all_voc"] == pytest.approx(2 / 3)
    assert result["p@3_minr"] == pytest.approx(1 / 2)  # hits@min(3, R=2) = hits@2 = 1, over 2
    assert result["p@3"] == pytest.approx(2 / 3 / 2)
    assert result["map@all"] == pytest.approx(7 / 12)
    assert result["n_queries_without_relevant"] == 1


def test_engine_reproduces_the_hand_worked_example():
    # a second query (class 2) has no relevant item: 0 in top-K metrics, left out of map@all
    queries, query_labels = np.zeros((2, 1)), np.array([1, 2])
    result = evaluate(
        queries,
        query_labels,
        GALLERY_POSITIONS,
        GALLERY_LABELS,
        distance="euclidean",
        metrics=("p@5", "p@10", "map@5", "map@10", "map@5_yelamarthi", "map@all"),
    )
    assert result["p@5"] == pytest.approx(0.4 / 2)
    assert result["p@10"] == pytest.approx(0.3 / 2)
    assert result["map@5"] == pytest.approx(5 / 6 / 2)
    assert result["map@10"] == pytest.approx((1 + 2 / 3 + 3 / 7) / 3 / 2)
    assert result["map@5_yelamarthi"] == pytest.approx(1 / 3 / 2)
    assert result["map@all"] == pytest.approx((1 + 2 / 3 + 3 / 7) / 3)
    assert (result["n_queries"], result["n_gallery"], result["n_queries_without_relevant"]) == (2, 7, 1)


def test_hamming_ties_follow_the_gallery_index_by_hand():
    # distances 1, 1, 0, 1, 1 with labels b, a, b, b, a; the query is class a.
    # (distance, index) order: 2(b) 0(b) 1(a) 3(b) 4(a) -> relevant at ranks 3 and 5:
    # map@all = (1/3 + 2/5) / 2, p@3 = 1/3. (Descending-index ties would give ranks 2, 4 and AP 1/2.)
    gallery = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1], [1, 0, 0]], dtype=bool)
    result = evaluate(
        np.zeros((1, 3), dtype=bool),
        np.array([0]),
        gallery,
        np.array([1, 0, 1, 1, 0]),
        distance="hamming",
        metrics=("p@3", "map@all"),
    )
    assert result["map@all"] == pytest.approx((1 / 3 + 2 / 5) / 2)
    assert result["p@3"] == pytest.approx(1 / 3)


def test_map_all_is_nan_when_no_query_has_a_relevant_item():
    result = evaluate(
        np.ones((2, 2)), np.array([5, 5]), np.ones((3, 2)), np.array([1, 2, 3]), metrics=("map@all",)
    )
    assert math.isnan(result["map@all"]) and result["n_queries_without_relevant"] == 2


@pytest.mark.parametrize(
    ("name", "k", "function"),
    [
        ("p@100", 100, precision_at_k),
        ("p@7", 7, precision_at_k),
        ("p@200_minr", 200, precision_at_min_k_r),
        ("map@200", 200, average_precision_at_k),
        ("map@200_yelamarthi", 200, average_precision_at_k_yelamarthi),
        ("map@200_voc", 200, average_precision_at_k_voc),
        ("map@all", None, average_precision),
        ("map@all_voc", None, average_precision_voc),
        ("acc@10", 10, accuracy_at_k),
    ],
)
def test_metric_names_parse(name, k, function):
    spec = parse_metric(name)
    assert (spec.name, spec.k) == (name, k)
    assert (spec.top_k_metric if k is not None else spec.ranks_metric) is function
    left_out = name.startswith("map@all") or name.endswith(("_voc", "_minr"))
    assert spec.undefined_without_relevant == left_out


@pytest.mark.parametrize(
    "name",
    [
        "p@0",
        "map@",
        "P@100",
        "p@100_yelamarthi",
        "p@100_voc",
        "map@all_minr",
        "mAP",
        "acc@0",
        "acc@1_voc",
        "triplet_acc@1",
        "p@-1",
    ],
)
def test_unknown_metric_names_are_refused_with_the_known_forms(name):
    with pytest.raises(ValueError, match=r"map@<K>_yelamarthi"):
        parse_metric(name)
