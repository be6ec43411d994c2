"""Closed-form zero-shot embeddings: ESZSL (Romera-Paredes & Torr, ICML'15) and SAE (Kodirov et al., CVPR'17).

Both solve in float64 from features ``X`` (d×n, one column per sample). The solvers diagonalise the Gram
matrices once, so that each point of a regulariser grid costs a few matrix products (the suite grid-searches
them on held-out seen classes), and every solution equals the textbook formula (tests/methods/test_zsl.py
checks them against ``numpy.linalg.solve``/``lstsq``, ``scipy.linalg.solve_sylvester`` and a Kronecker solve).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["EszslSolver", "SaeSolver", "one_hot_targets"]


def one_hot_targets(labels: Tensor, classes: Tensor) -> Tensor:
    """``Y`` (n×z, float64): row i is the one-hot of ``labels[i]`` among ``classes`` (z class ids)."""
    matches = labels.reshape(-1, 1) == classes.reshape(1, -1)
    if not bool(matches.any(dim=1).all()):
        missing = sorted(set(labels.tolist()) - set(classes.tolist()))
        raise ValueError(f"labels {missing} are not among the classes of the signature matrix")
    return matches.to(torch.float64)


class EszslSolver:
    """ESZSL, eq. (5) of Romera-Paredes & Torr (2015): ``V = (X Xᵀ + γI)⁻¹ X Y S (Sᵀ S + λI)⁻¹``.

    ``X`` d×n features, ``Y`` n×z one-hot labels, ``S`` z×a class signatures; ``V`` is d×a and a sample's
    class scores are ``S Vᵀ x`` (its semantic embedding ``Vᵀ x``). With ``X Xᵀ = U diag(e) Uᵀ`` and
    ``Sᵀ S = P diag(f) Pᵀ``: ``V = U [(Uᵀ X Y S P) / ((e_i + γ)(f_j + λ))] Pᵀ``.
    """

    def __init__(self, features: Tensor, targets: Tensor, signatures: Tensor) -> None:
        x, y, s = (t.to(torch.float64) for t in (features, targets, signatures))
        if x.shape[1] != y.shape[0] or y.shape[1] != s.shape[0]:
            raise ValueError(
                f"ESZSL: X {tuple(x.shape)}, Y {tuple(y.shape)}, S {tuple(s.shape)} do not chain"
            )
        self.feature_eigenvalues, self.feature_basis = torch.linalg.eigh(x @ x.T)
        self.signature_eigenvalues, self.signature_basis = torch.linalg.eigh(s.T @ s)
        self.core = self.feature_basis.T @ (x @ (y @ s)) @ self.signature_basis  # d×a

    def solve(self, gamma: float, lam: float) -> Tensor:
        """``V`` (d×a, float64) for regularisers γ (features) and λ (signatures), both > 0."""
        if gamma <= 0 or lam <= 0:
            raise ValueError(f"ESZSL needs gamma > 0 and lambda > 0, got {gamma} and {lam}")
        denominators = torch.outer(self.feature_eigenvalues + gamma, self.signature_eigenvalues + lam)
        return self.feature_basis @ (self.core / denominators) @ self.signature_basis.T


class SaeSolver:
    """SAE, eq. (6) of Kodirov et al. (2017): ``W`` (a×d) solves ``A W + W B = C`` with ``A = S Sᵀ``,
    ``B = λ X Xᵀ``, ``C = (1 + λ) S Xᵀ``; ``S`` is a×n (each sample's semantic vector), ``X`` d×n.

    Encoder ``S ≈ W X``, decoder ``X ≈ Wᵀ S``. A and B are symmetric positive semi-definite, so with
    ``A = P diag(p) Pᵀ`` and ``X Xᵀ = Q diag(q) Qᵀ`` the Sylvester equation is diagonal in those bases
    (Bartels–Stewart with symmetric factors): ``W = P [(Pᵀ C Q) / (p_i + λ q_j)] Qᵀ``. A zero denominator
    (both Gram matrices singular along the same pair of directions) leaves that component 0: the
    minimum-norm solution.
    """

    def __init__(self, features: Tensor, semantics: Tensor) -> None:
        x, s = features.to(torch.float64), semantics.to(torch.float64)
        if x.shape[1] != s.shape[1]:
            raise ValueError(f"SAE: X {tuple(x.shape)} and S {tuple(s.shape)} need as many columns")
        self.semantic_eigenvalues, self.semantic_basis = torch.linalg.eigh(s @ s.T)
        self.feature_eigenvalues, self.feature_basis = torch.linalg.eigh(x @ x.T)
        self.core = self.semantic_basis.T @ (s @ x.T) @ self.feature_basis  # a×d, Pᵀ S Xᵀ Q

    def solve(self, lam: float) -> Tensor:
        """``W`` (a×d, float64) for the weight λ > 0 of the decoder term."""
        if lam <= 0:
            raise ValueError(f"SAE needs lambda > 0, got {lam}")
        denominators = (
            self.semantic_eigenvalues.clamp(min=0)[:, None]
            + lam * self.feature_eigenvalues.clamp(min=0)[None, :]
        )
        scale = denominators.max().clamp(min=1e-300)
        safe = denominators > scale * torch.finfo(torch.float64).eps
        core = torch.where(safe, (1.0 + lam) * self.core / torch.where(safe, denominators, 1.0), 0.0)
        return self.semantic_basis @ core @ self.feature_basis.T
