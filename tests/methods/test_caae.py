"""CAAE (a reconstruction of Yelamarthi et al., ECCV'18): adversarial losses by hand, the discriminator,
manual optimisation with two optimisers, checkpoints that resume, embeddings, reproducibility."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader

from sbir_bench.data.records import DataInfo
from sbir_bench.methods.caae import CAAE
from sbir_bench.methods.components.adversarial import discriminator_loss, generator_loss
from sbir_bench.methods.cvae import CVAE
from sbir_bench.registry import METHODS
from tests.methods.test_cvae import Apply, one_thread  # noqa: F401 (a fixture)

SMALL = dict(encoder_hidden=(32, 16), latent_dim=8, decoder_hidden=(32,), regressor_hidden=(16,))
DIM = 16


def info(feature_dim: int | None = DIM) -> DataInfo:
    return DataInfo(num_classes=4, seen_classes=(0, 1, 2, 3), feature_dim=feature_dim)


def small_caae(**kwargs) -> CAAE:
    return CAAE(info(), **{**SMALL, "discriminator_hidden": (8, 8), **kwargs})


def pairs(n: int = 32) -> list[dict[str, Tensor]]:
    generator = torch.Generator().manual_seed(1)
    sketch, photo = torch.rand(n, DIM, generator=generator), torch.rand(n, DIM, generator=generator)
    return [
        {"sketch": s, "photo": p, "label": torch.tensor(i % 4)}
        for i, (s, p) in enumerate(zip(sketch, photo, strict=True))
    ]


def trainer(**kwargs) -> L.Trainer:
    options = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    return L.Trainer(**{**options, **kwargs})


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices: one intra-op thread is fastest


# --- loss terms, by hand ----------------------------------------------------------------------------------
def test_discriminator_loss_by_hand():
    # D = sigmoid(logit): real logits 0 and ln 3 -> D = 1/2, 3/4; fake logits 0 and −ln 3 -> D = 1/2, 1/4
    # −log D(real) = log 2, log(4/3);  −log(1 − D(fake)) = log 2, log(4/3)
    # mean over the 4 codes: (2 log 2 + 2 log(4/3)) / 4 = ½ log(8/3)
    real, fake = torch.tensor([[0.0], [math.log(3.0)]]), torch.tensor([[0.0], [-math.log(3.0)]])
    assert discriminator_loss(real, fake).item() == pytest.approx(0.5 * math.log(8 / 3), abs=1e-6)
    # a perfect discriminator: loss -> 0; the reverse: large
    assert discriminator_loss(torch.full((2, 1), 20.0), torch.full((2, 1), -20.0)).item() < 1e-8
    assert discriminator_loss(torch.full((2, 1), -20.0), torch.full((2, 1), 20.0)).item() > 19


def test_generator_loss_is_non_saturating_by_hand():
    # fake logits ln 3 and −ln 3 -> D = 3/4, 1/4; −mean log D = ½ (log(4/3) + log 4) = ½ log(16/3)
    fake = torch.tensor([[math.log(3.0)], [-math.log(3.0)]])
    assert generator_loss(fake).item() == pytest.approx(0.5 * math.log(16 / 3), abs=1e-6)
    # non-saturating: where D rejects the code (logit −10), the gradient is still ~ −1 per sample / B
    logits = torch.full((4, 1), -10.0, requires_grad=True)
    generator_loss(logits).backward()
    assert torch.allclose(logits.grad, torch.full((4, 1), -0.25), atol=1e-4)  # −(1 − D)/B, D ≈ 4.5e-5


# --- structure --------------------------------------------------------------------------------------------
def test_default_sizes_reuse_the_cvae_and_scale_the_discriminator_with_the_latent():
    model = CAAE(info(512)).eval()
    assert isinstance(model, CVAE) and model.automatic_optimization is False
    assert model.hparams.latent_dim == 128 and "kl_weight" not in model.hparams
    layers = " ".join(type(m).__name__ for m in model.discriminator)
    assert layers == "Linear BatchNorm1d LeakyReLU Linear BatchNorm1d LeakyReLU Linear"
    widths = [m.out_features for m in model.discriminator if isinstance(m, nn.Linear)]
    assert model.discriminator[0].in_features == 128 and widths == [64, 64, 1]
    assert model.discriminator[2].negative_slope == pytest.approx(0.2)
    sketch = torch.rand(5, 512)
    assert model.embed_query(sketch).shape == (5, 512)
    assert torch.equal(model.embed_gallery(sketch), sketch)


def test_paper_config_builds_the_published_sizes():
    config = OmegaConf.load(Path(__file__).parents[2] / "configs" / "method" / "caae_paper.yaml")
    model = CAAE(info(4096), **{**config.kwargs, "num_test_samples": 2})
    widths = [m.out_features for m in model.discriminator if isinstance(m, nn.Linear)]
    assert model.discriminator[0].in_features == 1024 and widths == [512, 512, 1]
    assert model.encoder[0].in_features == 8192 and model.hparams.encoder_hidden == (4096, 2048)


def test_registry_and_arguments():
    model = METHODS.create("caae", data=info(), **SMALL)
    assert isinstance(model, CAAE) and model.train_sampling == "pairs" and model.distance == "cosine"
    with pytest.raises(TypeError, match="no KL term"):
        small_caae(kl_weight=1.0)
    with pytest.raises(ValueError, match="discriminator hidden"):
        small_caae(discriminator_hidden=())
    with pytest.raises(ValueError, match="CAAE works on cached backbone features"):
        CAAE(info(None))


def test_hyperparameters_from_hydra_are_plain():
    kwargs = OmegaConf.create({**SMALL, "betas": [0.5, 0.99], "discriminator_hidden": [8, 4]})
    model = CAAE(info(), **kwargs)
    assert model.hparams.encoder_hidden == (32, 16) and model.hparams.betas == (0.5, 0.99)
    assert model.hparams.discriminator_hidden == (8, 4)
    assert all(not OmegaConf.is_config(value) for value in model.hparams.values())


def test_configure_optimizers_returns_both_groups():
    model = small_caae(lr=1e-3)
    autoencoder, discriminator = model.configure_optimizers()
    for optimiser in (autoencoder, discriminator):
        assert isinstance(optimiser, torch.optim.Adam)
        assert optimiser.param_groups[0]["lr"] == 1e-3 and optimiser.param_groups[0]["betas"] == (0.5, 0.999)
    ids = lambda optimiser: {id(p) for p in optimiser.param_groups[0]["params"]}  # noqa: E731
    assert ids(discriminator) == {id(p) for p in model.discriminator.parameters()}
    assert ids(autoencoder).isdisjoint(ids(discriminator))
    assert ids(autoencoder) | ids(discriminator) == {id(p) for p in model.parameters()}


# --- the training step ------------------------------------------------------------------------------------
class LogitFromFirstCoordinate(nn.Module):
    """A stand-in discriminator: logit = a · z_0, with one trainable parameter a (initially 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, z: Tensor) -> Tensor:
        return self.scale * z[:, :1]


