"""GDH (Zhang et al., ECCV'18): networks' shapes and ranges, the attention mask, the losses and the code
update by hand, bad input, and a tiny fit (codes, checkpoint state, summary image) on hand-made data."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from sbir_bench.data.images import IMAGENET_MEAN, IMAGENET_STD
from sbir_bench.data.records import DataInfo
from sbir_bench.methods.components.domain_migration import (
    AttentionMask,
    Generator,
    ImagePool,
    PatchDiscriminator,
    code_update,
    cycle_loss,
    hash_loss,
    imagenet_to_unit,
    linear_decay_factor,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    running_stats_frozen,
    sign_codes,
    squared_triplet_loss,
    unit_to_imagenet,
)
from sbir_bench.methods.gdh import GDH, STATE_KEY
from tests.methods.test_cvae import one_thread  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE, BITS = 32, 4
SMALL = dict(
    bits=BITS, image_size=SIZE, ngf=4, ndf=4, num_blocks=1, hash_arch="resnet10t", hash_init="random"
)


def info() -> DataInfo:
    return DataInfo(num_classes=3, seen_classes=(0, 1, 2), image_size=SIZE)


def small_gdh(**kwargs) -> GDH:
    return GDH(info(), **{**SMALL, **kwargs})


# --- networks ----------------------------------------------------------------------------------------------
def test_generator_keeps_the_shape_and_the_tanh_range_and_gives_a_binary_bottleneck_mask():
    x = torch.randn(2, 3, SIZE, SIZE)
    generator = Generator(ngf=4, num_blocks=2)
    out, mask = generator.forward_with_mask(x)
    assert out.shape == x.shape and out.abs().max() < 1
    assert mask.shape == (2, 1, SIZE // 4, SIZE // 4) and set(mask.unique().tolist()) <= {0.0, 1.0}
    plain, none = Generator(ngf=4, num_blocks=1, attention=False).forward_with_mask(x)
    assert plain.shape == x.shape and none is None


def test_an_instance_norm_generator_computes_the_same_in_training_and_at_test_time():
    generator = Generator(ngf=4, num_blocks=1, norm="instance")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in generator.modules())
    x = torch.randn(3, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(generator.train()(x), generator.eval()(x))
        assert torch.allclose(generator(x[:1]), generator(x)[:1], atol=1e-6)  # no batch dependence
    with pytest.raises(ValueError, match="unknown norm"):
        Generator(ngf=4, num_blocks=1, norm="layer")


def test_the_mask_multiplies_the_bottleneck_features():
    generator = Generator(ngf=4, num_blocks=1).eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        nn.init.constant_(generator.attention.score.weight, 0.0)  # every score 0: uniform weights, all kept
        kept = generator(x)
        generator.attention.score.bias.fill_(-1.0)  # ReLU(−1) = 0 everywhere: still uniform
        assert torch.equal(generator(x), kept)
        features = generator.encoder(x)
        assert torch.equal(generator.decoder(features), kept)  # an all-ones mask changes nothing
        assert not torch.equal(generator.decoder(torch.zeros_like(features)), kept)


def test_attention_mask_thresholds_softmax_weights_at_a_tenth_of_uniform_by_hand():
    layer = AttentionMask(channels=1, threshold=0.1)
    with torch.no_grad():
        layer.score.weight.fill_(1.0), layer.score.bias.zero_()  # score = ReLU(x)
    # 2×2 positions: τ = 0.1 / 4 = 0.025. Scores (0, 0, −5 → 0, ln 40): weights 1/43, 1/43, 1/43, 40/43;
    # 1/43 ≈ 0.0233 < 0.025 → dropped. With ln 30 instead: 1/33 ≈ 0.0303 > 0.025 → all kept.
    x = torch.tensor([[[[0.0, 0.0], [-5.0, math.log(40.0)]]]])
    assert torch.allclose(layer.weights(x).flatten(), torch.tensor([1, 1, 1, 40]) / 43.0)
    assert layer(x).flatten().tolist() == [0.0, 0.0, 0.0, 1.0]
    x[0, 0, 1, 1] = math.log(30.0)
    assert layer(x).flatten().tolist() == [1.0, 1.0, 1.0, 1.0]
    assert 0.1 / (64 * 64) == pytest.approx(2.44e-5, rel=1e-3)  # the released constant at 256-px inputs
    with pytest.raises(ValueError, match="positive"):
        AttentionMask(channels=1, threshold=0.0)


@pytest.mark.parametrize(("size", "patches"), [(32, 2), (24, 1), (64, 6)])
def test_patch_discriminator_scores_patches(size, patches):
    scores = PatchDiscriminator(ndf=4)(torch.randn(2, 3, size, size))
    assert scores.shape == (2, 1, patches, patches)


# --- losses and steps by hand -------------------------------------------------------------------------------
def test_lsgan_losses_by_hand():
    # generator: mean((0.5 − 1)², (2 − 1)²) = (0.25 + 1) / 2 = 0.625
    assert lsgan_generator_loss(torch.tensor([0.5, 2.0])).item() == pytest.approx(0.625)
    # discriminator: real (1, 0) → mean(0, 1) = 0.5; fake (0.5, −1) → mean(0.25, 1) = 0.625; ½(0.5 + 0.625)
    real, fake = torch.tensor([1.0, 0.0]), torch.tensor([0.5, -1.0])
    assert lsgan_discriminator_loss(real, fake).item() == pytest.approx(0.5625)


def test_cycle_loss_by_hand():
    # 10 · mean(|0 − 0.5|, |1 − 0.5|) = 10 · 0.5 = 5
    assert cycle_loss(torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.5])).item() == pytest.approx(5.0)
    assert cycle_loss(torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.5]), weight=1.0).item() == 0.5


def test_hash_loss_by_hand():
    h_image = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    h_migrated = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    b_image = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    b_sketch = torch.tensor([[1.0, -1.0], [1.0, -1.0]])
    # ‖B_I − H_I‖² = 0 + 1 + 1 + 0 = 2;  ‖B_S − H_S‖² = 0.25 + 2.25 + 1 + 4 = 7.5;
    # ‖H_I − H_S‖² = 0.25 + 0.25 + 0 + 4 = 4.5;  (2 + 7.5 + 4.5) / n = 14 / 2 = 7
    assert hash_loss(h_image, h_migrated, b_image, b_sketch).item() == pytest.approx(7.0)


def test_code_update_by_hand_three_samples_two_classes_two_bits():
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    b_image = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]])
    b_sketch = torch.tensor([[1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0]])
    h_image = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, -3.0]])
    h_sketch = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 2.0]])
    d, new_image, new_sketch = code_update(y, b_image, b_sketch, h_image, h_sketch)
    # 2YᵀY + I = diag(2·2 + 1, 2·1 + 1) = diag(5, 3); B_I + B_S = [[2, 0], [0, −2], [−2, 0]];
    # Yᵀ(B_I + B_S) = [[2, −2], [−2, 0]];  D = [[2/5, −2/5], [−2/3, 0]]
    assert torch.allclose(d, torch.tensor([[0.4, -0.4], [-2 / 3, 0.0]], dtype=torch.float64))
    # Y D = [[.4, −.4], [.4, −.4], [−2/3, 0]]: the third sample's second bit is a tie, broken by ε·H:
    # sign(1e-5 · −3) = −1 for B_I, sign(1e-5 · 2) = +1 for B_S
    assert new_image.tolist() == [[1, -1], [1, -1], [-1, -1]]
    assert new_sketch.tolist() == [[1, -1], [1, -1], [-1, 1]]
    assert new_image.dtype == b_image.dtype
    # no outputs recorded yet (zeros): the tie gives +1, never 0
    _, first, _ = code_update(y, b_image, b_sketch, torch.zeros(3, 2), torch.zeros(3, 2))
    assert first[2].tolist() == [-1, 1]


def test_sign_codes_have_no_zeros():
    assert sign_codes(torch.tensor([0.0, -0.0, 2.0, -3.0, 1e-30])).tolist() == [1, 1, 1, -1, 1]


def test_squared_triplet_loss_by_hand():
    anchor = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    positive = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # squared distances 1 and 0
    negative = torch.tensor([[3.0, 0.0], [5.0, 0.0]])  # 9 and 25
    # max(0, 18 + 1 − 9) = 10, max(0, 18 + 0 − 25) = 0; mean 5
    assert squared_triplet_loss(anchor, positive, negative).item() == pytest.approx(5.0)


def test_linear_decay_factor_follows_the_released_schedule():
    # 30 epochs, decay after 25: lr −= lr0 / 5 at the start of epochs 25..29
    factors = [linear_decay_factor(e, 25, 30) for e in range(30)]
    assert factors[:25] == [1.0] * 25 and factors[25:] == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0])
    assert [linear_decay_factor(e, 2, 2) for e in range(2)] == [1.0, 1.0]  # no decay


def test_imagenet_and_unit_ranges_convert_both_ways():
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    white, black = (1 - mean) / std, (0 - mean) / std  # normalised white and black pixels
    assert torch.allclose(imagenet_to_unit(white.expand(3, 2, 2)), torch.ones(3, 2, 2), atol=1e-6)
    assert torch.allclose(imagenet_to_unit(black.expand(3, 2, 2)), -torch.ones(3, 2, 2), atol=1e-6)
    x = torch.randn(2, 3, 4, 4)
    assert torch.allclose(unit_to_imagenet(imagenet_to_unit(x)), x, atol=1e-5)


def test_running_stats_frozen_normalises_with_batch_statistics_and_keeps_the_running_ones():
    generator = Generator(ngf=4, num_blocks=1).train()
    x = torch.randn(4, 3, SIZE, SIZE) * 3 + 2
    before = {k: v.clone() for k, v in generator.state_dict().items() if "running" in k}
    with running_stats_frozen(generator):
        inside = generator(x)
    after = {k: v for k, v in generator.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.allclose(inside, generator(x))  # the same batch statistics either way
    assert all(m.momentum == 0.1 for m in generator.modules() if isinstance(m, nn.BatchNorm2d))
    assert any(not torch.equal(before[k], v) for k, v in generator.state_dict().items() if k in before)


def test_image_pool_fills_then_returns_current_or_stored_images():
    batch = torch.arange(6.0).view(6, 1, 1, 1)
    assert ImagePool(0).query(batch) is batch
    pool = ImagePool(2)
    assert torch.equal(pool.query(batch[:2]), batch[:2]) and len(pool.images) == 2
    torch.manual_seed(0)
    out = pool.query(batch[2:])
    assert out.shape == (4, 1, 1, 1) and len(pool.images) == 2
    assert set(out.flatten().tolist()) <= set(range(6))  # each a current image or a stored (older) one


# --- the method: arguments, embeddings, bad input -----------------------------------------------------------
@pytest.mark.parametrize("bits", [0, -8, 2.5, True, "64", None])
def test_bits_must_be_a_positive_integer(bits):
    with pytest.raises(ValueError, match="gdh: bits"):
        small_gdh(bits=bits)


def test_bad_settings_are_refused_with_the_method_named():
    with pytest.raises(ValueError, match="gdh: unknown mode 'fine'"):
        small_gdh(mode="fine")
    with pytest.raises(ValueError, match="gdh: image_size"):
        small_gdh(image_size=30)
    with pytest.raises(ValueError, match="gdh: unknown generator_norm"):
        small_gdh(generator_norm="group")
    with pytest.raises(ValueError, match="gdh: unknown hash_init"):
        small_gdh(hash_init="imagenet")
    with pytest.raises(ValueError, match="gdh: hash_arch 'resnet99'"):
        small_gdh(hash_arch="resnet99")


def test_codes_are_plus_minus_one_without_zeros():
    method = small_gdh().eval()
    x = torch.randn(3, 3, 64, 64)  # served at 64 px, resized inside
    with torch.no_grad():
        query, gallery = method.embed_query(x), method.embed_gallery(x)
    for codes in (query, gallery):
        assert codes.shape == (3, BITS) and set(codes.unique().tolist()) <= {-1.0, 1.0}
    assert method.distance == "hamming" and method.inputs == "images" and method.train_sampling == "pairs"


@pytest.mark.parametrize(
    ("network", "lr_name"),
    [("generator", "lr"), ("discriminator", "lr"), ("hashing network", "hash_lr")],
)
def test_a_non_finite_loss_names_the_network_and_the_epoch(network, lr_name):
    method = small_gdh()
    nan = torch.tensor(float("nan"))
    with pytest.raises(FloatingPointError, match=f"epoch 0.*{network}/term.*the {network}'s loss") as error:
        method._check(nan, {"term": nan}, network, lr_name)
    assert "gdh" in str(error.value) and lr_name in str(error.value)


# --- a tiny fit on a hand-made data stand-in ----------------------------------------------------------------
class TinyData(L.LightningDataModule):
    """8 training pairs of 2 classes (catalog record indices 100..107), 4 queries and 4 gallery images."""

    def __init__(self, nan: bool = False) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.sketches = torch.randn(8, 3, SIZE, SIZE, generator=generator)
        if nan:
            self.sketches[0, 0, 0, 0] = float("nan")
        self.photos = torch.randn(8, 3, SIZE, SIZE, generator=generator)
        self.labels = np.arange(8) % 2
        self.records = np.arange(100, 108)

    def _training_sets(self):
        return self.records, None, self.labels, None

    def train_dataloader(self) -> DataLoader:
        items = [
            {"sketch": s, "photo": p, "label": int(y), "sketch_index": int(r), "photo_index": int(r) + 50}
            for s, p, y, r in zip(self.sketches, self.photos, self.labels, self.records, strict=True)
        ]
        return DataLoader(items, batch_size=4)

    def _eval(self) -> list[DataLoader]:
        items = [{"input": x, "label": i % 2, "index": i} for i, x in enumerate(self.photos[:4])]
        return [DataLoader(items, batch_size=4), DataLoader(items, batch_size=4)]

    val_dataloader = test_dataloader = _eval


def fit(method: GDH, data: TinyData, tmp_path=None) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(method, datamodule=data)
    return trainer


def test_a_tiny_fit_updates_codes_and_keeps_them_in_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    method = small_gdh(lr_decay_start=0)
    trainer = fit(method, TinyData(), tmp_path)
    codes = method._codes
    assert codes is not None and codes["b_image"].shape == (8, BITS)
    assert set(torch.cat([codes["b_image"], codes["b_sketch"]]).unique().tolist()) <= {-1.0, 1.0}
    assert codes["h_image"].abs().sum() > 0 and codes["h_sketch"].abs().sum() > 0  # every row recorded
    # lr_decay_start 0 of 1 epoch: the generators' and discriminators' rate is 0, H's is not
    assert [g["lr"] for o in trainer.optimizers for g in o.param_groups] == [0.0, 0.0, 0.0, 2e-4]

    path = tmp_path / "gdh.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)
    assert torch.equal(saved[STATE_KEY]["b_image"], codes["b_image"]) and not any(
        key.startswith("_codes") for key in saved["state_dict"]
    )
    resumed = GDH.load_from_checkpoint(path)
    resumed._labels_onehot = method._labels_onehot
    resumed._start_codes()
    assert all(torch.equal(resumed._codes[k], codes[k]) for k in codes)
    assert len(resumed._pools["image"].images) == len(method._pools["image"].images) == 8


def test_a_nan_image_stops_training_naming_the_generator():
    torch.manual_seed(0)
    with pytest.raises(FloatingPointError, match="epoch 0.*generator"):
        fit(small_gdh(), TinyData(nan=True))


def test_summary_images_draws_sketches_above_their_migration():
    method = small_gdh()
    images = method.summary_images(TinyData())
    image, caption = images["migrated_sketches"]
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert image.size == (4 * 66 + 2, 2 * 66 + 2)  # 4 test sketches, 64-px tiles, 2-px padding
    assert "G_I(sketch)" in caption and method.training  # the mode is restored
