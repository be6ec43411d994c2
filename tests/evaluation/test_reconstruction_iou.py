"""Voxel IoU of reconstructions: pairwise IoU, the best IoU within the query's class, and the
nearest-neighbour-shape baseline, on hand-worked grids."""

from __future__ import annotations

import numpy as np
import pytest

from sbir_bench.evaluation.reconstruction import best_class_iou, nearest_model_iou, pairwise_iou


def _grid(*voxels: tuple[int, int, int], size: int = 4) -> np.ndarray:
    grid = np.zeros((size, size, size), dtype=bool)
    for voxel in voxels:
        grid[voxel] = True
    return grid


A = _grid((0, 0, 0), (0, 0, 1))  # 2 voxels
B = _grid((0, 0, 1), (1, 1, 1), (2, 2, 2))  # 3 voxels, 1 shared with A
C = _grid((3, 3, 3))
EMPTY = _grid()


def test_pairwise_iou_by_hand():
    iou = pairwise_iou(np.stack([A, EMPTY]), np.stack([B, A, EMPTY]))
    # A vs B: 1 / (2 + 3 - 1) = 0.25; A vs A: 1; A vs empty: 0; empty vs empty: 1 (documented)
    assert iou.tolist() == [[0.25, 1.0, 0.0], [0.0, 0.0, 1.0]]


def test_pairwise_iou_of_single_grids_by_hand():
    a, b = np.zeros((4, 4, 4), dtype=bool), np.zeros((4, 4, 4), dtype=bool)
    a[0, 0, :4] = True  # voxels (0,0,0..3)
    b[0, 0, 2:] = True  # voxels (0,0,2..3)
    b[1, 1, :2] = True  # and (1,1,0..1)
    # overlap {(0,0,2), (0,0,3)} = 2 voxels; union = 4 + 4 - 2 = 6 -> 2/6 = 1/3
    assert pairwise_iou(a[None], b[None])[0, 0] == pytest.approx(1 / 3)
    assert pairwise_iou(a[None], np.stack([a, ~a])).tolist() == [[1.0, 0.0]]


def test_best_class_iou_only_looks_within_the_query_class():
    gallery, gallery_labels = np.stack([B, C, A]), np.array([0, 0, 1])
    # query 0 (class 0) = A: best of IoU(A, B) = 0.25 and IoU(A, C) = 0; A itself is class 1, not counted
    # query 1 (class 1) = B: IoU(B, A) = 0.25
    scores = best_class_iou(np.stack([A, B]), np.array([0, 1]), gallery, gallery_labels)
    assert scores.tolist() == [0.25, 0.25]


def test_nearest_model_baseline_scores_one_for_a_right_class_pick():
    gallery, gallery_labels = np.stack([B, C, A]), np.array([0, 0, 1])
    # query 0 (class 0) picks model 1 (C, class 0): 1; query 1 (class 1) picks model 0 (B): IoU(B, A) = 0.25
    assert nearest_model_iou(np.array([1, 0]), np.array([0, 1]), gallery, gallery_labels).tolist() == [
        1.0,
        0.25,
    ]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="no gallery model"):
        best_class_iou(np.stack([A]), np.array([2]), np.stack([B]), np.array([0]))
    with pytest.raises(ValueError, match=r"\[N, R, R, R\]"):
        pairwise_iou(A, np.stack([B]))
    with pytest.raises(ValueError, match="cannot be compared"):
        pairwise_iou(np.stack([A]), np.stack([_grid(size=2)]))
