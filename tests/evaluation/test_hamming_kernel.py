"""The fused Hamming top-k kernel against the composite-key ranking (distance * G + index), by hand and on
random codes with heavy ties, one and several 64-bit words."""

from __future__ import annotations

import numpy as np
import pytest

from sbir_bench.evaluation.hamming import hamming_top_k
from sbir_bench.evaluation.search import pack_codes


def _reference(queries: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
    distances = np.bitwise_count(queries[:, None, :] ^ gallery[None, :, :]).sum(axis=2).astype(np.int64)
    keys = distances * len(gallery) + np.arange(len(gallery))
    return np.sort(keys, axis=1)[:, :k] % len(gallery)


def test_by_hand_ties_go_to_the_lower_index():
    queries = np.array([[0b0000]], dtype=np.uint64)
    gallery = np.array([[0b0011], [0b0001], [0b0100], [0b1111], [0b0000]], dtype=np.uint64)
    # distances 2, 1, 1, 4, 0: order 4 (0), 1 (1), 2 (1), 0 (2), 3 (4)
    assert hamming_top_k(queries, gallery.T, 3).tolist() == [[4, 1, 2]]
    assert hamming_top_k(queries, gallery.T, 9).tolist() == [[4, 1, 2, 0, 3]]  # k > G: the whole ranking


@pytest.mark.parametrize("bits", [8, 64, 100, 128, 256])  # 256 bits: distances beyond one byte
def test_random_codes_with_ties_match_the_composite_keys(bits):
    rng = np.random.default_rng(bits)
    signs = lambda n: np.where(rng.random((n, bits)) < 0.5, -1.0, 1.0)  # noqa: E731
    gallery_signs = signs(300)
    gallery_signs[100:150] = gallery_signs[:50]  # exact duplicates: ties of distance 0
    queries, gallery = pack_codes(signs(40), "queries"), pack_codes(gallery_signs, "gallery")
    for k in (1, 7, 200, 300):
        assert np.array_equal(hamming_top_k(queries, gallery.T, k), _reference(queries, gallery, k))


def test_bad_input_and_empty_cases():
    codes = np.zeros((2, 1), dtype=np.uint64)
    with pytest.raises(ValueError, match="uint64"):
        hamming_top_k(codes.astype(np.int64), codes.T, 1)
    with pytest.raises(ValueError, match="same number of words"):
        hamming_top_k(codes, np.zeros((3, 2), dtype=np.uint64), 1)
    assert hamming_top_k(codes, codes.T, 0).shape == (2, 0)
    assert hamming_top_k(codes[:0], codes.T, 3).shape == (0, 2)
