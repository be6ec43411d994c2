"""CVAE (Yelamarthi et al., ECCV'18): structure, sampling at test time, k-means, training on a toy problem."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from sbir_bench.data.records import DataInfo
from sbir_bench.evaluation.engine import evaluate
from sbir_bench.methods.cvae import CVAE, batched_kmeans
from sbir_bench.registry import METHODS

SMALL = dict(encoder_hidden=(64, 32), latent_dim=16, decoder_hidden=(64,), regressor_hidden=(32,))


def info(feature_dim: int | None) -> DataInfo:
    return DataInfo(num_classes=8, seen_classes=tuple(range(8)), feature_dim=feature_dim)


def small_cvae(dim: int = 32, **kwargs) -> CVAE:
    return CVAE(info(dim), **{**SMALL, **kwargs})


# --- structure -----------------------------------------------------------------------------------------
def test_default_sizes_output_shapes_and_ranges():
    model = CVAE(info(512)).eval()
    photo, sketch = torch.rand(5, 512), torch.rand(5, 512)
    mu, log_var = model.encode(photo, sketch)
    assert mu.shape == log_var.shape == (5, 128)
    assert mu.abs().max() < 1 and log_var.abs().max() < 1  # tanh heads
    generated = model.decode(torch.randn(5, 128), sketch)
    assert generated.shape == (5, 512) and generated.min() >= 0  # ReLU output, like fc7 features
    assert model.regressor(generated).shape == (5, 512)
    assert model.embed_query(sketch).shape == (5, 512)
    assert torch.equal(model.embed_gallery(photo), photo)


def test_paper_sizes_match_the_released_keras_model():
    paper = dict(
        encoder_hidden=(4096, 2048), latent_dim=1024, decoder_hidden=(2048,), regressor_hidden=(2048,)
    )
    model = CVAE(info(4096), num_test_samples=2, **paper).eval()
    # layer order of trainCVAE_pre.py: Dense relu -> BN -> Dropout -> Dense relu -> BN; decoder Dense relu x 2
    encoder_layers = " ".join(type(m).__name__ for m in model.encoder)
    assert encoder_layers == "Linear ReLU BatchNorm1d Dropout Linear ReLU BatchNorm1d"
    assert " ".join(type(m).__name__ for m in model.decoder) == "Linear ReLU Linear ReLU"
    trainable = sum(p.numel() for p in model.parameters())
    encoder = (8192 * 4096 + 4096) + 2 * 4096 + (4096 * 2048 + 2048) + 2 * 2048 + 2 * (2048 * 1024 + 1024)
    decoder = (5120 * 2048 + 2048) + (2048 * 4096 + 4096)
    regulariser = (4096 * 2048 + 2048) + (2048 * 4096 + 4096)
    assert trainable == encoder + decoder + regulariser  # = Keras' trainable count for the same model
    with torch.no_grad():
        mu, log_var = model.encode(torch.rand(2, 4096), torch.rand(2, 4096))
        assert mu.shape == log_var.shape == (2, 1024)
        assert model.decode(mu, torch.rand(2, 4096)).shape == (2, 4096)
        assert model.embed_query(torch.rand(2, 4096)).shape == (2, 4096)


def test_keras_initialisation_and_batchnorm_defaults():
    model = small_cvae()
    first = model.encoder[0]
    bound = (6 / (first.in_features + first.out_features)) ** 0.5  # Glorot-uniform limit
    assert first.weight.abs().max() <= bound and first.weight.abs().max() > 0.9 * bound
    assert torch.count_nonzero(first.bias) == 0
    batch_norm = model.encoder[2]
    assert batch_norm.eps == pytest.approx(1e-3) and batch_norm.momentum == pytest.approx(0.01)


def test_needs_features():
    with pytest.raises(ValueError, match="feature_dim"):
        CVAE(info(None))


def test_registry_builds_both_methods():
    model = METHODS.create("cvae", data=info(32), **SMALL)
    assert isinstance(model, CVAE) and model.needs_training and model.distance == "cosine"
    assert model.hparams.latent_dim == 16 and "data" not in model.hparams  # added on save (base.py)


def test_hyperparameters_from_hydra_load_with_weights_only(tmp_path):
    kwargs = OmegaConf.create({**SMALL, "betas": [0.5, 0.999], "eval_metrics": ["map@all"]})
    model = CVAE(info(32), **kwargs)
    torch.save({"hyper_parameters": dict(model.hparams)}, tmp_path / "hparams.pt")
    loaded = torch.load(tmp_path / "hparams.pt", weights_only=True)["hyper_parameters"]
    assert loaded["encoder_hidden"] == (64, 32) and loaded["betas"] == (0.5, 0.999)


def test_optimiser_is_adam_with_configured_betas():
    model = small_cvae(lr=1e-3, betas=[0.4, 0.99])
    optimiser = model.configure_optimizers()
    assert isinstance(optimiser, torch.optim.Adam)
    group = optimiser.param_groups[0]
    assert group["lr"] == 1e-3 and group["betas"] == (0.4, 0.99)
    assert sum(p.numel() for p in group["params"]) == sum(p.numel() for p in model.parameters())


# --- test-time sampling --------------------------------------------------------------------------------
def test_embed_query_is_deterministic_and_independent_of_the_batch():
    model = small_cvae().eval()
    queries = torch.rand(6, 32)
    first = model.embed_query(queries)
    assert torch.equal(first, model.embed_query(queries))
    assert torch.allclose(model.embed_query(queries[2:4]), first[2:4], atol=1e-6)


def test_embed_query_averages_decoded_samples():
    torch.manual_seed(0)
    many = small_cvae(num_test_samples=100).eval()
    torch.manual_seed(0)
    one = small_cvae(num_test_samples=1).eval()
    pairs = zip(one.state_dict().values(), many.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    queries = torch.rand(4, 32)
    samples = many.generate(queries)
    assert samples.shape == (4, 100, 32)
    assert torch.allclose(many.embed_query(queries), samples.mean(dim=1), atol=1e-6)
    # the one-sample model decodes the first z of the same seeded bank: its embedding is sample 0
    assert torch.allclose(one.embed_query(queries), samples[:, 0], atol=1e-6)
    assert not torch.allclose(one.embed_query(queries), many.embed_query(queries), atol=1e-3)


class SketchPlusFirstLatent(nn.Module):
    """A stand-in decoder: returns the sketch part of [z; x_sk] shifted by z's first coordinate."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self, z_and_sketch: Tensor) -> Tensor:
        return z_and_sketch[..., self.latent_dim :] + z_and_sketch[..., :1]


