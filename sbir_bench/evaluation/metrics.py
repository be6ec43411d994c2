"""Per-query retrieval metrics, exactly as the README's metric table defines them.

Notation for one query: the gallery is ranked by ascending distance (ties by gallery index); rel(k) = 1
when the item at rank k (1-based) is relevant; R = number of relevant items in the whole gallery;
hits@K = sum_{k <= K} rel(k); P(k) = hits@k / k.

Top-K metrics take ``relevance``, a boolean [Q, K'] matrix whose column k-1 is rel(k) for the first
K' = min(K_max, G) ranks, and ``n_relevant`` (R of each query). Full-ranking metrics (``map@all``,
``map@all_voc``) take the 1-based ranks of all R relevant items of each query. Every function returns one
value per query; the engine averages them (plain mean over queries). Metrics that are undefined for a
query without relevant items (R = 0) give NaN there and the engine leaves such queries out of the mean.
``triplet_acc`` is scored on annotated triplets, not on rankings (:func:`triplet_accuracy`).

Sketch -> 3D shape retrieval (SHREC'13 / SHREC'14, Li et al.; Bo Li's evaluation code) reports ``nn``,
``ft``, ``st``, ``e``, ``dcg`` and ``map@all``, all functions of the relevant ranks with C = R (the number
of target models of the query's class: the sketch itself is not in the target set). Two variants that
open-search (Thong et al., CVIU'20, ``validate.py``) computes and later papers quote are offered under
their own names, never mixed with the official ones: ``e_mean_pr`` (the F1 of the mean P@32 and the mean
R@32 over queries) and ``dcg_log2i1`` (nDCG with discounts 1/log2(i+1) for the ranking and its ideal).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

METRIC_NAME_FORMS = (
    "p@<K>",
    "p@<K>_minr",
    "map@<K>",
    "map@<K>_yelamarthi",
    "map@<K>_voc",
    "map@all",
    "map@all_voc",
    "acc@<K>",
    "triplet_acc",
    "nn",
    "ft",
    "st",
    "e",
    "dcg",
    "e_mean_pr",
    "dcg_log2i1",
)
E_DEPTH = 32  # SHREC's E-measure: precision and recall at rank 32
TRIPLET_ACCURACY = "triplet_acc"


def hits_at_k(relevance: np.ndarray, k: int) -> np.ndarray:
    """hits@K = sum_{k' <= K} rel(k') (ranks beyond the gallery count as not relevant)."""
    return relevance[:, :k].sum(axis=1, dtype=np.int64)


def precision_at_k(relevance: np.ndarray, k: int, n_relevant: np.ndarray) -> np.ndarray:
    """p@K = hits@K / K, with K fixed even when the gallery holds fewer than K items.

    As in the ZS-SBIR (Yelamarthi et al.), SEM-PCYC and GDH (``CalcTopAcc``) code.
    """
    return hits_at_k(relevance, k) / k


def precision_at_min_k_r(relevance: np.ndarray, k: int, n_relevant: np.ndarray) -> np.ndarray:
    """p@K_minr = hits@min(K, R) / min(K, R); NaN when R = 0.

    ZSE-SBIR's ``utils/ap.py`` "P@K" (copied by most recent zero-shot papers): it can reach 1 when R < K.
    """
    depth = np.minimum(k, n_relevant)
    hits = np.cumsum(relevance[:, :k], axis=1, dtype=np.int64)
    at_depth = np.take_along_axis(hits, np.maximum(depth - 1, 0)[:, None], axis=1)[:, 0]
    return np.where(depth > 0, at_depth / np.maximum(depth, 1), np.nan)


def accuracy_at_k(relevance: np.ndarray, k: int, n_relevant: np.ndarray) -> np.ndarray:
    """acc@K = 1 when hits@K > 0, else 0: a relevant item within the top K (recall@K in the re-identification
    sense; fine-grained SBIR's acc@1 / acc@10, Yu et al. CVPR'16). Ties follow the engine's rule (ascending
    gallery index), not "every item at the target's distance counts against it"."""
    return (hits_at_k(relevance, k) > 0).astype(np.float64)


def triplet_accuracy(positive_keys: np.ndarray, negative_keys: np.ndarray) -> np.ndarray:
    """triplet_acc ("%corr.", Yu et al. CVPR'16): 1 per annotated triplet (s, p+, p-) with
    d(s, p+) < d(s, p-), else 0; a tie counts as wrong (the ranking puts neither first for a reason).
    The keys order each query's distances exactly (:class:`~sbir_bench.evaluation.search.PairwiseScorer`)."""
    return (positive_keys < negative_keys).astype(np.float64)


def precision_sum_at_k(relevance: np.ndarray, k: int) -> np.ndarray:
    """sum_{k' <= K, rel(k') = 1} P(k'): the numerator shared by both ``map@K`` conventions."""
    top = relevance[:, :k]
    precision = np.cumsum(top, axis=1, dtype=np.int64) / np.arange(1, top.shape[1] + 1)
    return (precision * top).sum(axis=1)


def average_precision_at_k(relevance: np.ndarray, k: int, n_relevant: np.ndarray) -> np.ndarray:
    """map@K = sum_{k' <= K, rel(k') = 1} P(k') / hits@K, and 0 when hits@K = 0.

    The usual "mAP@200" of SEM-PCYC and GDH (``CalcTopMap``); torchmetrics ``RetrievalMAP(top_k=K)``.
    """
    hits = hits_at_k(relevance, k)
    return np.where(hits > 0, precision_sum_at_k(relevance, k) / np.maximum(hits, 1), 0.0)


def average_precision_at_k_yelamarthi(relevance: np.ndarray, k: int, n_relevant: np.ndarray) -> np.ndarray:
    """map@K_yelamarthi = sum_{k' <= K, rel(k') = 1} P(k') / K.

    What the released ZS-SBIR code (Yelamarthi et al., ECCV'18) computes and its Tables 2/3 report; lower
    than ``map@K`` unless the top K are all relevant.
    """
    return precision_sum_at_k(relevance, k) / k


def average_precision_at_k_voc(relevance: np.ndarray, k: int, n_relevant: np.ndarray) -> np.ndarray:
    """map@K_voc = (1 / min(K, R)) sum_{k' <= K, rel(k') = 1} max_{k' <= k'' <= K} P(k''); NaN when R = 0.

    Interpolated precision within the top K, as ZSE-SBIR's ``utils/ap.py`` "mAP@200" computes it.
    """
    top = relevance[:, :k]
    precision = np.cumsum(top, axis=1, dtype=np.int64) / np.arange(1, top.shape[1] + 1)
    interpolated = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    depth = np.minimum(k, n_relevant)
    total = (interpolated * top).sum(axis=1)
    return np.where(depth > 0, total / np.maximum(depth, 1), np.nan)


def average_precision(relevant_ranks: np.ndarray) -> np.ndarray:
    """map@all = (1/R) sum_{p=1..R} p / rank_p, rank_p = rank of the p-th relevant item (ranks ascending).

    Non-interpolated AP over the full ranking, as sklearn ``average_precision_score`` (DSH, GDH "mAP").
    ``relevant_ranks`` is [Q, R]; with R = 0 the value is NaN (such queries are left out of the mean).
    """
    n_queries, n_relevant = relevant_ranks.shape
    if n_relevant == 0:
        return np.full(n_queries, np.nan)
    return (np.arange(1, n_relevant + 1) / relevant_ranks).mean(axis=1)


def average_precision_voc(relevant_ranks: np.ndarray) -> np.ndarray:
    """map@all_voc = (1/R) sum over relevant ranks k of max_{k' >= k} P(k') (VOC-interpolated AP).

    SAKE's and ZSE-SBIR's "mAP@all". P(k') peaks at relevant ranks, so the maximum runs over
    ``p / rank_p`` of the later relevant items. NaN when R = 0.
    """
    n_queries, n_relevant = relevant_ranks.shape
    if n_relevant == 0:
        return np.full(n_queries, np.nan)
    precision = np.arange(1, n_relevant + 1) / relevant_ranks
    return np.maximum.accumulate(precision[:, ::-1], axis=1).mean(axis=1)


def nearest_neighbour(relevant_ranks: np.ndarray) -> np.ndarray:
    """nn = G(1): 1 when the first retrieved model is relevant (SHREC "NN")."""
    return (relevant_ranks[:, 0] == 1).astype(np.float64)


def first_tier(relevant_ranks: np.ndarray) -> np.ndarray:
    """ft = Gsum(C) / C: the share of the class's C models within the top C (SHREC "FT"; not rank C + 1)."""
    n_relevant = relevant_ranks.shape[1]
    return (relevant_ranks <= n_relevant).sum(axis=1) / n_relevant


def second_tier(relevant_ranks: np.ndarray) -> np.ndarray:
    """st = Gsum(2C) / C (SHREC "ST")."""
    n_relevant = relevant_ranks.shape[1]
    return (relevant_ranks <= 2 * n_relevant).sum(axis=1) / n_relevant


def _precision_recall_at_depth(relevant_ranks: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    hits = (relevant_ranks <= depth).sum(axis=1)
    return hits / depth, hits / relevant_ranks.shape[1]


def e_measure(relevant_ranks: np.ndarray) -> np.ndarray:
    """e = 2 P32 R32 / (P32 + R32) per query (0 when both are 0), P32 = Gsum(32)/32, R32 = Gsum(32)/C
    (SHREC "E"); the engine then averages over queries."""
    precision, recall = _precision_recall_at_depth(relevant_ranks, E_DEPTH)
    total = precision + recall
    return np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1.0), 0.0)


