"""The discrete hashing steps of DSH (sbir_bench/methods/components/discrete_hashing.py): the objective's
terms by hand, the D-step against least squares, every bit update of a B-step against brute force, and an
objective that never increases under B-steps."""

from __future__ import annotations

import itertools

import pytest
import torch

from sbir_bench.methods.components.discrete_hashing import (
    b_step,
    d_step,
    dsh_objective,
    factorisation_term,
    pairwise_similarity,
    pairwise_term,
    quantisation_term,
    sign_codes,
)

# Hand example, 2-bit codes as columns. Photos p0 = (1, 1), p1 = (1, −1) of classes 0 and 1; sketches
# s0 = (1, 1), s1 = (−1, 1), both of class 0.
B_I = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
B_S = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
PHOTO_LABELS, SKETCH_LABELS = torch.tensor([0, 1]), torch.tensor([0, 0])
D = torch.tensor([[0.5, -1.0]])  # d = 1
PHI_I, PHI_S = torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 1.0]])
F_I = torch.tensor([[0.5, -1.0], [2.0, 1.0]])


def test_pairwise_similarity_by_hand():
    W = pairwise_similarity(PHOTO_LABELS, SKETCH_LABELS)
    # photo 0 (class 0) matches both sketches (class 0); photo 1 (class 1) matches neither
    assert torch.equal(W, torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))


def test_pairwise_similarity_with_another_dissimilar_value():
    W = pairwise_similarity(PHOTO_LABELS, torch.tensor([1, 0, 2]), dissimilar=0.0)
    # photo 0 (class 0) matches sketch 1; photo 1 (class 1) matches sketch 0; nothing matches sketch 2
    assert torch.equal(W, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))


def test_pairwise_term_by_hand():
    W = pairwise_similarity(PHOTO_LABELS, SKETCH_LABELS)
    # B_Iᵀ B_S = [[p0·s0, p0·s1], [p1·s0, p1·s1]] = [[2, 0], [0, −2]]; m W = 2 [[1, 1], [−1, −1]]
    # difference [[0, −2], [2, 0]]: 0 + 4 + 4 + 0 = 8
    assert pairwise_term(B_I, B_S, W, bits=2).item() == 8.0


def test_factorisation_and_quantisation_terms_by_hand():
    # D B_I = [0.5·1 − 1·1, 0.5·1 − 1·(−1)] = [−0.5, 1.5]; Φ_I − D B_I = [1.5, 0.5]: 2.25 + 0.25 = 2.5
    assert factorisation_term(PHI_I, D, B_I).item() == 2.5
    # D B_S = [0.5 − 1, −0.5 − 1] = [−0.5, −1.5]; Φ_S − D B_S = [1.5, 2.5]: 2.25 + 6.25 = 8.5
    assert factorisation_term(PHI_S, D, B_S).item() == 8.5
    # F_I − B_I = [[−0.5, −2], [1, 2]]: 0.25 + 4 + 1 + 4 = 9.25
    assert quantisation_term(F_I, B_I).item() == 9.25


def test_objective_by_hand():
    W = pairwise_similarity(PHOTO_LABELS, SKETCH_LABELS)
    # 8 + λ (2.5 + 8.5) + γ (9.25 + 0) with λ = 0.1, γ = 0.01 (F_S = B_S): 8 + 1.1 + 0.0925 = 9.1925
    value = dsh_objective(B_I, B_S, W, PHI_I, PHI_S, D, F_I, B_S.clone(), lam=0.1, gamma=0.01, bits=2)
    assert value.item() == pytest.approx(9.1925)


def test_sign_codes_maps_zero_to_plus_one():
    assert torch.equal(sign_codes(torch.tensor([-0.3, 0.0, 2.0])), torch.tensor([-1.0, 1.0, 1.0]))


