"""Batches of the sketch → 3D track as the shape methods read them: the ``"class_batches"`` keys and a
shape's per-view features."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

CLASS_BATCH_KEYS = ("sketch", "sketch_label", "shape", "shape_label")


def check_class_batch(batch: Mapping[str, Tensor], method: str) -> None:
    """A ``"class_batches"`` training batch has sketches, shapes and the labels of both (one clear error)."""
    missing = [key for key in CLASS_BATCH_KEYS if key not in batch]
    if missing:
        raise KeyError(
            f"{method} trains on 'class_batches' batches with keys {CLASS_BATCH_KEYS}; "
            f"this batch lacks {missing}"
        )


def view_stack(x: Tensor, method: str) -> Tensor:
    """A batch of shapes as ``[B, V, d]`` per-view features; ``[B, d]`` (an item seen once, e.g. a photo)
    is one view. Anything else is a clear error."""
    if x.ndim == 2:
        return x.unsqueeze(1)
    if x.ndim != 3:
        raise ValueError(f"{method} expects gallery features [B, V, d] or [B, d], got {tuple(x.shape)}")
    return x


__all__ = ["CLASS_BATCH_KEYS", "check_class_batch", "view_stack"]