def precision_recall_at_32(relevant_ranks: np.ndarray) -> np.ndarray:
    """[Q, 2]: (P32, R32) per query, what ``e_mean_pr`` aggregates (:func:`f1_of_means`)."""
    return np.stack(_precision_recall_at_depth(relevant_ranks, E_DEPTH), axis=1)


def f1_of_means(precision_recall: np.ndarray) -> float:
    """e_mean_pr = 2 P R / (P + R) with P, R the mean P32 and mean R32 over queries (open-search's
    ``validate.py``): not the SHREC E, which averages per-query F1 (:func:`e_measure`)."""
    precision, recall = precision_recall.mean(axis=0)
    return float(2 * precision * recall / (precision + recall)) if precision + recall > 0 else 0.0


def shrec_gains(ranks: np.ndarray) -> np.ndarray:
    """SHREC's DCG weights: 1 at rank 1, 1/log2(i) at rank i >= 2 (so ranks 1 and 2 both weigh 1)."""
    return 1.0 / np.log2(np.maximum(ranks, 2))


def log2_i1_gains(ranks: np.ndarray) -> np.ndarray:
    """The usual nDCG weights 1/log2(i + 1)."""
    return 1.0 / np.log2(ranks + 1.0)


def _normalised_dcg(relevant_ranks: np.ndarray, gains) -> np.ndarray:  # noqa: ANN001
    ideal = gains(np.arange(1, relevant_ranks.shape[1] + 1)).sum()
    return gains(relevant_ranks).sum(axis=1) / ideal


