"""Class side information for the zero-shot methods; the seen-class split their regularisers are tuned on."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from sbir_bench.data.records import DataInfo

HOW_TO_PROVIDE = (
    "give the data class side information: word vectors of the class names (data.semantics.vectors=FILE) "
    "or a per-class attribute table (data.semantics.attributes=CSV); see configs/data/semantics/"
)

__all__ = ["HOW_TO_PROVIDE", "class_semantics_of", "first_of_each_index", "held_out_classes"]


def class_semantics_of(info: DataInfo, method: str) -> np.ndarray:
    """``info.class_semantics`` ([num_classes, a], float32), checked: present, one finite row per class."""
    semantics = info.class_semantics
    if semantics is None:
        data = f"the dataset {info.dataset!r}" if info.dataset else "the data"
        raise ValueError(f"{method} needs class side information but {data} has none: {HOW_TO_PROVIDE}")
    semantics = np.asarray(semantics, dtype=np.float32)
    if semantics.ndim != 2 or semantics.shape[0] != info.num_classes:
        raise ValueError(
            f"{method}: the class side information has shape {semantics.shape}, expected one row per class "
            f"({info.num_classes} classes): check data.semantics"
        )
    if not np.isfinite(semantics).all():
        raise ValueError(f"{method}: the class side information holds NaN/inf values: check data.semantics")
    return semantics


def held_out_classes(classes: Tensor, share: float, seed: int) -> Tensor:
    """A seeded, deterministic choice of ``round(share · z)`` of the z training ``classes`` (at least 2, and
    at least 2 left to fit on): the seen classes whose retrieval scores a regulariser grid point."""
    num_classes = int(classes.numel())
    count = max(2, round(share * num_classes))
    if num_classes - count < 2:
        raise ValueError(
            f"choosing regularisers on held-out training classes needs at least 4 training classes, got "
            f"{num_classes}: fix the regularisers in the method's kwargs instead"
        )
    order = torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed))
    return classes.sort().values[order[:count]].sort().values


def first_of_each_index(indices: Tensor) -> Tensor:
    """Positions of the first occurrence of each distinct value of ``indices``, in increasing value order."""
    unique, inverse = torch.unique(indices, return_inverse=True)
    positions = torch.arange(len(indices), device=indices.device)
    first = torch.full((len(unique),), len(indices), dtype=torch.long, device=indices.device)
    return first.scatter_reduce(0, inverse, positions, reduce="amin")
