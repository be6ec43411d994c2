"""Losses of the cross-modal guidance network (Dai & Liang, "Cross-Modal Guidance Network for Sketch-Based
3D Shape Retrieval", ICME'20).

- the teacher's AM-softmax (additive margin softmax; Wang, Cheng, Liu, Liu, "Additive Margin Softmax for Face
  Verification", SPL 2018): ``−log( e^{s(cos θ_y − m)} / (e^{s(cos θ_y − m)} + Σ_{c≠y} e^{s cos θ_c}) )``,
  θ_c the angle between the feature and class weight w_c (s = 15, m = 0.35 in the same lab's code);
- the class centres: the mean teacher feature of each class (of L2-normalised features);
- the student's guidance loss ``L_G = −L_c + λ·L_a``: L_c the cosine of a sketch feature to its own class
  centre (maximised), L_a the summed cosine to the other classes' centres (minimised), averaged over the
  sketches. The seed text writes L_G = L_c − λ·L_a with L_c, L_a as cosine similarities; the direction that
  pulls a sketch towards its own centre is the one optimised here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cosine_logits(features: Tensor, class_weights: Tensor) -> Tensor:
    """``cos θ[i, c]`` between each feature and each class weight: ``[N, k], [K, k] → [N, K]``."""
    return F.normalize(features, dim=-1) @ F.normalize(class_weights, dim=-1).T


def am_softmax_loss(cosines: Tensor, labels: Tensor, *, scale: float, margin: float) -> Tensor:
    """AM-softmax: cross-entropy of ``s·(cos θ − m·onehot(y))``, averaged over the N rows of ``cosines``."""
    target = F.one_hot(labels, cosines.shape[1]).to(cosines.dtype)
    return F.cross_entropy(scale * (cosines - margin * target), labels)


def class_mean_sums(features: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class sums of L2-normalised features and counts (``[K, k]``, ``[K]``), to accumulate centres."""
    normalised = F.normalize(features, dim=-1)
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, normalised)
    counts = torch.bincount(labels, minlength=num_classes).to(features.dtype)
    return sums, counts


def guidance_loss(sketch: Tensor, labels: Tensor, centres: Tensor, known: Tensor, *, weight: float) -> Tensor:
    """``mean_i [ −cos(s_i, c_{y_i}) + λ·Σ_{c≠y_i, c known} cos(s_i, c_c) ]``: ``sketch [N, k]``, ``centres
    [K, k]``, ``known [K]`` bool (classes that have a centre); a sketch whose class has no centre is left out
    of the mean (the loss is then 0 with a zero gradient)."""
    cosines = cosine_logits(sketch, centres)  # [N, K]
    own = F.one_hot(labels, centres.shape[0]).bool()
    others = (~own & known.unsqueeze(0)).to(cosines.dtype)
    per_sketch = -cosines[own] + weight * (cosines * others).sum(dim=1)
    usable = known[labels]
    if not usable.any():
        return sketch.sum() * 0
    return per_sketch[usable].mean()


__all__ = ["am_softmax_loss", "class_mean_sums", "cosine_logits", "guidance_loss"]
