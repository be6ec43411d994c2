"""The evaluation engine: embeddings + labels -> retrieval metrics, and the DDP gather in front of it.

``evaluate`` ranks the whole gallery for every query with the exact chunked search of
:mod:`sbir_bench.evaluation.search` (ties: ascending distance, then ascending gallery index; rankings
equal a float64 brute-force computation) and
averages the per-query metrics of :mod:`sbir_bench.evaluation.metrics` (plain mean over queries). A
gallery item is relevant to a query when their labels are equal. It always runs on the CPU (one
worker thread per core torch may use, BLAS single-threaded in each), so the numbers do not depend on
the accelerator that produced the embeddings, nor on the chunk size or the number of workers.

Queries are processed sorted by label, so each chunk holds few classes and the relevant columns of a
class are looked up once per run of same-class queries; ``map@all`` then needs only the ranks of those
columns (a binary search in each sorted row of exact keys), never the full Q x G matrix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from sbir_bench.evaluation.chance import chance_and_ceiling
from sbir_bench.evaluation.metrics import MetricSpec, parse_metric, triplet_accuracy
from sbir_bench.evaluation.search import PairScore, PairwiseScorer, relevant_ranks, to_numpy

DEFAULT_METRICS = ("p@100", "p@200", "map@200", "map@200_yelamarthi", "map@all")
BACKENDS = ("torch",)


def _label_codes(
    query_labels: Any, gallery_labels: Any, n_queries: int, n_gallery: int
) -> tuple[np.ndarray, ...]:
    """Integer labels -> dense codes 0..C-1 shared by queries and gallery."""
    arrays = []
    for labels, name, expected in (
        (query_labels, "query", n_queries),
        (gallery_labels, "gallery", n_gallery),
    ):
        array = to_numpy(labels, f"{name} labels")
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise ValueError(
                f"{name} labels must be a 1-D integer array, got {array.dtype} {tuple(array.shape)}"
            )
        if len(array) != expected:
            raise ValueError(f"{name} labels: {len(array)} labels for {expected} embeddings")
        arrays.append(array.astype(np.int64, copy=False))
    _, codes = np.unique(np.concatenate(arrays), return_inverse=True)
    return codes[:n_queries], codes[n_queries:]


def label_runs(codes: np.ndarray) -> Iterable[tuple[int, int, int]]:
    """(start, stop, code) of each run of equal codes in a sorted code array."""
    starts = np.flatnonzero(np.diff(codes)) + 1
    bounds = np.concatenate(([0], starts, [len(codes)]))
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        yield int(start), int(stop), int(codes[start])


@dataclass(frozen=True)
class RelevanceIndex:
    """Labels as dense codes shared by queries and gallery, each class's gallery size, and the gallery
    columns of each class (ascending): what relevance (equal labels) needs, built once per evaluation."""

    query_codes: np.ndarray
    gallery_codes: np.ndarray
    class_sizes: np.ndarray
    gallery_by_class: list[np.ndarray]

    @classmethod
    def of(cls, scorer: PairwiseScorer, query_labels: Any, gallery_labels: Any) -> RelevanceIndex:
        query_codes, gallery_codes = _label_codes(
            query_labels, gallery_labels, scorer.n_queries, scorer.n_gallery
        )
        class_sizes = np.bincount(gallery_codes, minlength=int(query_codes.max(initial=0)) + 1)
        gallery_by_class = np.split(np.argsort(gallery_codes, kind="stable"), np.cumsum(class_sizes)[:-1])
        return cls(query_codes, gallery_codes, class_sizes, gallery_by_class)


def evaluate(
    query_embeddings: Any,
    query_labels: Any,
    gallery_embeddings: Any,
    gallery_labels: Any,
    *,
    distance: str | PairScore = "cosine",
    metrics: Iterable[str] = DEFAULT_METRICS,
    chunk_size: int | None = None,
    backend: str = "torch",
    references: bool = False,
    triplets: Any = None,
    class_mean: bool = False,
) -> dict[str, float]:
    """Each requested metric (mean over queries) plus the counts ``n_queries``, ``n_gallery`` and
    ``n_queries_without_relevant``.

    Metric names: see :data:`~sbir_bench.evaluation.metrics.METRIC_NAME_FORMS`. Queries without any
    relevant gallery item count as 0 in ``p@K``, ``map@K`` and ``map@K_yelamarthi`` and are left out of
    the others (``map@all``, ``map@all_voc``, ``map@K_voc``, ``p@K_minr``; NaN if no query has one).
    Inputs are tensors or arrays (any device; the work runs on the CPU); labels are integers [N].
    ``chunk_size`` (rows selected at a time) bounds memory, never changes results. ``backend="torch"``
    is the built-in exact engine, the only one (faiss adds nothing exact). ``references=True`` adds
    ``chance/<metric>`` (expected value under a uniformly random ranking of the same gallery) and
    ``ceiling/<metric>`` (value of a perfect ranking) for every metric, from the labels alone
    (:mod:`sbir_bench.evaluation.chance`). ``distance``: a name, or a method's own score function
    (``score(query rows, gallery) -> [n, G]``, smaller = closer; :mod:`sbir_bench.evaluation.search`).
    ``triplet_acc`` needs ``triplets``, int [T, 3] of (query, positive gallery item, negative gallery item)
    positions (fine-grained datasets' annotated test triplets); ``n_triplets`` is then counted too.
    ``class_mean=True`` adds ``class_mean/<metric>``: the per-query values averaged within each query
    class, then over classes (SHREC's "average by class"; every per-query metric, not ``e_mean_pr``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    specs = [parse_metric(name) for name in ((metrics,) if isinstance(metrics, str) else metrics)]
    scorer = PairwiseScorer(query_embeddings, gallery_embeddings, distance)
    index = RelevanceIndex.of(scorer, query_labels, gallery_labels)
    triplet_specs = [spec for spec in specs if spec.on_triplets]
    if triplet_specs and triplets is None:
        raise ValueError("triplet_acc needs the annotated triplets (query, positive, negative positions)")
    triplet_positions = _triplet_positions(triplets, scorer) if triplets is not None else None
    specs = [spec for spec in specs if not spec.on_triplets]
    query_codes, gallery_codes, class_sizes, gallery_by_class = (
        index.query_codes,
        index.gallery_codes,
        index.class_sizes,
        index.gallery_by_class,
    )
    n_relevant = class_sizes[query_codes]

    top_k_specs = [spec for spec in specs if spec.top_k_metric is not None]
    ranks_specs = [spec for spec in specs if spec.ranks_metric is not None]
    k_max = max((spec.k for spec in top_k_specs if spec.k is not None), default=0)

    def score(rows: np.ndarray, top: np.ndarray, keys: np.ndarray | None) -> dict[str, np.ndarray]:
        codes = query_codes[rows]
        values: dict[str, np.ndarray] = {}
        if k_max:
            relevance = gallery_codes[top] == codes[:, None]
            for spec in top_k_specs:
                assert spec.top_k_metric is not None and spec.k is not None
                values[spec.name] = spec.top_k_metric(relevance, spec.k, n_relevant[rows])
        if ranks_specs:
            assert keys is not None
            per_query = {
                spec.name: np.full((len(rows), spec.width) if spec.width > 1 else len(rows), np.nan)
                for spec in ranks_specs
            }
            for start, stop, code in label_runs(codes):
                if class_sizes[code]:
                    ranks = relevant_ranks(keys[start:stop], gallery_by_class[code])
                    for spec in ranks_specs:
                        assert spec.ranks_metric is not None
                        per_query[spec.name][start:stop] = spec.ranks_metric(ranks)
            values.update(per_query)
        return values

    # queries sorted by label: a block holds few classes, each class's relevant columns are shared
    by_label = np.argsort(query_codes, kind="stable")
    per_block = (
        scorer.map_blocks(
            score,
            by_label,
            chunk_size,
            k=k_max,
            full_ranking=bool(ranks_specs),
            relevance=lambda rows, columns: gallery_codes[columns] == query_codes[rows][:, None],
        )
        if specs
        else []
    )
    result = {spec.name: _mean(spec, [block[spec.name] for block in per_block]) for spec in specs}
    if class_mean:
        for spec in specs:
            if spec.aggregate is None:
                values = np.concatenate([block[spec.name] for block in per_block])
                result[f"class_mean/{spec.name}"] = _class_mean(values, query_codes[by_label])
    if triplet_positions is not None and triplet_specs:
        query, positive, negative = triplet_positions.T
        correct = triplet_accuracy(scorer.pair_keys(query, positive), scorer.pair_keys(query, negative))
        result[triplet_specs[0].name] = float(correct.mean()) if len(correct) else float("nan")
    specs = [*specs, *triplet_specs]
    if references:
        for spec in specs:
            reference = chance_and_ceiling(spec, n_relevant, scorer.n_gallery)
            result[f"chance/{spec.name}"] = reference.chance
            result[f"ceiling/{spec.name}"] = reference.ceiling
    result["n_queries"] = float(scorer.n_queries)
    result["n_gallery"] = float(scorer.n_gallery)
    result["n_queries_without_relevant"] = float((n_relevant == 0).sum())
    if triplet_positions is not None:
        result["n_triplets"] = float(len(triplet_positions))
    return result


def _triplet_positions(triplets: Any, scorer: PairwiseScorer) -> np.ndarray:
    """int [T, 3] (query, positive, negative) positions, checked against the query and gallery sizes."""
    array = np.asarray(triplets) if isinstance(triplets, list | tuple) else to_numpy(triplets, "triplets")
    if array.size == 0:
        array = array.reshape(0, 3)
    if array.ndim != 2 or array.shape[1] != 3 or array.dtype.kind not in "iu":
        raise ValueError(f"triplets must be an integer array [T, 3], got {array.dtype} {tuple(array.shape)}")
    array = array.astype(np.int64)
    for column, (name, size) in enumerate(
        (("query", scorer.n_queries), ("positive", scorer.n_gallery), ("negative", scorer.n_gallery))
    ):
        bad = np.flatnonzero((array[:, column] < 0) | (array[:, column] >= size))
        if bad.size:
            raise ValueError(
                f"triplet {int(bad[0])}: {name} index {int(array[bad[0], column])} is out of range "
                f"0..{size - 1} ({bad.size} triplets out of range)"
            )
    return array


def _class_mean(values: np.ndarray, codes: np.ndarray) -> float:
    """Mean over query classes of the mean over each class's queries (queries with a NaN value, i.e.
    without a relevant item where the metric leaves them out, are left out; so is a class with none left)."""
    kept = ~np.isnan(values)
    totals = np.bincount(codes[kept], weights=values[kept])
    counts = np.bincount(codes[kept], minlength=len(totals))
    return float((totals[counts > 0] / counts[counts > 0]).mean()) if kept.any() else float("nan")


def _mean(spec: MetricSpec, chunks: list[np.ndarray]) -> float:
    values = np.concatenate(chunks)
    if spec.undefined_without_relevant:
        values = values[~np.isnan(values).reshape(len(values), -1).any(axis=1)]
        if values.size == 0:
            return float("nan")
    return spec.aggregate(values) if spec.aggregate is not None else float(values.mean())


# --- distributed gather ---------------------------------------------------------------------------------
def _all_gather_padded(tensor: Tensor, device: torch.device) -> list[Tensor]:
    """all_gather of tensors whose first dimension differs between ranks (pad to the largest, then trim)."""
    local = tensor.to(device)
    size = torch.tensor([local.shape[0]], device=device, dtype=torch.int64)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    longest = int(max(int(s) for s in sizes))
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=device)
    padded[: local.shape[0]] = local
    gathered = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(gathered, padded)
    return [part[: int(n)] for part, n in zip(gathered, sizes, strict=True)]


def _collective_device(tensor: Tensor) -> torch.device:
    if "nccl" in str(dist.get_backend()).lower():
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


def gather_embeddings(
    embeddings: Tensor, labels: Tensor, indices: Tensor, *, n_expected: int | None = None
) -> tuple[Tensor, Tensor]:
    """Embeddings and labels of the whole dataset, in global index order, on every rank.

    Under an initialised ``torch.distributed`` group every rank's rows are all-gathered (row counts may
    differ between ranks; with NCCL the collective runs on the current CUDA device). Rows repeating a
    global index (DistributedSampler pads its last shards by repeating samples) are dropped, keeping the
    first; they must carry the same label. The indices must then be exactly 0..N-1 with N = max index + 1
    (or ``n_expected`` when given, which also catches missing trailing indices), else a RuntimeError names
    the missing ones. Without distributed the same checks run on the local rows. Results stay on the
    device ``embeddings`` came on.
    """
    if not len(embeddings) == len(labels) == len(indices):
        raise ValueError(f"{len(embeddings)} embeddings, {len(labels)} labels and {len(indices)} indices")
    output_device = embeddings.device
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        device = _collective_device(embeddings)
        bits = embeddings.dtype == torch.bool  # not every backend transfers bool tensors
        parts = _all_gather_padded(embeddings.to(torch.uint8) if bits else embeddings, device)
        embeddings = torch.cat(parts).to(torch.bool) if bits else torch.cat(parts)
        labels = torch.cat(_all_gather_padded(labels, device))
        indices = torch.cat(_all_gather_padded(indices, device))
    keep = _first_of_each_index(indices.long().cpu(), labels.cpu(), n_expected)
    return embeddings[keep.to(embeddings.device)].to(output_device), labels[keep.to(labels.device)].to(
        output_device
    )


def _first_of_each_index(indices: Tensor, labels: Tensor, n_expected: int | None) -> Tensor:
    """Row of the first occurrence of each index 0..N-1, in index order; RuntimeError when any is missing."""
    order = torch.sort(indices, stable=True).indices
    sorted_indices = indices[order]
    is_first = torch.ones(len(indices), dtype=torch.bool)
    is_first[1:] = sorted_indices[1:] != sorted_indices[:-1]
    if len(indices) and sorted_indices[0] < 0:
        raise RuntimeError(f"negative global indices: {sorted_indices[sorted_indices < 0][:10].tolist()}")
    sorted_labels = labels[order]
    if not torch.equal(sorted_labels, sorted_labels[is_first][torch.cumsum(is_first, 0) - 1]):
        raise RuntimeError("rows repeating a global index carry different labels")
    distinct = sorted_indices[is_first]
    n_items = n_expected if n_expected is not None else (int(distinct[-1]) + 1 if len(distinct) else 0)
    if n_items == 0:
        raise RuntimeError("no rows to gather: the dataset is empty")
    if len(distinct) != n_items or int(distinct[-1]) != n_items - 1:
        present = torch.zeros(max(n_items, int(distinct[-1]) + 1 if len(distinct) else 0), dtype=torch.bool)
        present[distinct] = True
        missing = torch.nonzero(~present[:n_items]).flatten().tolist()
        extra = distinct[distinct >= n_items].tolist()
        raise RuntimeError(
            f"gathered indices are not exactly 0..{n_items - 1}: "
            f"{len(missing)} missing (first: {missing[:10]})"
            + (f", {len(extra)} beyond the end (first: {extra[:10]})" if extra else "")
        )
    return order[is_first]
