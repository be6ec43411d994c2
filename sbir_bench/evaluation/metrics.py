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
)
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


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: ``k`` is None for the full-ranking metrics (``ranks_metric`` set)."""

    name: str
    k: int | None
    top_k_metric: Callable[[np.ndarray, int, np.ndarray], np.ndarray] | None
    ranks_metric: Callable[[np.ndarray], np.ndarray] | None = None
    undefined_without_relevant: bool = False  # R = 0 queries are left out of the mean (and counted)
    on_triplets: bool = False  # scored on annotated (query, positive, negative) triplets: triplet_acc


_TOP_K_METRICS: dict[tuple[str, str], Callable[[np.ndarray, int, np.ndarray], np.ndarray]] = {
    ("p", ""): precision_at_k,
    ("p", "_minr"): precision_at_min_k_r,
    ("map", ""): average_precision_at_k,
    ("map", "_yelamarthi"): average_precision_at_k_yelamarthi,
    ("map", "_voc"): average_precision_at_k_voc,
    ("acc", ""): accuracy_at_k,
}
_UNDEFINED_WITHOUT_RELEVANT = {precision_at_min_k_r, average_precision_at_k_voc}
_FULL_RANKING = {"map@all": average_precision, "map@all_voc": average_precision_voc}
_NAME = re.compile(r"(p|map|acc)@([0-9]+)(_yelamarthi|_voc|_minr)?")


def parse_metric(name: str) -> MetricSpec:
    """One of :data:`METRIC_NAME_FORMS` (K >= 1); else ValueError listing them."""
    if name == TRIPLET_ACCURACY:
        return MetricSpec(name, None, None, on_triplets=True)
    if name in _FULL_RANKING:
        return MetricSpec(name, None, None, _FULL_RANKING[name], undefined_without_relevant=True)
    match = _NAME.fullmatch(name)
    if match is None or (match[1], match[3] or "") not in _TOP_K_METRICS or int(match[2]) < 1:
        raise ValueError(f"unknown metric {name!r}; known forms: {', '.join(METRIC_NAME_FORMS)} (K >= 1)")
    function = _TOP_K_METRICS[match[1], match[3] or ""]
    return MetricSpec(
        name, int(match[2]), function, undefined_without_relevant=function in _UNDEFINED_WITHOUT_RELEVANT
    )
