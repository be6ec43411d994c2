"""Losses and the refinement step of open cross-domain visual search (Thong, Mettes, Snoek, "Open
Cross-Domain Visual Search", CVIU 2020).

- the prototype loss: every domain's encoder maps an item x into the space of fixed class prototypes p_c
  (class side information, e.g. word vectors of the class names), trained with
  ``−log( exp(cos(x, p_y)/T) / Σ_c exp(cos(x, p_c)/T) )``, T = 0.1, the prototypes frozen;
- the optional refinement: a query q is pulled towards its nearest gallery neighbour g (by cosine) along the
  great circle, ``q' = slerp(q, g, 0.4)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def prototype_loss(embeddings: Tensor, labels: Tensor, prototypes: Tensor, *, temperature: float) -> Tensor:
    """``mean_i −log softmax_c(cos(x_i, p_c)/T)[y_i]``: ``[N, k]``, ``[N]`` positions into the ``[C, k]``
    prototypes (the classes the softmax runs over)."""
    cosines = F.normalize(embeddings, dim=-1) @ F.normalize(prototypes, dim=-1).T
    return F.cross_entropy(cosines / temperature, labels)


def slerp(a: Tensor, b: Tensor, weight: float) -> Tensor:
    """Spherical interpolation of the rows of unit vectors a, b: ``sin((1−t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b``
    with cos Ω = a·b; linear interpolation (renormalised) where the two are (anti)parallel."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    cos = (a * b).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    degenerate = sin.abs() < 1e-6
    safe = torch.where(degenerate, torch.ones_like(sin), sin)
    spherical = (torch.sin((1 - weight) * omega) * a + torch.sin(weight * omega) * b) / safe
    linear = F.normalize((1 - weight) * a + weight * b + 1e-12, dim=-1)
    return torch.where(degenerate, linear, spherical)


def refine_towards_nearest(queries: Tensor, gallery: Tensor, weight: float) -> Tensor:
    """Each query moved to ``slerp(q, g_nn, weight)``, g_nn its nearest gallery item by cosine (the first on
    ties): ``[Q, k], [G, k] → [Q, k]`` unit vectors."""
    q, g = F.normalize(queries, dim=-1), F.normalize(gallery, dim=-1)
    nearest = (q @ g.T).argmax(dim=1)
    return slerp(q, g[nearest], weight)


__all__ = ["prototype_loss", "refine_towards_nearest", "slerp"]
