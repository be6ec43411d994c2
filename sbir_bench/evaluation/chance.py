"""Chance level and ceiling of every metric, from the relevant counts alone.

For a query with R relevant items among G, *chance* is the expected value of a metric under a uniformly
random ranking of the gallery and *ceiling* its value under a perfect ranking (the R relevant items
first). Both are averaged over queries exactly as the metric is (queries with R = 0 count as 0 where the
metric counts them, and are left out where it leaves them out). Queries are grouped by distinct R.

How each chance level is computed (K' = min(K, G), H_n = 1 + 1/2 + ... + 1/n):

- ``p@K``: R K' / (G K), exact. ``p@K_minr``: R / G, exact. ``acc@K``: 1 - C(G-R, K') / C(G, K'), exact
  (hypergeometric: no relevant item among the top K'). ``triplet_acc``: 1/2 (a random ranking puts either
  photo first), ceiling 1.
- ``map@K_yelamarthi`` and ``map@all``: exact closed forms, by linearity from
  E[rel(k) hits@k] = (R/G)(1 + (k-1)(R-1)/(G-1)); e.g. ``map@all`` = (1/G) [H_G + (R-1)(G - H_G)/(G-1)].
- ``map@K``: exact, conditioning on the hypergeometric number h of hits in the top K' (the h positions
  are then uniform): E[map@K | h] = (1/K') [H_K' + (h-1)(K' - H_K')/(K'-1)].
- SHREC metrics, exact by linearity (each relevant item sits at any rank with probability 1/G; K' as
  above): ``nn`` R/G; ``ft`` R/G; ``st`` min(2R, G)/G; ``e`` = 2h/(32 + R) is linear in the hits h at
  rank 32, so 2 R min(32, G) / (G (32 + R)); ``dcg`` and ``dcg_log2i1`` (R/G) sum_{i<=G} w(i) over the
  ideal sum_{i<=R} w(i). ``e_mean_pr`` (an F1 of means, not a mean): the F1 of the mean expected P@32
  and R@32 (its value for a large number of queries).
- ``map@K_voc`` and ``map@all_voc`` (interpolated): Monte-Carlo, ``shuffles`` seeded random rankings per
  distinct R (seed from (R, G), so a value never depends on the other queries), with its standard error.

Ceilings: ``p@K`` min(R, K)/K; ``map@K_yelamarthi`` min(R, K)/K; ``e`` 2 min(32, R)/(32 + R); every
other metric 1 (R > 0), and 0 for
queries with R = 0 where the metric counts them as 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import hypergeom

from sbir_bench.evaluation.metrics import (
    E_DEPTH,
    MetricSpec,
    accuracy_at_k,
    average_precision_at_k,
    average_precision_at_k_voc,
    average_precision_at_k_yelamarthi,
    average_precision_voc,
    dcg_log2_i1,
    dcg_shrec,
    e_measure,
    f1_of_means,
    first_tier,
    log2_i1_gains,
    nearest_neighbour,
    parse_metric,
    precision_at_k,
    precision_at_min_k_r,
    second_tier,
    shrec_gains,
)

DEFAULT_SHUFFLES = 4000


@dataclass(frozen=True)
class MetricReference:
    """Chance level and ceiling of one metric (mean over queries); ``chance_standard_error`` is 0 where the
    chance level is exact and the Monte-Carlo standard error otherwise. NaN where the metric is undefined."""

    chance: float
    ceiling: float
    chance_standard_error: float
    exact: bool


def _harmonic(n: int) -> float:
    return float(np.sum(1.0 / np.arange(1, n + 1)))


def _expected_precision_sum(n_relevant: int, n_gallery: int, depth: int) -> float:
    """E[sum_{k <= depth} rel(k) P(k)] under a random ranking (exact)."""
    if n_relevant == 0:
        return 0.0
    harmonic = _harmonic(depth)
    pair = (n_relevant - 1) / (n_gallery - 1) if n_gallery > 1 else 0.0
    return n_relevant / n_gallery * (harmonic + pair * (depth - harmonic))


def _expected_map_at_k(n_relevant: int, n_gallery: int, depth: int) -> float:
    """E[map@K] (hits@K' = h is hypergeometric; given h the hits are uniform in the top K')."""
    hits = np.arange(1, min(n_relevant, depth) + 1)
    if hits.size == 0:
        return 0.0
    harmonic = _harmonic(depth)
    spread = (hits - 1) * (depth - harmonic) / (depth - 1) if depth > 1 else np.zeros(hits.size)
    probability = hypergeom.pmf(hits, n_gallery, n_relevant, depth)
    return float(np.sum(probability * (harmonic + spread) / depth))


def _expected_dcg(gains, n_relevant: int, n_gallery: int) -> float:  # noqa: ANN001
    """E[normalised DCG]: each rank holds a relevant item with probability R/G."""
    return (
        n_relevant
        / n_gallery
        * gains(np.arange(1, n_gallery + 1)).sum()
        / gains(np.arange(1, n_relevant + 1)).sum()
    )


def _e_bounds(n_relevant: int, n_gallery: int) -> tuple[float, float]:
    expected_hits = n_relevant * min(E_DEPTH, n_gallery) / n_gallery
    return 2 * expected_hits / (E_DEPTH + n_relevant), 2 * min(E_DEPTH, n_relevant) / (E_DEPTH + n_relevant)


# SHREC metrics: (R, G) -> (chance, ceiling), exact (module docstring)
_SHREC = {
    nearest_neighbour: lambda r, g: (r / g, 1.0),
    first_tier: lambda r, g: (r / g, 1.0),
    second_tier: lambda r, g: (min(2 * r, g) / g, 1.0),
    e_measure: _e_bounds,
    dcg_shrec: lambda r, g: (_expected_dcg(shrec_gains, r, g), 1.0),
    dcg_log2_i1: lambda r, g: (_expected_dcg(log2_i1_gains, r, g), 1.0),
}


def _mean_pr_references(n_relevant: np.ndarray, n_gallery: int) -> MetricReference:
    """``e_mean_pr``: the F1 of the mean expected (and of the mean perfect) P@32 and R@32."""
    n_relevant = n_relevant[n_relevant > 0].astype(np.float64)
    if n_relevant.size == 0:
        return MetricReference(float("nan"), float("nan"), float("nan"), True)
    depth = min(E_DEPTH, n_gallery)
    expected_hits = n_relevant * depth / n_gallery
    perfect_hits = np.minimum(E_DEPTH, n_relevant)
    chance = f1_of_means(np.stack([expected_hits / E_DEPTH, expected_hits / n_relevant], axis=1))
    ceiling = f1_of_means(np.stack([perfect_hits / E_DEPTH, perfect_hits / n_relevant], axis=1))
    return MetricReference(chance, ceiling, 0.0, True)


def _simulated(spec: MetricSpec, n_relevant: int, n_gallery: int, shuffles: int) -> tuple[float, float]:
    """(mean, standard error) of an interpolated AP over seeded random rankings."""
    rng = np.random.default_rng([n_relevant, n_gallery, spec.k or 0])
    if spec.k is None:
        ranks = np.stack(
            [np.sort(rng.choice(n_gallery, n_relevant, replace=False)) + 1 for _ in range(shuffles)]
        )
        values = average_precision_voc(ranks)
    else:
        depth = min(spec.k, n_gallery)
        hits = rng.hypergeometric(n_relevant, n_gallery - n_relevant, depth, size=shuffles)
        positions = np.argsort(rng.random((shuffles, depth)), axis=1)
        relevance = positions < hits[:, None]
        values = average_precision_at_k_voc(relevance, spec.k, np.full(shuffles, n_relevant))
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(shuffles)) if shuffles > 1 else 0.0


def _per_query(
    spec: MetricSpec, n_relevant: int, n_gallery: int, shuffles: int
) -> tuple[float, float, float]:
    """(chance, its standard error, ceiling) for one query with R = n_relevant (R > 0)."""
    function, k = spec.top_k_metric, spec.k
    if k is not None:
        depth = min(k, n_gallery)
        if function is precision_at_k:
            return n_relevant * depth / (n_gallery * k), np.nan, min(n_relevant, k) / k
        if function is accuracy_at_k:
            return 1.0 - float(hypergeom.pmf(0, n_gallery, n_relevant, depth)), np.nan, 1.0
        if function is precision_at_min_k_r:
            return n_relevant / n_gallery, np.nan, 1.0
        if function is average_precision_at_k:
            return _expected_map_at_k(n_relevant, n_gallery, depth), np.nan, 1.0
        if function is average_precision_at_k_yelamarthi:
            return _expected_precision_sum(n_relevant, n_gallery, depth) / k, np.nan, min(n_relevant, k) / k
    elif spec.ranks_metric in _SHREC:
        chance, ceiling = _SHREC[spec.ranks_metric](n_relevant, n_gallery)
        return chance, np.nan, ceiling
    elif spec.ranks_metric is not average_precision_voc:  # map@all
        return _expected_precision_sum(n_relevant, n_gallery, n_gallery) / n_relevant, np.nan, 1.0
    chance, error = _simulated(spec, n_relevant, n_gallery, shuffles)
    return chance, error, 1.0


def chance_and_ceiling(
    metric: str | MetricSpec, n_relevant: np.ndarray, n_gallery: int, *, shuffles: int = DEFAULT_SHUFFLES
) -> MetricReference:
    """Chance level and ceiling of ``metric`` for queries with ``n_relevant`` relevant items among
    ``n_gallery``, averaged as the engine averages the metric (module docstring)."""
    spec = parse_metric(metric) if isinstance(metric, str) else metric
    if spec.on_triplets:
        return MetricReference(0.5, 1.0, 0.0, True)
    n_relevant = np.asarray(n_relevant, dtype=np.int64)
    if n_gallery < 1 or (n_relevant < 0).any() or (n_relevant > n_gallery).any():
        raise ValueError(f"relevant counts must lie in 0..{n_gallery} (the gallery size)")
    if spec.aggregate is not None:
        return _mean_pr_references(n_relevant, n_gallery)
    values, counts = np.unique(n_relevant, return_counts=True)
    if spec.undefined_without_relevant:
        counts = np.where(values > 0, counts, 0)
    if counts.sum() == 0:
        return MetricReference(float("nan"), float("nan"), float("nan"), True)
    weights = counts / counts.sum()
    chance = ceiling = variance = 0.0
    exact = True
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        if value == 0 or weight == 0:
            continue  # counted as 0 (or left out: weight 0)
        mean, error, best = _per_query(spec, value, n_gallery, shuffles)
        chance += weight * mean
        ceiling += weight * best
        exact &= bool(np.isnan(error))
        variance += 0.0 if np.isnan(error) else (weight * error) ** 2
    return MetricReference(chance, ceiling, float(np.sqrt(variance)), exact)