def random_problem(n_photos: int, n_sketches: int, bits: int, dim: int = 3, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    photo_labels = torch.randint(classes, (n_photos,), generator=g)
    sketch_labels = torch.randint(classes, (n_sketches,), generator=g)
    vectors = torch.randn(classes, dim, generator=g, dtype=torch.float64)
    return {
        "B_I": sign_codes(torch.randn(bits, n_photos, generator=g, dtype=torch.float64)),
        "B_S": sign_codes(torch.randn(bits, n_sketches, generator=g, dtype=torch.float64)),
        "W": pairwise_similarity(photo_labels, sketch_labels).double(),
        "phi_I": vectors[photo_labels].T,
        "phi_S": vectors[sketch_labels].T,
        "D": torch.randn(dim, bits, generator=g, dtype=torch.float64),
        "F_I": torch.randn(bits, n_photos, generator=g, dtype=torch.float64),
        "F_S": torch.randn(bits, n_sketches, generator=g, dtype=torch.float64),
    }


def test_d_step_is_the_ridge_least_squares_solution():
    p = random_problem(6, 9, bits=4)
    B = torch.cat([p["B_I"], p["B_S"]], dim=1)
    Phi = torch.cat([p["phi_I"], p["phi_S"]], dim=1)
    eps = 0.5
    D = d_step(B, Phi, eps)
    # the formula, with the inverse formed explicitly
    direct = Phi @ B.T @ torch.linalg.inv(B @ B.T + eps * torch.eye(4, dtype=torch.float64))
    torch.testing.assert_close(D, direct)
    # min ‖Φ − D B‖² + ε‖D‖² is least squares on the stacked system [Bᵀ; √ε I] Dᵀ = [Φᵀ; 0]
    stacked = torch.cat([B.T, eps**0.5 * torch.eye(4, dtype=torch.float64)])
    target = torch.cat([Phi.T, torch.zeros(4, Phi.shape[0], dtype=torch.float64)])
    torch.testing.assert_close(D, torch.linalg.lstsq(stacked, target).solution.T)


def test_d_step_without_ridge_equals_plain_least_squares():
    p = random_problem(6, 9, bits=4, seed=3)
    B = torch.cat([p["B_I"], p["B_S"]], dim=1)
    Phi = torch.cat([p["phi_I"], p["phi_S"]], dim=1)
    torch.testing.assert_close(d_step(B, Phi, 0.0), torch.linalg.lstsq(B.T, Phi.T).solution.T)


def objective(p: dict, lam: float, gamma: float, bits: int) -> float:
    return dsh_objective(**p, lam=lam, gamma=gamma, bits=bits).item()


@pytest.mark.parametrize("view", ["photos", "sketches"])
def test_every_bit_update_of_a_b_step_is_the_brute_force_minimum(view):
    bits, lam, gamma = 3, 0.3, 0.2
    p = random_problem(7, 6, bits=bits, seed=1)
    if view == "photos":  # B_I given B_S
        new = b_step(p["B_I"], p["B_S"], p["W"], p["phi_I"], p["D"], p["F_I"], lam, gamma, bits)
    else:  # B_S given B_I: the same function with W transposed
        new = b_step(p["B_S"], p["B_I"], p["W"].T, p["phi_S"], p["D"], p["F_S"], lam, gamma, bits)
    key = "B_I" if view == "photos" else "B_S"
    n = p[key].shape[1]
    for k in range(bits):  # row k is updated with rows < k already new and rows > k still old
        current = torch.cat([new[:k], p[key][k:]])
        best = float("inf")
        for signs in itertools.product((-1.0, 1.0), repeat=n):  # all 2^n sign vectors of row k
            trial = current.clone()
            trial[k] = torch.tensor(signs, dtype=torch.float64)
            best = min(best, objective({**p, key: trial}, lam, gamma, bits))
        chosen = current.clone()
        chosen[k] = new[k]
        assert objective({**p, key: chosen}, lam, gamma, bits) == pytest.approx(best, rel=1e-12)


def test_the_objective_never_increases_over_b_steps():
    bits, lam, gamma = 8, 0.05, 0.1
    p = random_problem(20, 30, bits=bits, dim=5, classes=4, seed=2)
    values = [objective(p, lam, gamma, bits)]
    for _ in range(4):
        p["B_I"] = b_step(p["B_I"], p["B_S"], p["W"], p["phi_I"], p["D"], p["F_I"], lam, gamma, bits)
        values.append(objective(p, lam, gamma, bits))
        p["B_S"] = b_step(p["B_S"], p["B_I"], p["W"].T, p["phi_S"], p["D"], p["F_S"], lam, gamma, bits)
        values.append(objective(p, lam, gamma, bits))
    assert all(after <= before + 1e-9 for before, after in itertools.pairwise(values)), values
    assert values[-1] < values[0]
    assert set(p["B_I"].unique().tolist()) <= {-1.0, 1.0}


def test_b_step_rejects_a_w_with_the_wrong_orientation():
    p = random_problem(5, 7, bits=2)
    with pytest.raises(ValueError, match="W must have this view's samples as rows"):
        b_step(p["B_I"], p["B_S"], p["W"].T, p["phi_I"], p["D"], p["F_I"], 0.1, 0.1, 2)
