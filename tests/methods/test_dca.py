"""DCA (Chen & Fang, ECCV'18): IAML, the class-mean discrepancy and the GAN losses against values worked out
by hand, the stage schedule, the networks' shapes, a tiny three-stage fit on separable fake data, the NaN
errors naming the network, and a checkpoint round trip."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from sbir_bench.methods.components.adversarial_adaptation import (
    class_mean_discrepancy,
    discriminator_loss,
    discriminator_net,
    generator_loss,
    importance_aware_loss,
    metric_net,
    transformation_net,
)
from sbir_bench.methods.shape_dca import DCA
from tests.methods.shape_batches import class_batches, fit, info, nearest_neighbour_accuracy, separable_data
from tests.methods.test_cvae import one_thread  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_iaml_within_a_modality_takes_the_farthest_positive_and_the_nearest_negative():
    x, labels = torch.tensor([[0.0], [1.0], [3.0], [6.0]]), torch.tensor([0, 0, 1, 1])
    # η = 5; per anchor (hardest positive d+, hardest negative d−): 5 − (d− − d+)
    # 0: d+ = 1 (to 1), d− = 3 (to 3) → 3;   1: d+ = 1, d− = 2 (to 3) → 4
    # 3: d+ = 3 (to 6), d− = 2 (to 1) → 6;   6: d+ = 3, d− = 5 (to 1) → 3;   mean 16 / 4 = 4
    assert importance_aware_loss(x, labels, x, labels, margin=5.0).item() == pytest.approx(4.0)
    # η = 1: 1 − 2 → 0, 1 − 1 = 0, 1 + 1 = 2, 1 − 2 → 0;   mean 0.5
    assert importance_aware_loss(x, labels, x, labels, margin=1.0).item() == pytest.approx(0.5)


def test_iaml_across_modalities_and_anchors_without_a_positive_are_left_out():
    anchors, anchor_labels = torch.tensor([[0.0], [5.0], [9.0]]), torch.tensor([0, 1, 2])
    candidates, candidate_labels = torch.tensor([[1.0], [4.0], [6.0]]), torch.tensor([0, 0, 1])
    # anchor 0: d+ = 4 (to 4), d− = 6 (to 6) → 5 − 2 = 3;  anchor 5: d+ = 1 (to 6), d− = 1 (to 4) → 5
    # anchor 9 (class 2): no candidate of its class → left out;   mean (3 + 5) / 2 = 4
    value = importance_aware_loss(anchors, anchor_labels, candidates, candidate_labels, margin=5.0)
    assert value.item() == pytest.approx(4.0)
    alone = importance_aware_loss(anchors[2:], anchor_labels[2:], candidates, candidate_labels, margin=5.0)
    assert alone.item() == 0.0


def test_class_mean_discrepancy_sums_the_gap_norms_over_the_shared_classes():
    transformed = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0], [9.0, 9.0]])
    transformed_labels = torch.tensor([0, 0, 1, 2])
    shapes, shape_labels = torch.tensor([[1.0, 4.0], [3.0, 7.0], [3.0, 7.0]]), torch.tensor([0, 1, 1])
    # class 0: mean [1, 0] vs [1, 4] → ‖[0, −4]‖ = 4;  class 1: [0, 3] vs [3, 7] → ‖[−3, −4]‖ = 5
    # class 2 has no shape in the batch: left out;   L_CMD = 4 + 5 = 9
    value = class_mean_discrepancy(transformed, transformed_labels, shapes, shape_labels)
    assert value.item() == pytest.approx(9.0)


def test_gan_losses_are_the_non_saturating_binary_cross_entropies():
    # σ(ln 3) = 3/4, σ(−ln 3) = 1/4
    # L_D: real ln 3 → −log 3/4 = ln 4/3; fake −ln 3 → −log(1 − 1/4) = ln 4/3;   total 2 ln 4/3
    real, fake = torch.tensor([[math.log(3.0)]]), torch.tensor([[-math.log(3.0)]])
    assert discriminator_loss(real, fake).item() == pytest.approx(2 * math.log(4 / 3))
    # reals [ln 3, 0]: mean (ln 4/3 + ln 2) / 2; fake 0: ln 2
    two = torch.tensor([[math.log(3.0)], [0.0]])
    expected = (math.log(4 / 3) + math.log(2)) / 2 + math.log(2)
    assert discriminator_loss(two, torch.zeros(1, 1)).item() == pytest.approx(expected)
    # L_G = −mean log σ(fake): fakes [ln 3, 0] → (ln 4/3 + ln 2) / 2
    assert generator_loss(two).item() == pytest.approx((math.log(4 / 3) + math.log(2)) / 2)


def test_networks_have_the_published_layer_pattern():
    net = metric_net(2048, (1024, 512, 256, 128))
    kinds = [type(layer).__name__ for layer in net]
    assert kinds == ["Linear", "ReLU", "BatchNorm1d"] * 3 + ["Linear", "Tanh"]
    assert transformation_net((128, 64, 32, 64, 128))(torch.rand(2, 128)).shape == (2, 128)
    assert discriminator_net((128, 64, 1))(torch.rand(2, 128)).shape == (2, 1)
    with pytest.raises(ValueError, match="transformation"):
        transformation_net((128, 64))
    with pytest.raises(ValueError, match="discriminator"):
        discriminator_net((128, 64))


def test_stages_follow_the_epoch_ranges():
    method = DCA(info(), metric_epochs=2, transformation_epochs=1)
    assert [method.stage(e) for e in range(5)] == [
        "metric",
        "metric",
        "transformation",
        "adversarial",
        "adversarial",
    ]


def test_embeddings_have_the_configured_width():
    method = DCA(info(dim=16), widths=(8, 6), transformation_widths=(6, 3, 6), discriminator_widths=(6, 1))
    method.eval()
    assert method.embed_query(torch.rand(5, 16)).shape == (5, 6)
    assert method.embed_gallery(torch.rand(4, 3, 16)).shape == (4, 6)
    # a shape is the mean of its views before the shape net
    views = torch.rand(4, 3, 16)
    assert torch.allclose(method.embed_gallery(views), method.embed_gallery(views.mean(dim=1)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"margin": 0.0}, "margin"),
        ({"cmd_weight": -1.0}, "weights"),
        ({"metric_epochs": 0}, "metric_epochs"),
        ({"transformation_widths": (32, 16, 32)}, "embedding width"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=f"dca: .*{message}"):
        DCA(info(), **kwargs)


class Snapshots(L.Callback):
    """Each network's parameters at the end of every training epoch."""

    def __init__(self) -> None:
        self.params: dict[str, list[list[torch.Tensor]]] = {}

    def on_train_epoch_end(self, trainer, module) -> None:
        for name in ("sketch_net", "shape_net", "transformation", "discriminator"):
            snapshot = [p.detach().clone() for p in getattr(module, name).parameters()]
            self.params.setdefault(name, []).append(snapshot)


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def small(**kwargs) -> DCA:
    torch.manual_seed(0)
    sizes = dict(widths=(32, 8), transformation_widths=(8, 4, 8), discriminator_widths=(8, 4, 1))
    return DCA(info(), **sizes, margin=1.0, lr=3e-3, **kwargs)


