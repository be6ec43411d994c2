"""Exact, chunked nearest-neighbour search: cosine, Euclidean and packed-bit Hamming distances.

Ranking rule, everywhere in the suite: ascending distance, ties broken by ascending gallery index. Rankings
equal a float64 brute-force computation of the distances, ties included wherever the float64 values tie
(integer or +-1 inputs, duplicated or power-of-two-scaled vectors), whatever the inputs' scale.

Inputs are brought to float64 and conditioned without changing any ranking:

- ``cosine``: every vector is scaled exactly, to small integers when it is a multiple of an integer vector
  (Euclid's algorithm on exact ``fmod``), else by a power of two so its largest component lies in
  [0.5, 1): no norm overflows or underflows (1e-25 and 1e19 components rank alike) and scaled copies of
  integer or +-1 vectors become identical vectors. The exact key of a pair is ``-sign(c) c^2`` with
  ``c = <q, g> / (|q| |g|)``, computed as ``-sign(<q,g>) (<q,g>^2 / |g|^2) / |q|^2``: on integer-valued
  inputs the products are exact and each division is correctly rounded, so exact ties stay ties (cosine
  on +-1 codes ranks as Hamming).
- ``euclidean``: everything is divided by a common integer factor when there is one (as for cosine), scaled
  by one power of two, then centred on the gallery mean rounded to 16
  significant bits (so integer inputs stay exact), then scaled again; the exact key is
  ``|g|^2 - 2 <q, g>`` (``|q|^2`` is constant along a row). Centring removes the cancellation that a large
  common offset causes. Rows whose magnitudes fall below float64's range after that common scaling
  cannot be ranked and are refused, naming the array and row.
- ``hamming``: codes are packed into 64-bit words and compared with XOR + popcount; the integer key
  ``distance * G + index`` is unique per row and already encodes the tie rule (full rankings); the top-k
  comes from one fused XOR + popcount + counting-sort pass per query (:mod:`sbir_bench.evaluation.hamming`),
  in the same order.

Float distances are searched in two stages. A float32 GEMM on the conditioned (cosine: unit) vectors gives
keys within a rigorous bound ``E`` of the exact ones (``(d + 8) u`` times the norms, u = 2^-24, as for any
summation order; Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., eq. 3.5). The top-k
candidates are the items whose float32 key is within ``2E`` of the k-th smallest; among them, runs of keys
closer than ``2E`` (where the order could differ from the exact one) are re-scored in float64 and ordered
by (exact key, index). When that re-scoring would cost more than a float64 GEMM of the block, and whenever
full rankings are needed (``map@all``), the block's keys are computed in float64 outright.

Float keys come from single-threaded BLAS GEMMs on blocks of exactly ``GEMM_ROWS`` query rows, one block per
worker thread: BLAS rounds the same dot product differently depending on the block shape, so the blocks are
fixed, BLAS threads are held to one and identical gallery vectors are scored once and share their column.
Results then do not depend on the chunk size or the number of workers, and exact duplicates are exact ties.

A method's own pairwise score (``distance`` given as a callable ``score(query rows [n, d], gallery [G, d])
-> [n, G]``, e.g. DMAR's feature distance plus attribute cross-entropy) is taken as the exact key: it is
called on the same fixed blocks of queries, its float64 values are ranked by (score, index), and nothing
about it is assumed beyond finiteness.

Multi-vector queries ``[Q, m, d]`` (e.g. the k-means centres of a generative method's samples) are ranked by
their *closest* vector: a gallery item's key is the minimum over the m vectors (cosine: ``-sign(c) c^2`` of
each unit vector; Euclidean: the squared distance).
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

from sbir_bench.evaluation.hamming import hamming_top_k

DISTANCES = ("cosine", "euclidean", "hamming")
CUSTOM = "custom"  # a method's own score function (PairwiseScorer's ``distance`` given as a callable)
T = TypeVar("T")
PairScore = Callable[[np.ndarray, np.ndarray], Any]

# Float keys come from GEMMs of exactly this many query rows (BLAS results depend on the block shape);
# 256 rows run single-threaded OpenBLAS near its peak (64 rows lose ~12%).
GEMM_ROWS = 256
# Scratch memory for the selection of the chunks in flight (one per worker: partition indices, sorted
# copies, ...): about 40 bytes per (query, gallery item) pair, on top of a GEMM block of keys.
# Chunks are also capped at MAX_CHUNK_ROWS rows: a chunk that stays in the CPU cache is faster.
CHUNK_MEMORY_BUDGET_BYTES = 256 * 2**20
_BYTES_PER_PAIR = 40
MAX_CHUNK_ROWS = GEMM_ROWS
UNIT_ROUNDOFF_FLOAT32 = 2.0**-24
# Re-scoring gathered pairs costs about as much as this many pairs of a float64 GEMM: beyond this share of
# a block's pairs, the block's keys are computed by a float64 GEMM instead.
_RESCORED_SHARE_LIMIT = 1 / 16
_VALUES_PER_RESCORING_BATCH = 2**21
_INTEGER_BITS = 26  # vectors that are multiples of integer vectors up to 2^26 are scaled to those
_CENTRE_BITS = 16  # Euclidean centre: the gallery mean rounded to this many significant bits
# Euclidean: rows more than 2^480 times smaller than the largest input would square below float64's range
_SMALLEST_EUCLIDEAN_EXPONENT = -480


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
    """A CPU NumPy view (or copy) of a tensor or array; half/bfloat16 tensors become float32 (exactly)."""
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


def _row_peaks(x: np.ndarray) -> np.ndarray:
    """Largest |component| of every row (every vector of a multi-vector row included), a block at a time."""
    flat = x.reshape(len(x), -1)
    return np.concatenate(
        [np.maximum(flat[s].max(axis=1), -flat[s].min(axis=1)) for s in chunk_bounds(len(flat), 1024)]
    )


def integer_factors(rows: np.ndarray) -> np.ndarray:
    """Per row of a 2-D array: the largest f such that the row / f is an integer vector with entries
    <= 2^``_INTEGER_BITS`` (exact, found by Euclid's algorithm on exact ``fmod``), else 0 (zero rows: 0)."""
    peaks = _row_peaks(rows)
    smallest = peaks * 2.0**-_INTEGER_BITS
    factors, alive = peaks.copy(), peaks > 0
    for column in range(rows.shape[1]):
        live = np.flatnonzero(alive)
        if live.size == 0:
            break
        a, b = factors[live], np.abs(rows[live, column])
        while True:  # gcd(a, b); a row dies as soon as a remainder falls below its smallest factor
            step = (b > 0) & (b >= smallest[live])
            dead = (b > 0) & ~step
            alive[live[dead]] = False
            b[dead] = 0.0
            if not step.any():
                break
            a[step], b[step] = b[step], np.fmod(a[step], b[step])
        factors[live] = a
    return np.where(alive, factors, 0.0)


def scaled_vectors(x: np.ndarray) -> np.ndarray:
    """Every vector (last axis) scaled exactly, in place: to small integers when it is a multiple of one
    (scaled copies of integer or +-1 vectors become identical), else by a power of two to a largest
    |component| in [0.5, 1)."""
    flat = x.reshape(-1, x.shape[-1])
    factors = integer_factors(flat)
    _, exponents = np.frexp(_row_peaks(flat))
    ordinary = np.abs(exponents) < 1000  # powers of two 2^-e are normal floats: multiply (exact, faster)
    flat *= np.where(ordinary, np.exp2(-exponents.astype(np.float64)), 1.0)[:, None]
    extreme = np.flatnonzero(~ordinary)
    flat[extreme] = np.ldexp(flat[extreme], -exponents[extreme, None])
    integer = np.flatnonzero(factors > 0)
    if integer.size:  # the power of two above scaled these rows too: divide by the scaled factor
        flat[integer] /= np.ldexp(factors[integer], -exponents[integer])[:, None]
    return x


def _common_integer_factor(*arrays: np.ndarray) -> float:
    """The largest f making every array / f small integers (``integer_factors`` over all of them), or 0."""
    rows = [a.reshape(-1, a.shape[-1]) for a in arrays]
    factors = np.concatenate([integer_factors(r) for r in rows])
    peaks = np.concatenate([_row_peaks(r) for r in rows])
    if ((factors == 0) & (peaks > 0)).any() or not (peaks > 0).any():
        return 0.0
    common = float(factors[peaks > 0][0])
    for factor in np.unique(factors[peaks > 0]).tolist():
        while factor:
            common, factor = factor, float(np.fmod(common, factor))
    return common if float(peaks.max()) <= common * 2.0**_INTEGER_BITS else 0.0


def _scaled_together(*arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays times one power of two (exact) so the largest |component| of all is in [0.5, 1)."""
    _, exponent = np.frexp(max(float(_row_peaks(a).max()) for a in arrays))
    return [np.ldexp(a, -exponent) for a in arrays]


def _rounded_to_bits(values: np.ndarray, bits: int) -> np.ndarray:
    mantissa, exponent = np.frexp(values)
    return np.ldexp(np.round(np.ldexp(mantissa, bits)), exponent - bits)


def centred_for_euclidean(queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(queries, gallery, unit): scaled by a power of two, centred, scaled again; distances = unit x theirs.

    The centre is the gallery mean rounded to ``_CENTRE_BITS`` significant bits, so integer-valued inputs
    stay exact; the residual offset (< 2^-16 of the mean) no longer cancels in ``|g|^2 - 2 <q, g>``.
    Rows too small to square within float64's range next to the largest input raise a ValueError.
    """
    factor = _common_integer_factor(queries, gallery)
    unit = factor if factor else 1.0
    if factor:  # integer-valued up to one factor: exact small integers
        queries, gallery = queries / factor, gallery / factor
    peak = max(float(_row_peaks(queries).max()), float(_row_peaks(gallery).max()))
    for x, name in ((queries, "queries"), (gallery, "gallery")):
        peaks = _row_peaks(x)
        tiny = np.flatnonzero((peaks > 0) & (peaks < peak * 2.0**_SMALLEST_EUCLIDEAN_EXPONENT))
        if tiny.size:
            raise ValueError(
                f"{name} row {int(tiny[0])} cannot be ranked by Euclidean distance next to the largest input "
                f"(|x| <= {float(peaks[tiny[0]]) * unit:.3g} vs {peak * unit:.3g}: their squares do not both "
                "fit in float64); rescale the inputs"
            )
    queries, gallery = _scaled_together(queries, gallery)
    centre = _rounded_to_bits(gallery.mean(axis=0), _CENTRE_BITS)
    queries, gallery = queries - centre, gallery - centre
    before = float(_row_peaks(queries).max()) if queries.size else 0.0
    before = max(before, float(_row_peaks(gallery).max()))
    queries, gallery = _scaled_together(queries, gallery) if before > 0 else (queries, gallery)
    after = max(float(_row_peaks(queries).max()), float(_row_peaks(gallery).max()))
    unit *= 2.0 ** np.frexp(peak)[1] * (before / after if after > 0 else 1.0)
    return queries, gallery, unit


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


def _squared_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("...d,...d->...", x, x)


def _nonzero(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 1.0)


# --- keys -----------------------------------------------------------------------------------------------
class PairwiseScorer:
    """Sort keys, exact keys and distances between the queries and the whole gallery (module docstring)."""

    def __init__(self, queries: Any, gallery: Any, distance: str | PairScore = "cosine") -> None:
        if not callable(distance) and distance not in DISTANCES:
            raise ValueError(
                f"unknown distance {distance!r}; known: {', '.join(DISTANCES)}, or a score function"
            )
        q, g = to_numpy(queries, "queries"), to_numpy(gallery, "gallery")
        if callable(distance):
            if q.ndim != 2 or g.ndim != 2:
                raise ValueError(
                    f"a score function takes [Q, d] queries and [G, d] gallery items, got "
                    f"{tuple(q.shape)} and {tuple(g.shape)}"
                )
            self.distance, self._score = CUSTOM, distance
            self.vectors_per_query, self._queries_raw, self._gallery_raw = 0, q, g
            self.n_queries, self.n_gallery = q.shape[0], g.shape[0]
            return
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
        q64, g64 = q.astype(np.float64), g.astype(np.float64)
        self._unit = 1.0  # Euclidean: distances of the conditioned vectors times this are the inputs'
        if distance == "cosine":
            q64, g64 = scaled_vectors(q64), scaled_vectors(g64)
        else:
            q64, g64, self._unit = centred_for_euclidean(q64, g64)
        g64 = np.ascontiguousarray(g64)
        first_identical = first_identical_rows(g64)
        distinct = first_identical == np.arange(self.n_gallery)
        self._distinct_column = (np.cumsum(distinct) - 1)[first_identical]  # gallery item -> its column
        self._expand = None if distinct.all() else self._distinct_column
        self._queries64 = np.ascontiguousarray(q64)
        self._query_squares = _squared_norms(self._queries64)  # [Q] or [Q, m]
        self._gallery64 = g64 if distinct.all() else g64[distinct]
        self._gallery_squares = _squared_norms(self._gallery64)
        self._gallery_squares32 = self._gallery_squares.astype(np.float32)
        self._gallery32: np.ndarray | None = None  # made on first use (float32 keys), see float32_gallery
        dim = g.shape[1]
        self._bound_factor = 1.01 * (dim + 8) * UNIT_ROUNDOFF_FLOAT32
        self._underflow_bound = dim * 2.0**-120  # float32 conversion of components below its normal range

    def float32_gallery(self) -> np.ndarray:
        """The gallery for float32 keys: cosine, negated unit vectors (keys are -cos); Euclidean, as is."""
        if self._gallery32 is None:
            gallery = self._gallery64
            if self.distance == "cosine":
                gallery = gallery / -np.sqrt(_nonzero(self._gallery_squares))[:, None]
            self._gallery32 = np.ascontiguousarray(gallery.astype(np.float32))
        return self._gallery32

    # float32 keys and their error bound
    def float32_keys(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows), G] float32 keys ordering each row as its distances do, within :meth:`bounds`.

        Computed by GEMMs on consecutive blocks of ``GEMM_ROWS`` (flattened) query vectors.
        """
        queries = self._queries64[rows]
        multi = self.vectors_per_query
        if self.distance == "cosine":
            queries = queries / np.sqrt(_nonzero(self._query_squares[rows]))[..., None]
        queries32 = queries.astype(np.float32)
        if self.distance == "euclidean":
            queries32 *= np.float32(-2.0)  # exact scaling by a power of two
        flat = queries32.reshape(-1, queries32.shape[-1])
        keys = _blocked_gemm(flat, self.float32_gallery(), np.float32)
        if self.distance == "euclidean":
            keys += self._gallery_squares32
            if multi:
                keys += self._query_squares[rows].reshape(-1, 1).astype(np.float32)
        if multi:
            keys = keys.reshape(len(rows), multi, -1).min(axis=1)
        return self._expanded(keys)

    def bounds(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows)] float64: |float32 key - exact key| <= bound for every item of each row.

        Cosine: the keys are dot products of float32-rounded unit vectors, error <= (d + 8) u
        (rounding of the inputs plus gamma_d of the summation, any order). Euclidean: the same factor
        times |g|^2 + 2 |q| |g| (+ |q|^2 for multi-vector queries), with the gallery's largest |g|.
        """
        if self.distance == "cosine":
            return np.full(len(rows), self._bound_factor + self._underflow_bound)
        largest_square = float(self._gallery_squares.max())
        query_squares = self._query_squares[rows]
        if self.vectors_per_query:
            query_squares = query_squares.max(axis=1)
        scale = largest_square + 2 * np.sqrt(query_squares * largest_square)
        if self.vectors_per_query:
            scale = scale + query_squares
        return self._bound_factor * scale + self._underflow_bound

    # exact (float64) keys
    def _keys_from_dots(self, dots: np.ndarray, query_squares: np.ndarray, gallery_squares: np.ndarray):
        """Exact keys from float64 dot products (broadcast shapes; multi-vector: before the minimum)."""
        if self.distance == "cosine":  # -sign(c) c^2; zero vectors have c = 0
            return -np.sign(dots) * ((dots * dots) / _nonzero(gallery_squares)) / _nonzero(query_squares)
        keys = gallery_squares - 2.0 * dots
        return keys + query_squares if self.vectors_per_query else keys

    def exact_keys(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows), G] float64 keys, by float64 GEMMs on blocks of ``GEMM_ROWS`` (flattened) vectors."""
        if self.distance == CUSTOM:
            return self._custom_scores(rows)
        queries = self._queries64[rows]
        flat = queries.reshape(-1, queries.shape[-1])
        dots = _blocked_gemm(flat, self._gallery64, np.float64)
        squares = self._query_squares[rows].reshape(-1, 1)
        keys = self._keys_from_dots(dots, squares, self._gallery_squares[None, :])
        if self.vectors_per_query:
            keys = keys.reshape(len(rows), self.vectors_per_query, -1).min(axis=1)
        return self._expanded(keys)

    def _custom_scores(self, rows: np.ndarray) -> np.ndarray:
        scores = np.asarray(to_numpy(self._score(self._queries_raw[rows], self._gallery_raw), "scores"))
        if scores.shape != (len(rows), self.n_gallery):
            raise ValueError(
                f"the score function returned shape {tuple(scores.shape)} for {len(rows)} queries and "
                f"{self.n_gallery} gallery items; expected ({len(rows)}, {self.n_gallery})"
            )
        scores = scores.astype(np.float64)
        if not np.isfinite(scores).all():
            row = int(np.flatnonzero(~np.isfinite(scores).all(axis=1))[0])
            raise ValueError(f"the score function returned non-finite scores for query row {int(rows[row])}")
        return scores

    def pair_keys(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Keys of the pairs (rows[i], columns[i]) that order each query's gallery items exactly as the
        search does (Hamming: the distance; float distances: the exact keys; a score function: its value)."""
        rows, columns = np.asarray(rows, dtype=np.int64), np.asarray(columns, dtype=np.int64)
        if self.distance == "hamming":
            xor = np.bitwise_xor(self._queries[rows], self._gallery_words[:, columns].T)
            return np.bitwise_count(xor).sum(axis=1, dtype=np.int64).astype(np.float64)
        if self.distance == CUSTOM:
            keys = np.empty(len(rows))
            unique, position = np.unique(rows, return_inverse=True)
            for start in range(0, len(unique), GEMM_ROWS):
                block = slice(start, start + GEMM_ROWS)
                scores = self._custom_scores(unique[block])
                chosen = (position >= start) & (position < start + len(unique[block]))
                keys[chosen] = scores[position[chosen] - start, columns[chosen]]
            return keys
        return self.exact_pair_keys(rows, columns)

    def exact_pair_keys(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Exact keys of the pairs (rows[i], columns[i]) (query rows, gallery columns), one at a time."""
        keys = np.empty(len(rows))
        columns = self._distinct_column[columns]
        per_pair = self._queries64.shape[-1] * max(1, self.vectors_per_query)
        batch = max(1, _VALUES_PER_RESCORING_BATCH // per_pair)
        for start in range(0, len(rows), batch):
            r, c = rows[start : start + batch], columns[start : start + batch]
            gallery = self._gallery64[c]
            if self.vectors_per_query:
                dots = np.einsum("pmd,pd->pm", self._queries64[r], gallery)
                values = self._keys_from_dots(dots, self._query_squares[r], self._gallery_squares[c][:, None])
                keys[start : start + batch] = values.min(axis=1)
            else:
                dots = np.einsum("pd,pd->p", self._queries64[r], gallery)
                values = self._keys_from_dots(dots, self._query_squares[r], self._gallery_squares[c])
                keys[start : start + batch] = values
        return keys

    def distances(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Distances (float64) of query ``rows[i]`` to gallery items ``columns[i, :]``, from exact keys."""
        if self.distance == "hamming":
            keys = self.hamming_keys(rows)
            return (np.take_along_axis(keys, columns, axis=1) // self.n_gallery).astype(np.float64)
        if self.distance == CUSTOM:
            return np.take_along_axis(self._custom_scores(rows), columns, axis=1)
        flat_rows = np.repeat(rows, columns.shape[1])
        keys = self.exact_pair_keys(flat_rows, columns.ravel()).reshape(columns.shape)
        if self.distance == "cosine":
            return 1.0 + np.sign(keys) * np.sqrt(np.abs(keys))
        squares = keys if self.vectors_per_query else keys + self._query_squares[rows][:, None]
        return np.sqrt(np.maximum(squares, 0.0)) * self._unit

    def _expanded(self, keys: np.ndarray) -> np.ndarray:
        return keys if self._expand is None else np.take(keys, self._expand, axis=1)

    # Hamming
    def hamming_keys(self, rows: np.ndarray) -> np.ndarray:
        """Unique integer keys ``distance * G + index`` of the given query rows."""
        query_words = self._queries[rows]
        n_words = query_words.shape[1]
        xor = np.empty((query_words.shape[0], self.n_gallery), dtype=np.uint64)
        popcount = np.empty(xor.shape, dtype=np.uint8)
        counts = (np.empty if n_words == 1 else np.zeros)(xor.shape, dtype=self._gallery_index.dtype)
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

    # ranking blocks of queries
    def map_blocks(
        self,
        score: Callable[[np.ndarray, np.ndarray, np.ndarray | None], T],
        order: np.ndarray | None = None,
        chunk_size: int | None = None,
        workers: int | None = None,
        *,
        k: int = 0,
        full_ranking: bool = False,
        relevance: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    ) -> list[T]:
        """``[score(rows, top, keys) for each chunk of rows]``, the queries taken in ``order``.

        ``top``: the exact ``min(k, G)`` nearest gallery columns of each row, by (distance, index) ([n, 0]
        when k = 0); given ``relevance(rows, columns) -> bool``, only the relevance at each rank is exact
        (items of equal relevance may swap, which no metric sees), which saves re-scoring. ``keys``: keys
        ordering each row exactly (float64, or Hamming's unique integers) when ``full_ranking`` is asked
        for, else None. Blocks of ``GEMM_ROWS`` queries run on ``workers``
        threads, each with single-threaded BLAS; a row's result depends only on its block, never on
        ``chunk_size`` (which bounds the selection's memory).
        """
        workers = workers or default_workers()
        if chunk_size is None:
            chunk_size = default_chunk_size(self.n_gallery, workers)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        order = np.arange(self.n_queries) if order is None else order
        blocks = [order[rows] for rows in chunk_bounds(len(order), GEMM_ROWS)]
        chunk_size = min(chunk_size, GEMM_ROWS)

        def exact_block(rows: np.ndarray, keys: np.ndarray) -> list[T]:
            return [
                score(rows[chunk], smallest_k(keys[chunk], k), keys[chunk] if full_ranking else None)
                for chunk in chunk_bounds(len(rows), chunk_size)
            ]

        def score_block(rows: np.ndarray) -> list[T]:
            if self.distance == "hamming":
                results = []
                for chunk in chunk_bounds(len(rows), chunk_size):
                    chunk_rows = rows[chunk]
                    if full_ranking:
                        keys = self.hamming_keys(chunk_rows)
                        results.append(score(chunk_rows, smallest_k(keys, k), keys))
                        continue
                    top = hamming_top_k(self._queries[chunk_rows], self._gallery_words, k)  # fused kernel
                    results.append(score(chunk_rows, top, None))
                return results
            if full_ranking or not k:
                return exact_block(rows, self.exact_keys(rows) if full_ranking else np.empty((len(rows), 0)))
            if use_float64[0] or self.distance == CUSTOM:
                return exact_block(rows, self.exact_keys(rows))
            keys32, bounds = self.float32_keys(rows), self.bounds(rows)
            budget = int(_RESCORED_SHARE_LIMIT * len(rows) * self.n_gallery)
            tops = []
            for chunk in chunk_bounds(len(rows), chunk_size):
                top, budget = _smallest_k_within_bounds(
                    keys32[chunk],
                    bounds[chunk],
                    k,
                    lambda r, c, chunk_rows=rows[chunk]: self.exact_pair_keys(chunk_rows[r], c),
                    budget,
                    None
                    if relevance is None
                    else lambda r, c, chunk_rows=rows[chunk]: relevance(chunk_rows[r], c),
                )
                if top is None:  # too many near-ties in this block: float64 GEMM instead
                    if rows is blocks[0]:
                        use_float64[0] = True
                        self._gallery32 = None  # not needed any more: free it
                    return exact_block(rows, self.exact_keys(rows))
                tops.append(top)
            return [
                score(rows[chunk], top, None)
                for chunk, top in zip(chunk_bounds(len(rows), chunk_size), tops, strict=True)
            ]

        # the first block decides, deterministically, whether float32 keys pay off: if its near-ties need a
        # float64 GEMM, every block computes float64 keys straight away (no float32 GEMM wasted)
        use_float64 = [False]
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            first = score_block(blocks[0]) if blocks else []
            return first + [result for block in pool.map(score_block, blocks[1:]) for result in block]


def _blocked_gemm(left: np.ndarray, right: np.ndarray, dtype: type) -> np.ndarray:
    """``left @ right.T`` computed on fixed blocks of ``GEMM_ROWS`` rows of ``left``."""
    out = np.empty((len(left), len(right)), dtype=dtype)
    for start in range(0, len(left), GEMM_ROWS):
        np.matmul(left[start : start + GEMM_ROWS], right.T, out=out[start : start + GEMM_ROWS])
    return out


# --- exact selection ------------------------------------------------------------------------------------
def smallest_k(keys: np.ndarray, k: int) -> np.ndarray:
    """Columns of the ``min(k, G)`` smallest keys of each row, ascending by (key, column index).

    Exact for any key dtype (the keys are taken as they are). Integer keys are Hamming composites (unique).
    """
    n_rows, n_gallery = keys.shape
    k = min(k, n_gallery)
    if k == 0:
        return np.empty((n_rows, 0), dtype=np.int64)
    if keys.dtype.kind in "iu":
        top = np.partition(keys, k - 1, axis=1)[:, :k] if k < n_gallery else keys.copy()
        top.sort(axis=1)
        return top % n_gallery
    columns = _columns_up_to(keys, np.partition(keys, k - 1, axis=1)[:, k - 1] if k < n_gallery else None)
    values = np.take_along_axis(keys, columns, axis=1)
    order = np.lexsort((columns, values), axis=1)
    return np.take_along_axis(columns, order, axis=1)[:, :k]


def _columns_up_to(keys: np.ndarray, threshold: np.ndarray | None) -> np.ndarray:
    """Columns holding (at least) every key <= the row's threshold (None: all columns)."""
    n_rows, n_gallery = keys.shape
    if threshold is not None:
        count = int((keys <= threshold[:, None]).sum(axis=1).max())
        if count < n_gallery:
            return np.argpartition(keys, count - 1, axis=1)[:, :count]
    return np.broadcast_to(np.arange(n_gallery), keys.shape).copy()


_CANDIDATE_SLACK = 32  # candidates taken beyond the k-th at first; rows needing more get all they need


def _candidates(keys: np.ndarray, k: int, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(columns holding every key <= the row's k-th smallest + margin, that threshold per row)."""
    n_rows, n_gallery = keys.shape
    if k == n_gallery:
        return np.broadcast_to(np.arange(n_gallery), keys.shape).copy(), np.full(n_rows, np.inf)
    width = min(k + _CANDIDATE_SLACK, n_gallery)
    columns = np.argpartition(keys, width - 1, axis=1)[:, :width] if width < n_gallery else None
    if columns is not None:
        values = np.take_along_axis(keys, columns, axis=1)
        threshold = np.partition(values, k - 1, axis=1)[:, k - 1].astype(np.float64) + margin
        if (values.max(axis=1) > threshold).all():  # every row's next key lies beyond its threshold
            return columns, threshold
    threshold = np.partition(keys, k - 1, axis=1)[:, k - 1].astype(np.float64) + margin
    return _columns_up_to(keys, threshold), threshold


def _smallest_k_within_bounds(
    keys: np.ndarray,
    bounds: np.ndarray,
    k: int,
    exact_keys: Callable[[np.ndarray, np.ndarray], np.ndarray],
    budget: int,
    relevance: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray | None, int]:
    """Exact top-k columns from float32 keys within ``bounds`` of the exact ones: (columns, budget left).

    Candidates: keys <= (k-th smallest) + 2 bound (a superset of the exact top k). Sorted by float32 key,
    runs of neighbours closer than 2 bound are re-scored by ``exact_keys(local rows, columns)`` and ordered
    by (exact key, column); across runs the float32 order is the exact one. With ``relevance(local rows,
    columns)`` only runs mixing relevant and other items are re-scored: the relevance of every rank is
    then exact, the order within a run of equally relevant items is not. (None, budget) when more pairs
    than ``budget`` would need re-scoring.
    """
    n_rows, n_gallery = keys.shape
    k = min(k, n_gallery)
    margin = 2.0 * bounds
    columns, threshold = _candidates(keys, k, margin)
    ranked = np.sort(_composite_keys(np.take_along_axis(keys, columns, axis=1), columns), axis=1)
    columns = ranked & _INDEX_MASK
    values = np.take_along_axis(keys, columns, axis=1).astype(np.float64)
    close = (np.diff(values, axis=1) <= margin[:, None]) & (values[:, 1:] <= threshold[:, None])
    run = np.cumsum(np.concatenate([np.ones((n_rows, 1), dtype=bool), ~close], axis=1), axis=1)
    ambiguous = np.zeros(values.shape, dtype=bool)
    ambiguous[:, 1:] |= close
    ambiguous[:, :-1] |= close
    if relevance is not None and ambiguous.any():
        relevant = relevance(np.arange(n_rows), columns)
        flat_run = (run + np.arange(n_rows)[:, None] * (values.shape[1] + 1)).ravel()
        members = np.bincount(flat_run)
        hits = np.bincount(flat_run, weights=relevant.ravel())
        ambiguous &= ((hits > 0) & (hits < members))[flat_run].reshape(values.shape)
    rows, positions = np.nonzero(ambiguous)
    if len(rows) > budget:
        return None, budget
    # every member of a re-scored run is re-scored and runs are contiguous: re-order those positions only
    rescored = columns[rows, positions]
    order = np.lexsort((rescored, exact_keys(rows, rescored), run[rows, positions], rows))
    columns[rows, positions] = rescored[order]
    return columns[:, :k], budget - len(rows)


_INDEX_BITS = 31  # composite float32 keys: 32 bits of ordered key, then 31 bits of gallery column
_INDEX_MASK = (1 << _INDEX_BITS) - 1


def _composite_keys(keys: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Unique int64 keys sorting like (float32 key, column): ``ordered(float32 bits) << 31 | column``.

    The float32 bit pattern is mapped to an integer of the same order (negative floats get their magnitude
    bits flipped); ``-0.0`` is folded onto ``+0.0`` first since they compare equal.
    """
    bits = (keys.astype(np.float32) + np.float32(0.0)).view(np.int32)
    ordered = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits).astype(np.int64) + 2**31
    return (ordered << _INDEX_BITS) | columns


def relevant_ranks(keys: np.ndarray, relevant_columns: np.ndarray) -> np.ndarray:
    """1-based ranks of the ``relevant_columns`` in every row's full ranking, ascending per row: [rows, R].

    ``keys`` order each row exactly (float64 exact keys, or Hamming's unique integers).
    rank(j) = 1 + #{i : key_i < key_j} + #{i < j : key_i = key_j}. The first count is a binary search of
    the row's sorted keys; the second is only non-zero when key_j is shared, which a look at the next
    sorted key reveals: shared keys are counted directly or, for rows with many, the row is lexsorted.
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
            row_order = np.lexsort(
                (np.broadcast_to(np.arange(n_gallery), (many.size, n_gallery)), keys[many])
            )
            position = np.empty_like(row_order)
            np.put_along_axis(position, row_order, np.arange(1, n_gallery + 1)[None, :], axis=1)
            ranks[many] = np.sort(position[:, relevant_columns], axis=1)
            shared[many] = False
        for row, index in zip(*np.nonzero(shared), strict=True):
            column = relevant_columns[order[row, index]]
            ranks[row, index] += np.count_nonzero(keys[row, :column] == relevant_keys[row, index])
        ranks.sort(axis=1)
    return ranks


# map@all: rows with more shared relevant keys than this are lexsorted (cheaper there)
_MAX_SHARED_KEYS_COUNTED = 32


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

    Rows are ordered by ascending distance, ties by ascending gallery index; distances are float64.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    scorer = PairwiseScorer(queries, gallery, distance)

    def search(rows: np.ndarray, columns: np.ndarray, keys: np.ndarray | None) -> tuple[np.ndarray, ...]:
        return scorer.distances(rows, columns), columns

    results = scorer.map_blocks(search, chunk_size=chunk_size, k=k)
    distances = np.concatenate([d for d, _ in results])
    indices = np.concatenate([c for _, c in results]).astype(np.int64)
    return torch.from_numpy(distances), torch.from_numpy(indices)
