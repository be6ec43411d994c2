"""Parts of the semantics-preserving adversarial cross-modality adaptation (Chen & Fang, "Deep Cross-modality
Adaptation via Semantics Preserving Adversarial Learning for Sketch-based 3D Shape Retrieval", ECCV'18).

- the metric networks: ``Linear → ReLU → BatchNorm`` per hidden width, the last layer ``Linear → Tanh``
  (a public reimplementation: 2048 → 1024 → 512 → 256 → 128);
- the transformation network (sketch embedding → shape embedding space, 128 → 64 → 32 → 64 → 128) and the
  discriminator (128 → 64 → 1, one logit: "a shape embedding");
- importance-aware metric learning (IAML): for each anchor its hardest positive (the farthest candidate of
  its class) and its hardest negative (the nearest candidate of another class) in the batch, hinge
  ``max(0, η − (d_neg − d_pos))`` on Euclidean distances, averaged over the anchors that have both;
- the class-mean discrepancy ``L_CMD = Σ_y ‖mean(z_t | y) − mean(z_shape | y)‖`` over the
  classes of the batch;
- the GAN losses (the standard non-saturating GAN of Goodfellow et al. 2014 on logits):
  ``L_D = −mean log σ(D(z_shape)) − mean log(1 − σ(D(z_t)))`` and ``L_G = −mean log σ(D(z_t))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def metric_net(in_features: int, widths: Sequence[int]) -> nn.Sequential:
    """The per-modality metric network: ``Linear → ReLU → BatchNorm1d`` for each hidden width, then
    ``Linear → Tanh`` (the embedding, in [−1, 1])."""
    if not widths:
        raise ValueError("a metric network needs at least one layer width")
    layers: list[nn.Module] = []
    for width in widths[:-1]:
        layers += [nn.Linear(in_features, width), nn.ReLU(), nn.BatchNorm1d(width)]
        in_features = width
    layers += [nn.Linear(in_features, widths[-1]), nn.Tanh()]
    return nn.Sequential(*layers)


def transformation_net(widths: Sequence[int]) -> nn.Sequential:
    """Sketch embedding → shape embedding space: ``widths = (k, h1, ..., k)``; ``Linear → ReLU`` between
    hidden widths, the last layer ``Linear → Tanh`` (the range of the shape embeddings)."""
    if len(widths) < 2 or widths[0] != widths[-1]:
        raise ValueError(f"the transformation maps k-d embeddings to k-d: widths (k, ..., k), got {widths}")
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        layers.append(nn.ReLU() if i < len(widths) - 2 else nn.Tanh())
    return nn.Sequential(*layers)


def discriminator_net(widths: Sequence[int]) -> nn.Sequential:
    """``widths = (k, h, ..., 1)``: ``Linear → LeakyReLU(0.2)`` between layers, a logit out."""
    if len(widths) < 2 or widths[-1] != 1:
        raise ValueError(f"the discriminator ends in one logit: widths (k, ..., 1), got {widths}")
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


def importance_aware_loss(
    anchors: Tensor, anchor_labels: Tensor, candidates: Tensor, candidate_labels: Tensor, margin: float
) -> Tensor:
    """IAML: ``mean_i max(0, η − (min_{j: y_j ≠ y_i} d_ij − max_{j: y_j = y_i} d_ij))``, ``d`` Euclidean
    between anchor i and candidate j. Within one modality pass the same tensor as both (an anchor's distance
    to itself is 0, never the farthest positive unless it is alone). Anchors with no positive or no negative
    candidate are left out (0 with a zero gradient when none is left)."""
    distances = torch.cdist(anchors, candidates)  # [N, M]
    same = anchor_labels.unsqueeze(1) == candidate_labels.unsqueeze(0)
    hardest_positive = distances.masked_fill(~same, float("-inf")).amax(dim=1)
    hardest_negative = distances.masked_fill(same, float("inf")).amin(dim=1)
    usable = same.any(dim=1) & (~same).any(dim=1)
    if not usable.any():
        return anchors.sum() * 0
    hinge = F.relu(margin - (hardest_negative - hardest_positive))
    return hinge[usable].mean()


def class_mean_discrepancy(
    transformed: Tensor, transformed_labels: Tensor, shapes: Tensor, shape_labels: Tensor
) -> Tensor:
    """``L_CMD = Σ_y ‖mean(z_t | y) − mean(z_shape | y)‖`` (Euclidean norm), over the classes that have both
    transformed sketches and shapes in the batch."""
    classes = [c for c in torch.unique(transformed_labels).tolist() if (shape_labels == c).any()]
    if not classes:
        return transformed.sum() * 0
    gaps = [
        transformed[transformed_labels == c].mean(dim=0) - shapes[shape_labels == c].mean(dim=0)
        for c in classes
    ]
    return torch.stack(gaps).norm(dim=1).sum()


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``L_D = −mean log σ(real) − mean log(1 − σ(fake))``: shape embeddings real, transformed sketches
    fake."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: Tensor) -> Tensor:
    """``L_G = −mean log σ(D(z_t))`` (non-saturating): the transformation fools the discriminator."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


__all__ = [
    "class_mean_discrepancy",
    "discriminator_loss",
    "discriminator_net",
    "generator_loss",
    "importance_aware_loss",
    "metric_net",
    "transformation_net",
]
