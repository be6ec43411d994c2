"""Exact, chunked nearest-neighbour search: cosine, Euclidean and packed-bit Hamming distances.

Ranking rule, everywhere in the suite: ascending distance, ties broken by ascending gallery index.

Queries are processed in chunks of rows, so peak memory is O(chunk x gallery) whatever the number of
queries. For each chunk a :class:`PairwiseScorer` produces *sort keys*, one per (query, gallery item),
that order every row exactly as its distances do:

- ``cosine``: ``<q, -g/|g|>`` (the query's norm is a positive per-row factor and cannot change its row's
  order); the distance ``1 - cos`` is recovered as ``1 + key / |q|``.
- ``euclidean``: ``|g|^2 - 2<q, g>`` (``|q|^2`` is constant along a row); distance ``sqrt(key + |q|^2)``,
  which for near-duplicates carries float32 cancellation error of about ``sqrt(eps) * |q|``.
- ``hamming``: codes are packed into 64-bit words and compared with XOR + popcount
  (``np.bitwise_count``); the key ``distance * G + index`` is an integer that is unique per row and
  already encodes the tie rule, so selection on it needs no tie handling at all. (For +-1 codes,
  ``(bits - <q, g>) / 2`` through a float GEMM is exact too, but popcount on packed words is both
  exact by construction and faster here: 64-bit codes need one XOR + popcount per pair.)

Float keys come from single-threaded BLAS GEMMs on blocks of exactly ``GEMM_ROWS`` query rows, one
chunk per worker thread: BLAS rounds the same dot product differently depending on the block shape,
the column it sits in and its thread split, so the blocks are fixed, BLAS threads are held to one and
identical gallery vectors are scored once and share their column. Results then do not depend on the
chunk size or the number of workers, and exact duplicates are exact ties.

Multi-vector queries ``[Q, m, d]`` (e.g. the k-means centres of a generative method's samples) are
ranked by their *closest* vector: a gallery item's distance to the query is the minimum over the m
vectors. Keys are then true distances minus a constant (cosine: the vectors are normalised, key
``-cos``; Euclidean: ``|q_c|^2`` is added), so they compare across the m vectors before the minimum.

Selection uses NumPy's SIMD partition/sort. Float32 keys of a large gallery do repeat (a few equal
pairs per row of 10^4 items), so ties are made exact: top-k rows whose k-th and (k+1)-th keys are equal
are redone with composite integer keys ``(order-preserving bits of the float32 key) << 31 | index``,
unique and sorted by (distance, index); the ranks of relevant items count the equal keys of lower index.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

DISTANCES = ("cosine", "euclidean", "hamming")
T = TypeVar("T")

# Float keys come from GEMMs of exactly this many query rows (BLAS results depend on the block shape);
# 256 rows run single-threaded OpenBLAS near its peak (64 rows lose ~12%).
GEMM_ROWS = 256
# Scratch memory for the selection of the chunks in flight (one per worker: partition indices, sorted
# copies, ...): about 40 bytes per (query, gallery item) pair, on top of a GEMM block of float32 keys.
# Chunks are also capped at MAX_CHUNK_ROWS rows: a chunk that stays in the CPU cache is faster.
CHUNK_MEMORY_BUDGET_BYTES = 256 * 2**20
_BYTES_PER_PAIR = 40
MAX_CHUNK_ROWS = GEMM_ROWS

_INDEX_BITS = 31  # composite float keys: 32 bits of ordered distance, then 31 bits of gallery index
INDEX_MASK = (1 << _INDEX_BITS) - 1
# map@all: rows with more shared relevant keys than this are re-ranked on composite keys (cheaper there)
_MAX_SHARED_KEYS_COUNTED = 32


def default_workers() -> int:
    """Chunks evaluated in parallel: one per core this process may use and torch is allowed."""
    return max(1, min(torch.get_num_threads(), len(os.sched_getaffinity(0))))


def default_chunk_size(n_gallery: int, workers: int | None = None) -> int:
    """Rows selected at a time so that the chunks in flight stay within ``CHUNK_MEMORY_BUDGET_BYTES``."""
    workers = workers or default_workers()
    rows = CHUNK_MEMORY_BUDGET_BYTES // (_BYTES_PER_PAIR * max(n_gallery, 1) * workers)
    return int(max(1, min(MAX_CHUNK_ROWS, rows)))


# --- inputs -----------------------------------------------------------------------------------------
def to_numpy(x: Any, name: str) -> np.ndarray:
    """A CPU NumPy view (or copy) of a tensor or array; half/bfloat16 tensors become float32."""
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}")


def _check_matrix(x: np.ndarray, name: str) -> None:
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [N, d] matrix, got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers or bits, got dtype {x.dtype}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise ValueError(f"{name} contains NaN or inf values (first in row {bad})")


def _float32_rows(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _multi_vector_queries(queries: np.ndarray, distance: str) -> np.ndarray:
    """[Q, m, d] float32; for cosine each vector is scaled to unit norm (zero vectors stay zero)."""
    queries = _float32_rows(queries)
    if distance == "cosine":
        norms = np.sqrt(np.einsum("qmd,qmd->qm", queries, queries))[..., None]
        queries = queries / np.maximum(norms, np.finfo(np.float32).tiny)
    return queries


def pack_codes(codes: np.ndarray, name: str) -> np.ndarray:
    """Binary codes -> packed 64-bit words [N, ceil(bits / 64)].

    Accepts bool or integer {0, 1} bit matrices and float {-1, +1} sign codes (+1 -> bit 1).
    """
    if codes.dtype.kind == "f":
        if not np.isin(codes, (-1.0, 1.0)).all():
            raise ValueError(
                f"{name}: float Hamming codes must be exactly -1 or +1 (bit matrices: use bool/uint8)"
            )
        bits = codes > 0
    elif codes.dtype.kind in "biu":
        if codes.dtype.kind != "b" and not np.isin(codes, (0, 1)).all():
            raise ValueError(f"{name}: integer Hamming codes must be bits 0/1")
        bits = codes.astype(bool, copy=False)
    else:
        raise ValueError(f"{name}: Hamming codes must be bool, 0/1 integers or +-1 floats, got {codes.dtype}")
    packed = np.packbits(bits, axis=1)
    n_words = -(-packed.shape[1] // 8)
    padded = np.zeros((packed.shape[0], n_words * 8), dtype=np.uint8)
    padded[:, : packed.shape[1]] = packed
    return padded.view(np.uint64)


def first_identical_rows(rows: np.ndarray) -> np.ndarray:
    """For each row of a C-contiguous matrix, the index of the first row with the same bytes."""
    n_rows = len(rows)
    as_bytes = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    order = np.argsort(as_bytes, kind="stable")  # identical rows end up adjacent, by ascending index
    starts_group = np.ones(n_rows, dtype=bool)
    for start in range(1, n_rows, 4096):  # compare sorted neighbours a block at a time: no sorted copy
        stop = min(start + 4096, n_rows)
        starts_group[start:stop] = as_bytes[order[start:stop]] != as_bytes[order[start - 1 : stop - 1]]
    first = np.empty(n_rows, dtype=np.int64)
    first[order] = order[np.flatnonzero(starts_group)][np.cumsum(starts_group) - 1]
    return first


# --- distances as sort keys ------------------------------------------------------------------------
class PairwiseScorer:
    """Sort keys and distances between chunks of queries and the whole gallery (see module docstring)."""

    def __init__(self, queries: Any, gallery: Any, distance: str = "cosine") -> None:
        if distance not in DISTANCES:
            raise ValueError(f"unknown distance {distance!r}; known: {', '.join(DISTANCES)}")
        q, g = to_numpy(queries, "queries"), to_numpy(gallery, "gallery")
        self.vectors_per_query = q.shape[1] if q.ndim == 3 else 0  # 0: one [d] vector per query
        if self.vectors_per_query and distance == "hamming":
            raise ValueError("multi-vector [Q, m, d] queries need a float distance, not hamming")
        _check_matrix(q.reshape(-1, q.shape[-1]) if self.vectors_per_query else q, "queries")
        _check_matrix(g, "gallery")
        if q.shape[-1] != g.shape[1]:
            raise ValueError(f"queries have dimension {q.shape[-1]} but gallery items have {g.shape[1]}")
        self.distance = distance
        self.n_queries, self.n_gallery = q.shape[0], g.shape[0]
        if distance == "hamming":
            self._queries = pack_codes(q, "queries")
            self._gallery_words = np.ascontiguousarray(pack_codes(g, "gallery").T)  # [words, G]
            key_dtype = np.int32 if (q.shape[1] + 1) * self.n_gallery < 2**31 else np.int64
            self._gallery_index = np.arange(self.n_gallery, dtype=key_dtype)
            return
        self._queries = q if not self.vectors_per_query else _multi_vector_queries(q, distance)
        gallery = _float32_rows(g)
        first_identical = first_identical_rows(gallery)
        distinct = first_identical == np.arange(self.n_gallery)
        self._expand_columns = None  # gallery item -> its column among the distinct vectors
        if not distinct.all():
            column_of_distinct = np.cumsum(distinct) - 1
            self._expand_columns = column_of_distinct[first_identical]
            gallery = gallery[distinct]
        squared_norms = np.einsum("ij,ij->i", gallery, gallery)
        if not np.isfinite(squared_norms).all():
            raise ValueError("gallery embeddings are too large: their squared norms overflow float32")
        if distance == "cosine":  # negated and normalised: keys are one GEMM; zero vectors stay zero
            norms = np.maximum(np.sqrt(squared_norms), np.finfo(np.float32).tiny)
            gallery = gallery / -norms[:, None]
        else:
            self._gallery_squared_norms = squared_norms
        self._gallery = gallery  # [distinct G, d]; BLAS reads the transposed view without a copy

    def sort_keys(self, rows: slice | np.ndarray) -> np.ndarray:
        """[len(rows), G] keys ordering each query row as its distances do (unique for Hamming).

        Float keys come from GEMMs on consecutive blocks of ``GEMM_ROWS`` of these rows; with BLAS on one
        thread, a row's keys then depend only on its block (:meth:`map_blocks` passes whole blocks).
        """
        if self.distance == "hamming":
            return self._hamming_keys(self._queries[rows])
        queries = _float32_rows(self._queries[rows])
        multi = self.vectors_per_query
        if multi:
            n_rows = len(queries)
            queries = queries.reshape(n_rows * multi, -1)
        if self.distance == "euclidean":
            queries = queries * np.float32(-2.0)  # exact scaling by a power of two
        keys = np.empty((len(queries), len(self._gallery)), dtype=np.float32)
        for start in range(0, len(queries), GEMM_ROWS):
            np.matmul(
                queries[start : start + GEMM_ROWS], self._gallery.T, out=keys[start : start + GEMM_ROWS]
            )
        if self.distance == "euclidean":
            keys += self._gallery_squared_norms
        if multi:  # squared distances (Euclidean) or -cos (unit vectors): the minimum over the m vectors
            if self.distance == "euclidean":
                keys += np.einsum("ij,ij->i", queries, queries)[:, None] * np.float32(0.25)
            keys = keys.reshape(n_rows, multi, -1).min(axis=1)
        return keys if self._expand_columns is None else np.take(keys, self._expand_columns, axis=1)

    def _hamming_keys(self, query_words: np.ndarray) -> np.ndarray:
        n_words = query_words.shape[1]
        xor = np.empty((query_words.shape[0], self.n_gallery), dtype=np.uint64)
        popcount = np.empty(xor.shape, dtype=np.uint8)
        counts = np.zeros(xor.shape, dtype=self._gallery_index.dtype)
        for word in range(n_words):
            np.bitwise_xor(query_words[:, word, None], self._gallery_words[word][None, :], out=xor)
            np.bitwise_count(xor, out=popcount)
            if n_words == 1:
                np.multiply(popcount, counts.dtype.type(self.n_gallery), out=counts)
            else:
                counts += popcount
        if n_words > 1:
            counts *= self.n_gallery
        counts += self._gallery_index
        return counts

    def map_blocks(
        self,
        score: Callable[[np.ndarray, np.ndarray], T],
        order: np.ndarray | None = None,
        chunk_size: int | None = None,
        workers: int | None = None,
    ) -> list[T]:
        """``[score(rows, self.sort_keys(rows)) for each chunk of rows]``, the queries taken in ``order``.

        Blocks of ``GEMM_ROWS`` queries run on ``workers`` threads, each doing its own single-threaded
        GEMM (or popcount) and the scoring of its chunks of ``chunk_size`` rows: NumPy releases the GIL
        in BLAS, sorts and partitions, and independent workers never wait on each other the way
        per-chunk parallel regions do (each costs a scheduler tick when the cores are shared). BLAS
        is held to one thread meanwhile (process-wide, restored on return). Float keys are computed
        per GEMM block whatever ``chunk_size`` is, so it changes memory, never results.
        """
        workers = workers or default_workers()
        if chunk_size is None:
            chunk_size = default_chunk_size(self.n_gallery, workers)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        order = np.arange(self.n_queries) if order is None else order
        blocks = [order[rows] for rows in chunk_bounds(len(order), GEMM_ROWS)]

        def score_block(rows: np.ndarray) -> list[T]:
            keys = None if self.distance == "hamming" else self.sort_keys(rows)  # Hamming: per chunk
            return [
                score(rows[chunk], self.sort_keys(rows[chunk]) if keys is None else keys[chunk])
                for chunk in chunk_bounds(len(rows), chunk_size)
            ]

        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            return [result for block in pool.map(score_block, blocks) for result in block]

    def distances(self, rows: slice | np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Distances of the given query rows from (a selection of) their sort keys, as float32."""
        if self.distance == "hamming":
            return (keys // self.n_gallery).astype(np.float32)
        if self.vectors_per_query:  # keys are already -cos or squared distances
            if self.distance == "cosine":
                return (1.0 + keys.astype(np.float64)).astype(np.float32)
            return np.sqrt(np.maximum(keys.astype(np.float64), 0.0)).astype(np.float32)
        q = _float32_rows(self._queries[rows]).astype(np.float64)
        squared = (q * q).sum(1, keepdims=True)
        if self.distance == "cosine":
            norm = np.sqrt(squared)
            return np.where(norm > 0, 1.0 + keys / np.where(norm > 0, norm, 1.0), 1.0).astype(np.float32)
        return np.sqrt(np.maximum(keys + squared, 0.0)).astype(np.float32)


# --- exact selection on sort keys -------------------------------------------------------------------
def composite_keys(keys: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
    """Unique int64 keys sorting like (float key, column): ``ordered(float32 bits) << 31 | column``.

    ``columns`` are the gallery columns of ``keys`` (default: 0..G-1). The float32 bit pattern is mapped
    to an integer of the same order (negative floats get their magnitude bits flipped); ``-0.0`` is
    folded onto ``+0.0`` first since they compare equal. Decode the column with ``& INDEX_MASK``.
    """
    if columns is None:
        columns = np.arange(keys.shape[1], dtype=np.int64)
    bits = (keys.astype(np.float32) + np.float32(0.0)).view(np.int32)
    ordered = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits).astype(np.int64) + 2**31
    return (ordered << _INDEX_BITS) | columns


def smallest_k(keys: np.ndarray, k: int) -> np.ndarray:
    """Columns of the ``min(k, G)`` smallest keys of each row, ascending by (key, column index).

    Integer keys are Hamming composites (unique): partition + sort is exact. Float keys: the k+1
    smallest are found with a SIMD partition and sorted by composite keys; rows whose k-th and (k+1)-th
    keys are equal (the top-k set is then decided by the index) are redone on full composite keys.
    """
    n_rows, n_gallery = keys.shape
    k = min(k, n_gallery)
    if keys.dtype.kind in "iu":
        top = np.partition(keys, k - 1, axis=1)[:, :k] if k < n_gallery else keys.copy()
        top.sort(axis=1)
        return top % n_gallery
    if k == n_gallery:
        return np.sort(composite_keys(keys), axis=1) & INDEX_MASK
    candidates = np.argpartition(keys, k, axis=1)[:, : k + 1]  # the k+1 smallest, in no order
    ranked = np.sort(composite_keys(np.take_along_axis(keys, candidates, axis=1), candidates), axis=1)
    columns = ranked[:, :k] & INDEX_MASK
    tied = np.flatnonzero((ranked[:, k - 1] >> _INDEX_BITS) == (ranked[:, k] >> _INDEX_BITS))
    if tied.size:
        exact = np.partition(composite_keys(keys[tied]), k - 1, axis=1)[:, :k]
        columns[tied] = np.sort(exact, axis=1) & INDEX_MASK
    return columns


def relevant_ranks(keys: np.ndarray, relevant_columns: np.ndarray) -> np.ndarray:
    """1-based ranks of the ``relevant_columns`` in every row's full ranking, ascending per row: [rows, R].

    rank(j) = 1 + #{i : key_i < key_j} + #{i < j : key_i = key_j}. The first count is a binary search of
    the row's sorted keys; the second is only non-zero when key_j is shared, which a look at the next
    sorted key reveals. Float32 keys of a large gallery do repeat (a few times per row of 10^4), so a
    shared key is counted directly, or, for rows with many of them, the row is ranked on composite keys.
    """
    n_gallery = keys.shape[1]
    sorted_keys = np.sort(keys, axis=1)
    relevant_keys = keys[:, relevant_columns]
    order = np.argsort(relevant_keys, axis=1)  # sorted search values make the binary searches cheaper
    relevant_keys = np.take_along_axis(relevant_keys, order, axis=1)
    ranks = _sorted_row_ranks(sorted_keys, relevant_keys)
    if keys.dtype.kind == "f" and n_gallery > 1:  # integer (Hamming) keys are unique
        shared = np.take_along_axis(sorted_keys, np.minimum(ranks, n_gallery - 1), axis=1) == relevant_keys
        shared &= ranks < n_gallery
        many = np.flatnonzero(shared.sum(axis=1) > _MAX_SHARED_KEYS_COUNTED)
        if many.size:
            unique = composite_keys(keys[many])
            ranks[many] = _sorted_row_ranks(
                np.sort(unique, axis=1), np.sort(unique[:, relevant_columns], axis=1)
            )
            shared[many] = False
        for row, position in zip(*np.nonzero(shared), strict=True):
            column = relevant_columns[order[row, position]]
            ranks[row, position] += np.count_nonzero(keys[row, :column] == relevant_keys[row, position])
        ranks.sort(axis=1)
    return ranks


def _sorted_row_ranks(sorted_keys: np.ndarray, row_keys: np.ndarray) -> np.ndarray:
    """1 + position of each of ``row_keys`` in its row of ``sorted_keys`` (unique keys)."""
    ranks = np.empty(row_keys.shape, dtype=np.int64)
    for row, (row_sorted, values) in enumerate(zip(sorted_keys, row_keys, strict=True)):
        ranks[row] = np.searchsorted(row_sorted, values)
    return ranks + 1


# --- public search -------------------------------------------------------------------------------------
def chunk_bounds(n_rows: int, chunk_size: int) -> Iterator[slice]:
    """Consecutive row slices of at most ``chunk_size`` rows."""
    for start in range(0, n_rows, chunk_size):
        yield slice(start, min(start + chunk_size, n_rows))


def top_k(
    queries: Any, gallery: Any, k: int, *, distance: str = "cosine", chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Exact k nearest gallery items of every query: (distances [Q, k'], indices [Q, k']), k' = min(k, G).

    Rows are ordered by ascending distance, ties by ascending gallery index.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    scorer = PairwiseScorer(queries, gallery, distance)

    def search(rows: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        columns = smallest_k(keys, k)
        return scorer.distances(rows, np.take_along_axis(keys, columns, axis=1)), columns

    results = scorer.map_blocks(search, chunk_size=chunk_size)
    distances = np.concatenate([d for d, _ in results])
    indices = np.concatenate([c for _, c in results]).astype(np.int64)
    return torch.from_numpy(distances), torch.from_numpy(indices)
