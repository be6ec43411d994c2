"""The split definitions shipped as package data: checksums, class lists and the hold-out rule."""

from __future__ import annotations

import hashlib
import shutil

import pandas as pd
import pytest

from sbir_bench.data import splits
from sbir_bench.data.records import DatasetError

# The literature's lists, restated so that an edit of a shipped file that also updates its checksum still has
# to agree with them: Yelamarthi et al. (ECCV 2018) as SEM-PCYC's test_classes_eccv_2018.txt and
# Doodle2Search's zeroshot_classes_sketchy.txt ship it; Shen et al. (ZSIH, CVPR 2018) as SAKE's
# cname_cid_zero.txt files (Liu et al., ICCV 2019) ship it (README, "Real datasets").
YELAMARTHI_UNSEEN = (
    "bat cabin cow dolphin door giraffe helicopter mouse pear raccoon rhinoceros saw scissors seagull "
    "skyscraper songbird sword tree wheelchair windmill window"
).split()
SHEN_SKETCHY_UNSEEN = (
    "cup swan harp squirrel snail ray pineapple volcano rifle scissors parrot windmill teddy_bear tree "
    "wine_bottle deer chicken airplane wheelchair tank umbrella butterfly camel horse bell"
).split()
SHEN_TUBERLIN_UNSEEN = [
    *"banana bus tractor suitcase streetlight telephone".split(),
    "bottle opener",  # copies of SAKE's list split on white space: "bottle"
    *"canoe fan teacup penguin laptop shoe lighter".split(),
    "hot air balloon",  # ...: "hot"
    *"pizza brain ant t-shirt trombone windmill snowboard table rollerblades parachute".split(),
    "space shuttle",  # ...: "space"
    *"bridge frying-pan bread horse".split(),
]


def test_every_shipped_file_matches_its_checksum():
    listed = splits.shipped_checksums()
    on_disk = {
        p.relative_to(splits.SPLITS_DIR).as_posix()
        for p in splits.SPLITS_DIR.rglob("*")
        if p.suffix in (".txt", ".json")
    }
    assert set(listed) == on_disk
    for name, digest in listed.items():
        assert hashlib.sha256((splits.SPLITS_DIR / name).read_bytes()).hexdigest() == digest, name


