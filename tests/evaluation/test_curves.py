"""Per-query AP and the precision-recall curve agree with the engine's map@all and with hand-made rankings."""

from __future__ import annotations

import numpy as np
import pytest

from sbir_bench.evaluation.curves import ranking_curves
from sbir_bench.evaluation.engine import evaluate


def test_per_query_ap_averages_to_map_all_and_classes_split_it():
    rng = np.random.default_rng(0)
    queries, gallery = rng.standard_normal((30, 5)), rng.standard_normal((40, 5))
    query_labels, gallery_labels = rng.integers(0, 5, 30), rng.integers(0, 4, 40)  # label 4: no relevant item
    curves = ranking_curves(queries, query_labels, gallery, gallery_labels)
    expected = evaluate(queries, query_labels, gallery, gallery_labels, metrics=["map@all"])["map@all"]
    assert np.nanmean(curves.per_query_ap) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(curves.per_query_ap[query_labels == 4]).all()
    per_class = curves.per_class_ap(query_labels)
    assert set(per_class) == set(np.unique(query_labels)) - {4}
    assert per_class[0] == pytest.approx(np.mean(curves.per_query_ap[query_labels == 0]))


def test_interpolated_precision_at_each_recall_level():
    # one query; gallery ranked by distance 0, 1, 2, 3: relevant items at ranks 1 and 3 (of R = 2)
    gallery = np.array([[0.0], [1.0], [2.0], [3.0]])
    labels = np.array([1, 0, 1, 0])
    query, query_label = np.zeros((1, 1)), np.array([1])
    curves = ranking_curves(query, query_label, gallery, labels, distance="euclidean", recall_levels=5)
    assert curves.per_query_ap[0] == pytest.approx((1 / 1 + 2 / 3) / 2)
    # recall 0, .25, .5: precision 1 (rank 1); recall .75, 1: 2/3 (rank 3)
    np.testing.assert_allclose(curves.precision, [1, 1, 1, 2 / 3, 2 / 3])
    np.testing.assert_allclose(curves.recall, [0, 0.25, 0.5, 0.75, 1])
