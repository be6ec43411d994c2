"""Metric-learning losses of the ZS-SBIR reference table (Yelamarthi et al., ECCV'18, Table 2: Siamese-1,
Siamese-2, coarse- and fine-grained triplet), on Euclidean distances between embeddings.

Every loss takes per-item distances ``d`` (``[N]``, from :func:`euclidean_distance`) and returns the mean
over the N items (the batch reduction of this suite; the papers state none).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

CHOPRA_EXPONENT = 2.77  # Chopra, Hadsell & LeCun (CVPR 2005), eq. 9: the constant in exp(-2.77 E / Q)


def euclidean_distance(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise ``d = ‖a − b‖₂``: ``[N, k], [N, k] → [N]`` (its gradient at ``a == b`` is 0, not NaN)."""
    return torch.linalg.vector_norm(a - b, dim=-1)


def contrastive_loss(distance: Tensor, same: Tensor, *, margin: float) -> Tensor:
    """Siamese-1 (Hadsell, Chopra & LeCun, CVPR 2006):
    ``mean_i [ y_i·d_i² + (1 − y_i)·max(0, m − d_i)² ]``, y = 1 for a pair of the same class."""
    y = same.to(distance.dtype)
    return (y * distance.square() + (1 - y) * (margin - distance).clamp(min=0).square()).mean()


def chopra_energy_loss(distance: Tensor, same: Tensor, *, q: float) -> Tensor:
    """Siamese-2 (Chopra, Hadsell & LeCun, CVPR 2005, eq. 9 with E = d):
    ``mean_i [ y_i·(2/Q)·d_i² + (1 − y_i)·2Q·exp(−2.77·d_i/Q) ]``, Q the upper bound of the energy."""
    y = same.to(distance.dtype)
    genuine = (2.0 / q) * distance.square()
    impostor = 2.0 * q * torch.exp(-CHOPRA_EXPONENT * distance / q)
    return (y * genuine + (1 - y) * impostor).mean()


def triplet_margin_loss(positive_distance: Tensor, negative_distance: Tensor, *, margin: float) -> Tensor:
    """Triplet loss (Sangkloy et al., SIGGRAPH 2016): ``mean_i max(0, m + d(s_i, p⁺_i) − d(s_i, p⁻_i))``."""
    return (margin + positive_distance - negative_distance).clamp(min=0).mean()


def check_positive(name: str, value: float) -> None:
    """A margin or Q must be a finite positive number."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value}")


__all__ = [
    "CHOPRA_EXPONENT",
    "check_positive",
    "chopra_energy_loss",
    "contrastive_loss",
    "euclidean_distance",
    "triplet_margin_loss",
]
