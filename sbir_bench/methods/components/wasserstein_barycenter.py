"""Entropic Wasserstein barycentres of histograms by iterative Bregman projections (Benamou, Carlier, Cuturi,
Nenna, Peyré, "Iterative Bregman projections for regularized transportation problems", SIAM J. Sci. Comput.
2015), as used by Xie, Dai, Zhu, Fang, "Learning barycentric representations of 3D shapes for sketch-based
3D shape retrieval" (CVPR'17) to summarise the V rendered views of a shape in one descriptor.

For histograms a_1 … a_V on a common support of d bins with ground cost C [d, d], regularisation ε and
weights w (Σ w = 1), the barycentre b minimises Σ_k w_k·W_ε(a_k, b). With the Gibbs kernel K = exp(−C/ε)
the projections alternate (v_k = 1 at the start):

    u_k = a_k / (K v_k),   b = Π_k (Kᵀ u_k)^{w_k},   v_k = b / (Kᵀ u_k)

(the same fixed point as POT's ``ot.bregman.barycenter``). After the b-side projection the b-marginals
are exact; the residual is the a-side marginal error ``max_k ‖u_k ⊙ K v_k − a_k‖₁``. Iteration stops when
every item's residual is below ``tol``; otherwise (after ``max_iter`` or on a non-finite value) a
:class:`BarycenterNotConverged` names the method, the item, the step, the iteration count and the residual.

How features become histograms (:func:`feature_histograms`): a backbone feature (non-negative after the
ReLU and pooling) is clipped at 0, normalised to sum 1 and mixed with ρ of the uniform histogram, so that
every bin has mass (a zero bin in one view would zero it in the geometric mean of the barycentre).

The ground cost between feature dimensions (:func:`correlation_ground_cost`): the support is the d feature
dimensions; two dimensions are close when they fire together: ``C_ij = (1 − corr_ij) / 2`` over a sample of
view features (in [0, 1], 0 on the diagonal), so mass moves between co-activating dimensions.
"""

from __future__ import annotations

import torch
from torch import Tensor


class BarycenterNotConverged(FloatingPointError):
    """The iterative Bregman projections did not reach the tolerance (or met a non-finite value)."""


def feature_histograms(features: Tensor, uniform_mix: float = 0.01, what: str = "barycentre") -> Tensor:
    """``[..., d]`` features → histograms ``(1 − ρ)·x⁺/Σx⁺ + ρ/d`` (ρ = ``uniform_mix``); an all-zero feature
    vector has no histogram: a ValueError names the first such item (its flat index over the leading dims)."""
    positive = features.clamp(min=0)
    mass = positive.sum(dim=-1, keepdim=True)
    empty = (mass <= 0).flatten()
    if bool(empty.any()):
        item = int(torch.nonzero(empty)[0])
        raise ValueError(
            f"{what}: item {item} (flat index over {tuple(features.shape[:-1])}) has no positive feature "
            "value, so it is no histogram"
        )
    d = features.shape[-1]
    return (1 - uniform_mix) * positive / mass + uniform_mix / d


def correlation_ground_cost(samples: Tensor) -> Tensor:
    """Ground cost between the d dimensions of ``samples`` [N, d]: ``(1 − corr_ij) / 2``, diagonal 0.
    A constant dimension has correlation 0 with every other (cost 1/2)."""
    x = samples.double()
    x = x - x.mean(dim=0)
    std = x.square().mean(dim=0).sqrt()
    z = x / std.clamp(min=1e-12)
    z[:, std <= 1e-12] = 0.0
    corr = (z.T @ z / len(x)).clamp(-1.0, 1.0)
    cost = (1.0 - corr) / 2.0
    cost.fill_diagonal_(0.0)
    return cost


def barycenter(
    histograms: Tensor,
    cost: Tensor,
    reg: float,
    *,
    weights: Tensor | None = None,
    tol: float = 1e-6,
    max_iter: int = 1000,
    what: str = "barycentre",
    step: int | None = None,
) -> tuple[Tensor, int, Tensor]:
    """Entropic barycentres of ``histograms`` [B, V, d] (each row sums to 1) under ``cost`` [d, d].

    Returns (barycentres [B, d], iterations, residuals [B]) in float64. ``weights`` [V] default uniform.
    ``what`` (the method) and ``step`` (the training step, if any) go into the error message."""
    if histograms.dim() != 3:
        raise ValueError(f"{what}: histograms must be [B, V, d], got {tuple(histograms.shape)}")
    a = histograms.double().transpose(1, 2)  # [B, d, V]
    num_views = a.shape[-1]
    w = torch.full((num_views,), 1.0 / num_views, dtype=a.dtype) if weights is None else weights.double()
    kernel = torch.exp(-cost.double() / reg)  # [d, d], symmetric
    v = torch.ones_like(a)
    kv = kernel @ v
    residual = torch.full((a.shape[0],), float("inf"), dtype=a.dtype)
    for iteration in range(1, max_iter + 1):
        u = a / kv
        ktu = kernel.T @ u
        b = torch.exp(torch.log(ktu) @ w.to(a.device))  # [B, d]: the weighted geometric mean
        v = b.unsqueeze(-1) / ktu
        kv = kernel @ v
        residual = (u * kv - a).abs().sum(dim=1).amax(dim=-1)  # [B]
        finite = torch.isfinite(residual)
        if not bool(finite.all()):
            item = int(torch.nonzero(~finite)[0])
            raise BarycenterNotConverged(_message(what, item, step, iteration, residual[item], tol, reg))
        if bool((residual < tol).all()):
            return b, iteration, residual
    item = int(torch.argmax(residual))
    raise BarycenterNotConverged(_message(what, item, step, max_iter, residual[item], tol, reg))


def _message(what: str, item: int, step: int | None, iterations: int, residual: Tensor, tol, reg) -> str:
    at = "" if step is None else f" at step {step}"
    return (
        f"{what}: the Wasserstein barycentre of item {item} (batch position){at} did not converge: "
        f"marginal residual {float(residual):.3g} > tol {tol:g} after {iterations} iterations "
        f"(reg {reg:g}; raise max_iter or reg)"
    )
