"""Discrete hashing steps of Deep Sketch Hashing (Liu et al., "Deep Sketch Hashing: Fast Free-hand
Sketch-Based Image Retrieval", CVPR'17), shared with GDH (Zhang et al., ECCV'18).

Convention: codes are **columns**. ``B_I`` is K×N_I (one column per training photo), ``B_S`` K×N_S (one per
training sketch), entries ±1; the networks' real-valued outputs ``F_I``, ``F_S`` have the same shapes; the
per-sample side information ``Φ_I`` (d×N_I) and ``Φ_S`` (d×N_S) holds the class vector of each sample's
label; ``D`` is d×K; ``W`` is N_I×N_S with ``W_ij = +1`` when photo i and sketch j share a class, −1
otherwise; m = K the code length. The objective (the paper's equation as a public reimplementation trains
it: a reconstruction, the paper's exact form was not reachable) is

    O = ‖B_Iᵀ B_S − m W‖²  +  λ (‖Φ_I − D B_I‖² + ‖Φ_S − D B_S‖²)  +  γ (‖F_I − B_I‖² + ‖F_S − B_S‖²)

(squared Frobenius norms): the cross-view pairwise term, the semantic factorisation term and the
quantisation term. It is minimised by alternation: the D-step (:func:`d_step`, ridge least squares), the
B-steps (:func:`b_step`, discrete cyclic coordinate descent, one bit row at a time, for B_I given B_S then
B_S given B_I) and the network step (regressing F to the fixed codes: the quantisation term).

Every function is plain torch on tensors of one dtype (float64 recommended for the B-steps: the bit
updates compare sums of up to N·K terms with zero).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "b_step",
    "d_step",
    "dsh_objective",
    "dsh_objective_terms",
    "factorisation_term",
    "pairwise_similarity",
    "pairwise_term",
    "quantisation_term",
    "sign_codes",
]


def sign_codes(values: Tensor) -> Tensor:
    """``sign(values)`` with sign(0) = +1: ±1 codes in the dtype of ``values``."""
    return torch.where(values >= 0, 1.0, -1.0).to(values.dtype)


def pairwise_similarity(labels_a: Tensor, labels_b: Tensor, dissimilar: float = -1.0) -> Tensor:
    """``W`` (N_a×N_b, float32): ``W_ij = +1`` when ``labels_a[i] == labels_b[j]``, ``dissimilar`` (−1 in
    the reconstructed objective) otherwise.

    With −1 and many classes the pairwise term favours nearly constant codes: for C equally sized classes,
    photo codes ``u_c = (α e_c, β w)`` and sketch codes ``v_c = (α e_c, −β w)`` (e_c orthonormal, α² + β²
    = m) cost ∝ 4Cβ⁴ + C(C − 1)α⁴, least at β²/m = (C − 1)/(C + 3) (0.9 for 36 classes): all but a tenth
    of the bits end up shared by every class. ``dissimilar = 0`` asks for orthogonal codes of different
    classes instead."""
    same = labels_a.reshape(-1, 1) == labels_b.reshape(1, -1)
    return torch.where(same, 1.0, float(dissimilar)).to(torch.float32)


def pairwise_term(B_I: Tensor, B_S: Tensor, W: Tensor, bits: int) -> Tensor:
    """Cross-view pairwise term ``‖B_Iᵀ B_S − m W‖²`` (B_I K×N_I, B_S K×N_S, W N_I×N_S, m = ``bits``)."""
    return (B_I.T @ B_S - bits * W).square().sum()


def factorisation_term(Phi: Tensor, D: Tensor, B: Tensor) -> Tensor:
    """Semantic factorisation term of one view, ``‖Φ − D B‖²`` (Φ d×N, D d×K, B K×N)."""
    return (Phi - D @ B).square().sum()


def quantisation_term(F: Tensor, B: Tensor) -> Tensor:
    """Quantisation term of one view, ``‖F − B‖²`` (F and B K×N)."""
    return (F - B).square().sum()


def dsh_objective_terms(
    B_I: Tensor,
    B_S: Tensor,
    W: Tensor,
    phi_I: Tensor,
    phi_S: Tensor,
    D: Tensor,
    F_I: Tensor,
    F_S: Tensor,
    bits: int,
) -> dict[str, Tensor]:
    """The objective's three unweighted terms: ``pairwise`` ‖B_Iᵀ B_S − mW‖², ``factorisation``
    ‖Φ_I − D B_I‖² + ‖Φ_S − D B_S‖² and ``quantisation`` ‖F_I − B_I‖² + ‖F_S − B_S‖² (shapes: module
    docstring)."""
    return {
        "pairwise": pairwise_term(B_I, B_S, W, bits),
        "factorisation": factorisation_term(phi_I, D, B_I) + factorisation_term(phi_S, D, B_S),
        "quantisation": quantisation_term(F_I, B_I) + quantisation_term(F_S, B_S),
    }


def dsh_objective(
    B_I: Tensor,
    B_S: Tensor,
    W: Tensor,
    phi_I: Tensor,
    phi_S: Tensor,
    D: Tensor,
    F_I: Tensor,
    F_S: Tensor,
    lam: float,
    gamma: float,
    bits: int,
) -> Tensor:
    """``O = ‖B_Iᵀ B_S − mW‖² + λ(‖Φ_I − D B_I‖² + ‖Φ_S − D B_S‖²) + γ(‖F_I − B_I‖² + ‖F_S − B_S‖²)``."""
    terms = dsh_objective_terms(B_I, B_S, W, phi_I, phi_S, D, F_I, F_S, bits)
    return terms["pairwise"] + lam * terms["factorisation"] + gamma * terms["quantisation"]


def d_step(B: Tensor, Phi: Tensor, eps: float) -> Tensor:
    """D-step: ``D = Φ Bᵀ (B Bᵀ + εI)⁻¹`` (d×K), the ridge least-squares solution of min_D ‖Φ − D B‖² + ε‖D‖².

    ``B`` is K×N and ``Φ`` d×N; for DSH pass both views side by side, ``B = [B_I, B_S]`` and
    ``Φ = [Φ_I, Φ_S]``. Solved as a linear system (the inverse applied, never formed); ε > 0 keeps it
    well posed when some bit is constant or two bits are equal.
    """
    if B.shape[1] != Phi.shape[1]:
        raise ValueError(f"d_step: B {tuple(B.shape)} and Phi {tuple(Phi.shape)} need as many columns")
    gram = B @ B.T + eps * torch.eye(B.shape[0], dtype=B.dtype, device=B.device)
    return torch.linalg.solve(gram, B @ Phi.T).T  # (BBᵀ + εI) is symmetric: D ᵀ = (BBᵀ + εI)⁻¹ B Φᵀ


def b_step(
    B: Tensor,
    B_other: Tensor,
    W: Tensor,
    Phi: Tensor,
    D: Tensor,
    F: Tensor,
    lam: float,
    gamma: float,
    bits: int,
) -> Tensor:
    """B-step: one sweep of discrete cyclic coordinate descent over the K bit rows of ``B`` (K×N), the other
    view's codes ``B_other`` (K×N_o) fixed; returns the new codes (``B`` is not modified).

    ``W`` is N×N_o with this view's samples as rows: ``W`` for B_I (given B_S), ``Wᵀ`` for B_S (given B_I);
    ``Phi`` (d×N) and ``F`` (K×N) are this view's side information and network outputs. Derivation, with b
    the bit row k of B (1×N), s row k of B_other, d_k column k of D, f_k row k of F, and B', B'_o, D' the
    codes and D without row/column k: the objective's terms depending on b are

        ‖b ᵀ s + R'‖² = const + 2 b R' sᵀ          with R' = B'ᵀ B'_o − m W (‖bᵀs‖² = N N_o is constant),
        λ ‖E' − d_k b‖² = const − 2λ b E'ᵀ d_k      with E' = Φ − D' B'  (‖d_k b‖² = N ‖d_k‖² is constant),
        γ ‖f_k − b‖²  = const − 2γ b f_kᵀ,

    so O(b) = const + 2 b·q with q = R' sᵀ − λ E'ᵀ d_k − γ f_kᵀ, minimised over b ∈ {−1, +1}^N exactly by
    b = −sign(q) (any sign where q = 0; we take +1). With G = B_o B_oᵀ, M = W B_oᵀ and Dᵀ D:

        R' sᵀ   = Bᵀ G[:, k] − G[k, k] bᵀ − m M[:, k],
        E'ᵀ d_k = Φᵀ d_k − Bᵀ (DᵀD)[:, k] + (DᵀD)[k, k] bᵀ,

    each bit costing O(K (N + N_o)) after the O(N N_o K) product M. Each update is the exact minimiser
    over its bit row, so the objective never increases.
    """
    K = B.shape[0]
    if B_other.shape[0] != K or W.shape != (B.shape[1], B_other.shape[1]):
        raise ValueError(
            f"b_step: B {tuple(B.shape)}, B_other {tuple(B_other.shape)} and W {tuple(W.shape)} do not "
            "match (W must have this view's samples as rows)"
        )
    B = B.clone()
    W = W.to(B.dtype)
    gram_other = B_other @ B_other.T  # K×K
    targets = W @ B_other.T  # N×K
    dtd = D.T @ D  # K×K
    phi_d = Phi.T @ D  # N×K
    for k in range(K):
        pairwise = B.T @ gram_other[:, k] - gram_other[k, k] * B[k] - bits * targets[:, k]
        factorisation = phi_d[:, k] - B.T @ dtd[:, k] + dtd[k, k] * B[k]
        q = pairwise - lam * factorisation - gamma * F[k]
        B[k] = torch.where(q > 0, -1.0, 1.0).to(B.dtype)
    return B
