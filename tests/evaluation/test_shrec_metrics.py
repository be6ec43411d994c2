"""SHREC sketch -> 3D metrics (nn, ft, st, e, dcg, map@all), open-search's variants (e_mean_pr,
dcg_log2i1), the 20-point precision-recall curve and per-class means: hand-worked cases, the pitfalls of
public code shown to give different numbers, brute force on random cases with ties, and chance levels
against simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sbir_bench.evaluation.chance import chance_and_ceiling
from sbir_bench.evaluation.curves import ranking_curves
from sbir_bench.evaluation.engine import evaluate
from sbir_bench.evaluation.metrics import (
    SHREC_RECALL_LEVELS,
    parse_metric,
    shrec_precision_at_recall_levels,
)

SHREC = ["nn", "ft", "st", "e", "dcg", "map@all", "e_mean_pr", "dcg_log2i1"]

# One sketch of class 1 against 10 models on a line at distances 0..9 (rank = position + 1); the C = 3
# models of its class sit at ranks 1, 4 and 7.
GALLERY = np.arange(10.0)[:, None]
LABELS = np.zeros(10, dtype=np.int64)
LABELS[[0, 3, 6]] = 1
QUERY = np.zeros((1, 1))


def _hand_case(metrics=SHREC) -> dict[str, float]:
    return evaluate(QUERY, np.array([1]), GALLERY, LABELS, distance="euclidean", metrics=metrics)


def test_hand_worked_values():
    result = _hand_case()
    assert result["nn"] == 1.0  # G(1) = 1
    assert result["ft"] == pytest.approx(1 / 3)  # Gsum(3) / 3: only rank 1 is within the top C = 3
    assert result["st"] == pytest.approx(2 / 3)  # Gsum(6) / 3: ranks 1 and 4
    # P32 = 3/32, R32 = 3/3 = 1: E = 2 (3/32) / (3/32 + 1) = (6/32) / (35/32) = 6/35
    assert result["e"] == pytest.approx(6 / 35)
    # DCG = [1 + 1/log2 4 + 1/log2 7] / [1 + 1/log2 2 + 1/log2 3] = 1.856207 / 2.630930
    assert result["dcg"] == pytest.approx((1 + 0.5 + 1 / math.log2(7)) / (2 + 1 / math.log2(3)))
    assert result["dcg"] == pytest.approx(0.705533, abs=1e-6)
    # mAP = (1/1 + 2/4 + 3/7) / 3
    assert result["map@all"] == pytest.approx((1 + 0.5 + 3 / 7) / 3)
    # open-search's nDCG: [1/log2 2 + 1/log2 5 + 1/log2 8] / [1/log2 2 + 1/log2 3 + 1/log2 4]
    assert result["dcg_log2i1"] == pytest.approx(
        (1 + 1 / math.log2(5) + 1 / 3) / (1 + 1 / math.log2(3) + 0.5)
    )
    # one query: the F1 of the means is the F1 of its own P32 and R32
    assert result["e_mean_pr"] == pytest.approx(6 / 35)


def test_pitfall_first_tier_off_by_one():
    # a 0-based loop that stops at rank C + 1 counts rank 4 too: Gsum(4)/3 = 2/3, not the official 1/3
    ranks = np.array([[1, 4, 7]])
    off_by_one = (ranks <= ranks.shape[1] + 1).sum() / ranks.shape[1]
    assert off_by_one == pytest.approx(2 / 3)
    assert _hand_case(["ft"])["ft"] == pytest.approx(1 / 3) != off_by_one


def test_pitfall_map_as_mean_of_the_pr_curve():
    curve = shrec_precision_at_recall_levels(np.array([[1, 4, 7]]))
    mean_of_curve = np.nanmean(curve)
    # levels 7..20 (14 kept): 5.25 between items 1 and 2, 2.796429 between 2 and 3, 3/7 at recall 1
    assert mean_of_curve == pytest.approx((5.25 + 2.796429 + 3 / 7) / 14, abs=1e-6)
    assert _hand_case(["map@all"])["map@all"] == pytest.approx(0.642857, abs=1e-6)
    assert abs(mean_of_curve - (1 + 0.5 + 3 / 7) / 3) > 1e-3


def test_pitfall_e_from_averaged_precision_and_recall():
    # Two sketches. Class 1 (C = 3, all within rank 32): P32 = 3/32, R32 = 1, F1 = 6/35. Class 2 (C = 40):
    # 10 of its models come first, then 20 others, then the class-1 line (10), then its other 30:
    # P32 = 10/32, R32 = 10/40, F1 = 2 (10/32)(1/4) / (10/32 + 1/4) = (5/32) / (18/32) = 5/18.
    # E = (6/35 + 5/18) / 2; the F1 of the means: P = (3/32 + 10/32)/2 = 13/64, R = (1 + 1/4)/2 = 5/8.
    gallery = np.concatenate(
        [np.arange(10.0), 200 + np.arange(10.0), 300 + np.arange(20.0), -1000 - np.arange(30.0)]
    )
    labels = np.concatenate([LABELS, np.full(10, 2), np.zeros(20, dtype=np.int64), np.full(30, 2)])
    queries = np.array([[0.0], [199.5]])
    result = evaluate(
        queries, np.array([1, 2]), gallery[:, None], labels, distance="euclidean", metrics=["e", "e_mean_pr"]
    )
    precision, recall = 13 / 64, 5 / 8
    assert result["e"] == pytest.approx((6 / 35 + 5 / 18) / 2)
    assert result["e_mean_pr"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert abs(result["e"] - result["e_mean_pr"]) > 0.01


def test_pitfall_log2_i_plus_1_discounts():
    result = _hand_case(["dcg", "dcg_log2i1"])
    assert result["dcg"] == pytest.approx(0.705533, abs=1e-6)
    assert result["dcg_log2i1"] == pytest.approx(0.827812, abs=1e-6)


def test_pr_curve_hand_worked():
    # precisions at the relevant items: 1/1, 2/4, 3/7 at recalls 1/3, 2/3, 1
    curve = ranking_curves(QUERY, np.array([1]), GALLERY, LABELS, distance="euclidean", convention="shrec")
    assert curve.recall.tolist() == pytest.approx(SHREC_RECALL_LEVELS.tolist())
    precision = curve.precision
    assert np.isnan(precision[:6]).all()  # recall j/20 < 1/3 for j <= 6: skipped (C < 20/j)
    assert precision[6] == pytest.approx(1 - 0.5 * 0.05)  # recall .35: 1.05 items, 5% from P1 to P2
    assert precision[9] == pytest.approx(0.75)  # recall .5: halfway between 1 and 1/2
    assert precision[19] == pytest.approx(3 / 7)  # recall 1: the third item's precision


def test_pr_curve_skips_classes_of_one_model_and_averages_per_level():
    labels = LABELS.copy()
    labels[9] = 5  # class 5 has one model: its query is skipped everywhere
    queries = np.array([[0.0], [9.0]])
    both = ranking_curves(
        queries, np.array([1, 5]), GALLERY, labels, distance="euclidean", convention="shrec"
    )
    alone = ranking_curves(QUERY, np.array([1]), GALLERY, labels, distance="euclidean", convention="shrec")
    np.testing.assert_allclose(both.precision, alone.precision)


def _brute_force(distances: np.ndarray, query_labels, gallery_labels) -> dict[str, list[float]]:
    """Each metric straight from its definition, looping over one ranking at a time."""
    values: dict[str, list[float]] = {
        name: [] for name in ("nn", "ft", "st", "e", "dcg", "dcg_log2i1", "map@all")
    }
    pr = []
    for row, label in zip(distances, query_labels, strict=True):
        order = np.lexsort((np.arange(len(row)), row))  # ascending distance, ties by gallery index
        gains = (gallery_labels[order] == label).astype(float)
        c = int(gains.sum())
        if c == 0:
            continue
        gsum = np.cumsum(gains)
        values["nn"].append(gains[0])
        values["ft"].append(gsum[c - 1] / c)
        values["st"].append(gsum[min(2 * c, len(row)) - 1] / c)
        p32, r32 = gsum[min(32, len(row)) - 1] / 32, gsum[min(32, len(row)) - 1] / c
        values["e"].append(2 * p32 * r32 / (p32 + r32) if p32 + r32 else 0.0)
        pr.append((p32, r32))
        dcg = gains[0] + sum(gains[i - 1] / math.log2(i) for i in range(2, len(row) + 1))
        values["dcg"].append(dcg / (1 + sum(1 / math.log2(i) for i in range(2, c + 1))))
        dcg2 = sum(gains[i - 1] / math.log2(i + 1) for i in range(1, len(row) + 1))
        values["dcg_log2i1"].append(dcg2 / sum(1 / math.log2(i + 1) for i in range(1, c + 1)))
        hits = np.flatnonzero(gains) + 1
        values["map@all"].append(float(np.mean(np.arange(1, c + 1) / hits)))
    p, r = np.mean(pr, axis=0)
    values["e_mean_pr"] = [2 * p * r / (p + r)]
    return values


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_brute_force_with_ties_and_queries_without_models(seed):
    rng = np.random.default_rng(seed)
    queries = rng.integers(0, 4, size=(30, 3)).astype(float)  # integer grids: many tied distances
    gallery = rng.integers(0, 4, size=(70, 3)).astype(float)
    query_labels = rng.integers(0, 6, 30)  # class 5 has no model: left out of every SHREC mean
    gallery_labels = rng.integers(0, 5, 70)
    result = evaluate(queries, query_labels, gallery, gallery_labels, distance="euclidean", metrics=SHREC)
    distances = ((queries[:, None] - gallery[None]) ** 2).sum(-1)
    expected = _brute_force(distances, query_labels, gallery_labels)
    for name, per_query in expected.items():
        assert result[name] == pytest.approx(float(np.mean(per_query)), abs=1e-12), name


def test_class_means_against_brute_force():
    rng = np.random.default_rng(3)
    queries, gallery = rng.normal(size=(25, 4)), rng.normal(size=(40, 4))
    query_labels, gallery_labels = rng.integers(0, 4, 25), rng.integers(0, 4, 40)
    names = ["ft", "p@5"]
    result = evaluate(
        queries, query_labels, gallery, gallery_labels, distance="euclidean", metrics=names, class_mean=True
    )
    for name in names:
        values = np.array(
            [
                evaluate(
                    queries[i : i + 1],
                    query_labels[i : i + 1],
                    gallery,
                    gallery_labels,
                    metrics=[name],
                    distance="euclidean",
                )[name]
                for i in range(25)
            ]
        )
        by_class = [values[query_labels == c].mean() for c in np.unique(query_labels)]
        assert result[f"class_mean/{name}"] == pytest.approx(float(np.mean(by_class)))
        assert result[name] == pytest.approx(float(values.mean()))
    only_aggregate = evaluate(
        queries, query_labels, gallery, gallery_labels, metrics=["e_mean_pr"], class_mean=True
    )
    assert "class_mean/e_mean_pr" not in only_aggregate  # an F1 of means has no per-query value


@pytest.mark.parametrize("name", ["nn", "ft", "st", "e", "dcg", "dcg_log2i1", "e_mean_pr"])
def test_chance_levels_match_simulation(name):
    """The exact chance levels against 4000 random rankings of a 45-model gallery (queries with C = 3, 7
    and 12), and the ceilings against perfect rankings."""
    n_gallery, counts, shuffles = 45, [3, 7, 12], 4000
    spec = parse_metric(name)
    reference = chance_and_ceiling(spec, np.array(counts), n_gallery)
    assert reference.exact
    rng = np.random.default_rng(0)
    per_query = [  # [shuffles, (width)] per query: the metric on random relevant ranks
        spec.ranks_metric(
            np.sort(np.argsort(rng.random((shuffles, n_gallery)), axis=1)[:, :count], axis=1) + 1
        )
        for count in counts
    ]
    perfect = [spec.ranks_metric(np.arange(1, count + 1)[None]) for count in counts]
    if spec.aggregate is not None:
        simulated = [spec.aggregate(np.stack([values[i] for values in per_query])) for i in range(shuffles)]
        ceiling = spec.aggregate(np.concatenate(perfect))
    else:
        simulated = np.mean(per_query, axis=0)
        ceiling = float(np.mean(perfect))
    spread = np.std(simulated) / math.sqrt(shuffles)
    assert reference.chance == pytest.approx(float(np.mean(simulated)), abs=4 * spread + 1e-3)
    assert reference.ceiling == pytest.approx(ceiling)
