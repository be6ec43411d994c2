"""The split definitions shipped as package data: checksums, class lists and the hold-out rule."""

from __future__ import annotations

import hashlib
import shutil

import pandas as pd
import pytest

from sbir_bench.data import splits
from sbir_bench.data.records import DatasetError

# The spec's lists (docs: /work/shared/spec/datasets.md), restated so that an edit of a shipped file that
# also updates its checksum still has to agree with the literature.
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
    "bottle opener",  # SAKE: "bottle"
    *"canoe fan teacup penguin laptop shoe lighter".split(),
    "hot air balloon",  # SAKE: "hot"
    *"pizza brain ant t-shirt trombone windmill snowboard table rollerblades parachute".split(),
    "space shuttle",  # SAKE: "space"
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
    tuberlin = splits.expected_counts("tuberlin")
    assert tuberlin["dataset"]["sketches"] == 250 * tuberlin["dataset"]["sketches_per_class"]


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
