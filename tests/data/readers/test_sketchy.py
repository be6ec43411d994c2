"""The Sketchy (+ Extended) reader on tiny trees in the official layout (16 px images, 4 real classes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sbir_bench.data.readers.sketchy import build_sketchy, check_sketchy, split_statistics
from sbir_bench.data.records import SPLIT_PARTS, DatasetError
from sbir_bench.data.splits import stable_order
from sbir_bench.registry import DATASET_CHECKERS, DATASETS

from ...conftest import quiet_run_in

# scissors: unseen in both zero-shot splits; bat: unseen in Yelamarthi's only; airplane: in Shen's only;
# car_(sedan) is seen in both (and has the name that trips word lookups).
CLASSES = ("airplane", "bat", "car_(sedan)", "scissors")
PHOTOS, SKETCHES, NEW_EXTENDED = 4, 2, 2
SMALL = {"classes": "present", "test_sketches_per_class": 2, "val_photos_per_class": 1, "progress": False}
IMAGES = Path("rendered_256x256") / "256x256"


def save_image(path: Path, seed: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)


def photo_id(name: str, i: int) -> str:
    return f"n{sum(map(ord, name)):08d}_{i}"


def make_tree(root: Path, classes=CLASSES, variants=("tx_000000000000",), extended=True) -> Path:
    """PHOTOS photos per class, SKETCHES sketches per photo, their extended copies + NEW_EXTENDED new ones."""
    seed = 0
    for variant in variants:
        for name in classes:
            for i in range(PHOTOS):
                pid = photo_id(name, i)
                save_image(root / IMAGES / "photo" / variant / name / f"{pid}.jpg", seed := seed + 1)
                for n in range(1, SKETCHES + 1):
                    save_image(
                        root / IMAGES / "sketch" / variant / name / f"{pid}-{n}.png", seed := seed + 1, "L"
                    )
    if extended:
        for name in classes:
            for i in range(PHOTOS):
                save_image(
                    root / "EXTEND_image_sketchy" / name / f"{photo_id(name, i)}.jpg", seed := seed + 1
                )
            for k in range(NEW_EXTENDED):
                save_image(root / "EXTEND_image_sketchy" / name / f"ext_{k}.jpg", seed := seed + 1)
    return root


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tree(tmp_path / "Sketchy")


def build(root, **options):
    return build_sketchy(cache_dir="unused", root=root, **{**SMALL, **options})


def part_paths(catalog, split: str, part: str) -> list[str]:
    return catalog.records["path"].iloc[catalog.split(split).part(part)].tolist()


def labels_of(catalog, indices) -> set[str]:
    return {catalog.class_names[label] for label in catalog.records["label"].iloc[indices]}


def test_registered_builder_and_checker():
    assert DATASETS.get("sketchy") is build_sketchy and DATASET_CHECKERS.get("sketchy") is check_sketchy


def test_counts_pairing_and_instances(tree):
    catalog = build(tree)
    records = catalog.records
    assert catalog.class_names == list(CLASSES)  # label order = the shipped class list's order
    n = len(CLASSES)
    assert (records["domain"] == "sketch").sum() == n * PHOTOS * SKETCHES
    assert (records["domain"] == "photo").sum() == n * (PHOTOS + PHOTOS + NEW_EXTENDED)
    sketch = records[records["path"].str.endswith(f"{photo_id('bat', 2)}-2.png")].iloc[0]
    photos = records[(records["domain"] == "photo") & (records["instance"] == sketch["instance"])]
    assert photos["path"].tolist() == [
        str(tree / IMAGES / "photo" / "tx_000000000000" / "bat" / f"{photo_id('bat', 2)}.jpg")
    ]
    assert sketch["instance"] == photo_id("bat", 2)
    extended = records[records["path"].str.contains("EXTEND_image_sketchy")]
    assert extended["instance"].str.startswith("extended:").all() and extended["instance"].is_unique
    assert catalog.fingerprint


def test_zero_shot_splits_use_the_shipped_unseen_lists(tree):
    catalog = build(tree)
    yelamarthi, shen = catalog.split("zeroshot_yelamarthi"), catalog.split("zeroshot_shen")
    assert [catalog.class_names[c] for c in yelamarthi.unseen_classes] == ["bat", "scissors"]
    assert [catalog.class_names[c] for c in shen.unseen_classes] == ["airplane", "scissors"]
    records = catalog.records
    for split in (yelamarthi, shen):
        unseen = {catalog.class_names[c] for c in split.unseen_classes}
        assert labels_of(catalog, split.test_query) == labels_of(catalog, split.test_gallery) == unseen
        assert len(split.test_query) == len(unseen) * PHOTOS * SKETCHES  # every sketch of the unseen classes
        gallery = records["path"].iloc[split.test_gallery]
        assert gallery.str.contains("EXTEND_image_sketchy").all()  # every extended image, nothing else
        assert len(gallery) == len(unseen) * (PHOTOS + NEW_EXTENDED)
        # validation: one photo per seen class with its sketches; training: the other photos and sketches
        assert len(split.val_gallery) == len(split.seen_classes)
        assert len(split.val_query) == len(split.seen_classes) * SKETCHES
        assert len(split.train) == len(split.seen_classes) * (PHOTOS - 1) * (1 + SKETCHES)
        assert not set(split.train) & (set(split.val_query) | set(split.val_gallery))


@pytest.mark.parametrize("split", ["gzs_yelamarthi", "gzs_shen"])
def test_generalised_splits_search_seen_class_images_no_split_trains_on(tree, split):
    catalog = build(tree)
    gzs, zeroshot = catalog.split(split), catalog.split(split.replace("gzs", "zeroshot"))
    assert gzs.setting == "gzs" and zeroshot.setting == "zeroshot"
    assert (gzs.seen_classes, gzs.unseen_classes) == (zeroshot.seen_classes, zeroshot.unseen_classes)
    for part in ("train", "val_query", "val_gallery", "test_query"):  # only the gallery differs
        np.testing.assert_array_equal(gzs.part(part), zeroshot.part(part))
    assert labels_of(catalog, gzs.test_query) == {catalog.class_names[c] for c in gzs.unseen_classes}
    assert set(zeroshot.test_gallery) < set(gzs.test_gallery)
    added = catalog.records.iloc[sorted(set(gzs.test_gallery) - set(zeroshot.test_gallery))]
    # int(0.2 x the unseen gallery's 2 x (PHOTOS + NEW_EXTENDED) = 12 images) = 2 seen-class images
    assert len(added) == 2 and set(added["label"]) <= set(gzs.seen_classes)
    assert added["path"].str.contains(r"EXTEND_image_sketchy/.*/ext_\d\.jpg$").all()  # copies of no photo
    training = catalog.records.iloc[np.concatenate([gzs.train, gzs.val_query, gzs.val_gallery])]
    assert not set(added["instance"]) & set(training["instance"])
    assert labels_of(catalog, gzs.test_gallery) == set(CLASSES)  # a gallery of every class
    seen = {catalog.class_names[c] for c in gzs.seen_classes}
    assert labels_of(catalog, gzs.train) == labels_of(catalog, gzs.val_query) == seen
    assert seen | labels_of(catalog, gzs.test_query) == set(CLASSES) and len(seen) == 2


def test_generalised_gallery_follows_the_documented_rule(tree):
    """Pinned: int(0.2 x the unseen gallery) of the seen classes' ext_* images, spread over the classes:
    each class's first stem in stable_order salted "sketchy/<split>/seen_gallery/<class>", then the
    seconds, ..."""
    catalog = build(tree)
    salt = "sketchy/gzs_yelamarthi/seen_gallery"
    stems = [f"ext_{k}" for k in range(NEW_EXTENDED)]
    first = {c: stable_order(stems, f"{salt}/{c}")[0] for c in ("airplane", "car_(sedan)")}
    added = set(part_paths(catalog, "gzs_yelamarthi", "test_gallery")) - set(
        part_paths(catalog, "zeroshot_yelamarthi", "test_gallery")
    )
    assert added == {str(tree / "EXTEND_image_sketchy" / c / f"{stem}.jpg") for c, stem in first.items()}
    assert first == {"airplane": "ext_1", "car_(sedan)": "ext_0"}  # the value the rule gives today
    gzs = catalog.split("gzs_yelamarthi")
    wider = build(tree, gzs_seen_gallery_fraction=0.34)  # int(0.34 x 12) = 4: every seen ext_* image
    assert len(wider.split("gzs_yelamarthi").test_gallery) == len(gzs.test_gallery) + 2


def test_generalised_gallery_without_extended_images_leaves_training(tmp_path):
    root = make_tree(tmp_path / "Sketchy", extended=False)
    catalog = build(root, extended=False)
    gzs, zeroshot = catalog.split("gzs_yelamarthi"), catalog.split("zeroshot_yelamarthi")
    records = catalog.records
    added = records.iloc[sorted(set(gzs.test_gallery) - set(zeroshot.test_gallery))]
    assert len(added) == 1 and added["path"].str.contains("/photo/tx_000000000000/").all()  # int(0.2 x 8)
    left = set(zeroshot.train) - set(gzs.train)
    assert left == set(added.index) | set(
        records.index[(records["domain"] == "sketch") & records["instance"].isin(added["instance"])]
    )  # the photo and its SKETCHES sketches leave training
    assert len(left) == 1 + SKETCHES and set(gzs.train) < set(zeroshot.train)
    training = records.iloc[np.concatenate([gzs.train, gzs.val_query, gzs.val_gallery])]
    assert not set(added["instance"]) & set(training["instance"])


def test_generalised_gallery_needs_enough_held_out_seen_images(tree):
    with pytest.raises(
        DatasetError, match=r"int\(0\.5 x 12 unseen-class images\) = 6 seen-class images, and 4"
    ):
        build(tree, gzs_seen_gallery_fraction=0.5)
    problems = check_sketchy(tree, **{**SMALL, "gzs_seen_gallery_fraction": 0.5})
    assert len(problems) == 1 and "gzs_seen_gallery_fraction" in problems[0].message
    with pytest.raises(ValueError, match="gzs_seen_gallery_fraction must be > 0"):
        build(tree, gzs_seen_gallery_fraction=0)


def test_traditional_split_holds_out_queries_with_their_photos(tree):
    catalog = build(tree, test_sketches_per_class=3)
    split = catalog.split("traditional")
    records = catalog.records
    assert split.unseen_classes == () and len(split.seen_classes) == len(CLASSES)
    queries = records.iloc[split.test_query]
    assert queries.groupby("label").size().tolist() == [3] * len(CLASSES)
    # 3 queries need 2 photos of 2 sketches each; their gallery = those photos + the new extended images
    gallery = records.iloc[split.test_gallery]
    assert gallery.groupby("label").size().tolist() == [2 + NEW_EXTENDED] * len(CLASSES)
    assert set(queries["instance"]) <= set(gallery["instance"])
    assert not gallery["instance"].str.match(r"extended:.*/n\d+_\d+$").any()  # no copies of rendered photos
    train = records.iloc[split.train]
    assert not set(train["instance"]) & set(gallery["instance"])  # no held-out photo or its sketch trains
    assert not set(train["instance"]) & set(records["instance"].iloc[split.val_gallery])


@pytest.mark.parametrize(
    "split", ["zeroshot_yelamarthi", "zeroshot_shen", "gzs_yelamarthi", "gzs_shen", "traditional"]
)
def test_parts_are_disjoint_and_unseen_classes_only_in_test(tree, split):
    catalog = build(tree)
    chosen = catalog.split(split)
    parts = [
        set(chosen.part(p).tolist())
        for p in ("train", "val_query", "val_gallery", "test_query", "test_gallery")
    ]
    assert sum(map(len, parts)) == len(set().union(*parts))  # no record in two parts
    unseen = {catalog.class_names[c] for c in chosen.unseen_classes}
    training = np.concatenate([chosen.train, chosen.val_query, chosen.val_gallery])
    assert not labels_of(catalog, training) & unseen
    if unseen:
        assert labels_of(catalog, chosen.test_query) == unseen
    else:
        assert labels_of(catalog, chosen.test_query) == set(CLASSES)


def test_validation_photos_follow_the_documented_rule(tree):
    """Pinned: validation takes each seen class's first photo in stable_order, i.e. by the sha256 of
    "sketchy/<class>/photos/<id>"."""
    catalog = build(tree)
    val = catalog.records.iloc[catalog.split("zeroshot_yelamarthi").val_gallery]
    assert sorted(val["instance"]) == sorted(
        [
            stable_order([photo_id(c, i) for i in range(PHOTOS)], f"sketchy/{c}/photos")[0]
            for c in ("airplane", "car_(sedan)")
        ]
    )
    assert photo_id("airplane", 3) in set(val["instance"])  # the value the rule gives today


def test_hold_outs_depend_only_on_file_names(tmp_path):
    first = build(make_tree(tmp_path / "a"))
    second = build(make_tree(tmp_path / "b" / "Sketchy"))
    for split in ("zeroshot_yelamarthi", "gzs_yelamarthi", "traditional"):
        for part in ("train", "val_query", "test_query", "test_gallery"):
            names = [[Path(p).name for p in part_paths(c, split, part)] for c in (first, second)]
            assert names[0] == names[1]


def test_variant_option_chooses_the_tx_folder(tmp_path):
    root = make_tree(tmp_path / "Sketchy", variants=("tx_000000000000", "tx_000100000000"))
    catalog = build(root, variant="tx_000100000000")
    rendered = catalog.records[~catalog.records["path"].str.contains("EXTEND")]
    assert rendered["path"].str.contains("/tx_000100000000/").all()
    assert catalog.fingerprint != build(root).fingerprint
    with pytest.raises(
        DatasetError, match=r"tx_000000000010.*variants present: tx_000000000000, tx_000100000000"
    ):
        build(root, variant="tx_000000000010")
    with pytest.raises(ValueError, match="tx_000000000000"):
        build(root, variant="256x256")


def test_invalid_sketches_excluded_only_when_asked(tree):
    info = tree / "info"
    info.mkdir()
    (info / "invalid-ambiguous.txt").write_text(f"{photo_id('bat', 0)}-1\n")
    (info / "invalid-context.txt").write_text(f"bat/{photo_id('bat', 1)}-2.png\n")
    (info / "invalid-error.txt").write_text("")
    (info / "invalid-pose.txt").write_text("\n")
    kept = build(tree)
    excluded = build(tree, exclude_invalid=True)
    assert len(kept.records) - len(excluded.records) == 2
    names = excluded.records["path"].map(lambda p: Path(p).name)
    assert f"{photo_id('bat', 0)}-1.png" not in set(names) and f"{photo_id('bat', 0)}-2.png" in set(names)
    (info / "invalid-pose.txt").unlink()
    with pytest.raises(DatasetError, match=r"invalid-pose\.txt: missing: exclude_invalid=true"):
        build(tree, exclude_invalid=True)


def test_extended_images_required_for_the_zero_shot_gallery(tmp_path):
    root = make_tree(tmp_path / "Sketchy", extended=False)
    with pytest.raises(DatasetError) as error:
        build(root)
    assert str(root / "EXTEND_image_sketchy") in str(error.value)
    assert "gallery of the zero-shot splits" in str(error.value) and "extended=false" in str(error.value)
    catalog = build(root, extended=False)  # the photo-only variant, chosen explicitly
    gallery = part_paths(catalog, "zeroshot_yelamarthi", "test_gallery")
    assert len(gallery) == 2 * PHOTOS and all("/photo/tx_000000000000/" in p for p in gallery)


def test_split_statistics_table(tree):
    catalog = build(tree)
    table = split_statistics(catalog, "zeroshot_yelamarthi")
    seen = len(CLASSES) - 2
    assert table["count"].to_dict() == {
        "seen_classes": seen,
        "unseen_classes": 2,
        "train_photos": seen * PHOTOS,
        "train_sketches": seen * PHOTOS * SKETCHES,
        "test_sketches": 2 * PHOTOS * SKETCHES,
        "train_gallery_images": seen * (PHOTOS + NEW_EXTENDED),
        "test_gallery": 2 * (PHOTOS + NEW_EXTENDED),
        "unseen_rendered_and_extended": 2 * (PHOTOS + PHOTOS + NEW_EXTENDED),
    }
    assert table.loc["test_gallery", "expected"] == 10453 and table.loc["train_photos", "expected"] == 10400
    assert table.loc["test_sketches", "difference"] == 2 * PHOTOS * SKETCHES - 12694
    assert "Yelamarthi et al. (ECCV 2018)" in table.attrs["source"]
    shen = split_statistics(catalog, "zeroshot_shen")  # SAKE's file lists
    assert shen.loc["test_sketches", "expected"] == 15229 and shen.loc["test_gallery", "expected"] == 14601
    assert shen.loc["unseen_rendered_and_extended", "expected"] == 17101 and "SAKE" in shen.attrs["source"]
    gzs = split_statistics(catalog, "gzs_shen")
    assert gzs.loc[["test_gallery_unseen", "test_gallery_seen", "test_gallery"], "count"].tolist() == [
        12,
        2,
        14,
    ]
    assert gzs.loc[["test_gallery_unseen", "test_gallery_seen"], "expected"].tolist() == [14601, 2920]


# --- errors and the checker ---------------------------------------------------------------------------
def test_wrong_root_names_the_folder_and_the_layout(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(DatasetError) as error:
        build(tmp_path)
    assert str(tmp_path) in str(error.value) and "rendered_256x256/256x256/photo/tx_000000000000" in str(
        error.value
    )
    assert check_sketchy(tmp_path, **SMALL)[0].message == str(error.value)


def test_extra_wrapping_folder_and_bare_256x256_are_accepted(tmp_path):
    wrapped = make_tree(tmp_path / "Sketchy" / "sketchy-release")
    assert build(tmp_path / "Sketchy").records["path"].iloc[0].startswith(str(wrapped))
    bare = tmp_path / "bare"
    (bare / "256x256").parent.mkdir()
    (wrapped / "rendered_256x256" / "256x256").rename(bare / "256x256")
    (wrapped / "EXTEND_image_sketchy").rename(bare / "EXTEND_image_sketchy")
    assert len(build(bare).records) == len(CLASSES) * (PHOTOS * (1 + SKETCHES) + PHOTOS + NEW_EXTENDED)


def test_missing_class_folder_is_an_error_unless_reading_present_classes(tree):
    sketch_dir = tree / IMAGES / "sketch" / "tx_000000000000"
    for path in (sketch_dir / "bat").iterdir():
        path.unlink()
    (sketch_dir / "bat").rmdir()
    with pytest.raises(DatasetError, match=rf"{sketch_dir / 'bat'}: missing class folder \(sketch images\)"):
        build(tree)
    with pytest.raises(DatasetError, match=r"missing class folder"):  # classes="all": 121 more are missing
        build(tree, classes="all")
    problems = check_sketchy(tree, **{**SMALL, "classes": "all"})
    missing = {Path(p.path).name for p in problems if "missing class folder" in p.message}
    assert len(missing) == 125 - len(CLASSES) + 1 and "bat" in missing and "zebra" in missing
    assert any("holds 16 photos; the literature's count is 12,500" in p.message for p in problems)


def test_unknown_class_folder_is_an_error(tree):
    save_image(tree / IMAGES / "photo" / "tx_000000000000" / "unicorn" / "n1_1.jpg", 1)
    with pytest.raises(DatasetError, match=r"unicorn: folder matches no Sketchy class.*classes\.txt"):
        build(tree)


def test_renamed_class_folders_are_matched_up_to_punctuation(tmp_path):
    root = make_tree(tmp_path / "Sketchy", classes=("hot-air_balloon", "scissors", "bat", "airplane"))
    for domain in ("photo", "sketch"):
        folder = root / IMAGES / domain / "tx_000000000000"
        (folder / "hot-air_balloon").rename(folder / "hot_air_balloon")
    catalog = build(root)
    assert "hot-air_balloon" in catalog.class_names


def test_sketch_without_photo_and_photo_without_sketch(tree):
    photo_dir = tree / IMAGES / "photo" / "tx_000000000000" / "bat"
    (photo_dir / f"{photo_id('bat', 0)}.jpg").unlink()
    save_image(photo_dir / "n99_9.jpg", 7)
    with pytest.raises(DatasetError) as error:
        build(tree)
    message = str(error.value)
    assert (
        f"{photo_id('bat', 0)}-1.png: sketch without photo: expected {photo_dir / photo_id('bat', 0)}.jpg"
        in message
    )
    assert "n99_9.jpg: photo without sketch: expected n99_9-<n>.png" in message
    assert "3 problem(s)" in message


def test_corrupt_and_zero_byte_images_are_listed_by_the_checker(tree):
    assert check_sketchy(tree, **SMALL) == []
    sketch_dir = tree / IMAGES / "sketch" / "tx_000000000000" / "car_(sedan)"
    corrupt = sketch_dir / f"{photo_id('car_(sedan)', 1)}-1.png"
    corrupt.write_bytes(corrupt.read_bytes()[:40])  # truncated PNG
    empty = tree / "EXTEND_image_sketchy" / "scissors" / "ext_0.jpg"
    empty.write_bytes(b"")
    problems = {p.path: p.message for p in check_sketchy(tree, **SMALL)}
    assert problems.keys() == {str(corrupt), str(empty)}
    assert (
        problems[str(corrupt)].startswith("unreadable image")
        and problems[str(empty)] == "empty (zero-byte) file"
    )
    with pytest.raises(DatasetError, match=rf"{empty}: empty \(zero-byte\) file"):
        build(tree)  # the builder decodes nothing but catches empty files


def test_upper_case_suffixes_are_counted(tree):
    extended = tree / "EXTEND_image_sketchy" / "bat"
    (extended / "ext_0.jpg").rename(extended / "ext_0.JPEG")
    catalog = build(tree)
    assert catalog.records["path"].str.endswith("ext_0.JPEG").sum() == 1
    assert len(part_paths(catalog, "zeroshot_yelamarthi", "test_gallery")) == 2 * (PHOTOS + NEW_EXTENDED)


def test_fingerprint_follows_the_tree(tree):
    before = build(tree).fingerprint
    save_image(tree / "EXTEND_image_sketchy" / "bat" / "ext_9.jpg", 99)
    assert build(tree).fingerprint != before


def test_classes_too_small_for_the_hold_outs(tree):
    sketch_dir = tree / IMAGES / "sketch" / "tx_000000000000"
    with pytest.raises(
        DatasetError, match=rf"{sketch_dir / 'airplane'}: 4 photos with 8 sketches are too few"
    ):
        build(tree, test_sketches_per_class=9)
    problems = check_sketchy(tree, **{**SMALL, "test_sketches_per_class": 9})
    assert [p.path for p in problems] == [str(sketch_dir / name) for name in CLASSES]  # every class listed
    assert all("too few for the traditional split" in p.message for p in problems)
    assert check_sketchy(tree, **{**SMALL, "val_photos_per_class": 3}) != []  # 1 held + 3 val: none trains


def test_split_with_no_unseen_class_present_is_an_error(tmp_path):
    root = make_tree(tmp_path / "Sketchy", classes=("car_(sedan)", "bat"))
    with pytest.raises(DatasetError, match=r"zeroshot_shen needs seen and unseen classes.*2 seen, 0 unseen"):
        build(root)


@pytest.mark.parametrize(
    ("data", "split", "setting", "gallery"),
    [
        ("sketchy_zs", "zeroshot_yelamarthi", "zeroshot", 2 * (PHOTOS + NEW_EXTENDED)),
        ("sketchy_gzs", "gzs_yelamarthi", "gzs", 2 * (PHOTOS + NEW_EXTENDED) + 2),  # + int(0.2 x 12)
    ],
)
def test_bench_runs_baseline_end_to_end(tree, tmp_path, data, split, setting, gallery):
    from sbir_bench.config import compose
    from sbir_bench.leaderboard.record import read_records
    from sbir_bench.runner import bench

    overrides = [
        "method=baseline",
        f"data={data}",
        f"data.dataset_kwargs.root={tree}",
        "data.dataset_kwargs.classes=present",
        "data.dataset_kwargs.val_photos_per_class=1",
        "data.dataset_kwargs.test_sketches_per_class=2",
        "data.backbone.pretrained=false",
        "data.backbone.image_size=32",
        "data.num_workers=0",
        *quiet_run_in(tmp_path, tmp_path / "cache"),
    ]
    bench(compose(overrides))
    (record,) = read_records(tmp_path / "results")
    assert record.status == "ok" and (record.dataset, record.split, record.setting) == (
        "sketchy",
        split,
        setting,
    )
    assert record.counts["n_queries"] == 2 * PHOTOS * SKETCHES
    assert record.counts["split_test_gallery"] == gallery
    assert 0.0 <= record.metrics["map@200"] <= 1.0


def test_splits_option_builds_the_splits_asked_for_under_their_own_fingerprint(tree):
    full = build(tree)
    gzs = build(tree, splits=["gzs_yelamarthi"])
    assert list(gzs.splits) == ["gzs_yelamarthi"] and gzs.fingerprint != full.fingerprint
    for part in SPLIT_PARTS:
        assert np.array_equal(gzs.split("gzs_yelamarthi").part(part), full.split("gzs_yelamarthi").part(part))
    with pytest.raises(DatasetError, match=r"no split\(s\) \['nope'\]; its splits: zeroshot_yelamarthi, "):
        build(tree, splits=["nope"])