def dcg_shrec(relevant_ranks: np.ndarray) -> np.ndarray:
    """dcg = [G(1) + sum_{i=2..N} G(i)/log2(i)] / [1 + sum_{i=2..C} 1/log2(i)] over the whole ranking
    (SHREC "DCG")."""
    return _normalised_dcg(relevant_ranks, shrec_gains)


def dcg_log2_i1(relevant_ranks: np.ndarray) -> np.ndarray:
    """dcg_log2i1 = sum_i G(i)/log2(i+1) / sum_{i=1..C} 1/log2(i+1) (open-search's nDCG)."""
    return _normalised_dcg(relevant_ranks, log2_i1_gains)


CURVE_CONVENTIONS = ("voc", "shrec")  # precision-recall curves: VOC interpolated, or SHREC's 20 points
SHREC_RECALL_LEVELS = np.arange(1, 21) / 20  # the SHREC precision-recall curve's 20 recall levels


def shrec_precision_at_recall_levels(relevant_ranks: np.ndarray) -> np.ndarray:
    """[Q, 20] precision at recall j/20 (SHREC's curve): the precisions p/rank_p of the relevant items at
    recalls p/C, linearly interpolated between the two neighbouring items; NaN where a query is skipped
    (C < 2, or C < 20/j at level j: the level lies before the first relevant item's recall 1/C)."""
    n_queries, n_relevant = relevant_ranks.shape
    curve = np.full((n_queries, len(SHREC_RECALL_LEVELS)), np.nan)
    if n_relevant < 2:
        return curve
    precision = np.arange(1, n_relevant + 1) / relevant_ranks
    position = SHREC_RECALL_LEVELS * n_relevant  # in units of relevant items
    below = np.floor(position + 1e-9).astype(np.int64)
    kept = below >= 1
    below, fraction = below[kept], np.clip(position[kept] - below[kept], 0.0, None)
    low = precision[:, below - 1]
    high = precision[:, np.minimum(below, n_relevant - 1)]
    curve[:, kept] = low + (high - low) * fraction
    return curve


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: ``k`` is None for the full-ranking metrics (``ranks_metric`` set)."""

    name: str
    k: int | None
    top_k_metric: Callable[[np.ndarray, int, np.ndarray], np.ndarray] | None
    ranks_metric: Callable[[np.ndarray], np.ndarray] | None = None
    undefined_without_relevant: bool = False  # R = 0 queries are left out of the mean (and counted)
    on_triplets: bool = False  # scored on annotated (query, positive, negative) triplets: triplet_acc
    # a metric that is not a mean of per-query values (e_mean_pr): ranks_metric gives [Q, width] per query
    # and ``aggregate`` turns the rows of the queries with a relevant item into the value
    width: int = 1
    aggregate: Callable[[np.ndarray], float] | None = None


_TOP_K_METRICS: dict[tuple[str, str], Callable[[np.ndarray, int, np.ndarray], np.ndarray]] = {
    ("p", ""): precision_at_k,
    ("p", "_minr"): precision_at_min_k_r,
    ("map", ""): average_precision_at_k,
    ("map", "_yelamarthi"): average_precision_at_k_yelamarthi,
    ("map", "_voc"): average_precision_at_k_voc,
    ("acc", ""): accuracy_at_k,
}
_UNDEFINED_WITHOUT_RELEVANT = {precision_at_min_k_r, average_precision_at_k_voc}
_FULL_RANKING = {
    "map@all": average_precision,
    "map@all_voc": average_precision_voc,
    "nn": nearest_neighbour,
    "ft": first_tier,
    "st": second_tier,
    "e": e_measure,
    "dcg": dcg_shrec,
    "dcg_log2i1": dcg_log2_i1,
}
_NAME = re.compile(r"(p|map|acc)@([0-9]+)(_yelamarthi|_voc|_minr)?")


def parse_metric(name: str) -> MetricSpec:
    """One of :data:`METRIC_NAME_FORMS` (K >= 1); else ValueError listing them."""
    if name == TRIPLET_ACCURACY:
        return MetricSpec(name, None, None, on_triplets=True)
    if name == "e_mean_pr":
        return MetricSpec(
            name,
            None,
            None,
            precision_recall_at_32,
            undefined_without_relevant=True,
            width=2,
            aggregate=f1_of_means,
        )
    if name in _FULL_RANKING:
        return MetricSpec(name, None, None, _FULL_RANKING[name], undefined_without_relevant=True)
    match = _NAME.fullmatch(name)
    if match is None or (match[1], match[3] or "") not in _TOP_K_METRICS or int(match[2]) < 1:
        raise ValueError(f"unknown metric {name!r}; known forms: {', '.join(METRIC_NAME_FORMS)} (K >= 1)")
    function = _TOP_K_METRICS[match[1], match[3] or ""]
    return MetricSpec(
        name, int(match[2]), function, undefined_without_relevant=function in _UNDEFINED_WITHOUT_RELEVANT
    )
