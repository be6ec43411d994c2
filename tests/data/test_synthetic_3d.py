"""The embedded sketch → 3D default ``synthetic_3d`` on a small configuration (20 classes x 3 models)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sbir_bench.data.readers.shrec import check_shrec13
from sbir_bench.data.synthetic import shape_dataset
from sbir_bench.data.synthetic.dataset import MANIFEST_NAME
from sbir_bench.data.synthetic.mesh_shapes import ATTRIBUTE_NAMES, CLASSES
from sbir_bench.data.synthetic.shape_dataset import ShapeConfig, build_synthetic_3d, synthetic_3d_root
from sbir_bench.registry import DATASETS

SMALL = {
    "num_classes": 20,
    "models_per_class": 3,
    "sketches_per_class": 3,
    "test_sketches_per_class": 1,
    "sketch_size": 32,
    "num_unseen": 4,
    "views": "ring",
    "num_views": 4,
    "image_size": 32,
    "progress": False,
}
CONFIG = ShapeConfig(20, 3, 3, 1, 32, 0)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return cache, build_synthetic_3d(cache, **SMALL)


def test_registered_with_at_least_20_classes():
    assert "synthetic_3d" in DATASETS.names()
    assert len(CLASSES) >= 20 and len({c.name for c in CLASSES}) == len(CLASSES)


def test_catalog_counts_splits_and_semantics(built):
    _, catalog = built
    records = catalog.records
    assert catalog.name == "synthetic_3d" and catalog.pairing == "class"
    assert catalog.class_names == [c.name for c in CLASSES[:20]]
    assert records["domain"].value_counts().to_dict() == {"sketch": 20 * 4, "shape": 20 * 3}
    shapes = records[records["domain"] == "shape"]
    assert all(len(views) == 4 and Image.open(views[0]).size == (32, 32) for views in shapes["views"])
    labels = records["label"].to_numpy()

    official = catalog.splits["official"]
    assert official.setting == "traditional"
    assert len(official.test_query) == 20 and len(official.test_gallery) == 60
    assert len(official.val_query) == 20  # one of each class's three training sketches
    assert set(records["domain"].iloc[official.train]) == {"sketch", "shape"}

    zeroshot = catalog.splits["zeroshot"]
    assert zeroshot.setting == "zeroshot" and zeroshot.unseen_classes == (16, 17, 18, 19)
    for part in ("train", "val_query", "val_gallery"):
        assert labels[zeroshot.part(part)].max() < 16, part
    assert set(labels[zeroshot.test_query]) == set(labels[zeroshot.test_gallery]) == {16, 17, 18, 19}
    assert len(zeroshot.test_query) == 4 * 4 and len(zeroshot.test_gallery) == 4 * 3

    semantics = catalog.class_semantics
    assert semantics.shape == (20, len(ATTRIBUTE_NAMES)) and catalog.semantics_kind == "attributes"
    np.testing.assert_allclose(np.linalg.norm(semantics, axis=1), 1.0, rtol=1e-6)
    assert len({tuple(row) for row in semantics.round(6).tolist()}) == 20, "every class its own vector"


def test_same_seed_same_bytes_and_the_cache_is_reused(built, tmp_path, monkeypatch):
    cache, catalog = built
    root = synthetic_3d_root(cache, CONFIG)
    again = tmp_path / "again"
    again.parent.mkdir(exist_ok=True)
    shape_dataset._generate(again, CONFIG, progress=False)
    assert (again / MANIFEST_NAME).read_bytes() == (root / MANIFEST_NAME).read_bytes()
    model = "SHREC13_SBR_TARGET_MODELS/models/m7.off"
    assert (again / model).read_bytes() == (root / model).read_bytes()
    other = ShapeConfig(20, 3, 3, 1, 32, seed=1)
    assert other.fingerprint != CONFIG.fingerprint

    def fail(*args, **kwargs):
        raise AssertionError("the cached tree should be reused")

    monkeypatch.setattr(shape_dataset, "_generate", fail)
    assert build_synthetic_3d(cache, **SMALL).fingerprint == catalog.fingerprint


def test_the_shrec13_checker_finds_no_problem(built):
    cache, _ = built
    assert check_shrec13(synthetic_3d_root(cache, CONFIG), views="ring", num_views=4, image_size=32) == []


def test_classes_are_distinguishable(built):
    """Each model's mean view silhouette is nearest to its own class's mean (leave-one-out) far more
    often than chance (1/20), and every sketch has some ink but is mostly paper."""
    _, catalog = built
    records = catalog.records
    shapes = records[records["domain"] == "shape"]
    silhouettes = np.stack(
        [np.mean([np.asarray(Image.open(v)) > 0 for v in views], axis=0).ravel() for views in shapes["views"]]
    )
    labels = shapes["label"].to_numpy()
    correct = 0
    for i in range(len(labels)):
        others = np.arange(len(labels)) != i
        means = np.stack([silhouettes[others & (labels == c)].mean(axis=0) for c in range(20)])
        correct += int(np.argmin(((means - silhouettes[i]) ** 2).sum(axis=1)) == labels[i])
    assert correct / len(labels) > 0.5
    for path in records.loc[records["domain"] == "sketch", "path"]:
        ink = (np.asarray(Image.open(path)) < 128).mean()
        assert 0.005 < ink < 0.5, path


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_classes": 1}, "num_classes must be in 2.."),
        ({"sketches_per_class": 1}, "sketches_per_class must be >= 2"),
        ({"num_unseen": 20}, "num_unseen must be in 1..num_classes-1"),
        ({"image_kind": "normal"}, "unknown image_kind"),
    ],
)
def test_bad_options_are_value_errors(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        build_synthetic_3d(tmp_path, **{**SMALL, **options})
