"""Parts of sketch → 3D reconstruction (Wang, Qian, Wang & Fang, "Unsupervised Learning of 3D Model
Reconstruction from Hand-Drawn Sketches", ACM MM 2018): the adaptation autoencoder's reconstruction term,
the 32³ voxel autoencoder and its loss, the retrieval of the K nearest rendered views and the pooling of
their models' shape codes, and the BEGAN terms of the 3D discriminator (Berthelot, Schumm & Metz, "BEGAN:
Boundary Equilibrium Generative Adversarial Networks", 2017, eqs. 2-4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NEIGHBOUR_WEIGHTS = (0.5, 0.4, 0.3, 0.2, 0.1)  # the K = 5 nearest views' shape codes, nearest first
BEGAN_GAMMA = 0.5  # diversity ratio gamma = E[L(G(z))] / E[L(x)] (BEGAN's default)
BEGAN_LAMBDA_K = 1e-3  # proportional gain of k_t (BEGAN, sec. 3.4)
VOXEL_RESOLUTION = 32


def feature_reconstruction_loss(inputs: Tensor, reconstructed: Tensor) -> Tensor:
    """The adaptation autoencoder's reconstruction term: mean squared error over items and dimensions."""
    return F.mse_loss(reconstructed, inputs)


def voxel_reconstruction_loss(logits: Tensor, occupancy: Tensor, occupied_weight: float = 1.0) -> Tensor:
    """Binary cross-entropy of decoded voxel logits against the 0/1 occupancy, mean over voxels; occupied
    voxels weighted by ``occupied_weight`` (objects fill a few percent of the grid, so > 1 counters the
    pull towards empty grids)."""
    weight = torch.tensor(float(occupied_weight), dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, occupancy.to(logits.dtype), pos_weight=weight)


def began_autoencoder_loss(grids: Tensor, reconstructed: Tensor) -> Tensor:
    """BEGAN's ``L(v) = |v − D(v)|``, the discriminator autoencoder's L1 error, mean over voxels and items
    (eq. 2 with η = 1)."""
    return (grids - reconstructed).abs().mean()


def began_discriminator_loss(real: Tensor, fake: Tensor, k: Tensor | float) -> Tensor:
    """``L_D = L(x) − k_t · L(G(z))`` (BEGAN eq. 4): the discriminator autoencodes real shapes well and
    generated ones badly."""
    return real - k * fake


def began_k_update(k: Tensor, real: Tensor, fake: Tensor, gamma: float, lambda_k: float) -> Tensor:
    """``k_{t+1} = clip(k_t + λ_k (γ L(x) − L(G(z))), 0, 1)`` (BEGAN eq. 4)."""
    return (k + lambda_k * (gamma * real.detach() - fake.detach())).clamp(0.0, 1.0)


def began_convergence(real: Tensor, fake: Tensor, gamma: float) -> Tensor:
    """BEGAN's convergence measure ``M = L(x) + |γ L(x) − L(G(z))|`` (sec. 3.4.1), logged, not optimised."""
    return real.detach() + (gamma * real.detach() - fake.detach()).abs()


def neighbour_weights(k: int) -> Tensor:
    """The first ``k`` of (0.5, 0.4, 0.3, 0.2, 0.1), normalised to sum to 1 (a weighted mean of codes)."""
    if not 1 <= k <= len(NEIGHBOUR_WEIGHTS):
        raise ValueError(f"sketch2voxel pools 1 to {len(NEIGHBOUR_WEIGHTS)} neighbours, got k={k}")
    weights = torch.tensor(NEIGHBOUR_WEIGHTS[:k], dtype=torch.float64)
    return weights / weights.sum()


def nearest_view_models(view_distances: Tensor, k: int) -> Tensor:
    """``[Q, G, V]`` query-to-view distances → ``[Q, k]`` gallery positions of the models owning the ``k``
    nearest rendered views, nearest first (a model appears once per view among them); ties go to the lower
    (model, view) position."""
    queries, models, views = view_distances.shape
    if k > models * views:
        raise ValueError(f"sketch2voxel: {k} nearest views asked for, the gallery has {models * views}")
    flat = view_distances.reshape(queries, models * views).double()
    order = torch.sort(flat, dim=1, stable=True).indices[:, :k]
    return torch.div(order, views, rounding_mode="floor")


def pooled_codes(codes: Tensor, neighbours: Tensor, weights: Tensor) -> Tensor:
    """``Σ_k w_k · codes[neighbours[:, k]]``: ``[G, c]`` shape codes, ``[Q, K]`` positions, ``[K]`` weights
    summing to 1 → ``[Q, c]``."""
    return torch.einsum("qkc,k->qc", codes[neighbours], weights.to(codes.dtype))


def voxel_encoder(code_dim: int, channels: Sequence[int]) -> nn.Sequential:
    """``[B, 1, 32, 32, 32]`` → ``[B, code_dim]``: one stride-2 4×4×4 Conv3d (BatchNorm, LeakyReLU 0.2) per
    width in ``channels`` (three halve 32 to 4), then a Linear to the code (the 3D-GAN / 3D-VAE-GAN layout
    of Wu et al., NIPS'16, narrowed)."""
    layers: list[nn.Module] = []
    previous, size = 1, VOXEL_RESOLUTION
    for width in channels:
        layers += [
            nn.Conv3d(previous, width, 4, stride=2, padding=1),
            nn.BatchNorm3d(width),
            nn.LeakyReLU(0.2),
        ]
        previous, size = width, size // 2
    layers += [nn.Flatten(), nn.Linear(previous * size**3, code_dim)]
    return nn.Sequential(*layers)


class VoxelDecoder(nn.Module):
    """``[B, code_dim]`` → ``[B, 1, 32, 32, 32]`` occupancy logits: a Linear to the coarsest grid (BatchNorm,
    ReLU: without the normalisation some initialisations never decode an occupied voxel), then one
    stride-2 4×4×4 ConvTranspose3d per width (BatchNorm, ReLU; the last to one channel, no activation)."""

    def __init__(self, code_dim: int, channels: Sequence[int]) -> None:
        super().__init__()
        self.channels = int(channels[0])
        self.size = VOXEL_RESOLUTION >> len(channels)
        width = self.channels * self.size**3
        self.project = nn.Sequential(nn.Linear(code_dim, width), nn.BatchNorm1d(width), nn.ReLU())
        layers: list[nn.Module] = []
        widths = [*channels[1:], 1]
        previous = self.channels
        for position, width in enumerate(widths):
            layers.append(nn.ConvTranspose3d(previous, width, 4, stride=2, padding=1))
            if position < len(widths) - 1:
                layers += [nn.BatchNorm3d(width), nn.ReLU()]
            previous = width
        self.upsample = nn.Sequential(*layers)

    def forward(self, codes: Tensor) -> Tensor:
        grid = self.project(codes).reshape(-1, self.channels, self.size, self.size, self.size)
        return self.upsample(grid)


__all__ = [
    "BEGAN_GAMMA",
    "BEGAN_LAMBDA_K",
    "NEIGHBOUR_WEIGHTS",
    "VOXEL_RESOLUTION",
    "VoxelDecoder",
    "began_autoencoder_loss",
    "began_convergence",
    "began_discriminator_loss",
    "began_k_update",
    "feature_reconstruction_loss",
    "nearest_view_models",
    "neighbour_weights",
    "pooled_codes",
    "voxel_encoder",
    "voxel_reconstruction_loss",
]
