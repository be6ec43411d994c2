"""The synthetic dataset: determinism, splits, pairing, cache behaviour and that the task is not trivial."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sbir_bench.data.records import SPLIT_PARTS, Catalog
from sbir_bench.data.synthetic import (
    ATTRIBUTE_NAMES,
    SyntheticConfig,
    build_synthetic,
    design_classes,
    synthetic_root,
)
from sbir_bench.data.synthetic import dataset as synthetic_dataset
from sbir_bench.data.synthetic.render import Pose, render_photo, render_sketch
from sbir_bench.data.synthetic.shapes import ATTRIBUTE_NAMES as NAMES
from sbir_bench.data.synthetic.shapes import NOVEL_VALUES, build_parts, sample_instance
from sbir_bench.registry import DATASETS, list_datasets

SMALL = dict(
    num_classes=8,
    photos_per_class=6,
    sketches_per_photo=2,
    image_size=32,
    num_unseen=2,
    seed=0,
    extended_per_class=3,
)
SPLITS = ("traditional", "zeroshot", "gzs")


def build_small(cache_dir: Path, **overrides) -> Catalog:
    return build_synthetic(cache_dir, **{**SMALL, **overrides}, progress=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return build_small(tmp_path_factory.mktemp("synthetic"))


def file_digests(catalog: Catalog) -> list[str]:
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in catalog.records["path"]]


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float32) / 255.0


def records_of(catalog: Catalog, split: str, part: str):
    return catalog.records.iloc[catalog.split(split).part(part)]


def test_registered_under_its_name(tmp_path: Path) -> None:
    assert "synthetic" in list_datasets()
    catalog = DATASETS.create("synthetic", cache_dir=tmp_path, **SMALL, progress=False)
    assert catalog.name == "synthetic"


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path, small: Catalog) -> None:
    again = build_small(tmp_path / "a")
    assert again.fingerprint == small.fingerprint
    assert file_digests(again) == file_digests(small)
    assert again.records["instance"].tolist() == small.records["instance"].tolist()
    for name in SPLITS:
        for part in SPLIT_PARTS:
            np.testing.assert_array_equal(again.split(name).part(part), small.split(name).part(part))

    other = build_small(tmp_path / "b", seed=1)
    assert other.fingerprint != small.fingerprint
    differing = np.mean([a != b for a, b in zip(file_digests(other), file_digests(small), strict=True)])
    assert differing > 0.95
    assert not np.array_equal(
        other.split("traditional").test_gallery, small.split("traditional").test_gallery
    )


def test_fingerprint_covers_every_parameter() -> None:
    base = SyntheticConfig(**SMALL)
    changed = [
        SyntheticConfig(**{**SMALL, key: value})
        for key, value in dict(
            num_classes=9,
            photos_per_class=7,
            sketches_per_photo=3,
            image_size=48,
            num_unseen=3,
            seed=5,
            extended_per_class=4,
            train_on_unseen=True,
        ).items()
    ]
    assert len({base.fingerprint, *(c.fingerprint for c in changed)}) == 1 + len(changed)


def test_small_split_counts(small: Catalog) -> None:
    # 8 classes x (6 photos x 2 sketches + 3 extended photos); traditional: per class 2 test photos (and
    # the 3 extended ones in the gallery), 1 val photo, 3 train photos
    assert small.split("traditional").counts() == {
        "train": 8 * 3 * 3,
        "val_query": 8 * 1 * 2,
        "val_gallery": 8 * 1,
        "test_query": 8 * 2 * 2,
        "test_gallery": 8 * (2 + 3),
    }
    # zero-shot: 2 unseen classes entirely in test; per seen class 1 val photo, 5 train photos
    zeroshot = {"train": 6 * 5 * 3, "val_query": 6 * 1 * 2, "val_gallery": 6 * 1, "test_query": 2 * 6 * 2}
    assert small.split("zeroshot").counts() == {**zeroshot, "test_gallery": 2 * (6 + 3)}
    # generalised zero-shot: the same, against the seen classes' extended photos as well
    assert small.split("gzs").counts() == {**zeroshot, "test_gallery": 2 * (6 + 3) + 6 * 3}


def is_extended(records) -> np.ndarray:
    return records["path"].map(lambda p: Path(p).parent.parent.name == "extended").to_numpy()


def test_parts_hold_the_right_domains_and_cover_the_records_once(small: Catalog) -> None:
    records = small.records
    extended = is_extended(records)
    seen_extended = extended & ~records["label"].isin(small.split("zeroshot").unseen_classes).to_numpy()
    for name in SPLITS:
        split = small.split(name)
        for part in ("val_query", "test_query"):
            assert set(records_of(small, name, part)["domain"]) == {"sketch"}
        for part in ("val_gallery", "test_gallery"):
            assert set(records_of(small, name, part)["domain"]) == {"photo"}
        assert set(records_of(small, name, "train")["domain"]) == {"sketch", "photo"}
        together = np.concatenate([split.part(p) for p in SPLIT_PARTS])
        assert len(together) == len(np.unique(together))  # disjoint parts ...
        left_out = np.setdiff1d(np.arange(len(records)), together)  # ... covering all but, in zeroshot,
        np.testing.assert_array_equal(left_out, np.flatnonzero(seen_extended) if name == "zeroshot" else [])
        for phase in ("val", "test"):  # queries are the sketches of the gallery's paired photos
            queries = set(records_of(small, name, f"{phase}_query")["instance"])
            gallery = records_of(small, name, f"{phase}_gallery")
            assert queries == set(gallery["instance"][~is_extended(gallery)])
        assert not is_extended(records_of(small, name, "train")).any()  # extended photos never train
        assert not is_extended(records_of(small, name, "val_gallery")).any()
        assert is_extended(records_of(small, name, "test_gallery")).sum() == (
            len(small.class_names if name != "zeroshot" else split.unseen_classes)
            * SMALL["extended_per_class"]
        )
        train_instances = set(records_of(small, name, "train")["instance"])
        assert not train_instances & set(records_of(small, name, "test_gallery")["instance"])


def test_each_sketch_pairs_with_exactly_one_photo(small: Catalog) -> None:
    records = small.records[~is_extended(small.records)]
    photos, sketches = records[records["domain"] == "photo"], records[records["domain"] == "sketch"]
    assert photos["instance"].is_unique
    assert len(sketches) == 2 * len(photos)
    photo_of = photos.set_index("instance")
    assert sketches["instance"].map(sketches["instance"].value_counts()).eq(2).all()
    assert (sketches["label"].to_numpy() == photo_of.loc[sketches["instance"], "label"].to_numpy()).all()
    for _, sketch in sketches.iterrows():  # Sketchy's naming: <photo stem>-<n>.png
        photo_path = Path(photo_of.loc[sketch["instance"], "path"])
        assert Path(sketch["path"]).stem.rsplit("-", 1)[0] == photo_path.stem
        assert (
            Path(sketch["path"]).parent.name == photo_path.parent.name == small.class_names[sketch["label"]]
        )


def test_unseen_classes_never_reach_train_or_validation(small: Catalog) -> None:
    split = small.split("zeroshot")
    assert len(split.unseen_classes) == 2
    assert set(split.seen_classes) | set(split.unseen_classes) == set(range(small.num_classes))
    labels = small.records["label"].to_numpy()
    for part in ("train", "val_query", "val_gallery"):
        assert not set(labels[split.part(part)]) & set(split.unseen_classes)
    for part in ("test_query", "test_gallery"):
        assert set(labels[split.part(part)]) == set(split.unseen_classes)
    assert small.split("traditional").unseen_classes == ()
    gzs = small.split("gzs")
    for part in ("train", "val_query", "val_gallery", "test_query"):
        np.testing.assert_array_equal(gzs.part(part), split.part(part))
    assert set(labels[gzs.test_gallery]) == set(range(small.num_classes))  # a gallery of every class ...
    seen_items = small.records.iloc[gzs.test_gallery][
        ~np.isin(labels[gzs.test_gallery], split.unseen_classes)
    ]
    assert is_extended(seen_items).all()  # ... whose seen-class items were never trained on


def test_training_on_unseen_keeps_the_test_items_and_adds_unseen_training_instances(
    tmp_path: Path, small: Catalog
) -> None:
    oracle = build_small(tmp_path, train_on_unseen=True)
    unseen = small.split("zeroshot").unseen_classes
    for name in SPLITS:  # the same test items, bit for bit
        for part in ("test_query", "test_gallery"):
            before, after = records_of(small, name, part), records_of(oracle, name, part)
            assert before["instance"].tolist() == after["instance"].tolist()
            assert [Path(p).read_bytes() for p in before["path"]] == [
                Path(p).read_bytes() for p in after["path"]
            ]
        split = oracle.split(name)
        assert split.unseen_classes == () and set(split.seen_classes) == set(range(oracle.num_classes))
        train = records_of(oracle, name, "train")
        added = train[train["label"].isin(unseen)]
        assert not set(added["instance"]) & set(records_of(oracle, name, "test_gallery")["instance"])
        if name != "traditional":  # per unseen class as many paired photos as a seen class trains on
            counts = added.groupby("label")["domain"].value_counts().unstack().to_dict("list")
            assert counts == {"photo": [5, 5], "sketch": [10, 10]}  # 5 of 6 photos, 2 sketches each


def test_class_design_is_distinct_and_stable() -> None:
    classes = design_classes(36, 6)
    names = [c.name for c in classes]
    assert len(set(names)) == 36 and all(name.replace("_", "").isalnum() for name in names)
    codes = np.array([c.categorical_codes() for c in classes])
    differences = (codes[:, None, :] != codes[None, :, :]).sum(axis=-1)
    np.fill_diagonal(differences, 99)
    # two seen (or two unseen) classes differ in at least two attribute values; a seen and an unseen class
    # in at least one, the novel part type
    assert differences[:30, :30].min() >= 2 and differences[30:, 30:].min() >= 2
    for column in codes[:30].T:  # every attribute value of a seen class is shared by several seen classes
        assert np.unique(column, return_counts=True)[1].min() >= 3
    assert design_classes(8, 2)[:6] == classes[:6]


def test_unseen_classes_hold_part_types_no_seen_class_has_and_their_semantics_describe_them() -> None:
    classes = design_classes(36, 6)
    seen, unseen = classes[:30], classes[30:]
    assert not any(c.novel for c in seen) and all(c.novel for c in unseen)
    seen_codes = {code for c in seen for code in c.categorical_codes()}
    unseen_codes = {code for c in unseen for code in c.categorical_codes()}
    assert set(NOVEL_VALUES) <= unseen_codes and not set(NOVEL_VALUES) & seen_codes  # both novel parts
    seen_attributes = np.stack([c.attributes() for c in seen])
    column = {name: i for i, name in enumerate(NAMES)}
    for c in unseen:  # the novel part's shared descriptors all occur among seen classes
        attributes = c.attributes()
        if c.appendage == "wings":
            for name in ("appendage_count", "appendage_sides", "appendage_pointed"):
                assert attributes[column[name]] > 0 and (seen_attributes[:, column[name]] > 0).any()
        if c.body == "star":
            assert attributes[column["concavity"]] == 1.0 and attributes[column["boxiness"]] == 0.0


def test_semantics_and_instance_attributes(small: Catalog) -> None:
    semantics = small.class_semantics
    assert small.semantics_kind == "attributes"
    assert semantics.shape == (small.num_classes, len(ATTRIBUTE_NAMES)) and semantics.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(semantics, axis=1), 1.0, atol=1e-6)
    assert len(np.unique(semantics.round(4), axis=0)) == small.num_classes

    photos = small.records[small.records["domain"] == "photo"]
    assert set(small.instance_attributes) == set(photos["instance"])
    nominal = np.stack([c.attributes() for c in design_classes(small.num_classes, 2)])
    jittered = np.stack([small.instance_attributes[i] for i in photos["instance"]])
    assert not np.allclose(jittered, nominal[photos["label"]])  # instances vary within a class ...
    nearest = np.linalg.norm(jittered[:, None] - nominal[None], axis=-1).argmin(axis=1)
    np.testing.assert_array_equal(nearest, photos["label"].to_numpy())  # ... but never into another class


def test_second_build_reuses_the_cache(tmp_path: Path) -> None:
    first = build_small(tmp_path)
    root = synthetic_root(tmp_path, SyntheticConfig(**SMALL))
    stamps = {p: p.stat().st_mtime_ns for p in [root / "manifest.json", Path(first.records["path"].iloc[0])]}
    start = time.perf_counter()
    second = build_small(tmp_path)
    assert time.perf_counter() - start < 2.0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert second.records["path"].tolist() == first.records["path"].tolist()


def _delete_file(root: Path, victim: Path) -> None:
    victim.unlink()


def _truncate_file(root: Path, victim: Path) -> None:
    victim.write_bytes(victim.read_bytes()[:20])


def _delete_manifest(root: Path, victim: Path) -> None:
    (root / "manifest.json").unlink()


def _corrupt_manifest(root: Path, victim: Path) -> None:
    (root / "manifest.json").write_text("{not json")


def _drop_from_manifest(root: Path, victim: Path) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["files"][str(victim.relative_to(root))]
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "damage", [_delete_file, _truncate_file, _delete_manifest, _corrupt_manifest, _drop_from_manifest]
)
def test_damaged_cache_is_rebuilt(tmp_path: Path, damage) -> None:
    catalog = build_small(tmp_path)
    root = synthetic_root(tmp_path, SyntheticConfig(**SMALL))
    victim = Path(catalog.records["path"].iloc[5])
    original = victim.read_bytes()
    manifest_stamp = (root / "manifest.json").stat().st_mtime_ns
    damage(root, victim)
    build_small(tmp_path)
    assert victim.read_bytes() == original
    assert (root / "manifest.json").stat().st_mtime_ns != manifest_stamp
    assert sorted(p.name for p in tmp_path.joinpath("synthetic").iterdir() if p.name.startswith(".")) == []


def test_leftovers_of_an_interrupted_build_are_ignored_and_removed(tmp_path: Path) -> None:
    root = synthetic_root(tmp_path, SyntheticConfig(**SMALL))
    stale = root.parent / f".{root.name}.0123456789ab.building"  # as sbir_bench.files names them
    (stale / "photo").mkdir(parents=True)
    root.mkdir()
    (root / "photo").mkdir()  # a final folder without manifest, e.g. copied by hand half-way
    catalog = build_small(tmp_path)
    assert not stale.exists()
    assert all(Path(p).is_file() for p in catalog.records["path"])


def _build_in_child(cache_dir: str) -> tuple[int, int]:
    build_small(Path(cache_dir))
    manifest = synthetic_root(cache_dir, SyntheticConfig(**SMALL)) / "manifest.json"
    return manifest.stat().st_ino, manifest.stat().st_mtime_ns


def test_concurrent_builders_share_one_build(tmp_path: Path) -> None:
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_build_in_child, [str(tmp_path)] * 2)
    assert results[0] == results[1]  # the second builder waited for the first and reused its cache
    catalog = build_small(tmp_path)
    assert all(os.path.getsize(p) > 0 for p in catalog.records["path"])


@pytest.mark.parametrize(
    "bad",
    [
        dict(photos_per_class=2),
        dict(num_unseen=0),
        dict(num_unseen=8),
        dict(seed=-1),
        dict(num_classes=1),
        dict(extended_per_class=-1),
    ],
)
def test_invalid_parameters_are_refused(tmp_path: Path, bad: dict) -> None:
    with pytest.raises(ValueError):
        build_small(tmp_path, **bad)


def test_photos_of_a_class_differ(small: Catalog) -> None:
    photos = small.records[(small.records["domain"] == "photo") & (small.records["label"] == 0)]
    stack = np.stack([pixels(p) for p in photos["path"]])
    assert stack.shape == (6 + 3, 32, 32, 3)  # paired and extended
    assert stack.std(axis=0).mean() > 0.15


def _rendered(index: int, image_size: int = 64):
    shape_class = design_classes(36, 6)[index % 36]
    rng = np.random.default_rng([3, index])
    parts = build_parts(sample_instance(shape_class, rng))
    pose = Pose.sample(rng)
    photo, mask = render_photo(parts, pose, image_size, np.random.default_rng([3, index, 1]))
    sketches = [
        render_sketch(parts, pose, image_size, np.random.default_rng([3, index, 2 + s])) for s in range(2)
    ]
    return photo, mask, sketches


def test_photos_have_clutter_and_a_visible_object() -> None:
    for index in range(12):
        photo, mask, _ = _rendered(index)
        image = photo.astype(np.float32) / 255.0
        background, obj = image[mask < 0.01], image[mask > 0.99]
        assert 0.02 < mask.mean() < 0.6
        assert background.std(axis=0).mean() > 0.05  # clutter, not a flat backdrop
        assert np.abs(obj.mean(axis=0) - background.mean(axis=0)).max() > 0.08  # the object stands out
        assert len(np.unique(photo.reshape(-1, 3), axis=0)) > 200


def test_sketches_are_sparse_strokes_not_a_thresholded_photo() -> None:
    for index in range(12):
        _, mask, sketches = _rendered(index)
        for sketch in sketches:
            ink = sketch < 128
            assert sketch.ndim == 2
            assert 0.01 < ink.mean() < 0.25  # sparse strokes
            assert (sketch == 255).mean() > 0.6  # blank paper, no background
            object_mask = mask > 0.5
            iou = (ink & object_mask).sum() / (ink | object_mask).sum()
            assert iou < 0.5
        first, second = (s < 128 for s in sketches)
        assert (first & second).sum() / (first | second).sum() < 0.6  # two sketches, two drawings


def test_rendering_works_at_other_sizes() -> None:
    photo, mask, sketches = _rendered(4, image_size=224)
    assert photo.shape == (224, 224, 3) and mask.shape == (224, 224) and sketches[0].shape == (224, 224)
    assert 0.005 < (sketches[0] < 128).mean() < 0.2


def test_default_splits_have_uncapped_galleries() -> None:
    """Every default test query has at least 200 relevant gallery items in every split, so P@200 can
    reach 1 (traditional's gallery was once 16 photos per class: P@200 <= 0.08, below zero-shot chance)."""
    config = SyntheticConfig()
    classes = design_classes(config.num_classes, config.num_unseen)
    plan = synthetic_dataset._plan(config, classes)
    splits = synthetic_dataset._splits(config, classes, plan)
    assert splits["traditional"].counts() == {
        "train": 36 * 42 * 3,
        "val_query": 36 * 6 * 2,
        "val_gallery": 36 * 6,
        "test_query": 36 * 16 * 2,
        "test_gallery": 36 * (16 + 200),
    }
    zeroshot = {
        "train": 30 * 56 * 3,
        "val_query": 30 * 8 * 2,
        "val_gallery": 30 * 8,
        "test_query": 6 * 64 * 2,
    }
    assert splits["zeroshot"].counts() == {**zeroshot, "test_gallery": 6 * (64 + 200)}
    assert splits["gzs"].counts() == {**zeroshot, "test_gallery": 6 * (64 + 200) + 30 * 200}
    labels = np.array([item.label for item in plan])
    for split in splits.values():
        relevant = np.bincount(labels[split.test_gallery], minlength=config.num_classes)
        queried = split.unseen_classes or tuple(range(config.num_classes))
        assert relevant[list(queried)].min() >= 200, split.name


@pytest.mark.slow
def test_default_size_builds_within_budget(tmp_path: Path) -> None:
    start = time.perf_counter()
    catalog = build_synthetic(tmp_path, progress=False)
    elapsed = time.perf_counter() - start
    assert elapsed < 120.0, f"default synthetic build took {elapsed:.1f}s"
    assert catalog.num_classes == 36 and len(catalog.records) == 36 * (64 * 3 + 200)
    with (
        Image.open(catalog.records["path"].iloc[0]) as photo,
        Image.open(catalog.records["path"].iloc[-1]) as sketch,
    ):
        assert (photo.mode, photo.size, sketch.mode, sketch.size) == ("RGB", (64, 64), "L", (64, 64))
