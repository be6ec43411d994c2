"""Adversarial loss terms on the latent code (adversarial autoencoder, Makhzani et al., "Adversarial
Autoencoders", 2015, sec. 2; minimax game of Goodfellow et al., NIPS'14, eq. 1).

The discriminator D outputs a logit; D(z) = sigmoid(logit) is its probability that z was drawn from the
prior p(z) ("real") rather than produced by the encoder q(z | x) ("fake"). Both losses are binary
cross-entropies on logits (numerically stable), averaged over samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``−½ [ mean_b log D(z_prior,b) + mean_b log(1 − D(z_enc,b)) ]``: Goodfellow et al. eq. 1, negated.

    The mean binary cross-entropy over the concatenated batch [prior codes, label 1; encoder codes, label 0]
    (for equal halves, the average of the two terms).
    """
    logits = torch.cat([real_logits, fake_logits])
    labels = torch.cat([torch.ones_like(real_logits), torch.zeros_like(fake_logits)])
    return F.binary_cross_entropy_with_logits(logits, labels)


def generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss ``−mean_b log D(z_enc,b)`` (Goodfellow et al., sec. 3): the encoder
    maximises log D of its codes instead of minimising log(1 − D), which saturates while D wins."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


__all__ = ["discriminator_loss", "generator_loss"]
