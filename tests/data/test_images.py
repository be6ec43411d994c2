"""Image loading errors name the file; transforms give normalised tensors of the requested size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from sbir_bench.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RandomEdgeMap,
    image_transform,
    load_image,
    normalise_uint8_batch,
    resize_to_uint8,
)
from sbir_bench.data.records import DatasetError


@pytest.fixture
def png(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_loads_and_converts(png: Path) -> None:
    image = load_image(png)
    assert (image.mode, image.size) == ("RGB", (32, 24))
    np.testing.assert_array_equal(np.asarray(image), np.asarray(Image.open(png)))
    assert load_image(png, mode="L").mode == "L"


def test_transparent_background_reads_as_white_paper(tmp_path: Path) -> None:
    path = tmp_path / "sketch.png"
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # transparent black everywhere ...
    rgba[2:4, 2:6] = (0, 0, 0, 255)  # ... except an opaque black stroke
    Image.fromarray(rgba, mode="RGBA").save(path)
    image = np.asarray(load_image(path, mode="L"))
    assert image[0, 0] == 255 and image[3, 3] == 0


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _scramble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[60:] = np.random.default_rng(1).integers(0, 256, len(data) - 60, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.unlink(), "not found"),
        (lambda p: p.write_bytes(b""), "empty"),
        (_truncate, "cannot read image"),
        (_scramble, "cannot read image"),
        (lambda p: p.write_text("plain text, no image"), "cannot read image"),
    ],
    ids=["missing", "zero-byte", "truncated", "corrupt", "not-an-image"],
)
def test_unreadable_files_raise_dataset_error_naming_the_file(png: Path, damage, message: str) -> None:
    damage(png)
    with pytest.raises(DatasetError, match=message) as caught:
        load_image(png)
    assert str(png) in str(caught.value)


def test_eval_transform_resizes_and_normalises() -> None:
    white = Image.new("RGB", (50, 30), (255, 255, 255))
    tensor = image_transform(16, train=False)(white)
    assert tensor.shape == (3, 16, 16) and tensor.dtype == torch.float32
    expected = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(tensor.mean(dim=(1, 2)), expected)
    assert torch.equal(image_transform(16, train=False)(white), tensor)


def test_uint8_decoding_then_batch_normalisation_equals_the_eval_transform_bit_for_bit() -> None:
    generator = np.random.default_rng(0)
    sizes = ((40, 50), (16, 16))
    images = [Image.fromarray(generator.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
    batch = torch.stack([resize_to_uint8(16)(image) for image in images])
    assert batch.dtype == torch.uint8 and batch.shape == (2, 3, 16, 16)
    expected = torch.stack([image_transform(16, train=False)(image) for image in images])
    assert torch.equal(normalise_uint8_batch(batch), expected)
    with pytest.raises(ValueError, match="uint8"):
        normalise_uint8_batch(expected)


def test_train_transform_augments() -> None:
    gradient = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (40, 1))
    image = Image.fromarray(np.stack([gradient] * 3, axis=-1))
    transform = image_transform(20, train=True)
    torch.manual_seed(0)
    outputs = [transform(image) for _ in range(8)]
    assert all(t.shape == (3, 20, 20) for t in outputs)
    assert any(not torch.equal(outputs[0], t) for t in outputs[1:])
    # a horizontal flip of a left-to-right ramp makes some outputs darken to the right
    slopes = [float(t[0, :, -1].mean() - t[0, :, 0].mean()) for t in outputs]
    assert min(slopes) < 0 < max(slopes)


def test_edge_map_turns_a_filled_shape_into_its_outline_on_white():
    photo = Image.new("RGB", (32, 32), (200, 220, 240))  # strong edges only become ink
    ImageDraw.Draw(photo).rectangle((8, 8, 23, 23), fill=(120, 20, 20))
    edges = np.asarray(RandomEdgeMap(p=1.0)(photo))
    assert edges.shape == (32, 32, 3) and set(np.unique(edges)) <= {0, 255}
    ink = edges[..., 0] == 0
    assert ink[7:9, 8:24].any(axis=0).all() and ink[23:25, 8:24].any(axis=0).all(), "top and bottom drawn"
    assert ink[8:24, 7:9].any(axis=1).all() and ink[8:24, 23:25].any(axis=1).all(), "left and right drawn"
    assert not ink[12:20, 12:20].any() and not ink[2:6, 2:6].any(), "inside and background are paper"


def test_edge_map_probability_zero_is_the_identity_and_bad_probabilities_fail():
    photo = Image.new("RGB", (8, 8), (1, 2, 3))
    assert RandomEdgeMap(p=0.0)(photo) is photo
    with pytest.raises(ValueError, match="probability"):
        RandomEdgeMap(p=1.5)
