"""Exact top-k Hamming search on packed codes in one fused pass per query (compiled with Numba).

For each query row: XOR + popcount against every gallery code (word-major, one contiguous stream per word),
a histogram of the distances (at most 64·words + 1 values), the distance ``t`` at which the histogram
reaches ``k``, then a second pass that writes the gallery indices of distance < t, and the first ones of
distance t, straight into their output positions: a counting sort, so the result is ordered by (distance,
gallery index), the suite's tie rule, with no composite keys and no selection. Hand-written because NumPy
needs one pass per operation (XOR, popcount, keys, partition, sort) over a [rows, G] buffer, and no library
offers a Hamming k-NN that breaks ties by index (faiss' binary indexes do not). Measured on the Sketchy
zero-shot size (12,694 x 10,453, 64 bits, top 200, one thread): 0.32 s against 0.56 s for the NumPy passes
on cache-sized pieces. The kernel releases the GIL, so the engine's worker threads run it in parallel on
blocks of queries.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always")
def _popcount(x: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    """SWAR popcount of a 64-bit word (LLVM turns it into the popcnt instruction where there is one)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@numba.njit(nogil=True, cache=True)
def _top_k(
    queries: np.ndarray, gallery_words: np.ndarray, k: int, distances: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    n_queries, n_words = queries.shape
    n_gallery = gallery_words.shape[1]
    out = np.empty((n_queries, k), np.int64)
    # four histograms filled in turn, so that consecutive equal distances do not wait on one counter
    histograms = np.zeros((4, 64 * n_words + 1), np.int64)
    slots = np.empty(64 * n_words + 1, np.int64)
    for q in range(n_queries):
        for w in range(n_words):  # word-major: each pass streams one contiguous row of gallery words
            word, row = queries[q, w], gallery_words[w]
            if w == 0:
                for g in range(n_gallery):
                    distances[g] = _popcount(word ^ row[g])
            else:
                for g in range(n_gallery):
                    distances[g] += _popcount(word ^ row[g])
        histograms[:] = 0
        for g in range(n_gallery):
            histograms[g & 3, distances[g]] += 1
        below, threshold = 0, 0
        while True:
            count = histograms[:, threshold].sum()
            if below + count >= k:
                break
            below += count
            threshold += 1
        start = 0  # each distance's first output position
        for distance in range(threshold + 1):
            slots[distance] = start
            start += histograms[:, distance].sum()
        for g in range(n_gallery):
            distance = distances[g]
            if distance <= threshold and slots[distance] < k:
                out[q, slots[distance]] = g
                slots[distance] += 1
    return out


def hamming_top_k(queries: np.ndarray, gallery_words: np.ndarray, k: int) -> np.ndarray:
    """Columns of the ``min(k, G)`` nearest gallery codes of each query, ascending by (Hamming distance,
    index): ``[n, words]`` uint64 packed query codes (as ``search.pack_codes`` makes them) and the gallery's
    codes word-major, ``[words, G]``."""
    queries, gallery_words = np.ascontiguousarray(queries), np.ascontiguousarray(gallery_words)
    if (
        queries.dtype != np.uint64
        or gallery_words.dtype != np.uint64
        or queries.shape[1] != len(gallery_words)
    ):
        raise ValueError(
            f"hamming_top_k takes uint64 codes with the same number of words, got {queries.dtype} "
            f"{queries.shape} and word-major {gallery_words.dtype} {gallery_words.shape}"
        )
    n_gallery = gallery_words.shape[1]
    k = min(int(k), n_gallery)
    if k <= 0 or len(queries) == 0:
        return np.empty((len(queries), max(k, 0)), dtype=np.int64)
    # distances in the narrowest integer that holds 64 * words (one byte up to 192 bits)
    distances = np.empty(n_gallery, dtype=np.uint8 if 64 * queries.shape[1] <= 255 else np.uint16)
    return _top_k(queries, gallery_words, k, distances)


__all__ = ["hamming_top_k"]