class RecordingSGD(torch.optim.SGD):
    """SGD that records the gradient of the stand-in discriminator's one parameter at each step."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gradients: list[float] = []

    def step(self, closure=None):
        self.gradients.append(self.param_groups[0]["params"][0].grad.item())
        return super().step(closure)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # no Trainer: nothing to log to
def test_training_step_losses_by_hand_and_the_prior_is_real():
    model = small_caae(latent_dim=2, adversarial_weight=0.5, regulariser_weight=3.0)
    model.encoder = Apply(lambda photo_sketch: photo_sketch[:, :2])  # hidden = x_img (dim 2 here)
    model.mu_head = Apply(lambda hidden: hidden)  # μ = x_img
    model.log_var_head = Apply(lambda hidden: torch.zeros_like(hidden))  # σ = 1
    model.draw_noise = lambda like: torch.zeros_like(like)  # ε = 0: z = μ = x_img
    model.draw_prior = lambda like: torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    model.decoder = Apply(lambda z_sketch: z_sketch[:, :2] + z_sketch[:, 2:])  # x̂_img = z + x_sk
    model.regressor = Apply(lambda generated: generated)
    model.discriminator = LogitFromFirstCoordinate()
    discriminator_sgd = RecordingSGD(model.discriminator.parameters(), lr=1.0)
    autoencoder_sgd = torch.optim.SGD([nn.Parameter(torch.zeros(()))], lr=1.0)  # no trainable AE weights here
    model.optimizers = lambda: (autoencoder_sgd, discriminator_sgd)
    model.manual_backward = lambda loss: loss.backward()
    photo = torch.tensor([[-math.log(3.0), 1.0], [0.0, 1.0]])  # z = x_img: fake logits −ln 3 and 0
    sketch = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    loss = model.training_step({"sketch": sketch, "photo": photo, "label": torch.zeros(2)}, 0)
    # (1) real logits ln 3, 0; fake logits −ln 3, 0. D loss = ½ log(8/3) (as the hand test above), and
    # d/da of the mean BCE: ¼ Σ (D − label)·z_0 = ¼ [(¾ − 1)·ln 3 + (¼ − 0)·(−ln 3)] = −⅛ ln 3:
    # the prior is pushed towards "real" (a grows), the encoder codes towards "fake"
    assert discriminator_sgd.gradients == [pytest.approx(-math.log(3.0) / 8, abs=1e-6)]
    scale = 1 + math.log(3.0) / 8
    assert model.discriminator.scale.item() == pytest.approx(scale, abs=1e-6)
    # (2) fake logits now −scale·ln 3 and 0: generator loss ½ [log(1 + 3^scale) + log 2]
    adversarial = 0.5 * (math.log(1 + 3.0**scale) + math.log(2.0))
    # x̂_img = z + x_sk = [[1 − ln 3, 1], [0, 3]]; reconstruction = mean (x̂ − x_img)² = mean x_sk² = 5/4
    # regression = mean (x̂ − x_sk)² = mean z² = ((ln 3)² + 1 + 0 + 1) / 4
    expected = 1.25 + 0.5 * adversarial + 3.0 * (math.log(3.0) ** 2 + 2) / 4
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_one_manual_step_updates_both_parameter_groups_and_logs_every_term():
    torch.manual_seed(0)
    model = small_caae()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    fit = trainer(max_epochs=1, limit_train_batches=1)
    fit.fit(model, DataLoader(pairs(), batch_size=16))
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert any(name.startswith("discriminator.") for name in changed)
    for part in ("encoder.", "mu_head.", "log_var_head.", "decoder.", "regressor."):
        assert any(name.startswith(part) for name in changed), part
    assert fit.global_step == 2  # one step of each optimiser
    terms = {"loss", "reconstruction", "adversarial", "regression", "discriminator"}
    assert {f"train/{term}" for term in terms} <= set(fit.callback_metrics)


def test_nan_loss_names_the_method_the_step_and_the_term():
    model = small_caae()
    fit = trainer(max_epochs=1)
    batch = [{**item, "sketch": torch.full((DIM,), float("nan"))} for item in pairs(8)]
    with pytest.raises(
        FloatingPointError,
        match=r"^caae: the training loss is nan at epoch 0, step 0 \(non-finite terms: discriminator",
    ):
        fit.fit(model, DataLoader(batch, batch_size=8))


def test_training_is_reproducible_with_a_seed():
    def trained() -> Tensor:
        L.seed_everything(3, verbose=False)
        model = small_caae()
        trainer(max_epochs=2).fit(model, DataLoader(pairs(), batch_size=8, shuffle=True))
        return model.eval().embed_query(pairs(4)[0]["sketch"].unsqueeze(0))

    first, second = trained(), trained()
    assert first.shape == (1, DIM) and torch.equal(first, second)


def test_a_checkpoint_with_two_optimisers_resumes(tmp_path):
    torch.manual_seed(0)
    model = small_caae()
    first = trainer(max_epochs=1)
    first.fit(model, DataLoader(pairs(), batch_size=16))
    path = tmp_path / "caae.ckpt"
    first.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)
    assert len(saved["optimizer_states"]) == 2
    assert all(state["state"] for state in saved["optimizer_states"])  # both Adams have moments

    resumed_model = CAAE.load_from_checkpoint(path)
    resumed = trainer(max_epochs=2)
    resumed.fit(resumed_model, DataLoader(pairs(), batch_size=16), ckpt_path=path)
    assert resumed.current_epoch == 2 and resumed.global_step == 8  # 2 epochs x 2 batches x 2 optimisers
    steps = [group["step"] for group in resumed.optimizers[0].state_dict()["state"].values()]
    assert steps and all(step == 4 for step in steps)  # the restored Adam carried on counting
