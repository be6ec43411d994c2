"""Per-query retrieval metrics, exactly as defined in the suite's metrics specification.

Notation for one query: the gallery is ranked by ascending distance (ties by gallery index); rel(k) = 1
when the item at rank k (1-based) is relevant; R = number of relevant items in the whole gallery;
hits@K = sum_{k <= K} rel(k); P(k) = hits@k / k.

Top-K metrics take ``relevance``, a boolean [Q, K'] matrix whose column k-1 is rel(k) for the first
K' = min(K_max, G) ranks. ``map@all`` takes the 1-based ranks of all R relevant items of each query.
Every function returns one value per query; the engine averages them (plain mean over queries).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

METRIC_NAME_FORMS = ("p@<K>", "map@<K>", "map@<K>_yelamarthi", "map@all")


def hits_at_k(relevance: np.ndarray, k: int) -> np.ndarray:
    """hits@K = sum_{k' <= K} rel(k') (ranks beyond the gallery count as not relevant)."""
    return relevance[:, :k].sum(axis=1, dtype=np.int64)


def precision_at_k(relevance: np.ndarray, k: int) -> np.ndarray:
    """p@K = hits@K / K, with K fixed even when the gallery holds fewer than K items.

    As in the ZS-SBIR (Yelamarthi et al.), SEM-PCYC and GDH (``CalcTopAcc``) code.
    """
    return hits_at_k(relevance, k) / k


def precision_sum_at_k(relevance: np.ndarray, k: int) -> np.ndarray:
    """sum_{k' <= K, rel(k') = 1} P(k'): the numerator shared by both ``map@K`` conventions."""
    top = relevance[:, :k]
    precision = np.cumsum(top, axis=1, dtype=np.int64) / np.arange(1, top.shape[1] + 1)
    return (precision * top).sum(axis=1)


def average_precision_at_k(relevance: np.ndarray, k: int) -> np.ndarray:
    """map@K = sum_{k' <= K, rel(k') = 1} P(k') / hits@K, and 0 when hits@K = 0.

    The usual "mAP@200" of SEM-PCYC and GDH (``CalcTopMap``); torchmetrics ``RetrievalMAP(top_k=K)``.
    """
    hits = hits_at_k(relevance, k)
    return np.where(hits > 0, precision_sum_at_k(relevance, k) / np.maximum(hits, 1), 0.0)


def average_precision_at_k_yelamarthi(relevance: np.ndarray, k: int) -> np.ndarray:
    """map@K_yelamarthi = sum_{k' <= K, rel(k') = 1} P(k') / K.

    What the released ZS-SBIR code (Yelamarthi et al., ECCV'18) computes and its Tables 2/3 report; lower
    than ``map@K`` unless the top K are all relevant.
    """
    return precision_sum_at_k(relevance, k) / k


def average_precision(relevant_ranks: np.ndarray) -> np.ndarray:
    """map@all = (1/R) sum_{p=1..R} p / rank_p, rank_p = rank of the p-th relevant item (ranks ascending).

    Non-interpolated AP over the full ranking, as sklearn ``average_precision_score`` (DSH, GDH "mAP").
    ``relevant_ranks`` is [Q, R]; with R = 0 the value is NaN (such queries are left out of the mean).
    """
    n_queries, n_relevant = relevant_ranks.shape
    if n_relevant == 0:
        return np.full(n_queries, np.nan)
    return (np.arange(1, n_relevant + 1) / relevant_ranks).mean(axis=1)


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: ``k`` is None for ``map@all``, which needs the full ranking."""

    name: str
    k: int | None
    top_k_metric: Callable[[np.ndarray, int], np.ndarray] | None


_TOP_K_METRICS: dict[tuple[str, str], Callable[[np.ndarray, int], np.ndarray]] = {
    ("p", ""): precision_at_k,
    ("map", ""): average_precision_at_k,
    ("map", "_yelamarthi"): average_precision_at_k_yelamarthi,
}
_NAME = re.compile(r"(p|map)@([0-9]+)(_yelamarthi)?")


def parse_metric(name: str) -> MetricSpec:
    """``p@<K>``, ``map@<K>``, ``map@<K>_yelamarthi`` (K >= 1) or ``map@all``; else ValueError."""
    if name == "map@all":
        return MetricSpec(name, None, None)
    match = _NAME.fullmatch(name)
    if match is None or (match[1], match[3] or "") not in _TOP_K_METRICS or int(match[2]) < 1:
        raise ValueError(f"unknown metric {name!r}; known forms: {', '.join(METRIC_NAME_FORMS)} (K >= 1)")
    return MetricSpec(name, int(match[2]), _TOP_K_METRICS[match[1], match[3] or ""])
