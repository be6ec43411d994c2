"""Deep Sketch Hashing (sbir_bench/methods/dsh.py): the towers' shapes, the cross-weight fusion and the shared
sketch/token conv weights, ±1 codes, bad input, and the epoch-end D/B update on a hand-made tiny batch."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sbir_bench.data.records import DataInfo
from sbir_bench.methods.dsh import DeepSketchHashing, FusionNet, ImageConvTower, SketchConvTower
from sbir_bench.registry import METHODS

NUM_CLASSES, SIZE, BITS = 4, 32, 8
TINY = {
    "sketch_size": 24,
    "photo_size": 24,
    "sketch_channels": (4, 4, 4),
    "image_channels": (4, 4, 4, 4, 4),
    "hidden": (8, 8),
    "bits": BITS,
}


def info(class_semantics: np.ndarray | None = None, dataset: str = "") -> DataInfo:
    if class_semantics is None:
        class_semantics = np.random.default_rng(0).normal(size=(NUM_CLASSES, 5)).astype(np.float32)
    return DataInfo(
        num_classes=NUM_CLASSES,
        seen_classes=tuple(range(NUM_CLASSES)),
        image_size=SIZE,
        class_semantics=class_semantics,
        dataset=dataset,
    )


def tiny_method(**kwargs) -> DeepSketchHashing:
    torch.manual_seed(0)
    return DeepSketchHashing(info(), **{**TINY, **kwargs})


def test_registered_as_a_hashing_method_on_photos_with_contours():
    assert METHODS.get("dsh") is DeepSketchHashing
    assert DeepSketchHashing.inputs == "images_with_contours" and DeepSketchHashing.distance == "hamming"
    assert DeepSketchHashing.train_sampling == "pairs"


def test_published_tower_sizes():
    # C2-Net at 200 px: conv 14/3 → 63, pool → 31, pool → 15, pool → 7: 7×7×256
    sketch = SketchConvTower((64, 128, 256), kernel=14, stride=3)
    assert sketch(torch.zeros(1, 3, 200, 200)).shape == (1, 256, 7, 7)
    # AlexNet at 227 px: conv 11/4 → 55, pool → 27, conv2 → 27, pool → 13, conv3-5 → 13, pool → 6
    image = ImageConvTower((96, 256, 384, 384, 256), kernel=11, stride=4)
    assert image(torch.zeros(1, 3, 227, 227)).shape == (1, 256, 6, 6)


def test_output_shapes_of_both_networks():
    method = tiny_method().eval()
    sketches, photos = torch.randn(3, 3, SIZE, SIZE), torch.randn(3, 6, SIZE, SIZE)
    assert method.sketch_outputs(sketches).shape == (3, BITS)
    assert method.photo_outputs(photos).shape == (3, BITS)
    # inputs are resized to the networks' sizes: another input size gives the same shapes
    assert method.photo_outputs(torch.randn(2, 6, 24, 24)).shape == (2, BITS)


def test_fusion_wiring_and_shared_sketch_token_weights():
    method = tiny_method().eval()
    net = method.image_net
    assert isinstance(net, FusionNet)
    assert (
        net.token_tower is method.sketch_net.tower
    )  # one module: C2-Net's conv weights are the token tower's
    conv = next(m for m in method.sketch_net.tower if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight.add_(1.0)
    assert torch.equal(next(m for m in net.token_tower if isinstance(m, torch.nn.Conv2d)).weight, conv.weight)
    # cross weights: the first fc of each tower sees both towers' pooled maps, the second both fc outputs
    # 24 px: image tower 22 → pool 10 → 10 → pool 4 → 4 → pool 1 (4 channels); token tower 22 → pool 10 →
    # pool 4 → pool 1 (4 channels): 4 + 4 pooled features
    assert net.fc1_image[0].in_features == net.fc1_token[0].in_features == 4 + 4
    assert net.fc2_image[0].in_features == net.fc2_token[0].in_features == 2 * TINY["hidden"][0]
    assert net.head.in_features == 2 * TINY["hidden"][1]
    # changing only the token channels (3-5) changes the photo's output and code
    photos = torch.randn(4, 6, SIZE, SIZE)
    other_tokens = photos.clone()
    other_tokens[:, 3:] = torch.randn(4, 3, SIZE, SIZE)
    with torch.no_grad():
        assert not torch.allclose(method.photo_outputs(photos), method.photo_outputs(other_tokens))


def test_codes_are_plus_minus_one_with_no_zero():
    method = tiny_method().eval()
    with torch.no_grad():  # a zero output must become +1
        method.sketch_net.head.weight.zero_()
        method.sketch_net.head.bias.zero_()
    query = method.embed_query(torch.randn(5, 3, SIZE, SIZE))
    gallery = method.embed_gallery(torch.randn(5, 6, SIZE, SIZE))
    assert torch.equal(query, torch.ones(5, BITS))
    assert set(gallery.unique().tolist()) <= {-1.0, 1.0} and gallery.dtype == torch.float32


@pytest.mark.parametrize("bits", [0, -3, 2.5, "64", True, None])
def test_bits_must_be_a_positive_integer(bits):
    with pytest.raises(ValueError, match="dsh: bits .* must be a positive integer"):
        DeepSketchHashing(info(), bits=bits)


def test_missing_side_information_is_a_clear_error_unless_one_hot_is_chosen():
    no_semantics = DataInfo(num_classes=NUM_CLASSES, seen_classes=(0, 1, 2, 3), dataset="sketchy")
    with pytest.raises(ValueError, match=r"dsh needs class side information.*data.semantics.vectors=FILE"):
        DeepSketchHashing(no_semantics, **TINY)
    method = DeepSketchHashing(no_semantics, **{**TINY, "semantics": "one_hot"})
    assert torch.equal(method.class_vectors, torch.eye(NUM_CLASSES, dtype=torch.float64))


def test_photos_without_contour_channels_are_refused():
    with pytest.raises(ValueError, match=r"dsh: photos must arrive as \[B, 6, S, S\]"):
        tiny_method().embed_gallery(torch.randn(2, 3, SIZE, SIZE))


# --- the alternating optimisation ---------------------------------------------------------------------------
SKETCH_RECORDS, PHOTO_RECORDS = torch.arange(10, 18), torch.tensor([3, 5, 7, 9])  # 2 sketches per photo
PHOTO_LABELS = torch.tensor([0, 1, 2, 3])
SKETCH_LABELS = PHOTO_LABELS.repeat_interleave(2)


def pair_batches(batch_size: int = 4) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    items = [
        {
            "sketch": torch.randn(3, SIZE, SIZE, generator=g),
            "photo": torch.randn(6, SIZE, SIZE, generator=g),
            "label": int(SKETCH_LABELS[i]),
            "sketch_index": int(SKETCH_RECORDS[i]),
            "photo_index": int(PHOTO_RECORDS[i // 2]),
        }
        for i in range(len(SKETCH_RECORDS))
    ]
    return list(DataLoader(items, batch_size=batch_size))


def test_one_epoch_end_update_on_a_tiny_batch_never_increases_the_objective():
    method = tiny_method(gamma=0.5, lam=0.1, eps=0.5)
    method.set_training_set(SKETCH_RECORDS, SKETCH_LABELS, PHOTO_RECORDS, PHOTO_LABELS)
    method.init_codes(torch.Generator().manual_seed(0))
    for batch in pair_batches():  # the network outputs of one epoch, kept by record
        F_S, F_I = method.sketch_outputs(batch["sketch"]), method.photo_outputs(batch["photo"])
        method.accumulate_outputs(F_S, batch["sketch_index"], F_I, batch["photo_index"])
    codes = method._codes
    assert codes["count_S"].tolist() == [1.0] * 8 and codes["count_I"].tolist() == [2.0] * 4
    expected_F_I = codes["sum_I"] / 2  # each photo was seen with each of its two sketches
    method.take_epoch_outputs()
    torch.testing.assert_close(codes["F_I"], expected_F_I)
    values = method.update_codes(torch.Generator().manual_seed(1))
    assert values["after_d_step"] <= values["before"] + 1e-9
    assert values["after"] <= values["after_d_step"] + 1e-9
    assert set(codes["B_I"].unique().tolist()) <= {-1.0, 1.0} and codes["B_I"].shape == (BITS, 4)
    assert codes["B_S"].shape == (BITS, 8)


def test_a_capped_pairwise_term_still_never_increases_its_objective():
    method = tiny_method(pairwise_columns=3, init_sweeps=0)
    method.set_training_set(SKETCH_RECORDS, SKETCH_LABELS, PHOTO_RECORDS, PHOTO_LABELS)
    method.init_codes(torch.Generator().manual_seed(0))
    # with 3 of 8 sketch columns (3 of 4 photo columns) per B-step only the D-step's guarantee is global
    values = method.update_codes(torch.Generator().manual_seed(2))
    assert values["after_d_step"] <= values["before"] + 1e-9
    assert method._codes["B_I"].shape == (BITS, 4) and method._codes["B_S"].shape == (BITS, 8)


def test_a_short_fit_trains_updates_codes_and_logs_the_objective():
    method = tiny_method(dissimilar=0.0)
    method.set_training_set(SKETCH_RECORDS, SKETCH_LABELS, PHOTO_RECORDS, PHOTO_LABELS)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(method, train_dataloaders=DataLoader(pair_batches(), batch_size=None))
    logged = trainer.callback_metrics
    assert {"train/objective", "train/pairwise", "train/code_bits_flipped"} <= set(logged)
    assert torch.isfinite(logged["train/objective"])
    # the outputs were consumed at the epoch's end and F holds the epoch's values
    assert method._codes["count_S"].sum() == 0 and method._codes["F_S"].abs().sum() > 0


def test_a_non_finite_loss_stops_with_the_method_named():
    method = tiny_method()
    method.set_training_set(SKETCH_RECORDS, SKETCH_LABELS, PHOTO_RECORDS, PHOTO_LABELS)
    batch = pair_batches()[0]
    batch["sketch"][0, 0, 0, 0] = float("nan")
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False)
    with pytest.raises(FloatingPointError, match="dsh: the training loss is nan"):
        trainer.fit(method, train_dataloaders=DataLoader([batch], batch_size=None))


def test_codes_travel_in_the_checkpoint_but_not_in_the_state_dict(tmp_path):
    method = tiny_method()
    method.set_training_set(SKETCH_RECORDS, SKETCH_LABELS, PHOTO_RECORDS, PHOTO_LABELS)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(method, train_dataloaders=DataLoader(pair_batches(), batch_size=None))
    assert not any("code" in key for key in method.state_dict())
    path = tmp_path / "dsh.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)
    assert torch.equal(saved["dsh_codes"]["B_S"].double(), method._codes["B_S"])
    loaded = DeepSketchHashing.load_from_checkpoint(path)  # alone: no data, no side information needed
    assert loaded.class_vectors is None and torch.equal(
        loaded._restored_codes["B_I"], saved["dsh_codes"]["B_I"]
    )
