"""The TU-Berlin (+ Extension photos) reader on tiny trees in the official layout (16 px, 4 real classes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sbir_bench.data.readers.tuberlin import build_tuberlin, check_tuberlin, split_statistics
from sbir_bench.data.records import DatasetError
from sbir_bench.data.splits import stable_order
from sbir_bench.registry import DATASET_CHECKERS, DATASETS

from ...conftest import quiet_run_in

# "bottle opener" and "hot air balloon" are unseen in Shen's split (copies of SAKE's list split on white
# space cut them to "bottle" / "hot").
CLASSES = ("airplane", "bottle opener", "giraffe", "hot air balloon")
UNSEEN = {"bottle opener", "hot air balloon"}
# Extension photo folders as releases name them: exact, concatenated, misspelt.
PHOTO_FOLDERS = {"airplane": "airplane", "bottle opener": "bottleopener", "giraffe": "griaffe"}
SKETCHES, PHOTOS = 6, 6
SMALL = {
    "classes": "present",
    "test_sketches_per_class": 1,
    "test_photos_per_class": 2,
    "val_sketches_per_class": 1,
    "val_photos_per_class": 1,
    "progress": False,
}


def save_image(path: Path, seed: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, format="PNG" if path.suffix == ".png" else "JPEG")


def make_tree(root: Path, classes=CLASSES, photo_folder="ImageResized", filelist=False) -> Path:
    number, listed = 0, []
    for name in classes:
        for _ in range(SKETCHES):
            number += 1
            save_image(root / "png" / name / f"{number}.png", number, "L")
            listed.append(f"{name}/{number}.png")
        for i in range(PHOTOS):
            save_image(
                root / photo_folder / PHOTO_FOLDERS.get(name, name) / f"photo_{i}.jpg", 1000 + number + i
            )
    if filelist:
        (root / "png" / "filelist.txt").write_text("\n".join(listed) + "\n")
    return root


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tree(tmp_path / "TU-Berlin")


def build(root, **options):
    return build_tuberlin(cache_dir="unused", root=root, **{**SMALL, **options})


def labels_of(catalog, indices) -> set[str]:
    return {catalog.class_names[label] for label in catalog.records["label"].iloc[indices]}


def test_registered_builder_and_checker():
    assert DATASETS.get("tuberlin") is build_tuberlin and DATASET_CHECKERS.get("tuberlin") is check_tuberlin


def test_counts_and_photo_folders_matched_leniently(tree):
    catalog = build(tree)
    records = catalog.records
    assert catalog.class_names == list(CLASSES)
    assert (records["domain"] == "sketch").sum() == len(CLASSES) * SKETCHES
    assert (records["domain"] == "photo").sum() == len(CLASSES) * PHOTOS
    giraffe = records[(records["label"] == CLASSES.index("giraffe")) & (records["domain"] == "photo")]
    assert giraffe["path"].str.contains("/ImageResized/griaffe/").all()
    assert records["instance"].is_unique and catalog.fingerprint


@pytest.mark.parametrize("split", ["zeroshot_shen", "gzs_shen", "traditional"])
def test_no_pairs_so_training_sketches_meet_photos_of_their_class(tree, split):
    """TU-Berlin has no pairs: class pairing, and every training class has training photos to draw."""
    catalog = build(tree)
    assert catalog.pairing == "class"
    train = catalog.records.iloc[catalog.split(split).train]
    photos = train[train["domain"] == "photo"]
    sketches = train[train["domain"] == "sketch"]
    assert len(sketches) and set(sketches["label"]) == set(photos["label"])


@pytest.mark.parametrize("split", ["zeroshot_shen", "gzs_shen", "traditional"])
def test_parts_are_disjoint_and_unseen_classes_only_in_test(tree, split):
    catalog = build(tree)
    chosen = catalog.split(split)
    parts = [
        set(chosen.part(p).tolist())
        for p in ("train", "val_query", "val_gallery", "test_query", "test_gallery")
    ]
    assert sum(map(len, parts)) == len(set().union(*parts))
    unseen = {catalog.class_names[c] for c in chosen.unseen_classes}
    training = np.concatenate([chosen.train, chosen.val_query, chosen.val_gallery])
    assert not labels_of(catalog, training) & unseen
    assert labels_of(catalog, chosen.test_query) == (unseen or set(CLASSES))


def test_zero_shot_split(tree):
    catalog = build(tree)
    split = catalog.split("zeroshot_shen")
    assert {catalog.class_names[c] for c in split.unseen_classes} == UNSEEN
    records = catalog.records
    assert (records["domain"].iloc[split.test_query] == "sketch").all()
    assert len(split.test_query) == 2 * SKETCHES and len(split.test_gallery) == 2 * PHOTOS
    assert len(split.val_query) == 2 and len(split.val_gallery) == 2  # one of each per seen class
    assert len(split.train) == 2 * (SKETCHES - 1 + PHOTOS - 1)


def test_generalised_split_moves_seen_training_photos_to_the_gallery(tree):
    catalog = build(tree)
    gzs, zeroshot = catalog.split("gzs_shen"), catalog.split("zeroshot_shen")
    assert gzs.setting == "gzs"
    assert (gzs.seen_classes, gzs.unseen_classes) == (zeroshot.seen_classes, zeroshot.unseen_classes)
    for part in ("val_query", "val_gallery", "test_query"):
        np.testing.assert_array_equal(gzs.part(part), zeroshot.part(part))
    assert labels_of(catalog, gzs.test_query) == UNSEEN
    added = sorted(set(gzs.test_gallery) - set(zeroshot.test_gallery))
    assert set(zeroshot.test_gallery) < set(gzs.test_gallery) and len(added) == 2  # int(0.2 x 2 x PHOTOS)
    assert labels_of(catalog, added) <= set(CLASSES) - UNSEEN
    assert labels_of(catalog, gzs.test_gallery) == set(CLASSES)  # a gallery of every class
    seen = set(CLASSES) - UNSEEN
    assert labels_of(catalog, gzs.train) == labels_of(catalog, gzs.val_gallery) == seen
    assert set(zeroshot.train) - set(gzs.train) == set(added)  # the drawn photos no longer train
    training = np.concatenate([gzs.train, gzs.val_query, gzs.val_gallery])
    assert not set(catalog.records["instance"].iloc[added]) & set(catalog.records["instance"].iloc[training])
    # pinned: one photo per seen class (2 drawn, 2 seen classes), each class's first training photo in
    # stable_order salted "tuberlin/gzs_shen/seen_gallery/<class>"
    train = catalog.records.iloc[zeroshot.train]
    expected = {
        f"photo/{c}/"
        + stable_order(
            [i.rsplit("/", 1)[1] for i in train["instance"] if i.startswith(f"photo/{c}/")],
            f"tuberlin/gzs_shen/seen_gallery/{c}",
        )[0]
        for c in ("airplane", "giraffe")
    }
    assert set(catalog.records["instance"].iloc[added]) == expected
    assert expected == {"photo/airplane/photo_4.jpg", "photo/giraffe/photo_3.jpg"}  # the value today


def test_generalised_gallery_needs_enough_training_photos(tree):
    with pytest.raises(DatasetError, match=r"= 12 seen-class images, and 10 seen-class images are held out"):
        build(tree, gzs_seen_gallery_fraction=1)


def test_traditional_split(tree):
    catalog = build(tree)
    split = catalog.split("traditional")
    records = catalog.records
    assert records.iloc[split.test_query].groupby("label").size().tolist() == [1] * len(CLASSES)
    assert records.iloc[split.test_gallery].groupby("label").size().tolist() == [2] * len(CLASSES)
    assert (records["domain"].iloc[split.test_gallery] == "photo").all()
    assert len(split.train) == len(CLASSES) * (SKETCHES - 2 + PHOTOS - 3)


def test_hold_outs_depend_only_on_file_names(tmp_path):
    first, second = build(make_tree(tmp_path / "a")), build(make_tree(tmp_path / "b" / "TU-Berlin"))
    for split in ("zeroshot_shen", "gzs_shen", "traditional"):
        for part in ("train", "val_query", "val_gallery", "test_query", "test_gallery"):
            names = [
                [Path(p).name for p in c.records["path"].iloc[c.split(split).part(part)]]
                for c in (first, second)
            ]
            assert names[0] == names[1]


def test_photo_folder_option(tmp_path):
    root = make_tree(tmp_path / "TU-Berlin", photo_folder="photos")
    with pytest.raises(DatasetError) as error:
        build(root)
    assert f"{root / 'ImageResized'}: missing: expected the TU-Berlin Extension photos" in str(error.value)
    assert "photo_folder" in str(error.value)
    assert (
        build(root, photo_folder="photos").records["path"].str.contains("/photos/").sum()
        == len(CLASSES) * PHOTOS
    )


def test_filelist_must_match_the_tree(tmp_path):
    root = make_tree(tmp_path / "TU-Berlin", filelist=True)
    assert check_tuberlin(root, **SMALL) == []
    (root / "png" / "giraffe" / "13.png").unlink()
    save_image(root / "png" / "giraffe" / "99.png", 99, "L")
    problems = {p.path: p.message for p in check_tuberlin(root, **SMALL)}
    filelist = root / "png" / "filelist.txt"
    assert problems == {
        str(root / "png" / "giraffe" / "13.png"): f"listed in {filelist} but missing",
        str(root / "png" / "giraffe" / "99.png"): f"not listed in {filelist}",
    }
    with pytest.raises(DatasetError, match="2 problem"):
        build(root)


def test_split_statistics_table(tree):
    table = split_statistics(build(tree), "zeroshot_shen")
    assert table["count"].to_dict() == {
        "seen_classes": 2,
        "unseen_classes": 2,
        "train_photos": 2 * PHOTOS,
        "train_sketches": 2 * SKETCHES,
        "test_sketches": 2 * SKETCHES,
        "test_gallery": 2 * PHOTOS,
    }
    assert table.loc["test_sketches", "expected"] == 2400 and table.loc["unseen_classes", "difference"] == -28
    assert table.loc["test_gallery", "expected"] == 27989 and "SAKE" in table.attrs["source"]
    gzs = split_statistics(build(tree), "gzs_shen")
    assert gzs.loc[["test_gallery_unseen", "test_gallery_seen", "test_gallery"], "count"].tolist() == [
        2 * PHOTOS,
        2,
        2 * PHOTOS + 2,
    ]
    assert gzs.loc[["test_gallery_unseen", "test_gallery_seen"], "expected"].tolist() == [27989, 5597]
    assert gzs.loc["train_photos", "count"] == 2 * PHOTOS - 2


# --- errors and the checker ---------------------------------------------------------------------------
def test_wrong_root_names_the_folder_and_the_layout(tmp_path):
    with pytest.raises(DatasetError) as error:
        build(tmp_path)
    assert str(tmp_path) in str(error.value) and "png/<class>/<n>.png" in str(error.value)
    assert [p.message for p in check_tuberlin(tmp_path, **SMALL)] == [str(error.value)]


def test_extra_wrapping_folder_is_accepted(tmp_path):
    inner = make_tree(tmp_path / "TU-Berlin" / "tu-berlin-release")
    assert build(tmp_path / "TU-Berlin").records["path"].iloc[0].startswith(str(inner))


def test_missing_class_folder(tree):
    for path in (tree / "ImageResized" / "griaffe").iterdir():
        path.unlink()
    (tree / "ImageResized" / "griaffe").rmdir()
    with pytest.raises(
        DatasetError, match=rf"{tree / 'ImageResized' / 'giraffe'}: missing class folder \(photo"
    ):
        build(tree)
    problems = check_tuberlin(tree, **{**SMALL, "classes": "all"})
    missing_sketches = [p for p in problems if p.message == "missing class folder (sketch images)"]
    assert len(missing_sketches) == 250 - len(CLASSES)
    assert any(p.path == str(tree / "png" / "zebra") for p in missing_sketches)
    assert any("holds 24 sketches; the literature's count is 20,000" in p.message for p in problems)
    assert any(p.message == "holds 6 sketches, expected 80" for p in problems)


def test_unknown_class_folder(tree):
    save_image(tree / "png" / "unicorn" / "1000.png", 1, "L")
    with pytest.raises(DatasetError, match=r"png/unicorn: folder matches no TU-Berlin class"):
        build(tree)


def test_corrupt_and_zero_byte_images_are_listed_by_the_checker(tree):
    assert check_tuberlin(tree, **SMALL) == []
    corrupt = tree / "png" / "airplane" / "2.png"
    corrupt.write_bytes(b"not a png at all")
    empty = tree / "ImageResized" / "bottleopener" / "photo_3.jpg"
    empty.write_bytes(b"")
    problems = {p.path: p.message for p in check_tuberlin(tree, **SMALL)}
    assert problems.keys() == {str(corrupt), str(empty)}
    assert (
        problems[str(corrupt)].startswith("unreadable image")
        and problems[str(empty)] == "empty (zero-byte) file"
    )
    with pytest.raises(DatasetError, match=rf"{empty}: empty \(zero-byte\) file"):
        build(tree)


def test_upper_case_suffixes_are_counted(tree):
    folder = tree / "ImageResized" / "hot air balloon"
    (folder / "photo_0.jpg").rename(folder / "photo_0.JPEG")
    catalog = build(tree)
    assert catalog.records["path"].str.endswith("photo_0.JPEG").sum() == 1
    assert len(catalog.split("zeroshot_shen").test_gallery) == 2 * PHOTOS


def test_classes_too_small_for_the_hold_outs(tree):
    problems = check_tuberlin(tree, **{**SMALL, "test_photos_per_class": 5})
    assert [p.path for p in problems] == [str(tree / "png" / name) for name in CLASSES]
    assert all("6 sketches and 6 photos" in p.message and "too few" in p.message for p in problems)
    with pytest.raises(DatasetError, match=r"too few: the splits hold out 2 sketches and 6 photos per class"):
        build(tree, test_photos_per_class=5)


# cvae trains on pairs: each training sketch with a same-class photo (shape) drawn every epoch
@pytest.mark.parametrize(
    "method", [["method=baseline"], ["method=cvae", "method.max_epochs=2"]], ids=["baseline", "cvae"]
)
def test_bench_runs_end_to_end(tree, tmp_path, method):
    from sbir_bench.config import compose
    from sbir_bench.leaderboard.record import read_records
    from sbir_bench.runner import bench

    options = [f"data.dataset_kwargs.{k}={v}" for k, v in SMALL.items() if k != "progress"]
    overrides = [
        *method,
        "data=tuberlin_zs",
        f"data.dataset_kwargs.root='{tree}'",
        *options,
        "data.backbone.pretrained=false",
        "data.backbone.image_size=32",
        "data.num_workers=0",
        *quiet_run_in(tmp_path, tmp_path / "cache"),
    ]
    bench(compose(overrides))
    (record,) = read_records(tmp_path / "results")
    assert record.status == "ok" and (record.dataset, record.split) == ("tuberlin", "zeroshot_shen")
    assert record.method == method[0][len("method=") :]
    assert record.counts["n_queries"] == 2 * SKETCHES
    assert 0.0 <= record.metrics["map@200"] <= 1.0


def test_splits_option_spares_the_traditional_hold_outs_of_a_tree_too_small_for_them(tree):
    """5 test + 1 validation sketches a class leave nothing to train the traditional split on."""
    with pytest.raises(DatasetError, match="too few"):
        build(tree, test_sketches_per_class=5)
    zeroshot = build(tree, test_sketches_per_class=5, splits=["zeroshot_shen"])
    assert list(zeroshot.splits) == ["zeroshot_shen"]
    assert labels_of(zeroshot, zeroshot.split("zeroshot_shen").test_query) == UNSEEN