def test_embed_query_is_the_mean_over_the_noise_bank():
    model = small_cvae(num_test_samples=50).eval()
    model.decoder = SketchPlusFirstLatent(latent_dim=16)
    queries = torch.rand(3, 32)
    expected = queries + model.test_noise[:, 0].mean()
    assert model.test_noise[:, 0].mean().abs() > 1e-3  # the shift is visible
    assert torch.allclose(model.embed_query(queries), expected, atol=1e-6)


# --- k-means variant -----------------------------------------------------------------------------------
def test_kmeans_embeddings_have_one_row_per_centre():
    model = small_cvae(num_test_samples=20, kmeans_clusters=3).eval()
    assert model.embed_query(torch.rand(4, 32)).shape == (4, 3, 32)


def test_kmeans_with_one_cluster_is_the_sample_mean():
    points = torch.randn(3, 40, 5)
    assert torch.allclose(batched_kmeans(points, 1)[:, 0], points.mean(dim=1), atol=1e-6)


def test_kmeans_finds_separated_blobs_per_set():
    generator = torch.Generator().manual_seed(0)
    offsets = torch.tensor([[10.0, 0.0], [-10.0, 0.0]])
    # set 0 alternates blob A/B, set 1 starts with two points of blob A (a poor initialisation)
    order = torch.tensor([[0, 1] * 10, [0, 0] + [1, 0] * 9])
    points = offsets[order] + 0.1 * torch.randn(2, 20, 2, generator=generator)
    centres = batched_kmeans(points, 2)
    for b in range(2):
        found = sorted(centres[b].tolist())
        want = sorted(torch.stack([points[b][order[b] == k].mean(0) for k in (0, 1)]).tolist())
        assert torch.allclose(torch.tensor(found), torch.tensor(want), atol=1e-5)


def test_kmeans_with_a_centre_per_point_returns_the_points():
    points = torch.randn(2, 7, 3)
    assert torch.equal(batched_kmeans(points, 7), points)


def test_kmeans_rejects_impossible_cluster_counts():
    with pytest.raises(ValueError, match="num_clusters"):
        batched_kmeans(torch.randn(1, 4, 2), 5)
    with pytest.raises(ValueError, match="kmeans_clusters"):
        small_cvae(num_test_samples=4, kmeans_clusters=5)


# --- training ------------------------------------------------------------------------------------------
class Apply(nn.Module):
    """A stand-in sub-network: any fixed function of its input."""

    def __init__(self, function) -> None:
        super().__init__()
        self.function = function

    def forward(self, x: Tensor) -> Tensor:
        return self.function(x)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # no Trainer: nothing to log to
