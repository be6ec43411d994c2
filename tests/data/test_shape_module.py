"""The DataModule on a sketch -> 3D dataset: view inputs, class batches, method view sets and feature
pyramids, on a tiny SHREC'13 tree (2 classes: airplane with 2 models, chair with 1; 3 training sketches
per class, one of which validates)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sbir_bench.data.backbones import BackboneSpec
from sbir_bench.data.feature_cache import extract_features, extract_view_features, image_rows
from sbir_bench.data.modules import RetrievalDataModule
from sbir_bench.data.pretraining import pretraining_images, pretraining_indices
from sbir_bench.data.records import DataInfo, DatasetError
from sbir_bench.methods.base import data_hparams, data_info
from sbir_bench.registry import DATASETS

from .readers.test_shrec import make_shrec13
from .test_modules import FAKE, make

SIZE = 32
RING = 3  # ring views per shape in these tests
WIDTH = 512  # resnet10t's feature width


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, Path]:
    """(SHREC'13 root, cache folder) shared by the module: views render and features extract once."""
    base = tmp_path_factory.mktemp("shape-module")
    return make_shrec13(base / "SHREC13"), base / "cache"


def shape_module(tree, inputs="view_features", train_sampling="pairs", seed=0, **configure):
    root, cache = tree
    module = RetrievalDataModule(
        "shrec13",
        "official",
        dataset_kwargs={
            "root": str(root),
            "views": "ring",
            "num_views": RING,
            "image_size": SIZE,
            "progress": False,
        },
        cache_dir=str(cache),
        backbone={"name": "resnet10t", "image_size": SIZE},
        batch_size=2,
        eval_batch_size=8,
        seed=seed,
    )
    module.configure_for(inputs, train_sampling, **configure)
    module.prepare_data()
    module.setup("fit")
    return module


def eval_batches(module):
    query, gallery = module.test_dataloader()
    return next(iter(query)), next(iter(gallery))


def test_view_features_serve_sketches_as_rows_and_shapes_as_view_stacks(tree):
    module = shape_module(tree)
    info = module.info()
    assert info.num_views == RING and info.feature_dim == WIDTH and info.feature_levels == ()
    query, gallery = eval_batches(module)
    assert query["input"].shape == (4, WIDTH) and query["input"].dtype == torch.float32
    assert gallery["input"].shape == (3, RING, WIDTH)
    pairs = next(iter(module.train_dataloader()))
    assert pairs["sketch"].shape == (2, WIDTH) and pairs["photo"].shape == (2, RING, WIDTH)
    # the partner under class pairing is a training shape of the sketch's class
    labels = module.catalog.records["label"].to_numpy()
    np.testing.assert_array_equal(labels[pairs["photo_index"].numpy()], pairs["label"].numpy())


def test_a_shapes_view_rows_average_to_its_pooled_feature(tree):
    views, pooled = shape_module(tree), shape_module(tree, inputs="features")
    (view_query, view_gallery), (pooled_query, pooled_gallery) = eval_batches(views), eval_batches(pooled)
    np.testing.assert_allclose(view_gallery["input"].double().mean(dim=1), pooled_gallery["input"], atol=1e-5)
    np.testing.assert_array_equal(view_query["input"], pooled_query["input"])  # a sketch is one image
    assert pooled.info().num_views == RING  # the shapes' view count, whatever the inputs


def test_view_images_stack_the_transformed_views(tree):
    module = shape_module(tree, inputs="view_images")
    info = module.info()
    assert info.num_views == RING and info.feature_dim is None
    query, gallery = eval_batches(module)
    assert query["input"].shape == (4, 3, SIZE, SIZE)
    assert gallery["input"].shape == (3, RING, 3, SIZE, SIZE)
    assert not torch.equal(gallery["input"][0, 0], gallery["input"][0, 1]), "views differ"
    batch = next(iter(module.train_dataloader()))
    assert batch["sketch"].shape == (2, 3, SIZE, SIZE) and batch["photo"].shape == (2, RING, 3, SIZE, SIZE)


def epoch(module) -> list[dict[str, torch.Tensor]]:
    return list(module.train_dataloader())


def test_class_batches_hold_c_classes_of_n_sketches_and_m_shapes(tree):
    # 4 training sketches (2 per class), C = 2, n = 1, m = 2: ceil(4 / 2) = 2 batches per epoch
    module = shape_module(tree, train_sampling="class_batches", class_batch=(2, 1, 2))
    labels = module.catalog.records["label"].to_numpy()
    batches = epoch(module)
    assert len(batches) == len(module.train_dataloader()) == 2
    sketches = []
    for batch in batches:
        assert set(batch) == {"sketch", "sketch_label", "sketch_index", "shape", "shape_label", "shape_index"}
        assert batch["sketch"].shape == (2, WIDTH) and batch["shape"].shape == (4, RING, WIDTH)
        assert batch["sketch_label"].dtype == batch["shape_label"].dtype == torch.long
        np.testing.assert_array_equal(labels[batch["sketch_index"].numpy()], batch["sketch_label"].numpy())
        np.testing.assert_array_equal(labels[batch["shape_index"].numpy()], batch["shape_label"].numpy())
        classes = batch["sketch_label"].reshape(2, 1)[:, 0]  # class-major: C rows of n sketches
        assert sorted(classes.tolist()) == [0, 1]
        shape_classes = batch["shape_label"].reshape(2, 2)
        np.testing.assert_array_equal(shape_classes, classes[:, None].expand(2, 2))
        domains = module.catalog.records["domain"].to_numpy()
        assert (domains[batch["sketch_index"].numpy()] == "sketch").all()
        assert (domains[batch["shape_index"].numpy()] == "shape").all()
        sketches += batch["sketch_index"].tolist()
    # without replacement within a class while it lasts: each training sketch once in the epoch
    train = module.catalog.records.iloc[module.split_.train]
    assert sorted(sketches) == sorted(train.index[train["domain"] == "sketch"].tolist())
    chair = batches[0]["shape_index"][batches[0]["shape_label"] == 1]
    assert chair.tolist() == [chair[0].item()] * 2, "the chair class has one model: drawn with replacement"


def test_class_batches_are_seeded_resumable_and_capped_at_the_classes(tree):
    configure = {"train_sampling": "class_batches", "class_batch": (5, 2, 1)}
    first, again = shape_module(tree, **configure), shape_module(tree, **configure)
    assert len(first.train_dataloader()) == 1, "C is capped at the 2 training classes: ceil(4 / 4)"
    indices = [
        [b["sketch_index"].tolist() + b["shape_index"].tolist() for b in epoch(m)] for m in (first, again)
    ]
    assert indices[0] == indices[1]
    epoch(first)  # epoch 1
    state = first.state_dict()
    expected = epoch(first)[0]  # epoch 2's first batch
    resumed = shape_module(tree, **configure)
    resumed.load_state_dict(state)
    batch = epoch(resumed)[0]
    for key in expected:
        assert torch.equal(batch[key], expected[key]), key
    seeds = {
        tuple(
            tuple(b["sketch_index"].tolist())
            for _ in range(3)
            for b in epoch(shape_module(tree, seed=seed, **configure))
        )
        for seed in range(4)
    }
    assert len(seeds) > 1, "other seeds draw other batches"


def test_method_view_set_replaces_the_datasets_views(tree):
    module = shape_module(tree, views="two")
    assert module.info().num_views == 2
    _, gallery = eval_batches(module)
    assert gallery["input"].shape == (3, 2, WIDTH)
    views = module.catalog.records["views"][module.catalog.records["domain"] == "shape"]
    assert views.map(len).eq(2).all()


def test_feature_pyramid_concatenates_grids_whose_1x1_level_is_the_pooled_feature(tree):
    plain = shape_module(tree)
    module = shape_module(tree, feature_pyramid=(1, 2, 4))
    info = module.info()
    assert info.feature_levels == (1, 2, 4) and info.feature_dim == WIDTH * (1 + 4 + 16)
    (query, gallery), (plain_query, plain_gallery) = eval_batches(module), eval_batches(plain)
    assert query["input"].shape == (4, WIDTH * 21) and gallery["input"].shape == (3, RING, WIDTH * 21)
    np.testing.assert_allclose(query["input"][:, :WIDTH], plain_query["input"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gallery["input"][..., :WIDTH], plain_gallery["input"], rtol=1e-5, atol=1e-6)
    # the 2x2 cells average to the 1x1 level when the map's side is even (cells of equal size)
    cells = query["input"][:, WIDTH : 5 * WIDTH].reshape(4, 4, WIDTH)
    np.testing.assert_allclose(cells.mean(dim=1), query["input"][:, :WIDTH], rtol=1e-4, atol=1e-5)


def test_views_on_a_dataset_without_a_view_recipe_is_a_clear_error(tmp_path):
    module = RetrievalDataModule(
        FAKE, "traditional", cache_dir=str(tmp_path), backbone={"name": "resnet10t", "image_size": SIZE}
    )
    module.configure_for("view_features", "class_batches", views="two")
    with pytest.raises(DatasetError, match="no view recipe"):
        module.prepare_data()


def test_view_inputs_serve_a_photo_as_a_single_view(tmp_path):
    module = make(tmp_path, inputs="view_features", train_sampling="class_batches")
    assert module.info().num_views == 1
    query, gallery = eval_batches(module)
    assert query["input"].shape[1:] == (WIDTH,) and gallery["input"].shape[1:] == (1, WIDTH)
    batch = next(iter(module.train_dataloader()))  # default class_batch (8, 4, 2): C capped at 4 classes
    assert batch["sketch"].shape == (16, WIDTH) and batch["shape"].shape == (8, 1, WIDTH)


UNEVEN = "shrec13-with-a-view-missing-for-tests"


def _uneven(cache_dir, **options):
    catalog = DATASETS.create("shrec13", cache_dir=cache_dir, **options)
    first = int(np.flatnonzero(catalog.records["domain"] == "shape")[0])
    catalog.records.at[first, "views"] = catalog.records.at[first, "views"][:-1]
    return catalog


if UNEVEN not in DATASETS:
    DATASETS.register(UNEVEN)(_uneven)


def test_shapes_with_different_view_counts_are_refused_under_view_inputs(tree):
    root, cache = tree
    options = {"root": str(root), "views": "ring", "num_views": RING, "image_size": SIZE, "progress": False}
    module = RetrievalDataModule(UNEVEN, "official", dataset_kwargs=options, cache_dir=str(cache))
    module.configure_for("view_images", "pairs")
    with pytest.raises(DatasetError, match=r"different numbers of views \(\[2, 3\]\), e.g. 'm1' has 2"):
        module.setup("fit")


def test_configure_for_method_reads_class_attributes_with_defaults(tree):
    class Plain:
        inputs, train_sampling = "features", "pairs"

    class Shapes:
        inputs, train_sampling = "view_features", "class_batches"
        views, feature_pyramid, class_batch = "two", (1, 2), (3, 2, 1)

    root, cache = tree
    module = RetrievalDataModule(
        "shrec13", "official", dataset_kwargs={"root": str(root)}, cache_dir=str(cache)
    )
    module.configure_for_method(Plain)
    assert module.views is None and module.backbone.pyramid_levels == () and module.class_batch == (8, 4, 2)
    module.configure_for_method(Shapes)
    assert (module.inputs, module.train_sampling, module.views) == ("view_features", "class_batches", "two")
    assert module.backbone.pyramid_levels == (1, 2) and module.class_batch == (3, 2, 1)
    with pytest.raises(ValueError, match="class_batch"):
        module.configure_for("view_features", "class_batches", class_batch=(2, 0, 1))


def test_stand_in_pretraining_uses_the_training_shapes_views(tree):
    catalog = shape_module(tree).catalog
    indices = pretraining_indices(catalog)
    records = catalog.records.iloc[indices]
    assert records["domain"].eq("shape").all() and len(records) == 3  # the official split trains on all
    paths, labels = pretraining_images(catalog, indices)
    assert len(paths) == 3 * RING and paths[:RING] == list(records["views"].iloc[0])
    np.testing.assert_array_equal(labels, np.repeat(records["label"].to_numpy(), RING))


def test_per_view_cache_is_its_own_entry_and_shards_give_the_same_rows(tree, tmp_path):
    module = shape_module(tree)
    catalog, spec = module.catalog, module.backbone
    rows = image_rows(catalog)
    assert rows[-1] == 10 + 3 * RING and len(module._features) == rows[-1]  # 10 sketches, 3 shapes
    sharded = extract_view_features(catalog, spec, tmp_path, shard_images=2, progress=False)
    np.testing.assert_allclose(sharded, module._features, atol=1e-5)  # other batches: last bits differ
    pooled = extract_features(catalog, spec, tmp_path, progress=False)
    assert pooled.shape == (len(catalog.records), WIDTH)
    assert len(list((tmp_path / "features" / "shrec13").iterdir())) == 2, "pooled and per-view entries"


def test_stand_in_pretraining_trains_on_views(tree, tmp_path):
    catalog = shape_module(tree).catalog
    spec = BackboneSpec(name="resnet10t", image_size=SIZE, pretrain_epochs=1, pretrain_batch_size=4)
    features = extract_view_features(catalog, spec, tmp_path, progress=False)
    assert features.shape == (10 + 3 * RING, WIDTH) and np.isfinite(features).all()
    (weights,) = (tmp_path / "backbones" / "shrec13").glob("*/weights.pt")
    meta = (weights.parent / "meta.json").read_text()
    assert '"num_images": 9' in meta and '"num_items": 3' in meta  # 3 shapes x 3 views


def test_new_data_info_fields_survive_a_checkpoint():
    info = DataInfo(
        num_classes=3, seen_classes=(0, 1, 2), feature_dim=42, num_views=12, feature_levels=(1, 2)
    )
    restored = data_info(data_hparams(info))
    assert restored.num_views == 12 and restored.feature_levels == (1, 2) and restored.feature_dim == 42
    plain = data_hparams(DataInfo(num_classes=3, seen_classes=(0, 1, 2), feature_dim=42))
    assert "num_views" not in plain and "feature_levels" not in plain, "older checkpoints' hparams unchanged"
    assert data_info(plain).num_views == 0 and data_info(plain).feature_levels == ()
