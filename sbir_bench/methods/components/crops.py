"""Crops and flips as Yu et al. (CVPR'16, "Sketch Me That Shoe") train and test their triplet network
(225-pixel crops of 256-pixel images, mirrored).

- Training (:func:`random_crops`): each image of a batch is a random crop, mirrored with probability ½ (the
  Caffe data layer's ``crop_size`` and ``mirror``).
- Test time (:func:`crop_averaged`, "oversampling"): the embedding of an image is the mean of the
  embeddings of its four corner crops and its centre crop, each also mirrored: 10 views.

The suite serves images at one size S (a plain resize); each crop of ``round(crop_fraction · S)`` pixels is
resized back to S (bilinear), so any network that takes the served size takes the crops.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

TEN_CROP_FRACTION = 225 / 256  # Yu et al.: 225-pixel crops of 256-pixel images
TEST_CROPS = (1, 10)  # 1: the served image alone; 10: corners + centre, each mirrored


def _check_square(images: Tensor, crop_fraction: float, name: str) -> None:
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"{name} takes square image batches [B, C, S, S], got {tuple(images.shape)}")
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")


def random_crops(
    images: Tensor, crop_fraction: float = TEN_CROP_FRACTION, generator: torch.Generator | None = None
) -> Tensor:
    """``[B, C, S, S]``: for each image a crop of ``round(crop_fraction · S)`` pixels at a uniformly random
    position, mirrored left-right with probability ½, resized back to S (draws from ``generator``, else
    torch's global generator, on the CPU)."""
    _check_square(images, crop_fraction, "random_crops")
    size, batch = images.shape[-1], images.shape[0]
    crop = max(1, round(crop_fraction * size))
    offsets = torch.randint(size - crop + 1, (batch, 2), generator=generator).tolist()
    mirrored = (torch.rand(batch, generator=generator) < 0.5).tolist()
    crops = []
    for image, (top, left), mirror in zip(images, offsets, mirrored, strict=True):
        patch = image[:, top : top + crop, left : left + crop]
        crops.append(patch.flip(-1) if mirror else patch)
    return F.interpolate(torch.stack(crops), size=(size, size), mode="bilinear", align_corners=False)


def ten_crops(images: Tensor, crop_fraction: float = TEN_CROP_FRACTION) -> Tensor:
    """``[10, B, C, S, S]``: top-left, top-right, bottom-left, bottom-right and centre crops of
    ``round(crop_fraction · S)`` pixels resized back to S, then the same five mirrored left-right."""
    _check_square(images, crop_fraction, "ten_crops")
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
