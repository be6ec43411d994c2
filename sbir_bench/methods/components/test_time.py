"""Test-time averaging over crops and flips ("oversampling"), as Yu et al. (CVPR'16, "Sketch Me That Shoe")
evaluate their triplet network: the embedding of an image is the mean of the embeddings of its four corner
crops and its centre crop (225 of 256 pixels there), each also mirrored: 10 views.

The suite serves evaluation images at one size S (a plain resize); each crop of ``round(crop_fraction · S)``
pixels is resized back to S (bilinear), so any network that takes the served size takes the crops.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

TEN_CROP_FRACTION = 225 / 256  # Yu et al.: 225-pixel crops of 256-pixel images
TEST_CROPS = (1, 10)  # 1: the served image alone; 10: corners + centre, each mirrored


def ten_crops(images: Tensor, crop_fraction: float = TEN_CROP_FRACTION) -> Tensor:
    """``[10, B, C, S, S]``: top-left, top-right, bottom-left, bottom-right and centre crops of
    ``round(crop_fraction · S)`` pixels resized back to S, then the same five mirrored left-right."""
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"ten_crops takes square image batches [B, C, S, S], got {tuple(images.shape)}")
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    size = images.shape[-1]
    crop = max(1, round(crop_fraction * size))
    far, middle = size - crop, (size - crop) // 2
    corners = [(0, 0), (0, far), (far, 0), (far, far), (middle, middle)]
    crops = [images[..., top : top + crop, left : left + crop] for top, left in corners]
    resized = [F.interpolate(c, size=(size, size), mode="bilinear", align_corners=False) for c in crops]
    five = torch.stack(resized)
    return torch.cat([five, five.flip(-1)])


def crop_averaged(embed: Callable[[Tensor], Tensor], images: Tensor, crops: int) -> Tensor:
    """The mean of ``embed`` over the :func:`ten_crops` of ``images`` (``crops=10``), or ``embed(images)``
    (``crops=1``)."""
    if crops not in TEST_CROPS:
        raise ValueError(f"test_crops must be one of {TEST_CROPS}, got {crops}")
    if crops == 1:
        return embed(images)
    views = ten_crops(images)
    embeddings = embed(views.flatten(0, 1))
    return embeddings.unflatten(0, (views.shape[0], images.shape[0])).mean(dim=0)
