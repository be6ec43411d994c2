"""Losses of the barycentric metric networks of Xie, Dai, Zhu, Fang, "Learning barycentric representations of
3D shapes for sketch-based 3D shape retrieval" (CVPR'17): a sketch network f and a barycentre network g,

    L = L_cross + λ·(S(f(sketches)) + S(g(barycentres)))

- L_cross, the discriminative cross-domain loss over every (sketch, shape) pair at squared distance
  D² = ‖f(s_i) − g(b_j)‖²: ``y·D² + (1 − y)·max(0, α − D²)`` (y = 1 same class), averaged over the pairs;
- S, the within-domain scatter terms (eq. 14 of the paper, as we read it): the within-class scatter
  ``mean_i ‖z_i − μ_{y_i}‖²`` (class means μ of the batch) plus the between-class scatter pushed above the
  same margin, ``mean_{c < c'} max(0, α − ‖μ_c − μ_c'‖²)`` (a plain −tr(S_b) would be unbounded).

Every term is a mean (over pairs, items or class pairs), so α and λ do not depend on the batch size.
"""

from __future__ import annotations

import torch
from torch import Tensor


def cross_domain_loss(
    sketch: Tensor, sketch_labels: Tensor, shape: Tensor, shape_labels: Tensor, margin: float
) -> Tensor:
    """L_cross: ``y·D² + (1 − y)·max(0, α − D²)`` averaged over all (sketch, shape) pairs."""
    squared = (sketch.unsqueeze(1) - shape.unsqueeze(0)).square().sum(dim=-1)  # [N, M]
    same = (sketch_labels.unsqueeze(1) == shape_labels.unsqueeze(0)).to(squared.dtype)
    return (same * squared + (1 - same) * (margin - squared).clamp(min=0)).mean()


def class_means(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(the classes present [C], their mean embeddings [C, k]) and, per item, its class's position [N]."""
    classes, position = torch.unique(labels, return_inverse=True)
    sums = torch.zeros(len(classes), embeddings.shape[1], dtype=embeddings.dtype, device=embeddings.device)
    sums = sums.index_add(0, position, embeddings)
    counts = torch.bincount(position, minlength=len(classes)).to(embeddings.dtype)
    return sums / counts.unsqueeze(1), position


def within_class_scatter(embeddings: Tensor, labels: Tensor) -> Tensor:
    """``mean_i ‖z_i − μ_{y_i}‖²`` (tr S_w / N)."""
    means, position = class_means(embeddings, labels)
    return (embeddings - means[position]).square().sum(dim=-1).mean()


def between_class_hinge(embeddings: Tensor, labels: Tensor, margin: float) -> Tensor:
    """``mean_{c < c'} max(0, α − ‖μ_c − μ_c'‖²)`` over the classes of the batch (0 with one class)."""
    means, _ = class_means(embeddings, labels)
    i, j = torch.triu_indices(len(means), len(means), offset=1, device=means.device).unbind(0)
    if i.numel() == 0:
        return embeddings.sum() * 0
    return (margin - (means[i] - means[j]).square().sum(dim=-1)).clamp(min=0).mean()


def scatter_loss(embeddings: Tensor, labels: Tensor, margin: float) -> Tensor:
    """S: one domain's within-class scatter plus its hinged between-class scatter."""
    return within_class_scatter(embeddings, labels) + between_class_hinge(embeddings, labels, margin)


def barycentric_total_loss(
    cross: Tensor, sketch_scatter: Tensor, shape_scatter: Tensor, scatter_weight: float
) -> Tensor:
    """``L = L_cross + λ·(S_sketch + S_shape)``."""
    return cross + scatter_weight * (sketch_scatter + shape_scatter)