def test_an_edited_file_fails_to_load(tmp_path, monkeypatch):
    copy = tmp_path / "splits"
    shutil.copytree(splits.SPLITS_DIR, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setattr(splits, "SPLITS_DIR", copy)
    assert len(splits.class_list("sketchy")) == 125
    edited = copy / "sketchy" / "zeroshot_yelamarthi_unseen.txt"
    edited.write_text(edited.read_text().replace("window\n", ""))
    with pytest.raises(
        DatasetError, match=r"zeroshot_yelamarthi_unseen\.txt was modified.*CHECKSUMS\.sha256"
    ):
        splits.unseen_classes("sketchy", "zeroshot_yelamarthi")
    with pytest.raises(DatasetError, match="not listed in"):
        splits.read_names("sketchy", "made_up")


def test_sketchy_class_list():
    names = splits.class_list("sketchy")
    assert len(names) == len(set(names)) == 125 and names == sorted(names)
    assert {"car_(sedan)", "hot-air_balloon", "jack-o-lantern", "teddy_bear", "wine_bottle"} <= set(names)


def test_tuberlin_class_list():
    names = splits.class_list("tuberlin")
    assert len(names) == len(set(names)) == 250 and names == sorted(names)
    assert {"hot air balloon", "space shuttle", "bear (animal)", "t-shirt", "frying-pan"} <= set(names)


@pytest.mark.parametrize(
    ("dataset", "split", "expected", "num_classes"),
    [
        ("sketchy", "zeroshot_yelamarthi", YELAMARTHI_UNSEEN, 125),
        ("sketchy", "zeroshot_shen", SHEN_SKETCHY_UNSEEN, 125),
        ("tuberlin", "zeroshot_shen", SHEN_TUBERLIN_UNSEEN, 250),
    ],
)
def test_unseen_lists_are_the_literatures(dataset, split, expected, num_classes):
    unseen = splits.unseen_classes(dataset, split)
    assert sorted(unseen) == sorted(expected)
    counts = splits.expected_counts(dataset)["splits"][split]
    assert counts["unseen_classes"] == len(unseen)
    assert (
        counts["seen_classes"]
        == num_classes - len(unseen)
        == len(set(splits.class_list(dataset)) - set(unseen))
    )


@pytest.mark.parametrize(
    ("dataset", "name", "sources"),
    [
        (
            "sketchy",
            "zeroshot_yelamarthi_unseen",
            ["test_classes_eccv_2018.txt", "zeroshot_classes_sketchy.txt"],
        ),
        ("sketchy", "zeroshot_shen_unseen", ["dataset/Sketchy/zeroshot1/cname_cid_zero.txt"]),
        ("tuberlin", "zeroshot_shen_unseen", ["dataset/TUBerlin/zeroshot/cname_cid_zero.txt"]),
        ("sketchy", "classes", ["cname_cid.txt"]),
        ("tuberlin", "classes", ["cname_cid.txt"]),
    ],
)
def test_every_list_names_the_public_list_it_equals(dataset, name, sources):
    header = " ".join(splits.provenance(dataset, name))
    assert "Provenance: " in header and all(source in header for source in sources), header
    assert "/work" not in header and "spec" not in header


def test_expected_counts_agree_with_each_other():
    sketchy = splits.expected_counts("sketchy")
    table = sketchy["splits"]["zeroshot_yelamarthi"]
    assert table["train_sketches"] + table["test_sketches"] == sketchy["dataset"]["sketches"]
    assert (
        table["train_gallery_images"] + table["test_gallery"]
        == sketchy["dataset"]["extended_images"]
        == 73002
    )
    assert table["train_photos"] == 104 * sketchy["dataset"]["photos_per_class"]
    shen = sketchy["splits"]["zeroshot_shen"]  # SAKE's file lists
    assert shen["train_sketches"] + shen["test_sketches"] == sketchy["dataset"]["sketches"]
    assert shen["train_gallery_images"] + shen["test_gallery"] == sketchy["dataset"]["extended_images"]
    assert shen["unseen_rendered_and_extended"] == 25 * 100 + shen["test_gallery"]
    assert shen["train_photos"] == 100 * sketchy["dataset"]["photos_per_class"]
    tuberlin = splits.expected_counts("tuberlin")
    assert tuberlin["dataset"]["sketches"] == 250 * tuberlin["dataset"]["sketches_per_class"]
    tu_shen = tuberlin["splits"]["zeroshot_shen"]
    assert tu_shen["train_sketches"] + tu_shen["test_sketches"] == tuberlin["dataset"]["sketches"]
    assert tu_shen["test_sketches"] == 30 * tuberlin["dataset"]["sketches_per_class"]


@pytest.mark.parametrize(
    ("dataset", "gzs", "zeroshot"),
    [
        ("sketchy", "gzs_yelamarthi", "zeroshot_yelamarthi"),
        ("sketchy", "gzs_shen", "zeroshot_shen"),
        ("tuberlin", "gzs_shen", "zeroshot_shen"),
    ],
)
def test_generalised_counts_follow_from_the_zero_shot_ones(dataset, gzs, zeroshot):
    counts = splits.expected_counts(dataset)["splits"]
    generalised, base = counts[gzs], counts[zeroshot]
    assert generalised["test_gallery_unseen"] == base["test_gallery"]
    assert generalised["test_gallery_seen"] == int(0.2 * base["test_gallery"])  # the default fraction
    assert (
        generalised["test_gallery"] == generalised["test_gallery_unseen"] + generalised["test_gallery_seen"]
    )
    shared = set(base) - {"_source", "test_gallery"}
    assert {k: generalised[k] for k in shared} == {k: base[k] for k in shared}
    assert "derived" in splits.expected_source(dataset, gzs) and "SAKE" in splits.expected_source(
        dataset, "zeroshot_shen"
    )


def test_seen_gallery_draw_spreads_over_every_class_by_name():
    pools = {
        "cow": {f"c{i}": 100 + i for i in range(5)},
        "bat": {f"b{i}": 200 + i for i in range(3)},
        "owl": {"o0": 300},
    }
    drawn = splits.seen_gallery_draw(pools, unseen_gallery=25, fraction=0.2, salt="s")  # int(5.0) = 5
    assert len(drawn) == 5 and drawn == sorted(drawn)
    owners = [next(c for c, pool in pools.items() if r in pool.values()) for r in drawn]
    assert sorted(owners) == ["bat", "bat", "cow", "cow", "owl"]  # rounds over the classes, owl runs out
    assert drawn[-1] == 300
    for name, pool in pools.items():  # within a class: its first names in stable order
        taken = [k for k, r in pool.items() if r in drawn]
        assert sorted(taken) == sorted(splits.stable_order(pool, f"s/{name}")[: len(taken)])
    reordered = {name: dict(reversed(list(pool.items()))) for name, pool in reversed(list(pools.items()))}
    assert splits.seen_gallery_draw(reordered, 25, 0.2, "s") == drawn  # names only, not listing order
    assert splits.seen_gallery_draw(pools, 45, 0.2, "s") == sorted(
        r for p in pools.values() for r in p.values()
    )
    with pytest.raises(DatasetError, match=r"int\(0\.2 x 50 unseen-class images\) = 10 .* 9 seen-class"):
        splits.seen_gallery_draw(pools, 50, 0.2, "s")
    with pytest.raises(DatasetError, match="at least 1"):
        splits.seen_gallery_draw(pools, 4, 0.2, "s")


def test_stable_order_depends_only_on_the_names():
    names = [f"n0210{i}_{i * 7}" for i in range(50)]
    order = splits.stable_order(names, "sketchy/bat/photos")
    assert splits.stable_order(reversed(names), "sketchy/bat/photos") == order
    assert sorted(order) == sorted(names) and order != sorted(names)
    assert splits.stable_order(names, "sketchy/cow/photos") != order  # each class draws its own order
    assert splits.stable_order(["a", "b", "c", "d"], "salt") == ["b", "c", "d", "a"]  # pinned: sha256 order


def test_statistics_table():
    table = splits.statistics_table({"test_sketches": 12690, "val_photos": 5}, {"test_sketches": 12694})
    assert table.loc["test_sketches"].tolist() == [12690, 12694, -4]
    assert table.loc["val_photos", "expected"] is pd.NA
