"""Losses of Deep Correlated Metric Learning (Dai, Xie, Fang, Wang, Fang, "Deep Correlated Metric Learning
for Sketch-based 3D Shape Retrieval", AAAI'17):

    L = α·L_d + (1 − α)·L_c + λ·(‖W_s‖² + ‖W_t‖²),   L_c = L1c + L2c

- L_d, the discriminative loss within each domain (sketch, shape): for a pair at distance D,
  ``y·D² + (1 − y)·max(0, h − D)²`` (y = 1 same class), averaged over the domain's pairs i < j, the two
  domains' means summed;
- L1c, the same contrastive form over every (sketch, shape) pair;
- L2c, the distance-structure term on the within-domain distances of corresponding items:
  ``R_ij = (‖f_s(x_i) − f_s(x_j)‖ − ‖f_t(y_i) − f_t(y_j)‖)²``, minimised for a same-class pair (i, j) and
  "maximised" otherwise. Maximising R is unbounded, so here it is bounded by the same hinge:
  ``y·R + (1 − y)·max(0, h − √R)²`` (a different-class pair costs nothing once its two distances differ by
  at least h);
- the penalty on every weight matrix (biases excluded) of both maps, written out (not Adam's weight decay).

Distances are Euclidean; every term is a mean over its pairs (the paper states sums; a mean keeps α, λ and
h independent of the batch size).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


def pairwise_euclidean(a: Tensor, b: Tensor) -> Tensor:
    """``D[i, j] = ‖a_i − b_j‖₂``: ``[N, k], [M, k] → [N, M]`` (gradient 0, not NaN, at a zero distance)."""
    return torch.linalg.vector_norm(a.unsqueeze(1) - b.unsqueeze(0), dim=-1)


def contrastive_terms(distance: Tensor, same: Tensor, margin: float) -> Tensor:
    """Per-pair ``y·D² + (1 − y)·max(0, h − D)²`` (y = 1 for a same-class pair), elementwise."""
    y = same.to(distance.dtype)
    return y * distance.square() + (1 - y) * (margin - distance).clamp(min=0).square()


def upper_pairs(n: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Index vectors of the pairs i < j of n items."""
    return torch.triu_indices(n, n, offset=1, device=device).unbind(0)


def within_domain_loss(embeddings: Tensor, labels: Tensor, margin: float) -> Tensor:
    """One domain's share of L_d: the contrastive form averaged over its pairs i < j ([N, k], [N] → [])."""
    i, j = upper_pairs(len(labels), embeddings.device)
    if i.numel() == 0:
        return embeddings.sum() * 0
    distance = torch.linalg.vector_norm(embeddings[i] - embeddings[j], dim=-1)
    return contrastive_terms(distance, labels[i] == labels[j], margin).mean()


def discriminative_loss(
    sketch: Tensor, sketch_labels: Tensor, shape: Tensor, shape_labels: Tensor, margin: float
) -> Tensor:
    """L_d: the within-domain contrastive loss of the sketches plus that of the shapes."""
    return within_domain_loss(sketch, sketch_labels, margin) + within_domain_loss(shape, shape_labels, margin)


def cross_domain_loss(
    sketch: Tensor, sketch_labels: Tensor, shape: Tensor, shape_labels: Tensor, margin: float
) -> Tensor:
    """L1c: the contrastive form over every (sketch, shape) pair, averaged."""
    same = sketch_labels.unsqueeze(1) == shape_labels.unsqueeze(0)
    return contrastive_terms(pairwise_euclidean(sketch, shape), same, margin).mean()


def class_couples(sketch_labels: Tensor, shape_labels: Tensor) -> tuple[Tensor, Tensor]:
    """Corresponding (sketch x_i, shape y_i) items for L2c: the r-th sketch of a class in the batch is coupled
    with the (r mod m)-th of the m shapes of that class in the batch; sketches of a class with no shape in
    the batch are left out. Returns (sketch positions, shape positions)."""
    sketch_positions, shape_positions = [], []
    for label in torch.unique(sketch_labels).tolist():
        sketches = torch.nonzero(sketch_labels == label).flatten()
        shapes = torch.nonzero(shape_labels == label).flatten()
        if shapes.numel() == 0:
            continue
        sketch_positions.append(sketches)
        shape_positions.append(shapes[torch.arange(len(sketches), device=shapes.device) % len(shapes)])
    if not sketch_positions:
        empty = torch.zeros(0, dtype=torch.long, device=sketch_labels.device)
        return empty, empty
    return torch.cat(sketch_positions), torch.cat(shape_positions)


def distance_structure_loss(
    sketch_distance: Tensor, shape_distance: Tensor, same: Tensor, margin: float
) -> Tensor:
    """L2c over coupled pairs (i, j): ``R = (D_s − D_t)²`` for a same-class pair, ``max(0, h − |D_s − D_t|)²``
    otherwise (the bounded "maximise R"; module docstring), averaged. Inputs: ``[P]`` distances and flags."""
    if sketch_distance.numel() == 0:
        return sketch_distance.sum() * 0
    return contrastive_terms((sketch_distance - shape_distance).abs(), same, margin).mean()


def correlation_loss(
    sketch: Tensor, sketch_labels: Tensor, shape: Tensor, shape_labels: Tensor, margin: float
) -> tuple[Tensor, Tensor]:
    """(L1c, L2c) of a batch; L2c on the pairs i < j of the :func:`class_couples`."""
    l1c = cross_domain_loss(sketch, sketch_labels, shape, shape_labels, margin)
    sketch_at, shape_at = class_couples(sketch_labels, shape_labels)
    i, j = upper_pairs(len(sketch_at), sketch.device)
    sketch_distance = torch.linalg.vector_norm(sketch[sketch_at[i]] - sketch[sketch_at[j]], dim=-1)
    shape_distance = torch.linalg.vector_norm(shape[shape_at[i]] - shape[shape_at[j]], dim=-1)
    same = sketch_labels[sketch_at[i]] == sketch_labels[sketch_at[j]]
    return l1c, distance_structure_loss(sketch_distance, shape_distance, same, margin)


def weight_penalty(modules: Iterable[nn.Module]) -> Tensor:
    """``Σ ‖W‖²_F`` over the weight matrices of every Linear layer in ``modules`` (biases excluded)."""
    squares = [
        layer.weight.square().sum() for m in modules for layer in m.modules() if isinstance(layer, nn.Linear)
    ]
    return torch.stack(squares).sum()


def dcml_total_loss(
    discriminative: Tensor, correlation: Tensor, penalty: Tensor, *, alpha: float, weight_decay: float
) -> Tensor:
    """``α·L_d + (1 − α)·L_c + λ·(‖W_s‖² + ‖W_t‖²)`` with L_c = L1c + L2c already summed."""
    return alpha * discriminative + (1 - alpha) * correlation + weight_decay * penalty


__all__ = [
    "class_couples",
    "contrastive_terms",
    "correlation_loss",
    "cross_domain_loss",
    "dcml_total_loss",
    "discriminative_loss",
    "distance_structure_loss",
    "pairwise_euclidean",
    "upper_pairs",
    "weight_penalty",
    "within_domain_loss",
]
