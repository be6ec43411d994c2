"""The shared-weight embedding branch of the Siamese and triplet baselines of the ZS-SBIR reference table
(Yelamarthi et al., ECCV'18, Table 2): one MLP over the backbone feature, applied to sketches and photos
alike ("two branches with shared weights"), whose outputs are compared with the Euclidean distance."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from sbir_bench.methods.components.mlp import dense_relu_stack, glorot_init_


def embedding_branch(
    in_features: int, hidden: Sequence[int], embedding_dim: int, *, batch_norm: bool = False
) -> nn.Sequential:
    """``(Linear → ReLU [→ BN]) × len(hidden) → Linear(embedding_dim)``, Glorot-initialised.

    The embedding layer is linear (no activation, no normalisation), so Euclidean distances between
    embeddings are free in scale; the losses' margin or Q sets it.
    """
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
    layers = list(dense_relu_stack(in_features, hidden, batch_norm=batch_norm)) if hidden else []
    width = hidden[-1] if hidden else in_features
    branch = nn.Sequential(*layers, nn.Linear(width, embedding_dim))
    glorot_init_(branch)
    return branch


__all__ = ["embedding_branch"]
