"""Per-query average precision and the precision-recall curve of one set of embeddings (for the logger).

Built on the evaluation engine's exact full ranking (:meth:`PairwiseScorer.map_blocks` with
``full_ranking``, :func:`relevant_ranks`): the p-th relevant item of a query at rank r_p has precision p / r_p
at recall p / R. AP is ``map@all``'s per-query value (:func:`average_precision`); the curve is the mean
over queries (with a relevant item) of the interpolated precision max_{recall' >= recall} P(recall') at
evenly spaced recall levels, as in PASCAL VOC (Everingham et al., IJCV 2010) (``convention="voc"``), or
SHREC's 20-point curve (``convention="shrec"``: recall j/20, linearly interpolated precision, each level
averaged over the queries it does not skip;
:func:`~sbir_bench.evaluation.metrics.shrec_precision_at_recall_levels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sbir_bench.evaluation.engine import RelevanceIndex, label_runs
from sbir_bench.evaluation.metrics import (
    CURVE_CONVENTIONS,
    SHREC_RECALL_LEVELS,
    average_precision,
    shrec_precision_at_recall_levels,
)
from sbir_bench.evaluation.search import PairwiseScorer, relevant_ranks, to_numpy


@dataclass
class RankingCurves:
    """``per_query_ap`` (NaN for queries without a relevant item) in query order, and the mean curve."""

    per_query_ap: np.ndarray
    recall: np.ndarray
    precision: np.ndarray

    def per_class_ap(self, query_labels: Any) -> dict[int, float]:
        """Mean AP of the queries of each label (labels without a relevant item are left out)."""
        labels = to_numpy(query_labels, "query labels")
        return {
            int(label): float(np.nanmean(self.per_query_ap[labels == label]))
            for label in np.unique(labels)
            if not np.isnan(self.per_query_ap[labels == label]).all()
        }


def ranking_curves(
    query_embeddings: Any,
    query_labels: Any,
    gallery_embeddings: Any,
    gallery_labels: Any,
    *,
    distance: Any = "cosine",
    recall_levels: int = 11,
    convention: str = "voc",
) -> RankingCurves:
    """Per-query AP and the mean precision-recall curve (``recall_levels`` VOC points, or SHREC's 20)."""
    if convention not in CURVE_CONVENTIONS:
        raise ValueError(f"unknown curve convention {convention!r}; expected one of {CURVE_CONVENTIONS}")
    scorer = PairwiseScorer(query_embeddings, gallery_embeddings, distance)
    index = RelevanceIndex.of(scorer, query_labels, gallery_labels)
    query_codes, class_sizes, gallery_by_class = index.query_codes, index.class_sizes, index.gallery_by_class
    shrec = convention == "shrec"
    levels = SHREC_RECALL_LEVELS if shrec else np.linspace(0.0, 1.0, recall_levels)
    recall_levels = len(levels)
    ap = np.full(scorer.n_queries, np.nan)
    curves = np.full((scorer.n_queries, recall_levels), np.nan)

    def score(rows: np.ndarray, top: np.ndarray, keys: np.ndarray | None) -> None:
        assert keys is not None
        codes = query_codes[rows]
        for start, stop, code in label_runs(codes):
            n_relevant = class_sizes[code]
            if not n_relevant:
                continue
            ranks = relevant_ranks(keys[start:stop], gallery_by_class[code])
            ap[rows[start:stop]] = average_precision(ranks)
            if shrec:
                curves[rows[start:stop]] = shrec_precision_at_recall_levels(ranks)
                continue
            precision = np.arange(1, n_relevant + 1) / ranks
            interpolated = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # max over recall' >= r
            recall = np.arange(1, n_relevant + 1) / n_relevant
            first_reaching = np.searchsorted(recall, levels - 1e-12)  # first relevant item at recall >= level
            curves[rows[start:stop]] = interpolated[:, np.minimum(first_reaching, n_relevant - 1)]

    order = np.argsort(query_codes, kind="stable")
    scorer.map_blocks(score, order, full_ranking=True)
    with_relevant = ~np.isnan(ap)
    if shrec:  # each level over the queries it does not skip
        counted = ~np.isnan(curves)
        precision = np.divide(
            np.nansum(curves, axis=0),
            counted.sum(axis=0),
            out=np.full(recall_levels, np.nan),
            where=counted.any(axis=0),
        )
    elif with_relevant.any():
        precision = curves[with_relevant].mean(axis=0)
    else:
        precision = np.full(recall_levels, np.nan)
    return RankingCurves(per_query_ap=ap, recall=levels, precision=precision)