def test_a_tiny_three_stage_fit_trains_each_network_in_its_stage():
    data = separable_data()
    method = small(metric_epochs=4, transformation_epochs=4)
    start = {n: [p.detach().clone() for p in getattr(method, n).parameters()] for n in ("transformation",)}
    discriminator_at_start = [p.detach().clone() for p in method.discriminator.parameters()]
    before = nearest_neighbour_accuracy(method, data)
    snapshots = Snapshots()
    # epochs 0-3 metric, 4-7 transformation, 8-13 adversarial
    fit(method, class_batches(data, classes=3, n=4, m=2, num_batches=8), epochs=14, callbacks=[snapshots])
    p = snapshots.params
    assert not same(p["sketch_net"][0], p["sketch_net"][3]) and not same(p["shape_net"][0], p["shape_net"][3])
    assert same(p["sketch_net"][3], p["sketch_net"][13]) and same(p["shape_net"][3], p["shape_net"][13])
    assert same(p["transformation"][3], start["transformation"]), "T waits for the metric nets"
    assert not same(p["transformation"][3], p["transformation"][7]), "T is pre-trained in stage 2"
    assert same(p["discriminator"][7], discriminator_at_start), "D waits for the adversarial stage"
    assert not same(p["discriminator"][7], p["discriminator"][13]), "D learns in the adversarial stage"
    assert not same(p["transformation"][7], p["transformation"][13]), "T learns in the adversarial stage"
    after = nearest_neighbour_accuracy(method, data)
    assert after >= 0.7 and after > before, (before, after)


@pytest.mark.parametrize(
    ("broken", "stage_epoch", "network"),
    [
        ("sketch_net", 0, "metric networks"),
        ("transformation", 1, "transformation \\(generator\\)"),
        ("discriminator", 1, "discriminator"),
    ],
)
def test_a_nan_loss_names_the_network_and_the_step(broken, stage_epoch, network):
    data = separable_data()
    method = small(metric_epochs=1, transformation_epochs=0 if broken == "discriminator" else 1)
    with torch.no_grad():
        next(getattr(method, broken).parameters()).fill_(float("nan"))
    message = f"^dca: the training loss is nan at epoch {stage_epoch}, step \\d+ .*{network}"
    with pytest.raises(FloatingPointError, match=message):
        fit(method, class_batches(data, classes=3, n=4, m=2, num_batches=2), epochs=3)


def test_a_checkpoint_restores_the_trained_networks(tmp_path):
    data = separable_data()
    method = small(metric_epochs=1, transformation_epochs=1)
    fit(method, class_batches(data, classes=3, n=4, m=2, num_batches=4), epochs=3)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, max_epochs=0)
    trainer.strategy.connect(method)
    path = tmp_path / "dca.ckpt"
    trainer.save_checkpoint(path)
    loaded = DCA.load_from_checkpoint(path)
    method.eval(), loaded.eval()
    assert torch.equal(loaded.embed_query(data["sketch"]), method.embed_query(data["sketch"]))
    assert torch.equal(loaded.embed_gallery(data["shape"]), method.embed_gallery(data["shape"]))
