"""Brute-force references for the evaluation tests: float64 NumPy, explicit loops, sklearn for AP.

Deliberately independent of the engine: full distance matrices, a stable argsort for the tie rule
(ascending distance, then ascending gallery index) and the metric formulas written as plain loops.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from sklearn.metrics import average_precision_score


def distance_matrix(queries: np.ndarray, gallery: np.ndarray, distance: str) -> np.ndarray:
    """[Q, G] float64 distances: 1 - cosine similarity (zero vectors: similarity 0), L2, or bit mismatches."""
    if distance == "hamming":
        q_bits = queries > 0 if queries.dtype.kind == "f" else queries.astype(bool)
        g_bits = gallery > 0 if gallery.dtype.kind == "f" else gallery.astype(bool)
        return (q_bits[:, None, :] != g_bits[None, :, :]).sum(-1).astype(np.float64)
    q, g = queries.astype(np.float64), gallery.astype(np.float64)
    if distance == "cosine":
        q_norm = np.linalg.norm(q, axis=1, keepdims=True)
        g_norm = np.linalg.norm(g, axis=1, keepdims=True)
        q = np.divide(q, q_norm, out=np.zeros_like(q), where=q_norm > 0)
        g = np.divide(g, g_norm, out=np.zeros_like(g), where=g_norm > 0)
        return 1.0 - q @ g.T
    return np.sqrt(((q[:, None, :] - g[None, :, :]) ** 2).sum(-1))


def ranking(distances: np.ndarray) -> np.ndarray:
    """Gallery indices of every row by ascending distance; a stable sort breaks ties by ascending index."""
    return np.argsort(distances, axis=1, kind="stable")


def metrics(
    distances: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray, ks: tuple[int, ...]
) -> dict[str, float]:
    """p@K, map@K, map@K_yelamarthi for each K and map@all, from metrics.md, by explicit loops."""
    relevance = gallery_labels[ranking(distances)] == query_labels[:, None]
    result: dict[str, float] = {}
    for k in ks:
        precision, ap, ap_yelamarthi = [], [], []
        for row in relevance:
            hits, precision_sum = 0, 0.0
            for rank, relevant in enumerate(row[:k], start=1):
                if relevant:
                    hits += 1
                    precision_sum += hits / rank
            precision.append(hits / k)
            ap.append(precision_sum / hits if hits else 0.0)
            ap_yelamarthi.append(precision_sum / k)
        result[f"p@{k}"] = float(np.mean(precision))
        result[f"map@{k}"] = float(np.mean(ap))
        result[f"map@{k}_yelamarthi"] = float(np.mean(ap_yelamarthi))
    order = ranking(distances)
    scores = np.empty(distances.shape)
    np.put_along_axis(scores, order, -np.arange(distances.shape[1], dtype=np.float64)[None, :], axis=1)
    full = [
        average_precision_score(gallery_labels == label, row_scores)
        for label, row_scores in zip(query_labels, scores, strict=True)
        if (gallery_labels == label).any()
    ]
    result["map@all"] = float(np.mean(full)) if full else float("nan")
    result["n_queries_without_relevant"] = float(
        sum(not (gallery_labels == label).any() for label in query_labels)
    )
    return result


def exact_ranking(queries: np.ndarray, gallery: np.ndarray, distance: str) -> np.ndarray:
    """Rankings in exact rational arithmetic (every float is a fraction): true ties, then by index.

    Cosine orders by -sign(<q,g>) <q,g>^2 / (|q|^2 |g|^2) (a monotone function of the cosine; zero vectors:
    0); Euclidean by the squared distance. ``queries`` may be [Q, m, d] (closest of the m vectors).
    """
    multi = queries.ndim == 3
    as_fractions = np.vectorize(Fraction, otypes=[object])
    q = as_fractions(queries.astype(np.float64))
    g = as_fractions(gallery.astype(np.float64))
    q = q if multi else q[:, None, :]
    rows = []
    for vectors in q:
        keys = []
        for item in g:
            candidates = []
            for vector in vectors:
                if distance == "cosine":
                    dot, qq, gg = sum(vector * item), sum(vector * vector), sum(item * item)
                    cos2 = dot * dot / (qq * gg) if qq and gg else Fraction(0)
                    candidates.append(-cos2 if dot > 0 else cos2)
                else:
                    candidates.append(sum((vector - item) ** 2))
            keys.append(min(candidates))
        rows.append(sorted(range(len(g)), key=lambda j, keys=keys: (keys[j], j)))
    return np.array(rows, dtype=np.int64)


def per_query(
    order: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray, names: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Per-query values of each metric from rankings ``order`` [Q, G], by explicit loops (NaN: undefined).

    Names: p@K, p@K_minr, map@K, map@K_yelamarthi, map@K_voc, map@all, map@all_voc (metrics.md, issue's
    section on the field's conventions).
    """
    result = {name: np.full(len(order), np.nan) for name in names}
    for row, (ranked, label) in enumerate(zip(order, query_labels, strict=True)):
        relevant = [bool(gallery_labels[j] == label) for j in ranked]
        n_relevant = sum(relevant)
        precision = [sum(relevant[: k + 1]) / (k + 1) for k in range(len(relevant))]
        for name in names:
            kind, _, rest = name.partition("@")
            depth_name, _, convention = rest.partition("_")
            depth = len(relevant) if depth_name == "all" else int(depth_name)
            top = range(min(depth, len(relevant)))
            hits = [k for k in top if relevant[k]]
            if kind == "p" and convention == "minr":
                value = (
                    sum(relevant[: min(depth, n_relevant)]) / min(depth, n_relevant) if n_relevant else None
                )
            elif kind == "p":
                value = len(hits) / depth
            elif convention == "voc":
                interpolated = [max(precision[k : len(top)]) for k in hits]
                value = sum(interpolated) / min(depth, n_relevant) if n_relevant else None
            elif convention == "yelamarthi":
                value = sum(precision[k] for k in hits) / depth
            elif depth_name == "all":
                value = sum(precision[k] for k in hits) / n_relevant if n_relevant else None
            else:
                value = sum(precision[k] for k in hits) / len(hits) if hits else 0.0
            result[name][row] = np.nan if value is None else value
    return result
