"""Hand-worked examples of every metric, through the metric functions and through the whole engine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sbir_bench.evaluation.engine import evaluate
from sbir_bench.evaluation.metrics import (
    average_precision,
    average_precision_at_k,
    average_precision_at_k_yelamarthi,
    hits_at_k,
    parse_metric,
    precision_at_k,
)

# One query of class 1 against 7 gallery items on a line, at distances 1..7 (so rank = position):
# labels by rank 1, 0, 1, 0, 0, 0, 1  ->  relevant at ranks 1, 3 and 7, R = 3.
GALLERY_POSITIONS = np.arange(1.0, 8.0)[:, None]
GALLERY_LABELS = np.array([1, 0, 1, 0, 0, 0, 1])
RELEVANCE = (GALLERY_LABELS == 1)[None, :]


def test_precision_at_k_by_hand():
    # p@5 = hits@5 / 5 = 2/5; p@10 with only 7 items: 3/10 (K stays 10)
    assert hits_at_k(RELEVANCE, 5).tolist() == [2]
    assert precision_at_k(RELEVANCE, 5).tolist() == [pytest.approx(0.4)]
    assert precision_at_k(RELEVANCE, 10).tolist() == [pytest.approx(0.3)]


def test_map_at_k_by_hand():
    # ranks 1 and 3 in the top 5: P(1) = 1, P(3) = 2/3, sum 5/3, divided by hits@5 = 2 -> 5/6
    assert average_precision_at_k(RELEVANCE, 5).tolist() == [pytest.approx(5 / 6)]
    # top 10 holds all three: (1 + 2/3 + 3/7) / 3
    assert average_precision_at_k(RELEVANCE, 10).tolist() == [pytest.approx((1 + 2 / 3 + 3 / 7) / 3)]
    # no relevant item within the top K: 0 by definition (not 0/0)
    assert average_precision_at_k(np.array([[False, True]]), 1).tolist() == [0.0]


def test_map_at_k_yelamarthi_by_hand():
    # same sum 5/3 divided by K = 5 -> 1/3; at K = 10: (1 + 2/3 + 3/7) / 10
    assert average_precision_at_k_yelamarthi(RELEVANCE, 5).tolist() == [pytest.approx(1 / 3)]
    assert average_precision_at_k_yelamarthi(RELEVANCE, 10).tolist() == [
        pytest.approx((1 + 2 / 3 + 3 / 7) / 10)
    ]


def test_map_all_by_hand():
    # (1/1 + 2/3 + 3/7) / 3 = 0.698412...
    assert average_precision(np.array([[1, 3, 7]])).tolist() == [pytest.approx((1 + 2 / 3 + 3 / 7) / 3)]
    assert np.isnan(average_precision(np.zeros((2, 0), dtype=int))).all()


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
        ("map@200", 200, average_precision_at_k),
        ("map@200_yelamarthi", 200, average_precision_at_k_yelamarthi),
        ("map@all", None, None),
    ],
)
def test_metric_names_parse(name, k, function):
    spec = parse_metric(name)
    assert (spec.name, spec.k, spec.top_k_metric) == (name, k, function)


@pytest.mark.parametrize(
    "name", ["p@0", "map@", "P@100", "p@100_yelamarthi", "map@all_voc", "mAP", "acc@1", "p@-1"]
)
def test_unknown_metric_names_are_refused_with_the_known_forms(name):
    with pytest.raises(ValueError, match=r"map@<K>_yelamarthi"):
        parse_metric(name)
