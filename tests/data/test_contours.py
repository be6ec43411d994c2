"""Contour maps ("sketch tokens" substitute): the detector, the cache, and photo + contour tensors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sbir_bench.data.cache_entries import StaleCacheWarning
from sbir_bench.data.contours import PhotoWithContour, contour_map, photo_contours
from sbir_bench.data.images import IMAGENET_MEAN, IMAGENET_STD
from sbir_bench.data.records import Catalog, DatasetError

SIZE = 32


def _bar_photo(left: int, width: int = 6) -> Image.Image:
    """A white vertical bar on black, columns [left, left + width)."""
    pixels = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    pixels[4:-4, left : left + width] = 255
    return Image.fromarray(pixels)


def _catalog(tmp_path, photos: list[Image.Image]) -> Catalog:
    rows = []
    for i, photo in enumerate(photos):
        path = tmp_path / f"photo{i}.png"
        photo.save(path)
        rows.append({"path": str(path), "domain": "photo", "label": 0, "instance": f"i{i}", "views": ()})
    rows.append(
        {"path": str(tmp_path / "sketch.png"), "domain": "sketch", "label": 0, "instance": "i0", "views": ()}
    )
    records = pd.DataFrame(rows)
    return Catalog(name="contour-test", records=records, class_names=["c"], splits={}, fingerprint="f1")


def test_contour_map_finds_the_edges_of_a_bar_and_nothing_inside_it():
    edges = contour_map(_bar_photo(10), SIZE)
    assert edges.shape == (SIZE, SIZE) and edges.dtype == bool
    columns = np.flatnonzero(edges[SIZE // 2])
    # the bar spans columns 10..15: its two vertical edges lie at 9/10 and 15/16, nothing in between
    assert set(columns) <= {9, 10, 15, 16} and {9, 10} & set(columns) and {15, 16} & set(columns)
    assert not edges[8:-8, 12:14].any() and not edges[8:-8, :7].any()


def test_the_cache_is_built_once_verified_and_rebuilt_when_corrupt(tmp_path, monkeypatch):
    catalog = _catalog(tmp_path, [_bar_photo(4), _bar_photo(20)])
    maps = photo_contours(catalog, tmp_path / "cache", SIZE, progress=False)
    assert maps.packed.shape == (2, SIZE, SIZE // 8) and list(maps.row_of_record) == [0, 1, -1]
    assert np.array_equal(maps(1), contour_map(_bar_photo(20), SIZE))
    with pytest.raises(KeyError, match="record 2 is not a photo"):
        maps(2)
    calls = []
    monkeypatch.setattr("sbir_bench.data.contours.contour_map", lambda *a, **k: calls.append(a) or 1 / 0)
    photo_contours(catalog, tmp_path / "cache", SIZE, progress=False)  # from the cache: no detector call
    assert calls == []
    data_file = next((tmp_path / "cache").rglob("contours.npy"))
    data_file.write_bytes(data_file.read_bytes()[:-5])
    monkeypatch.undo()
    with pytest.warns(StaleCacheWarning, match="fails its checksum"):
        again = photo_contours(catalog, tmp_path / "cache", SIZE, progress=False)
    assert np.array_equal(again(0), maps(0))


def test_a_corrupt_photo_is_named(tmp_path):
    catalog = _catalog(tmp_path, [_bar_photo(4)])
    (tmp_path / "photo0.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="photo0.png"):
        photo_contours(catalog, tmp_path / "cache", SIZE, progress=False)


def _unnormalised(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]


def test_training_crops_and_flips_move_photo_and_contour_together(tmp_path):
    catalog = _catalog(tmp_path, [_bar_photo(7)])  # the bar left of the centre
    maps = photo_contours(catalog, tmp_path / "cache", SIZE, progress=False)
    transform = PhotoWithContour(catalog.records["path"].tolist(), maps, train=True)
    flipped = 0
    for seed in range(12):
        torch.manual_seed(seed)
        out = transform(0)
        assert out.shape == (6, SIZE, SIZE)
        photo, ink = _unnormalised(out[:3]).mean(0), 1 - _unnormalised(out[3:]).mean(0)
        bar = photo[SIZE // 2] > 0.5
        inked = ink[SIZE // 2] > 0.3
        centre_bar, centre_ink = np.flatnonzero(bar).mean(), np.flatnonzero(inked).mean()
        assert abs(centre_bar - centre_ink) < 3, (seed, centre_bar, centre_ink)  # the ink frames the bar
        flipped += centre_bar > SIZE / 2
    assert 0 < flipped < 12, "both orientations occur over the seeds"
