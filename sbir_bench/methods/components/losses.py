"""Loss terms of the ZS-SBIR CVAE (Yelamarthi et al., ECCV'18), reduced as the released code reduces them.

Released code (``trainCVAE_pre.py``): the per-sample reconstruction error is a *mean* over feature
dimensions, the KL a *sum* over latent dimensions, the regulariser Keras' ``mean_squared_error`` (a mean
over dimensions); Keras then averages every per-sample loss over the batch.

The same paper's direct-regression baseline regresses features onto class side vectors
(``semantic_regression_loss``, ``semantic_cosine_loss``; the paper names no loss: our reading).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def cvae_reconstruction_loss(generated: Tensor, target: Tensor) -> Tensor:
    """``mean_b [ (1/d) Σ_j (x̂_bj − x_bj)² ]``: squared error averaged over feature dims, then the batch."""
    return F.mse_loss(generated, target, reduction="mean")


def kl_divergence_standard_normal(mu: Tensor, log_var: Tensor) -> Tensor:
    """``KL(N(μ, σ²) ‖ N(0, I)) = mean_b [ ½ Σ_j (σ²_bj + μ²_bj − 1 − log σ²_bj) ]``, j over latent dims."""
    per_sample = 0.5 * (log_var.exp() + mu.square() - 1.0 - log_var).sum(dim=-1)
    return per_sample.mean()


def sketch_regression_loss(regressed_sketch: Tensor, sketch: Tensor) -> Tensor:
    """Regulariser ``mean_b [ (1/d) Σ_j (f_NN(x̂_img)_bj − x_sk,bj)² ]``: the paper's ‖f_NN(x̂_img) − x_sk‖²."""
    return F.mse_loss(regressed_sketch, sketch, reduction="mean")


def cvae_total_loss(
    reconstruction: Tensor,
    kl: Tensor,
    regression: Tensor,
    *,
    kl_weight: float = 1.0,
    regulariser_weight: float = 10.0,
) -> Tensor:
    """``L = L_rec + β·KL + λ·L_reg`` with the released weights β = 1, λ = 10."""
    return reconstruction + kl_weight * kl + regulariser_weight * regression


def semantic_regression_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """Direct regression to side information: ``mean_b [ (1/a) Σ_j (f(x)_bj − s_y(b),j)² ]``, the squared
    error between a feature's regressed vector and its class's side vector, averaged over dims and batch."""
    return F.mse_loss(predicted, target, reduction="mean")


def semantic_cosine_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """``mean_b [ 1 − cos(f(x)_b, s_y(b)) ]``: the regression's direction-only alternative (retrieval ranks
    by cosine)."""
    return (1.0 - F.cosine_similarity(predicted, target, dim=-1)).mean()


__all__ = [
    "cvae_reconstruction_loss",
    "cvae_total_loss",
    "kl_divergence_standard_normal",
    "semantic_cosine_loss",
    "semantic_regression_loss",
    "sketch_regression_loss",
]
