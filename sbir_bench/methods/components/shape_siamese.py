"""The loss of the Siamese networks for sketch-based 3D shape retrieval (Wang, Kang & Li, "Sketch-based 3D
Shape Retrieval using Convolutional Neural Networks", CVPR 2015), after Chopra, Hadsell & LeCun (CVPR 2005).

Per pair (a, b) with D = ‖f(a) − f(b)‖ (Wang et al., eq. 1):
``L(a, b, y) = (1 − y)·α·D² + y·β·e^{γD}``, α = 1/C_p, β = C_n, γ = −2.77/C_n, C_p = 0.2, C_n = 10,
where y = 0 marks a *similar* pair (same class) and y = 1 a dissimilar one (Chopra et al.'s convention).
The total (eq. 2) sums the sketch–sketch, view–view and sketch–view terms.

The pairs are formed within a class batch (:func:`batch_pairs`): all pairs of two sets of embeddings;
:func:`balanced_pair_loss` weighs the similar and the dissimilar pairs equally (the mean of each set), the
expectation over a balanced sample of pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

WANG_CP = 0.2  # C_p of Wang et al. (CVPR'15)
WANG_CN = 10.0  # C_n
WANG_EXPONENT = 2.77  # γ = −2.77 / C_n (Chopra et al., CVPR'05, eq. 9)


def exponential_contrastive_loss(
    distance: Tensor, dissimilar: Tensor, *, cp: float = WANG_CP, cn: float = WANG_CN
) -> Tensor:
    """Wang et al. (CVPR'15), eq. 1, per pair: ``(1 − y)·(1/C_p)·D² + y·C_n·exp(−2.77·D/C_n)``.

    ``distance`` D ``[N]``, ``dissimilar`` y ``[N]`` (bool or 0/1; y = 0 for a similar pair) → ``[N]``.
    """
    y = dissimilar.to(distance.dtype)
    alpha, beta, gamma = 1.0 / cp, cn, -WANG_EXPONENT / cn
    return (1 - y) * alpha * distance.square() + y * beta * torch.exp(gamma * distance)


def pairwise_euclidean(a: Tensor, b: Tensor) -> Tensor:
    """``D_ij = ‖a_i − b_j‖₂``: ``[N, k], [M, k] → [N, M]``, with gradient 0 (not NaN) where a_i = b_j."""
    return torch.linalg.vector_norm(a.unsqueeze(1) - b.unsqueeze(0), dim=-1)


@dataclass(frozen=True)
class Pairs:
    """Distances D and dissimilarity flags y (True: different classes) of a set of pairs, each ``[P]``."""

    distance: Tensor
    dissimilar: Tensor


def batch_pairs(
    a: Tensor, a_labels: Tensor, b: Tensor | None = None, b_labels: Tensor | None = None
) -> Pairs:
    """All pairs of a batch: every (a_i, b_j) across two sets, or, with ``b`` None, every unordered pair
    (a_i, a_j), i < j, within one set (an item is not paired with itself)."""
    if b is None:
        rows, cols = torch.triu_indices(len(a), len(a), offset=1, device=a.device)
        distance = torch.linalg.vector_norm(a[rows] - a[cols], dim=-1)
        return Pairs(distance, a_labels[rows] != a_labels[cols])
    if b_labels is None:
        raise ValueError("batch_pairs across two sets needs the labels of both")
    return Pairs(
        pairwise_euclidean(a, b).flatten(), (a_labels.unsqueeze(1) != b_labels.unsqueeze(0)).flatten()
    )


def balanced_pair_loss(pairs: Pairs, *, cp: float = WANG_CP, cn: float = WANG_CN) -> Tensor:
    """Eq. 1 averaged over the similar pairs plus eq. 1 averaged over the dissimilar pairs (a set with no
    pair adds 0): similar and dissimilar pairs weigh the same whatever their numbers in the batch."""
    losses = exponential_contrastive_loss(pairs.distance, pairs.dissimilar, cp=cp, cn=cn)
    total = losses.new_zeros(())
    for mask in (~pairs.dissimilar, pairs.dissimilar):
        if mask.any():
            total = total + losses[mask].mean()
    return total


def min_view_distance(queries: Tensor, views: Tensor) -> Tensor:
    """Wang et al.'s sketch-to-shape distance: the smallest distance from a query to any of the shape's
    views. ``queries [Q, k]``, ``views [G, V, k]`` → ``[Q, G]`` (exact distances, no ``[Q, G·V, k]``
    difference tensor: galleries of thousands of shapes fit in memory)."""
    g, v, k = views.shape
    distance = torch.cdist(queries, views.reshape(g * v, k), compute_mode="donot_use_mm_for_euclid_dist")
    return distance.reshape(len(queries), g, v).amin(dim=-1)


__all__ = [
    "WANG_CN",
    "WANG_CP",
    "WANG_EXPONENT",
    "Pairs",
    "balanced_pair_loss",
    "batch_pairs",
    "exponential_contrastive_loss",
    "min_view_distance",
    "pairwise_euclidean",
]
