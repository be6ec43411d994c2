"""Multi-view shape encoders for the sketch → 3D methods: one network applied to every rendered view's
feature, then the V view embeddings pooled into one shape embedding.

A shape arrives as its per-view backbone features ``[B, V, d]``; an image-domain gallery item (a photo, for
the methods that also search images) as ``[B, 1, d]`` (or ``[B, d]``), a shape of one view.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

POOLINGS = ("mean", "softmax_weights")


def mlp(in_features: int, widths: Sequence[int]) -> nn.Sequential:
    """``Linear → ReLU`` for each hidden width, the last width a plain ``Linear`` (the embedding)."""
    if not widths:
        raise ValueError("an MLP needs at least one layer width")
    layers: list[nn.Module] = []
    for width in widths[:-1]:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        in_features = width
    layers.append(nn.Linear(in_features, widths[-1]))
    return nn.Sequential(*layers)


def softmax_view_pool(embeddings: Tensor, logits: Tensor) -> Tensor:
    """``Σ_v softmax(a)_v · e_v``: ``[B, V, k]`` view embeddings, ``[V]`` learned logits → ``[B, k]``.
    With zero logits this is the mean of the views."""
    weights = torch.softmax(logits, dim=0).to(embeddings.dtype)
    return torch.einsum("bvk,v->bk", embeddings, weights)


def resolve_num_views(given: int | None, from_data: int | None) -> int:
    """The view count a method with learned view weights is built for: the data's when it says (the count of
    the dataset's view recipe), else ``given`` (a checkpoint, a unit test); 0 when neither is known."""
    if from_data:
        return int(from_data)
    return int(given or 0)


class MultiViewEncoder(nn.Module):
    """A per-view MLP shared by all views, then mean pooling or learned softmax view weights (one logit per
    view position, initialised to 0: the mean)."""

    def __init__(self, in_features: int, widths: Sequence[int], pooling: str = "mean", num_views: int = 0):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown view pooling {pooling!r}; one of {POOLINGS}")
        if pooling == "softmax_weights" and num_views < 1:
            raise ValueError(
                "learned softmax view weights need the number of views: the data's view count "
                "(DataInfo.num_views) or the method's num_views argument"
            )
        self.pooling = pooling
        self.view_net = mlp(in_features, widths)
        self.view_logits = nn.Parameter(torch.zeros(num_views)) if pooling == "softmax_weights" else None

    def embed_views(self, x: Tensor) -> Tensor:
        """``[B, V, d]`` (or ``[B, d]``, one view) → per-view embeddings ``[B, V, k]``."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        if x.dim() != 3:
            raise ValueError(f"a shape is [B, V, d] view features (or [B, d]), got shape {tuple(x.shape)}")
        return self.view_net(x)

    def pool(self, views: Tensor) -> Tensor:
        """``[B, V, k]`` → ``[B, k]``; a single view (a photo) passes through the weights unchanged."""
        if self.view_logits is None or views.shape[1] == 1:
            return views.mean(dim=1)
        if views.shape[1] != self.view_logits.numel():
            raise ValueError(
                f"the shape has {views.shape[1]} views but the learned view weights were built for "
                f"{self.view_logits.numel()}: use the same view recipe for training and testing"
            )
        return softmax_view_pool(views, self.view_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.embed_views(x))


__all__ = ["MultiViewEncoder", "POOLINGS", "mlp", "resolve_num_views", "softmax_view_pool"]
