"""The zero-shot baselines of the ZS-SBIR table: direct regression, ESZSL and SAE (closed forms checked
against independent solutions, side-information errors, the regulariser search, the Lightning fit)."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import scipy.linalg
import torch
from torch.utils.data import DataLoader

from sbir_bench.data.records import DataInfo
from sbir_bench.methods.closed_form_zsl import ESZSL, SAE
from sbir_bench.methods.components.closed_forms import EszslSolver, SaeSolver, one_hot_targets
from sbir_bench.methods.components.losses import semantic_cosine_loss, semantic_regression_loss
from sbir_bench.methods.components.side_information import first_of_each_index, held_out_classes
from sbir_bench.methods.direct_regression import DirectRegression
from sbir_bench.registry import METHODS

NUM_CLASSES, DIM, SEMANTICS_DIM = 8, 12, 5


def semantics(num_classes: int = NUM_CLASSES, dim: int = SEMANTICS_DIM) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(num_classes, dim)).astype(np.float32)


def info(class_semantics: np.ndarray | None = None, num_classes: int = NUM_CLASSES) -> DataInfo:
    return DataInfo(
        num_classes=num_classes,
        seen_classes=tuple(range(num_classes)),
        feature_dim=DIM,
        class_semantics=semantics(num_classes) if class_semantics is None else class_semantics,
    )


def toy_features(per_class: int = 6, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Sketch and photo features of NUM_CLASSES classes: a class centre per domain plus noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    sketch_centres, photo_centres = torch.randn(2, NUM_CLASSES, DIM, generator=generator)
    sketches = sketch_centres[labels] + 0.3 * torch.randn(len(labels), DIM, generator=generator)
    photos = photo_centres[labels] + 0.3 * torch.randn(len(labels), DIM, generator=generator)
    return sketches, labels, photos, labels.clone()


# --- losses --------------------------------------------------------------------------------------------
def test_semantic_regression_loss_by_hand():
    predicted = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0], [3.0, 1.0]])
    # sample 1: ((1-0)^2 + (2-0)^2) / 2 = 2.5; sample 2: ((0-3)^2 + (0-1)^2) / 2 = 5; mean = 3.75
    assert semantic_regression_loss(predicted, target).item() == pytest.approx(3.75)


def test_semantic_cosine_loss_by_hand():
    predicted = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    target = torch.tensor([[0.0, 2.0], [3.0, 3.0]])
    # sample 1: orthogonal, 1 - 0 = 1; sample 2: parallel, 1 - 1 = 0; mean = 0.5
    assert semantic_cosine_loss(predicted, target).item() == pytest.approx(0.5)


# --- closed forms against independent solutions --------------------------------------------------------
def test_eszsl_matches_the_formula_solved_directly():
    rng = np.random.default_rng(0)
    d, n, z, a = 6, 20, 4, 3
    x, s = rng.normal(size=(d, n)), rng.normal(size=(z, a))
    labels = rng.integers(0, z, size=n)
    y = np.eye(z)[labels]
    gamma, lam = 0.7, 2.5
    # V = (X Xᵀ + γI)⁻¹ X Y S (Sᵀ S + λI)⁻¹, both inverses by numpy.linalg.solve
    left = np.linalg.solve(x @ x.T + gamma * np.eye(d), x @ y @ s)
    expected = np.linalg.solve((s.T @ s + lam * np.eye(a)).T, left.T).T
    solver = EszslSolver(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(s))
    assert np.allclose(solver.solve(gamma, lam).numpy(), expected, atol=1e-10)


def test_eszsl_without_regularisation_is_least_squares():
    """γ, λ → 0 with X of full row rank and S of full column rank: V = pinv(Xᵀ) Y pinv(Sᵀ) (lstsq)."""
    rng = np.random.default_rng(1)
    d, n, z, a = 4, 30, 5, 3
    x, s = rng.normal(size=(d, n)), rng.normal(size=(z, a))
    y = np.eye(z)[rng.integers(0, z, size=n)]
    first = np.linalg.lstsq(x.T, y, rcond=None)[0]  # d×z: min ‖Xᵀ M − Y‖
    expected = np.linalg.lstsq(s, first.T, rcond=None)[0].T  # d×a: min ‖S Vᵀ − Mᵀ‖
    solved = EszslSolver(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(s)).solve(1e-12, 1e-12)
    assert np.allclose(solved.numpy(), expected, atol=1e-6)


def test_sae_solves_the_sylvester_equation():
    rng = np.random.default_rng(2)
    a, d, n = 3, 5, 40
    x, s = rng.normal(size=(d, n)), rng.normal(size=(a, n))
    lam = 0.2
    A, B, C = s @ s.T, lam * x @ x.T, (1 + lam) * s @ x.T
    w = SaeSolver(torch.from_numpy(x), torch.from_numpy(s)).solve(lam).numpy()
    assert w.shape == (a, d)
    assert np.abs(A @ w + w @ B - C).max() < 1e-9 * np.abs(C).max()
    assert np.allclose(w, scipy.linalg.solve_sylvester(A, B, C), atol=1e-9)
    # brute force: (I_d ⊗ A + Bᵀ ⊗ I_a) vec(W) = vec(C), vec stacking columns
    kron = np.kron(np.eye(d), A) + np.kron(B.T, np.eye(a))
    brute = np.linalg.solve(kron, C.flatten(order="F")).reshape((a, d), order="F")
    assert np.allclose(w, brute, atol=1e-9)


def test_sae_with_singular_gram_matrices_gives_the_minimum_norm_solution():
    """More features than samples: X Xᵀ and S Sᵀ are singular, the solve stays finite and exact."""
    rng = np.random.default_rng(3)
    a, d, n = 2, 6, 1
    x, s = rng.normal(size=(d, n)), rng.normal(size=(a, n))
    lam = 5.0
    w = SaeSolver(torch.from_numpy(x), torch.from_numpy(s)).solve(lam).numpy()
    residual = s @ s.T @ w + w @ (lam * x @ x.T) - (1 + lam) * s @ x.T
    assert np.isfinite(w).all() and np.abs(residual).max() < 1e-9


def test_one_hot_targets_and_helpers():
    y = one_hot_targets(torch.tensor([3, 1, 3]), torch.tensor([1, 3]))
    assert torch.equal(y, torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[2\]"):
        one_hot_targets(torch.tensor([2]), torch.tensor([1, 3]))
    assert first_of_each_index(torch.tensor([7, 3, 7, 5, 3])).tolist() == [1, 3, 0]
    classes = torch.arange(10, 30)
    held = held_out_classes(classes, 0.25, seed=0)
    assert len(held) == 5 and torch.equal(held, held_out_classes(classes, 0.25, seed=0))
    assert not torch.equal(held, held_out_classes(classes, 0.25, seed=1))
    with pytest.raises(ValueError, match="at least 4 training classes"):
        held_out_classes(torch.arange(3), 0.25, seed=0)


# --- side information ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["direct_regression", "eszsl", "sae"])
def test_missing_side_information_names_the_method_and_the_fix(name):
    data = DataInfo(num_classes=4, seen_classes=(0, 1, 2, 3), feature_dim=DIM, dataset="tuberlin")
    with pytest.raises(
        ValueError, match=r"data\.semantics\.vectors=FILE.*data\.semantics\.attributes=CSV"
    ) as raised:
        METHODS.create(name, data=data)
    assert str(raised.value).startswith(
        f"{name} needs class side information but the dataset 'tuberlin' has none"
    )
    with pytest.raises(ValueError, match="one row per class"):
        METHODS.create(name, data=info(semantics(num_classes=3), num_classes=4))


def test_photo_means_need_no_side_information():
    data = DataInfo(num_classes=NUM_CLASSES, seen_classes=tuple(range(NUM_CLASSES)), feature_dim=DIM)
    model = SAE(data, side_information="photo_means", lam=1.0)
    sketches, sketch_labels, photos, photo_labels = toy_features()
    model.fit_features(sketches, sketch_labels, photos, photo_labels)
    assert model.class_vectors.shape == (NUM_CLASSES, DIM)
    means = torch.nn.functional.normalize(photos[photo_labels == 2].double(), dim=1).mean(0)
    assert torch.allclose(model.class_vectors[2].double(), means / means.norm(), atol=1e-6)


# --- the closed-form methods ---------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [ESZSL, SAE])
def test_regularisers_are_chosen_on_held_out_seen_classes(cls):
    model = cls(info(), grid=(1e-2, 1.0, 1e2))
    sketches, sketch_labels, photos, photo_labels = toy_features()
    chosen = model.fit_features(sketches, sketch_labels, photos, photo_labels)
    assert set(chosen) == set(cls.regulariser_names) and model.chosen_regularisers == chosen
    assert all(value in (1e-2, 1.0, 1e2) for value in chosen.values())
    assert 0 <= float(model.validation_score) <= 1
    # the final maps are the chosen point refitted on every class: a fixed-regulariser fit gives them
    fixed = cls(info(), **chosen)
    fixed.fit_features(sketches, sketch_labels, photos, photo_labels)
    assert torch.allclose(fixed.sketch_projection, model.sketch_projection)
    assert float(fixed.validation_score) == -1  # no search ran


@pytest.mark.parametrize("cls", [ESZSL, SAE])
def test_closed_form_embeds_each_domain_into_the_semantic_space(cls):
    model = cls(info(), grid=(1e-2, 1.0))
    sketches, sketch_labels, photos, photo_labels = toy_features()
    model.fit_features(sketches, sketch_labels, photos, photo_labels)
    query, gallery = model.embed_query(sketches), model.embed_gallery(photos)
    assert query.shape == gallery.shape == (len(sketches), SEMANTICS_DIM) and query.dtype == torch.float32
    # separable toy classes: most sketches find a photo of their class first
    similarity = torch.nn.functional.normalize(query, dim=1) @ torch.nn.functional.normalize(gallery, dim=1).T
    assert (photo_labels[similarity.argmax(dim=1)] == sketch_labels).float().mean() > 0.5  # chance 1/8


class PairBatches(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.sketches, self.labels, self.photos, _ = toy_features()

    def __len__(self) -> int:
        return 2 * len(self.labels)  # every pair served twice: the fit must deduplicate

    def __getitem__(self, i: int) -> dict:
        j = i % len(self.labels)
        photo = j - j % 2  # two sketches per photo
        return {
            "sketch": self.sketches[j],
            "photo": self.photos[photo],
            "label": self.labels[j],
            "sketch_index": j,
            "photo_index": 1000 + photo,
        }


def evaluation_loader(features: torch.Tensor, labels: torch.Tensor) -> DataLoader:
    items = [
        {"input": x, "label": int(y), "index": i}
        for i, (x, y) in enumerate(zip(features, labels, strict=True))
    ]
    return DataLoader(items, batch_size=16)


@pytest.mark.parametrize("cls", [ESZSL, SAE])
def test_the_trainer_fits_before_validation_and_the_solution_is_checkpointed(cls, tmp_path):
    data = PairBatches()
    model = cls(info(), grid=(1e-1, 1.0), eval_metrics=["map@all"])
    val = [evaluation_loader(data.sketches, data.labels), evaluation_loader(data.photos, data.labels)]
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, train_dataloaders=DataLoader(data, batch_size=10, shuffle=True), val_dataloaders=val)
    assert model.last_metrics["map@all"] > 0.7  # the validation saw the fitted maps (chance ~0.15)
    assert all(key.startswith("fit/") for key in trainer.logged_metrics if "fit" in key)
    assert set(f"fit/{name}" for name in cls.regulariser_names) <= set(trainer.logged_metrics)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = cls.load_from_checkpoint(path)
    assert loaded.chosen_regularisers == model.chosen_regularisers
    assert torch.equal(loaded.embed_query(data.sketches), model.embed_query(data.sketches))
    # the same fit outside the Trainer, on the deduplicated features (photos: one per two sketches)
    direct = cls(info(), grid=(1e-1, 1.0))
    direct.fit_features(data.sketches, data.labels, data.photos[::2], data.labels[::2])
    assert torch.allclose(direct.photo_projection, model.photo_projection)


# --- direct regression -----------------------------------------------------------------------------------
def test_direct_regression_learns_to_retrieve_on_toy_data():
    torch.manual_seed(0)
    data = PairBatches()
    model = DirectRegression(info(), hidden=(16,), lr=1e-2, eval_metrics=["map@all"])
    val = [evaluation_loader(data.sketches, data.labels), evaluation_loader(data.photos, data.labels)]
    trainer = L.Trainer(
        max_epochs=30,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=30,
    )
    trainer.fit(model, train_dataloaders=DataLoader(data, batch_size=16, shuffle=True), val_dataloaders=val)
    assert model.last_metrics["map@all"] > 0.8
    assert model.embed_query(data.sketches).shape == (len(data.sketches), SEMANTICS_DIM)


def test_direct_regression_loss_is_the_named_loss_and_non_finite_fails_clearly():
    model = DirectRegression(info(), hidden=())
    batch = {"sketch": torch.randn(4, DIM), "photo": torch.randn(4, DIM), "label": torch.tensor([0, 1, 2, 3])}
    target = model.class_vectors[batch["label"]]
    expected = semantic_regression_loss(model.sketch_regressor(model._prepare(batch["sketch"])), target)
    expected = expected + semantic_regression_loss(
        model.photo_regressor(model._prepare(batch["photo"])), target
    )
    assert torch.allclose(model.training_step(batch, 0), expected)
    batch["sketch"][0, 0] = float("nan")
    with pytest.raises(
        FloatingPointError,
        match=r"^direct_regression: the training loss is nan at epoch 0, step 0.*sketch=nan",
    ):
        model.training_step(batch, 0)