def test_training_step_assembles_the_loss_from_the_sub_networks_and_the_noise():
    model = small_cvae(dim=2, latent_dim=2, kl_weight=0.5, regulariser_weight=3.0)
    model.encoder = Apply(lambda photo_sketch: photo_sketch)  # hidden = [x_img; x_sk]
    model.mu_head = Apply(lambda hidden: hidden[:, :2] - hidden[:, 2:])  # μ = x_img − x_sk
    model.log_var_head = Apply(lambda hidden: torch.full_like(hidden[:, :2], math.log(4.0)))  # σ = 2
    model.decoder = Apply(lambda z_sketch: z_sketch[:, :2] - z_sketch[:, 2:])  # x̂_img = z − x_sk
    model.regressor = Apply(lambda generated: generated)
    model.draw_noise = lambda like: torch.tensor([[1.0, 0.0], [0.0, -1.0]])  # ε
    photo = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    sketch = torch.tensor([[1.0, 0.0], [2.0, 1.0]])
    # μ = [[0, 2], [-2, 0]];  z = μ + 2ε = [[2, 2], [-2, -2]];  x̂_img = z − x_sk = [[1, 2], [-4, -3]]
    # reconstruction: mean of (x̂_img − x_img)² = mean(0, 0, 16, 16) = 8
    # KL per sample: ½ Σ_j (σ² + μ² − 1 − log σ²) = ½ (3 + 7 − 2 log 4) = 5 − log 4, for both samples
    # regression: mean of (f_NN(x̂_img) − x_sk)² = mean(0, 4, 36, 16) = 14
    expected = 8 + 0.5 * (5 - math.log(4.0)) + 3.0 * 14
    loss = model.training_step({"sketch": sketch, "photo": photo, "label": torch.zeros(2)}, 0)
    assert loss.item() == pytest.approx(expected, abs=1e-5)  # 52.5 − log 2


def test_nan_loss_raises_a_clear_error():
    model = small_cvae()
    batch = {"sketch": torch.full((4, 32), float("nan")), "photo": torch.rand(4, 32), "label": torch.zeros(4)}
    with pytest.raises(FloatingPointError, match="learning rate .* input features") as raised:
        model.training_step(batch, 0)
    assert str(raised.value).startswith("cvae: the training loss is nan at epoch 0, step 0 (non-finite terms")


class PairDataset(Dataset):
    def __init__(self, sketch: Tensor, photo: Tensor, label: Tensor) -> None:
        self.sketch, self.photo, self.label = sketch, photo, label

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"sketch": self.sketch[i], "photo": self.photo[i], "label": self.label[i]}


def toy_pairs(num_pairs: int, dim: int = 32, num_classes: int = 8) -> tuple[Tensor, Tensor, Tensor]:
    """photo = ReLU(A·sketch + offset[class]) for a fixed random A; sketches scatter around class centres."""
    generator = torch.Generator().manual_seed(0)
    centres = 2 * torch.rand(num_classes, dim, generator=generator)
    mapping = torch.randn(dim, dim, generator=generator) / dim**0.5
    offsets = torch.rand(num_classes, dim, generator=generator)
    label = torch.arange(num_pairs) % num_classes
    sketch = F.relu(centres[label] + 0.3 * torch.randn(num_pairs, dim, generator=generator))
    photo = F.relu(sketch @ mapping + offsets[label])
    return sketch, photo, label


class StepLosses(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


@pytest.fixture
def one_thread():
    """Tiny matrices gain nothing from intra-op threads, and on a busy 2-core machine they slow down ~10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_on_a_toy_problem_lowers_the_loss_and_generates_the_paired_photo(one_thread):
    sketch, photo, label = toy_pairs(384 + 64)
    train = DataLoader(PairDataset(sketch[:384], photo[:384], label[:384]), batch_size=32, shuffle=True)
    torch.manual_seed(0)
    model = small_cvae(lr=1e-3)
    record = StepLosses()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=20,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[record],
    )
    trainer.fit(model, train)
    steps_per_epoch = 384 // 32
    first, last = record.losses[:steps_per_epoch], record.losses[-steps_per_epoch:]
    assert sum(last) / len(last) < 0.5 * sum(first) / len(first)
    logged = set(trainer.callback_metrics)
    assert {"train/loss", "train/reconstruction", "train/kl", "train/regression"} <= logged

    held_out_sketch, held_out_photo, held_out_label = sketch[384:], photo[384:], label[384:]
    model.eval()
    generated = model.embed_query(held_out_sketch)
    trained = F.cosine_similarity(generated, held_out_photo).mean()
    raw = F.cosine_similarity(held_out_sketch, held_out_photo).mean()
    assert trained > raw + 0.2, (float(trained), float(raw))

    # through the shared test loop: generated queries retrieve same-class photos far better than raw sketches
    def evaluation_loader(features: Tensor) -> DataLoader:
        rows = zip(features, held_out_label, torch.arange(len(features)), strict=True)
        return DataLoader([{"input": f, "label": y, "index": i} for f, y, i in rows], batch_size=16)

    model.eval_metrics = ("map@all",)
    trainer.test(model, dataloaders=[evaluation_loader(held_out_sketch), evaluation_loader(held_out_photo)])
    raw_features = evaluate(
        held_out_sketch, held_out_label, held_out_photo, held_out_label, metrics=("map@all",)
    )
    assert model.last_metrics["map@all"] > raw_features["map@all"] + 0.2, (model.last_metrics, raw_features)
