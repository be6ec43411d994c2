"""Chance levels and ceilings against exhaustive enumeration of every ranking of small galleries."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from sbir_bench.evaluation.chance import chance_and_ceiling
from sbir_bench.evaluation.engine import evaluate
from sbir_bench.evaluation.metrics import parse_metric

EXACT = (
    "p@1",
    "p@3",
    "p@10",
    "p@3_minr",
    "map@1",
    "map@3",
    "map@10",
    "map@3_yelamarthi",
    "map@10_yelamarthi",
)
EXACT += ("map@all",)
SIMULATED = ("map@3_voc", "map@10_voc", "map@all_voc")


def _per_query_value(name: str, relevant_positions: tuple[int, ...], n_gallery: int) -> float:
    """The metric of one ranking whose relevant items sit at these 0-based positions."""
    spec = parse_metric(name)
    relevance = np.zeros((1, n_gallery), dtype=bool)
    relevance[0, list(relevant_positions)] = True
    if spec.top_k_metric is not None:
        return float(
            spec.top_k_metric(relevance[:, : spec.k], spec.k, np.array([len(relevant_positions)]))[0]
        )
    ranks = np.array([sorted(p + 1 for p in relevant_positions)])
    return float(spec.ranks_metric(ranks)[0])


def _enumerated(name: str, n_relevant: int, n_gallery: int) -> tuple[float, float]:
    """(mean over every placement of the relevant items = chance, value of the perfect placement)."""
    values = [_per_query_value(name, p, n_gallery) for p in combinations(range(n_gallery), n_relevant)]
    return float(np.mean(values)), _per_query_value(name, tuple(range(n_relevant)), n_gallery)


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize(("n_relevant", "n_gallery"), [(1, 1), (1, 5), (2, 5), (3, 7), (5, 8), (8, 8)])
def test_exact_chance_and_ceiling_equal_enumeration(name, n_relevant, n_gallery):
    chance, ceiling = _enumerated(name, n_relevant, n_gallery)
    reference = chance_and_ceiling(name, np.array([n_relevant]), n_gallery)
    assert reference.exact
    assert reference.chance == pytest.approx(chance, abs=1e-12)
    assert reference.ceiling == pytest.approx(ceiling, abs=1e-12)


@pytest.mark.parametrize("name", SIMULATED)
@pytest.mark.parametrize(("n_relevant", "n_gallery"), [(1, 5), (3, 7), (4, 12)])
def test_simulated_chance_is_within_its_standard_error_of_enumeration(name, n_relevant, n_gallery):
    chance, ceiling = _enumerated(name, n_relevant, n_gallery)
    reference = chance_and_ceiling(name, np.array([n_relevant]), n_gallery)
    assert not reference.exact and 0 < reference.chance_standard_error < 0.01
    assert abs(reference.chance - chance) < 4 * reference.chance_standard_error
    assert reference.ceiling == pytest.approx(ceiling, abs=1e-12)


def test_queries_are_averaged_as_the_metric_averages_them():
    # R = 0 counts as 0 in p@K and map@K, and is left out of map@all; two queries with R = 2, one with R = 3
    counts = np.array([2, 0, 3, 2])
    for name in ("p@3", "map@3", "map@all"):
        per_value = {r: chance_and_ceiling(name, np.array([r]), 7) for r in (2, 3)}
        weights = {2: 2, 3: 1, 0: 1} if not name.startswith("map@all") else {2: 2, 3: 1}
        total = sum(weights.values())
        reference = chance_and_ceiling(name, counts, 7)
        expected = sum(w * per_value[r].chance for r, w in weights.items() if r) / total
        assert reference.chance == pytest.approx(expected, abs=1e-12)
    assert np.isnan(chance_and_ceiling("map@all", np.array([0, 0]), 4).chance)
    assert chance_and_ceiling("p@3", np.array([0, 0]), 4).chance == 0.0


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="0..4"):
        chance_and_ceiling("p@3", np.array([5]), 4)


def test_evaluate_reports_chance_and_ceiling_of_every_metric():
    rng = np.random.default_rng(0)
    query_labels, gallery_labels = rng.integers(0, 4, 12), rng.integers(0, 3, 20)  # class 3: no relevant
    names = ("p@5", "map@5", "map@all", "map@5_voc", "p@5_minr")
    result = evaluate(
        rng.standard_normal((12, 4)), query_labels, rng.standard_normal((20, 4)), gallery_labels,
        metrics=names, references=True,
    )  # fmt: skip
    n_relevant = np.array([(gallery_labels == label).sum() for label in query_labels])
    for name in names:
        reference = chance_and_ceiling(name, n_relevant, 20)
        assert result[f"chance/{name}"] == reference.chance
        assert result[f"ceiling/{name}"] == reference.ceiling
    assert "chance/p@5" not in evaluate(
        np.ones((1, 2)), np.array([0]), np.ones((2, 2)), np.array([0, 1]), metrics=("p@5",)
    )
