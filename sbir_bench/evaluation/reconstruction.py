"""Voxel IoU of sketch → 3D reconstructions (Wang et al., ACM MM'18, report it beside retrieval).

A free-hand sketch of SHREC'13/'14 depicts a class, not one model, so a reconstruction has no single ground
truth. The suite scores it against the query's class: **the best IoU between the reconstructed grid and any
gallery model of the query's class, averaged over queries** ("mean best IoU within class"). IoU of two
occupancy grids = |a ∧ b| / |a ∨ b|; two empty grids count as 1. Hand-written: no library scores a batch of
grids against class members with this rule.

A reconstruction that is itself a gallery model of the right class scores 1; so a method that returns its
nearest retrieved model (``nearest_model_iou``, the nearest-neighbour-shape baseline) scores its P@1 plus the
best class IoU of its wrong picks. Both use the same rule, so they are comparable.
"""

from __future__ import annotations

import numpy as np


def _flat(grids: np.ndarray, what: str) -> np.ndarray:
    grids = np.asarray(grids)
    if grids.ndim != 4:
        raise ValueError(f"{what}: expected occupancy grids [N, R, R, R], got shape {grids.shape}")
    return grids.reshape(len(grids), -1).astype(bool)


def pairwise_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``[A, R, R, R]`` and ``[B, R, R, R]`` occupancy grids → ``[A, B]`` IoU (1 where both are empty)."""
    a, b = _flat(first, "pairwise_iou"), _flat(second, "pairwise_iou")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"pairwise_iou: grids of {a.shape[1]} and {b.shape[1]} voxels cannot be compared")
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    intersection = a32 @ b32.T
    union = a32.sum(1)[:, None] + b32.sum(1)[None, :] - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / np.maximum(union, 1), 1.0)


def best_class_iou(
    reconstructions: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray
) -> np.ndarray:
    """Per query: the largest IoU between its reconstruction and a gallery model of its class (``[Q]``);
    a query whose class has no gallery model is an error (nothing to compare against)."""
    query_labels, gallery_labels = np.asarray(query_labels), np.asarray(gallery_labels)
    if len(reconstructions) != len(query_labels) or len(gallery) != len(gallery_labels):
        raise ValueError("best_class_iou: one label per reconstruction and per gallery model")
    missing = np.setdiff1d(query_labels, gallery_labels)
    if len(missing):
        raise ValueError(f"best_class_iou: classes {missing.tolist()} have queries but no gallery model")
    iou = pairwise_iou(reconstructions, gallery)
    same_class = query_labels[:, None] == gallery_labels[None, :]
    return np.where(same_class, iou, -np.inf).max(axis=1)


def nearest_model_iou(
    nearest: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray
) -> np.ndarray:
    """:func:`best_class_iou` of the nearest-neighbour-shape baseline: each query's reconstruction is the
    gallery model at position ``nearest[q]`` (its top retrieved model)."""
    return best_class_iou(np.asarray(gallery)[np.asarray(nearest)], query_labels, gallery, gallery_labels)


__all__ = ["best_class_iou", "nearest_model_iou", "pairwise_iou"]
