"""Pieces of the cross-domain neural networks CDNN / PCDNN (Zhu, Xie & Fang, "Learning Cross-Domain Neural
Networks for Sketch-Based 3D Shape Retrieval", AAAI 2016).

Each domain's network h_W regresses its input features onto a target vector t_y of the item's class, the
same targets for sketches and shapes, with weight decay: ``min_W Σ_i ‖t_{y_i} − h_W(x_i)‖² + λ·Σ_l ‖W_l‖²``.
The pyramid variant runs one such pair of networks per pooling level of the features.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn


def class_target_codes(num_classes: int, dim: int, seed: int) -> Tensor:
    """Fixed class target vectors ``[num_classes, dim]``: orthonormal rows (unit length, pairwise orthogonal,
    so every two classes' targets lie √2 apart), the first ``num_classes`` columns of the Q factor of a
    seeded Gaussian ``[dim, num_classes]`` matrix. Needs ``dim >= num_classes``."""
    if num_classes < 1 or dim < num_classes:
        raise ValueError(
            f"class targets need 1 <= num_classes <= dim, got {num_classes} classes and dim {dim}"
        )
    gaussian = torch.randn(
        dim, num_classes, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # the unique QR with a positive diagonal: stable
    return q.T.contiguous().float()


def target_regression_loss(output: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
    """The data term of CDNN (Zhu et al., AAAI'16): ``mean_i ‖t_{y_i} − h_W(x_i)‖²`` (squared Euclidean
    norm summed over the target's dimensions, averaged over the batch). ``output [N, k]``, ``labels [N]``,
    ``targets [num_classes, k]``."""
    return (targets[labels] - output).square().sum(dim=-1).mean()


def weight_penalty(modules: Iterable[nn.Module]) -> Tensor:
    """The weight decay term of CDNN: ``Σ_l ‖W_l‖²_F`` over the weight matrices of every Linear layer (biases
    are not decayed)."""
    weights = [m.weight for module in modules for m in module.modules() if isinstance(m, nn.Linear)]
    if not weights:
        raise ValueError("weight_penalty found no Linear layer")
    return torch.stack([w.square().sum() for w in weights]).sum()


def pyramid_slices(feature_dim: int, levels: Sequence[int]) -> list[slice]:
    """Where each pooling level lies in a pyramid feature: the backbone's d channels pooled on an L×L grid per
    level, level-major (level 1 = d values, level 2 = 4d, level 4 = 16d, ...), so the total width is
    d·Σ L². A width that is not a multiple of Σ L² is a clear error."""
    cells = sum(level * level for level in levels)
    if not levels or min(levels) < 1 or feature_dim % cells:
        raise ValueError(
            f"a feature pyramid with levels {tuple(levels)} has width d·{cells}; got features of width "
            f"{feature_dim} (the data must be served with the same feature_pyramid)"
        )
    channels, start, slices = feature_dim // cells, 0, []
    for level in levels:
        slices.append(slice(start, start + channels * level * level))
        start += channels * level * level
    return slices


__all__ = ["class_target_codes", "pyramid_slices", "target_regression_loss", "weight_penalty"]
