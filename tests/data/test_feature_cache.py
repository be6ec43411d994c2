"""The feature cache at scale: shards that never split a shape's views, kill-and-resume giving the same
bytes as an uninterrupted run, damaged shards rebuilt, and workers streaming images in order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from sbir_bench.data import backbones, feature_cache
from sbir_bench.data.backbones import BackboneSpec, weights_identity
from sbir_bench.data.cache_entries import StaleCacheWarning
from sbir_bench.data.feature_cache import extract_features, feature_cache_dir
from sbir_bench.data.records import Catalog, DatasetError

SIZE = 16
SPEC = BackboneSpec(name="resnet10t", image_size=SIZE)
# record kinds in order: p photo, s sketch, digit n: a shape with n rendered views
LAYOUT = ["p", 3, "s", 3, "p", "p", 2, "s", "p", 3, "s", "p"]
SHARD_IMAGES, BATCH = 4, 3  # small, so shards and batches both cut the records in several places


def build_mixed_catalog(root: Path, layout: list = LAYOUT) -> Catalog:
    """Photos, sketches and multi-view shapes interleaved, as 16-px PNGs (no splits: none is needed)."""
    rows = []
    for record, kind in enumerate(layout):
        files = (
            [root / f"r{record}.png"]
            if isinstance(kind, str)
            else [root / f"r{record}-view{v}.png" for v in range(kind)]
        )
        for number, path in enumerate(files):
            pixels = np.random.default_rng([record, number]).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            root.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
        domain = {"p": "photo", "s": "sketch"}.get(kind, "shape")
        path, views = (str(files[0]), ()) if isinstance(kind, str) else ("", tuple(map(str, files)))
        rows.append((domain, record % 2, f"i{record}", path, views))
    records = pd.DataFrame(rows, columns=["domain", "label", "instance", "path", "views"])
    return Catalog("mixed", records, ["a", "b"], {}, fingerprint=f"mixed-{len(layout)}-v1")


def num_images(catalog: Catalog) -> int:
    return len(feature_cache._image_items(catalog)[0])


def images_in(catalog: Catalog, record_ranges: list[tuple[int, int]]) -> int:
    """Images (a view each for shapes) of the records in the ``[start, stop)`` ranges."""
    per_record = [len(views) or 1 for views in catalog.records["views"]]
    return sum(sum(per_record[start:stop]) for start, stop in record_ranges)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Catalog:
    return build_mixed_catalog(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def reference(catalog, tmp_path_factory) -> np.ndarray:
    """Features from one uninterrupted, serial extraction."""
    return np.array(extract(catalog, tmp_path_factory.mktemp("uninterrupted")))


class _BatchLog(list):
    kill_after: int | None = None


@pytest.fixture
def forward_images(monkeypatch) -> _BatchLog:
    """Sizes of the batches the feature backbones see; set ``forward_images.kill_after`` to make the
    forward raise (a simulated kill) once that many batches have gone through."""
    seen = _BatchLog()
    original = backbones.create_backbone

    def logging_backbone(spec):
        model = original(spec)

        def before_forward(module, args):
            if seen.kill_after is not None and len(seen) >= seen.kill_after:
                raise KeyboardInterrupt("simulated kill")
            seen.append(len(args[0]))

        model.register_forward_pre_hook(before_forward)
        return model

    monkeypatch.setattr(backbones, "create_backbone", logging_backbone)
    return seen


def extract(catalog: Catalog, cache: Path, **options) -> np.ndarray:
    settings_ = {"batch_size": BATCH, "shard_images": SHARD_IMAGES, "progress": False, **options}
    return extract_features(catalog, SPEC, cache, **settings_)


def entry_of(catalog: Catalog, cache: Path) -> Path:
    return feature_cache_dir(catalog, SPEC, cache, weights_identity(SPEC))


def finished_records(entry: Path) -> list[tuple[int, int]]:
    return sorted(tuple(json.loads(p.read_text())["records"]) for p in (entry / "shards").glob("*.json"))


@settings(max_examples=60, deadline=None)
@given(
    views=st.lists(st.integers(1, 5), min_size=1, max_size=40),
    shard_images=st.integers(1, 12),
)
def test_shards_tile_the_records_and_never_split_a_records_views(views, shard_images):
    owners = np.repeat(np.arange(len(views)), views)
    shards = feature_cache._plan_shards(owners, len(views), shard_images)
    assert [s.start for s in shards] == [0] + [s.stop for s in shards[:-1]] and shards[-1].stop == len(views)
    assert [s.first_image for s in shards] == [0] + [s.end_image for s in shards[:-1]]
    assert shards[-1].end_image == len(owners)
    for shard in shards:
        held = owners[shard.first_image : shard.end_image]
        assert held.min() == shard.start and held.max() == shard.stop - 1, "whole records only"
        assert shard.end_image - shard.first_image < shard_images + max(views), "about shard_images each"


def test_a_shapes_feature_is_the_mean_of_its_views_across_shard_and_batch_cuts(catalog, reference):
    model = backbones.create_backbone(SPEC)
    transform = feature_cache.image_transform(SIZE, train=False)
    for record in np.flatnonzero(catalog.records["domain"] == "shape"):
        views = torch.stack(
            [transform(Image.open(v).convert("RGB")) for v in catalog.records["views"][record]]
        )
        with torch.inference_mode():
            expected = model(views).mean(0).numpy()
        np.testing.assert_allclose(reference[record], expected, rtol=1e-4, atol=1e-5)


def test_a_killed_extraction_resumes_from_its_finished_shards_with_identical_features(
    catalog, reference, tmp_path, forward_images
):
    forward_images.kill_after = 5
    with pytest.raises(KeyboardInterrupt, match="simulated kill"):
        extract(catalog, tmp_path / "cache")
    entry = entry_of(catalog, tmp_path / "cache")
    done = finished_records(entry)
    assert done and not (entry / "features.npy").exists() and not (entry / "meta.json").exists()
    done_images = images_in(catalog, done)
    assert 0 < done_images < num_images(catalog), "the kill left some shards finished and some not"

    forward_images.clear()
    forward_images.kill_after = None
    resumed = extract(catalog, tmp_path / "cache")
    assert sum(forward_images) == num_images(catalog) - done_images, "only the unfinished shards ran"
    np.testing.assert_array_equal(resumed, reference)
    assert not (entry / "shards").exists()
    forward_images.clear()
    extract(catalog, tmp_path / "cache")
    assert forward_images == [], "the assembled entry is valid"


def _flip_a_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_damaged_or_unfinished_shards_are_recomputed_and_the_rest_kept(
    catalog, reference, tmp_path, forward_images
):
    forward_images.kill_after = 6
    with pytest.raises(KeyboardInterrupt):
        extract(catalog, tmp_path / "cache")
    entry = entry_of(catalog, tmp_path / "cache")
    shards = entry / "shards"
    finished = sorted(shards.glob("*.npy"))
    assert len(finished) >= 3
    corrupt, unconfirmed = finished[0], finished[1]
    _flip_a_byte(corrupt)
    unconfirmed.with_suffix(".json").unlink()  # as if killed between the data and its checksum
    (entry / ".features.npy.abc.tmp").write_bytes(b"half a write, its writer killed")
    kept = [tuple(json.loads(f.with_suffix(".json").read_text())["records"]) for f in finished[2:]]
    forward_images.clear()
    forward_images.kill_after = None
    with pytest.warns(StaleCacheWarning, match=f"{corrupt.name}.*fails its checksum") as caught:
        resumed = extract(catalog, tmp_path / "cache")
    assert len(caught) == 1, "a shard never confirmed is recomputed without a warning"
    assert sum(forward_images) == num_images(catalog) - images_in(catalog, kept)
    np.testing.assert_array_equal(resumed, reference)
    assert not list(entry.glob(".*.tmp")), "a killed writer's temporary is cleared"


def test_a_changed_shard_size_does_not_reuse_shards_of_other_record_ranges(
    catalog, reference, tmp_path, forward_images
):
    forward_images.kill_after = 5
    with pytest.raises(KeyboardInterrupt):
        extract(catalog, tmp_path / "cache")
    done = set(finished_records(entry_of(catalog, tmp_path / "cache")))
    owners = feature_cache._image_items(catalog)[1]
    replanned = {(s.start, s.stop) for s in feature_cache._plan_shards(owners, len(catalog.records), 7)}
    assert done - replanned, "some finished record ranges are not in the new plan"
    forward_images.clear()
    forward_images.kill_after = None
    resumed = extract(catalog, tmp_path / "cache", shard_images=7)
    assert sum(forward_images) == num_images(catalog) - images_in(catalog, sorted(done & replanned))
    np.testing.assert_allclose(resumed, reference, rtol=1e-5, atol=1e-6)  # other batch cuts: rounding


def test_two_workers_stream_the_images_in_order(catalog, reference, tmp_path):
    np.testing.assert_array_equal(extract(catalog, tmp_path / "cache", num_workers=2), reference)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


# a worker's failure costs torch ~5 s of shutdown (join timeout), so one case runs in a worker
@pytest.mark.parametrize(
    ("damage", "expected", "num_workers"),
    [
        (_truncate, "cannot read image", 0),
        (_empty, r"empty \(0 bytes\)", 0),
        (_truncate, "cannot read image", 1),
    ],
    ids=["truncated", "zero-byte", "truncated-in-a-worker"],
)
def test_a_broken_image_fails_naming_its_file_even_from_a_worker(tmp_path, num_workers, damage, expected):
    catalog = build_mixed_catalog(tmp_path / "data")
    broken = Path(catalog.records["views"][3][1])
    damage(broken)
    with pytest.raises(DatasetError, match=f"{expected}.*{broken.name}"):
        extract(catalog, tmp_path / "cache", num_workers=num_workers)
    assert not list((tmp_path / "cache").rglob("features.npy")), "nothing is published"
