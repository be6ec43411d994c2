"""The fine-grained embedded default ``synthetic_fg``: attributes drive appearance, determinism, cache,
triplets, attribute tables and the DataModule's fine-grained batches (tiny configurations, seconds)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from sbir_bench.data.modules import RetrievalDataModule
from sbir_bench.data.records import SPLIT_PARTS, Catalog
from sbir_bench.data.synthetic import build_synthetic_fg, fg_dataset, synthetic_fg_root
from sbir_bench.data.synthetic.fg_dataset import FineGrainedConfig, nearest_negatives, render_item
from sbir_bench.data.synthetic.fg_shapes import ATTRIBUTES, CATEGORIES, FineInstance, sample_fine_instance
from sbir_bench.data.synthetic.render import Pose
from sbir_bench.registry import DATASETS

TINY = dict(train_size=8, test_size=5, image_size=32, seed=0, triplets_per_sketch=3, val_fraction=0.25)


def build_tiny(cache_dir: Path, **overrides) -> Catalog:
    return build_synthetic_fg(cache_dir, **{**TINY, **overrides}, progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return build_tiny(tmp_path_factory.mktemp("synthetic_fg"))


def digests(catalog: Catalog) -> list[str]:
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in catalog.records["path"]]


def test_registered_and_shaped_as_qmul(tiny: Catalog) -> None:
    assert "synthetic_fg" in DATASETS
    tiny.validate()
    assert tiny.class_names == list(CATEGORIES)
    split = tiny.split("fine_grained")
    assert split.setting == "fine_grained"
    records = tiny.records
    # one photo and one sketch per instance, 13 instances per category
    assert records.groupby(["domain", "label"]).size().tolist() == [13, 13, 13, 13]
    assert split.counts() == {
        "train": 2 * 2 * 6,  # 8 training instances - 2 validation, photo + sketch, two categories
        "val_query": 4,
        "val_gallery": 4,
        "test_query": 10,
        "test_gallery": 10,
    }
    train_instances = set(records["instance"].iloc[split.train])
    for part in ("val_query", "test_query", "test_gallery"):
        assert not train_instances & set(records["instance"].iloc[split.part(part)])
    assert set(records["domain"].iloc[split.test_query]) == {"sketch"}
    assert set(records["domain"].iloc[split.test_gallery]) == {"photo"}
    # each test sketch's own photo is in the gallery (of both categories)
    assert sorted(records["instance"].iloc[split.test_query]) == sorted(
        records["instance"].iloc[split.test_gallery]
    )
    assert set(records["label"].iloc[split.test_gallery]) == {0, 1}


def test_attribute_tables(tiny: Catalog) -> None:
    names = tiny.attribute_names
    assert len(names) == sum(len(ATTRIBUTES[c]) for c in CATEGORIES) == 20
    assert set(tiny.instance_attributes) == set(tiny.records["instance"])
    for instance, vector in tiny.instance_attributes.items():
        assert vector.shape == (len(names),) and set(np.unique(vector)) <= {0.0, 1.0}
        other = "chair" if instance.startswith("shoe") else "shoe"
        assert not vector[[i for i, name in enumerate(names) if name.startswith(other)]].any()


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, tiny: Catalog) -> None:
    again = build_tiny(tmp_path / "a")
    assert again.fingerprint == tiny.fingerprint
    assert digests(again) == digests(tiny)
    for part in SPLIT_PARTS:
        np.testing.assert_array_equal(
            again.split("fine_grained").part(part), tiny.split("fine_grained").part(part)
        )
    for name, triplets in tiny.triplets.items():
        np.testing.assert_array_equal(again.triplets[name], triplets)
    other = build_tiny(tmp_path / "b", seed=1)
    assert other.fingerprint != tiny.fingerprint
    assert np.mean([a != b for a, b in zip(digests(other), digests(tiny), strict=True)]) > 0.9
    vectors = lambda c: np.stack([c.instance_attributes[i] for i in sorted(c.instance_attributes)])  # noqa: E731
    assert not np.array_equal(vectors(other), vectors(tiny))


def test_cache_is_reused_and_edge_photos_share_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = build_tiny(tmp_path)
    monkeypatch.setattr(fg_dataset, "_render", lambda *args: pytest.fail("the cache was not reused"))
    again = build_tiny(tmp_path)
    assert digests(again) == digests(first)
    edges = build_tiny(tmp_path, photos="edge")
    assert edges.fingerprint != first.fingerprint  # feature caches keep the two apart
    photo_paths = edges.records.loc[edges.records["domain"] == "photo", "path"]
    assert all("/edge/" in path for path in photo_paths)
    root = synthetic_fg_root(tmp_path, FineGrainedConfig(train_size=8, test_size=5, image_size=32))
    assert all(Path(path).is_relative_to(root) for path in edges.records["path"])


def test_a_half_written_cache_is_rebuilt(tmp_path: Path) -> None:
    first = build_tiny(tmp_path)
    Path(first.records["path"].iloc[0]).unlink()
    again = build_tiny(tmp_path)
    assert digests(again) == digests(first)


def changed_pixels(a: np.ndarray, b: np.ndarray) -> int:
    """Pixels of two images that differ by more than 40 grey levels (in any channel)."""
    difference = np.abs(a.astype(int) - b.astype(int))
    return int((difference.reshape(*difference.shape[:2], -1).max(axis=2) > 40).sum())


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_attribute_changes_photo_edge_map_and_sketch(category: str) -> None:
    config = FineGrainedConfig(image_size=64)
    pose = Pose(angle=0.0, mirrored=False)
    streams = ([1, 2, 3], [4, 5, 6])
    for seed in range(3):
        base = sample_fine_instance(category, np.random.default_rng(seed))
        for name in ATTRIBUTES[category]:
            off = render_item(config, base.with_attribute(name, False), pose, streams)
            on = render_item(config, base.with_attribute(name, True), pose, streams)
            for kind in ("photo", "edge", "sketch"):
                changed = changed_pixels(on[kind], off[kind])
                assert changed >= 8, f"{category} {name!r} changes only {changed} pixels of the {kind}"


def test_proportions_alone_change_the_instance() -> None:
    """Two instances with the same attributes still differ (attributes almost, not entirely, decide)."""
    config = FineGrainedConfig(image_size=64)
    pose, streams = Pose(angle=0.0, mirrored=False), ([1], [2])
    a = sample_fine_instance("shoe", np.random.default_rng(0))
    b = FineInstance("shoe", a.attributes, tuple(1.0 - u for u in a.proportions))
    assert (
        changed_pixels(
            render_item(config, a, pose, streams)["edge"], render_item(config, b, pose, streams)["edge"]
        )
        >= 12
    )


def test_nearest_negatives_by_hand() -> None:
    attributes = np.array([[0, 0, 0], [0, 0, 1], [1, 1, 1], [0, 1, 1]])
    # Hamming distances from row 0: rows 1, 2, 3 -> 1, 3, 2; from row 2: rows 0, 1, 3 -> 3, 2, 1
    chosen = nearest_negatives(attributes, 2, np.random.default_rng(0))
    np.testing.assert_array_equal(chosen[0], [1, 3])
    np.testing.assert_array_equal(chosen[2], [3, 1])
    assert nearest_negatives(attributes, 10, np.random.default_rng(0)).shape == (4, 3)


@pytest.mark.parametrize(("name", "part"), [("fine_grained", "train"), ("fine_grained_test", "test_gallery")])
def test_triplets_are_similar_instances_of_the_same_category(tiny: Catalog, name: str, part: str) -> None:
    records, split = tiny.records, tiny.split("fine_grained")
    triplets = tiny.triplets[name]
    instances, labels = records["instance"].to_numpy(), records["label"].to_numpy()
    anchors = np.unique(triplets[:, 0])
    expected_anchors = (
        split.train[records["domain"].iloc[split.train].to_numpy() == "sketch"]
        if part == "train"
        else split.test_query
    )
    np.testing.assert_array_equal(anchors, np.sort(expected_anchors))
    assert len(triplets) == 3 * len(anchors)  # triplets_per_sketch each
    assert (records["domain"].to_numpy()[triplets[:, 0]] == "sketch").all()
    assert (instances[triplets[:, 0]] == instances[triplets[:, 1]]).all()  # positive: own photo
    assert (instances[triplets[:, 2]] != instances[triplets[:, 0]]).all()
    assert (labels[triplets[:, 2]] == labels[triplets[:, 0]]).all()
    assert np.isin(triplets[:, 1:], split.part(part)).all()
    # the negatives are the most similar in attributes: none left out is closer than one chosen
    pool = split.part(part)
    pool = pool[records["domain"].to_numpy()[pool] == "photo"]
    vector = lambda record: tiny.instance_attributes[instances[record]]  # noqa: E731
    for anchor in anchors:
        rows = triplets[triplets[:, 0] == anchor]
        same = [p for p in pool if labels[p] == labels[anchor] and instances[p] != instances[anchor]]
        distance = {p: int((vector(p) != vector(anchor)).sum()) for p in same}
        chosen = set(rows[:, 2].tolist())
        assert max(distance[p] for p in chosen) <= min([distance[p] for p in same if p not in chosen] or [99])


def test_datamodule_serves_fine_grained_batches(tmp_path: Path) -> None:
    kwargs = {k: v for k, v in TINY.items()}
    module = RetrievalDataModule(
        "synthetic_fg",
        "fine_grained",
        dataset_kwargs={**kwargs, "progress": False},
        cache_dir=str(tmp_path),
        inputs="images",
        train_sampling="fine_triplets",
        backbone={"image_size": 32},
        batch_size=4,
        eval_batch_size=64,
    )
    module.prepare_data()
    module.setup()
    batch = next(iter(module.train_dataloader()))
    assert batch["sketch"].shape == (4, 3, 32, 32) and batch["negative"].shape == (4, 3, 32, 32)
    queries, gallery = (next(iter(loader)) for loader in module.test_dataloader())
    assert len(queries["label"]) == 10 and len(gallery["label"]) == 10
    relevant = queries["label"][:, None] == gallery["label"][None, :]
    assert (relevant.sum(dim=1) == 1).all()  # the own photo is the one relevant item


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"categories": ["shoe", "boot"]}, "categories"),
        ({"train_size": 1}, "train_size"),
        ({"test_size": 1}, "test_size"),
        ({"photos": "sketch"}, "photos"),
        ({"clutter": 1.5}, "clutter"),
        ({"triplets_per_sketch": 0}, "triplets_per_sketch"),
        ({"val_fraction": 1.0}, "val_fraction"),
    ],
)
def test_bad_parameters_fail_clearly(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_tiny(tmp_path, **overrides)


def test_clutter_setting_fades_the_background_to_white() -> None:
    instance = sample_fine_instance("chair", np.random.default_rng(0))
    pose, streams = Pose(angle=0.0, mirrored=False), ([1], [2])
    plain = render_item(FineGrainedConfig(clutter=0.0), instance, pose, streams)["photo"]
    cluttered = render_item(FineGrainedConfig(), instance, pose, streams)["photo"]
    background = plain.min(axis=2) > 240  # white up to the photo noise
    assert background.mean() > 0.4
    assert cluttered[background].std() > 30  # the same pixels carry clutter by default


def test_catalog_validation_catches_bad_attribute_tables_and_triplets(tiny: Catalog) -> None:
    from dataclasses import replace

    from sbir_bench.data.records import DatasetError

    with pytest.raises(DatasetError, match="20 attribute names but vectors of width 2"):
        vectors = {name: vector[:2] for name, vector in tiny.instance_attributes.items()}
        replace(tiny, instance_attributes=vectors).validate()
    swapped = tiny.triplets["fine_grained_test"][:, [1, 0, 2]]  # a photo as the anchor
    with pytest.raises(DatasetError, match=r"must be \(sketch, photo, photo\)"):
        replace(tiny, triplets={"fine_grained_test": swapped}).validate()
    with pytest.raises(DatasetError, match="index outside the records"):
        replace(tiny, triplets={"fine_grained": tiny.triplets["fine_grained"] + len(tiny.records)}).validate()
