"""QMUL Shoe / Chair reader: both layouts (folders + annotation JSON, packed .mat), pairing, the
fine-grained split, triplets, attributes, the PNG cache of the packed arrays, and every error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from sbir_bench.data.modules import RetrievalDataModule
from sbir_bench.data.readers.qmul import build_qmul_chair, build_qmul_shoe, check_qmul_chair, check_qmul_shoe
from sbir_bench.data.records import DatasetError
from sbir_bench.registry import DATASET_CHECKERS, DATASETS

from ...conftest import quiet_run_in

SIZE = 16
TRAIN, TEST = 4, 3  # instances 1..4 train, 5..7 test (as the release numbers 1-304 / 305-419)


def _triplet_lists(count: int) -> list[list[list[int]]]:
    """For anchor a: its own photo against the next one, and the next against the one after."""
    return [[[a, (a + 1) % count], [(a + 1) % count, (a + 2) % count]] for a in range(count)]


def _pixels(seed: int, channels: int) -> np.ndarray:
    shape = (SIZE, SIZE, channels) if channels > 1 else (SIZE, SIZE)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def make_folders(
    base: Path,
    name: str = "shoes",
    *,
    annotation_in: str = "dataset",
    photo_suffix: str = ".jpg",
) -> Path:
    """A tiny release tree ``base/<name>/{train,test}/{images,sketches}`` + the annotation; returns base."""
    dataset = base / name
    annotation = {}
    for subset, first, count in (("train", 1, TRAIN), ("test", TRAIN + 1, TEST)):
        (dataset / subset / "images").mkdir(parents=True)
        (dataset / subset / "sketches").mkdir(parents=True)
        numbers = range(first, first + count)
        for number in numbers:
            Image.fromarray(_pixels(number, 3)).save(dataset / subset / "images" / f"{number}{photo_suffix}")
            Image.fromarray(_pixels(1000 + number, 1)).save(dataset / subset / "sketches" / f"{number}.png")
        annotation[subset] = {
            "images": [f"{n}.jpg" for n in numbers],
            "sketches": [f"{n}.png" for n in numbers],
            "triplets": _triplet_lists(count),
        }
    folder = (dataset if annotation_in == "dataset" else base) / "annotation"
    folder.mkdir(parents=True)
    (folder / f"{name}_annotation.json").write_text(json.dumps(annotation))
    return base


def make_packed(
    folder: Path, name: str = "shoes", *, test_suffix: str = "test", annotation: bool = False
) -> dict[str, dict[str, np.ndarray]]:
    """The packed ``.mat`` files in ``folder``; returns subset -> kind -> the array written."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict[str, np.ndarray]] = {}
    for subset, count in (("train", TRAIN), ("test", TEST)):
        offset = 0 if subset == "train" else 100
        written[subset] = {
            "sketch": np.stack([_pixels(offset + i, 1) for i in range(count)]),
            "image": np.stack([_pixels(offset + 50 + i, 3) for i in range(count)]),
            "edge": np.stack([_pixels(offset + 80 + i, 1) for i in range(count)]),
        }
        suffix = test_suffix if subset == "test" else subset
        for kind, data in written[subset].items():
            scipy.io.savemat(folder / f"{name}_{kind}_db_{suffix}.mat", {"data": data})
    if annotation:
        content = {
            subset: {
                "images": [f"{first + i}.jpg" for i in range(count)],
                "sketches": [f"{first + i}.png" for i in range(count)],
                "triplets": _triplet_lists(count),
            }
            for subset, first, count in (("train", 1, TRAIN), ("test", TRAIN + 1, TEST))
        }
        (folder / f"{name}_annotation.json").write_text(json.dumps(content))
    return written


def _annotation_file(base: Path, name: str = "shoes") -> Path:
    return base / name / "annotation" / f"{name}_annotation.json"


def _edit_annotation(base: Path, edit) -> None:
    path = _annotation_file(base)
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))


def _problem_text(problems) -> str:
    return "\n".join(str(p) for p in problems)


# --- the folder layout ------------------------------------------------------------------------------------
def test_folder_layout_pairs_each_sketch_with_its_own_photo(tmp_path):
    base = make_folders(tmp_path / "data")
    catalog = build_qmul_shoe(tmp_path / "cache", root=base, progress=False)
    records = catalog.records
    assert catalog.name == "qmul_shoe" and catalog.class_names == ["shoe"] and catalog.fingerprint
    assert (records["label"] == 0).all() and (records["views"].map(len) == 0).all()
    assert sorted(records["instance"].unique()) == sorted(str(n) for n in range(1, TRAIN + TEST + 1))
    for instance, group in records.groupby("instance"):
        assert sorted(group["domain"]) == ["photo", "sketch"], instance
        photo, sketch = (Path(group.loc[group["domain"] == d, "path"].item()) for d in ("photo", "sketch"))
        assert photo.stem == sketch.stem == instance and photo.parent.name == "images"
        assert photo.parent.parent == sketch.parent.parent  # same subset
    assert list(catalog.splits) == ["fine_grained"]


def test_fine_grained_split_parts_and_deterministic_validation_hold_out(tmp_path):
    base = make_folders(tmp_path / "data")
    catalog = build_qmul_shoe(tmp_path / "cache", root=base, progress=False)
    split, records = catalog.split("fine_grained"), catalog.records

    def instances(part: str, domain: str) -> set[str]:
        chosen = records.iloc[split.part(part)]
        assert (chosen["domain"] == domain).all(), part
        return set(chosen["instance"])

    test_instances = {str(n) for n in range(TRAIN + 1, TRAIN + TEST + 1)}
    assert split.setting == "fine_grained" and split.seen_classes == (0,) and split.unseen_classes == ()
    assert instances("test_query", "sketch") == instances("test_gallery", "photo") == test_instances
    val = instances("val_query", "sketch")
    assert val == instances("val_gallery", "photo") and len(val) == 1  # 10% of 4, at least one
    train = records.iloc[split.train]
    assert set(train["instance"]) == {str(n) for n in range(1, TRAIN + 1)} - val
    assert (train["domain"].value_counts() == TRAIN - 1).all()  # both domains of every training instance
    again = build_qmul_shoe(tmp_path / "cache", root=base, progress=False).split("fine_grained")
    assert np.array_equal(again.val_query, split.val_query) and np.array_equal(again.train, split.train)
    none = build_qmul_shoe(tmp_path / "cache", root=base, val_fraction=0.0, progress=False)
    assert len(none.split("fine_grained").val_query) == 0
    assert len(none.split("fine_grained").train) == 2 * TRAIN


def test_triplets_are_annotation_triplets_as_record_indices_within_the_train_part(tmp_path):
    base = make_folders(tmp_path / "data")
    catalog = build_qmul_shoe(tmp_path / "cache", root=base, val_fraction=0.0, progress=False)
    records, triplets = catalog.records, catalog.triplets["fine_grained"]
    assert triplets.dtype == np.int64 and triplets.shape == (2 * TRAIN, 3)
    expected = {
        (str(a + 1), str(pos + 1), str(neg + 1))
        for a, pairs in enumerate(_triplet_lists(TRAIN))
        for pos, neg in pairs
    }
    as_instances = {tuple(records.loc[row, "instance"] for row in triplet) for triplet in triplets.tolist()}
    assert as_instances == expected
    assert (records.loc[triplets[:, 0], "domain"] == "sketch").all()
    assert (records.loc[triplets[:, 1:].ravel(), "domain"] == "photo").all()

    held_out = build_qmul_shoe(tmp_path / "cache", root=base, val_fraction=0.25, progress=False)
    split = held_out.split("fine_grained")
    kept = held_out.triplets["fine_grained"]
    assert 0 < len(kept) < 2 * TRAIN and np.isin(kept, split.train).all()


def test_wrapping_folder_upper_case_suffix_and_data_root_variable(tmp_path, monkeypatch):
    base = make_folders(tmp_path / "release" / "sbir_cvpr2016", photo_suffix=".JPG")
    cache = tmp_path / "cache"
    wrapped = build_qmul_shoe(cache, root=tmp_path / "release", progress=False)
    assert wrapped.records["path"].str.endswith(".JPG").sum() == TRAIN + TEST  # listed as .jpg in the JSON
    direct = build_qmul_shoe(cache, root=base / "shoes", progress=False)  # the <name> folder itself
    monkeypatch.setenv("SBIR_DATA", str(tmp_path / "release"))
    from_env = build_qmul_shoe(cache, progress=False)  # $SBIR_DATA/sbir_cvpr2016
    assert wrapped.fingerprint == direct.fingerprint == from_env.fingerprint
    assert check_qmul_shoe(root=tmp_path / "release") == []


def test_annotation_folder_beside_the_dataset_folder_is_accepted(tmp_path):
    base = make_folders(tmp_path / "data", "chairs", annotation_in="root")  # <root>/annotation/
    catalog = build_qmul_chair(tmp_path / "cache", root=base, progress=False)
    assert catalog.name == "qmul_chair" and catalog.class_names == ["chair"]
    assert len(catalog.records) == 2 * (TRAIN + TEST)


def test_annotation_without_sketch_list_pairs_sketches_by_image_name(tmp_path):
    base = make_folders(tmp_path / "data")  # sketches are <i>.png, the images list names <i>.jpg
    _edit_annotation(base, lambda content: [content[s].pop("sketches") for s in ("train", "test")])
    records = build_qmul_shoe(tmp_path / "cache", root=base, progress=False).records
    sketch_of_5 = records[(records["instance"] == "5") & (records["domain"] == "sketch")]["path"].item()
    assert sketch_of_5 == str(base / "shoes" / "test" / "sketches" / "5.png")


def test_fingerprint_changes_with_the_tree(tmp_path):
    base = make_folders(tmp_path / "data")
    before = build_qmul_shoe(tmp_path / "cache", root=base, progress=False).fingerprint
    Image.fromarray(_pixels(77, 3)).save(base / "shoes" / "test" / "images" / "5.jpg")
    assert build_qmul_shoe(tmp_path / "cache", root=base, progress=False).fingerprint != before


# --- errors -------------------------------------------------------------------------------------------------
def test_missing_annotation_is_an_error_naming_the_expected_file(tmp_path):
    base = make_folders(tmp_path / "data")
    _annotation_file(base).unlink()
    with pytest.raises(DatasetError, match="missing annotation") as error:
        build_qmul_shoe(tmp_path / "cache", root=base, progress=False)
    assert str(_annotation_file(base)) in str(error.value)


def test_root_without_either_layout_names_it_and_shows_the_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as error:
        build_qmul_shoe(tmp_path / "cache", root=tmp_path / "empty", progress=False)
    message = str(error.value)
    assert str(tmp_path / "empty") in message and "shoes_annotation.json" in message
    assert "shoes_{sketch,image,edge}_db_{train,test}.mat" in message
    with pytest.raises(DatasetError, match="is not a folder"):
        build_qmul_shoe(tmp_path / "cache", root=tmp_path / "nowhere", progress=False)
    problems = check_qmul_shoe(root=tmp_path / "empty")
    assert len(problems) == 1 and "does not hold qmul_shoe" in problems[0].message


def test_count_mismatch_between_annotation_and_files(tmp_path):
    base = make_folders(tmp_path / "data")
    extra = base / "shoes" / "train" / "images" / "99.jpg"
    Image.fromarray(_pixels(99, 3)).save(extra)
    _edit_annotation(base, lambda content: content["test"]["sketches"].pop())
    with pytest.raises(DatasetError) as error:
        build_qmul_shoe(tmp_path / "cache", root=base, progress=False)
    message = str(error.value)
    assert f"{extra.parent}: 1 image file(s) not listed in {_annotation_file(base)}, e.g. 99.jpg" in message
    assert f"[test] lists {TEST} images but {TEST - 1} sketches" in message


def test_listed_file_missing_on_disk_is_named(tmp_path):
    base = make_folders(tmp_path / "data")
    missing = base / "shoes" / "test" / "sketches" / "6.png"
    missing.unlink()
    problems = check_qmul_shoe(root=base)
    assert _problem_text(problems) == (
        f"{missing}: missing; listed as [test][sketches][1] in {_annotation_file(base)}"
    )


def test_checker_lists_every_problem_and_the_builder_raises_one_error(tmp_path):
    base = make_folders(tmp_path / "data")
    corrupt = base / "shoes" / "train" / "images" / "2.jpg"
    corrupt.write_bytes(b"not a jpeg")
    empty = base / "shoes" / "train" / "sketches" / "3.png"
    empty.write_bytes(b"")
    shutil.rmtree(base / "shoes" / "test" / "images")
    _edit_annotation(base, lambda content: content["train"]["triplets"][0].append([1, TRAIN + 5]))
    problems = check_qmul_shoe(root=base)
    by_path = {problem.path: problem.message for problem in problems}
    assert "unreadable image" in by_path[str(corrupt)]
    assert by_path[str(empty)] == "empty (zero-byte) file"
    assert by_path[str(base / "shoes" / "test" / "images")] == "missing folder; expected the test images"
    assert (
        f"[train][triplets][0] has 1 pair(s) outside 0..{TRAIN - 1}, e.g. [1, {TRAIN + 5}]"
        in (by_path[str(_annotation_file(base))])
    )
    assert len(problems) == 4
    with pytest.raises(DatasetError, match=r"2 problem\(s\)") as error:  # no decoding in the builder
        build_qmul_shoe(tmp_path / "cache", root=base, progress=False)
    assert "test/images: missing folder" in str(error.value) and "sbir-bench data check" in str(error.value)


def test_malformed_annotation_is_named(tmp_path):
    base = make_folders(tmp_path / "data")
    _annotation_file(base).write_text("{not json")
    problems = check_qmul_shoe(root=base)
    assert problems[0].path == str(_annotation_file(base)) and "unreadable annotation" in problems[0].message
    _annotation_file(base).write_text(json.dumps({"train": {"images": ["1.jpg"]}}))
    assert "no ['test'] object" in _problem_text(check_qmul_shoe(root=base))


def test_duplicate_instance_across_subsets_is_a_problem(tmp_path):
    base = make_folders(tmp_path / "data")
    shutil.copy(base / "shoes" / "train" / "images" / "1.jpg", base / "shoes" / "test" / "images" / "1.jpg")
    shutil.copy(
        base / "shoes" / "train" / "sketches" / "1.png", base / "shoes" / "test" / "sketches" / "1.png"
    )
    (base / "shoes" / "test" / "images" / "5.jpg").unlink()
    (base / "shoes" / "test" / "sketches" / "5.png").unlink()

    def rename(content):
        content["test"]["images"][0], content["test"]["sketches"][0] = "1.jpg", "1.png"

    _edit_annotation(base, rename)
    assert "instance '1' appears twice (train and test)" in _problem_text(check_qmul_shoe(root=base))


# --- the packed layout --------------------------------------------------------------------------------------
def test_packed_rows_become_cached_pngs_paired_by_row(tmp_path):
    written = make_packed(tmp_path / "data" / "dbs" / "shoes")
    cache = tmp_path / "cache"
    catalog = build_qmul_shoe(cache, root=tmp_path / "data", progress=False)
    records = catalog.records
    assert "fine_grained" not in catalog.triplets  # no annotation file: no triplets
    assert sorted(records["instance"].unique()) == sorted(
        [f"train_{i:04d}" for i in range(TRAIN)] + [f"test_{i:04d}" for i in range(TEST)]
    )
    for row in records.itertuples():
        subset, index = row.instance.split("_")
        kind = "sketch" if row.domain == "sketch" else "image"
        assert Path(row.path).is_relative_to(cache / "qmul")
        assert np.array_equal(np.asarray(Image.open(row.path)), written[subset][kind][int(index)])
    split = catalog.split("fine_grained")
    assert len(split.test_query) == len(split.test_gallery) == TEST
    assert len(split.train) + len(split.val_query) + len(split.val_gallery) == 2 * TRAIN
    assert check_qmul_shoe(root=tmp_path / "data") == []


def test_packed_with_annotation_edge_maps_and_val_file_names(tmp_path):
    written = make_packed(tmp_path / "data", test_suffix="val", annotation=True)
    catalog = build_qmul_shoe(
        tmp_path / "cache", root=tmp_path / "data", packed_photos="edge", progress=False
    )
    records = catalog.records
    photo_5 = records[(records["instance"] == "5") & (records["domain"] == "photo")]
    assert np.array_equal(np.asarray(Image.open(photo_5["path"].item())), written["test"]["edge"][0])
    assert catalog.triplets["fine_grained"].shape[1] == 3 and len(catalog.triplets["fine_grained"]) > 0
    images = build_qmul_shoe(tmp_path / "cache", root=tmp_path / "data", progress=False)
    assert images.fingerprint != catalog.fingerprint


def test_packed_cache_is_reused_when_complete_and_rebuilt_when_partial(tmp_path):
    make_packed(tmp_path / "data")
    cache = tmp_path / "cache"
    catalog = build_qmul_shoe(cache, root=tmp_path / "data", progress=False)
    first = Path(catalog.records["path"].iloc[0])
    stamp = first.stat().st_mtime_ns
    build_qmul_shoe(cache, root=tmp_path / "data", progress=False)
    assert first.stat().st_mtime_ns == stamp  # complete: reused, not rewritten

    first.unlink()  # a partial cache (e.g. an interrupted copy) is detected and rebuilt
    rebuilt = build_qmul_shoe(cache, root=tmp_path / "data", progress=False)
    assert first.is_file() and rebuilt.fingerprint == catalog.fingerprint
    folder = first.parents[2]
    (folder / "manifest.json").unlink()  # no manifest: the build never finished
    stale = folder.parent / f".{folder.name}.0123456789ab.building"  # as sbir_bench.files names them
    stale.mkdir()
    build_qmul_shoe(cache, root=tmp_path / "data", progress=False)
    assert (folder / "manifest.json").is_file() and not stale.exists()


def test_packed_problems_are_listed(tmp_path):
    folder = tmp_path / "data"
    make_packed(folder, annotation=True)
    scipy.io.savemat(
        folder / "shoes_image_db_train.mat", {"data": np.zeros((TRAIN - 1, SIZE, SIZE, 3), np.uint8)}
    )
    scipy.io.savemat(folder / "shoes_sketch_db_test.mat", {"pixels": np.zeros((TEST, SIZE, SIZE), np.uint8)})
    problems = check_qmul_shoe(root=folder)
    by_path = {problem.path: problem.message for problem in problems}
    assert by_path[str(folder / "shoes_image_db_train.mat")].startswith(
        f"{TRAIN - 1} rows but shoes_sketch_db_train.mat has {TRAIN}"
    )
    assert by_path[str(folder / "shoes_sketch_db_test.mat")].startswith("no variable 'data'")
    (folder / "shoes_image_db_test.mat").unlink()
    assert _problem_text(check_qmul_shoe(root=folder)) == (
        f"{folder / 'shoes_image_db_test.mat'}: missing packed image file"
    )
    with pytest.raises(DatasetError, match="missing packed image file"):
        build_qmul_shoe(tmp_path / "cache", root=folder, progress=False)


def test_packed_annotation_must_match_the_rows(tmp_path):
    folder = tmp_path / "data"
    make_packed(folder, annotation=True)
    path = folder / "shoes_annotation.json"
    content = json.loads(path.read_text())
    content["train"]["images"].pop()
    content["train"]["sketches"].pop()
    path.write_text(json.dumps(content))
    with pytest.raises(DatasetError) as error:
        build_qmul_shoe(tmp_path / "cache", root=folder, progress=False)
    assert f"{path}: [train] lists {TRAIN - 1} images but the .mat files hold {TRAIN} rows" in str(
        error.value
    )


def test_matlab_v73_and_corrupt_files_get_a_clear_message(tmp_path):
    folder = tmp_path / "data"
    make_packed(folder)
    v73 = bytearray((folder / "shoes_edge_db_train.mat").read_bytes())
    v73[124:126] = b"\x00\x02"  # the header's version field of an HDF5-based v7.3 file
    (folder / "shoes_image_db_train.mat").write_bytes(bytes(v73))
    (folder / "shoes_sketch_db_test.mat").write_bytes(b"garbage")
    by_path = {p.path: p.message for p in check_qmul_shoe(root=folder)}
    assert "MATLAB v7.3 (HDF5) file" in by_path[str(folder / "shoes_image_db_train.mat")]
    assert "-v7" in by_path[str(folder / "shoes_image_db_train.mat")]
    assert by_path[str(folder / "shoes_sketch_db_test.mat")].startswith("unreadable .mat file")


# --- attributes ---------------------------------------------------------------------------------------------
def test_attribute_table_by_image_name_covers_sketch_and_photo_rows(tmp_path):
    base = make_folders(tmp_path / "data")
    lines = ["image,pointed_toe,high_heel"]
    for number in range(1, TRAIN + TEST + 1):
        bits = f"{number % 2},{int(number > 3)}"
        lines += [f"{number}.jpg,{bits}", f"{number}.png,{bits}"]
    table = base / "shoes" / "attributes.csv"
    table.write_text("\n".join(lines) + "\n")
    catalog = build_qmul_shoe(tmp_path / "cache", root=base, attributes="attributes.csv", progress=False)
    assert set(catalog.instance_attributes) == set(catalog.records["instance"])
    assert catalog.instance_attributes["4"].tolist() == [0.0, 1.0]
    assert catalog.instance_attributes["4"].dtype == np.float32
    before = catalog.fingerprint
    table.write_text("\n".join(lines).replace("4.jpg,0,1", "4.jpg,1,1").replace("4.png,0,1", "4.png,1,1"))
    changed = build_qmul_shoe(tmp_path / "cache", root=base, attributes=str(table), progress=False)
    assert changed.instance_attributes["4"].tolist() == [1.0, 1.0] and changed.fingerprint != before


def test_attribute_table_problems(tmp_path):
    base = make_folders(tmp_path / "data")
    table = tmp_path / "attributes.csv"
    rows = [f"{n},1" for n in range(1, TRAIN + TEST)]  # instance 7 has no row
    table.write_text("\n".join(["instance,strap", *rows, "99,0"]) + "\n")
    text = _problem_text(check_qmul_shoe(root=base, attributes=str(table)))
    assert f"{table}: 1 row key(s) match no instance: '99'" in text
    assert f"{table}: no row for 1 instance(s): '7'" in text
    table.write_text("instance,strap\n1,2\n")
    with pytest.raises(DatasetError, match=r"row 2 \(instance '1'\): not 0/1: strap='2'"):
        build_qmul_shoe(tmp_path / "cache", root=base, attributes=str(table), progress=False)
    table.write_text("name,strap\n1,1\n")
    assert "no 'instance' or 'image' column" in _problem_text(
        check_qmul_shoe(root=base, attributes=str(table))
    )
    assert "attribute table not found" in _problem_text(check_qmul_shoe(root=base, attributes="nope.csv"))


def test_every_attribute_entry_problem_is_listed_with_file_and_row(tmp_path):
    base = make_folders(tmp_path / "data")
    table = tmp_path / "attributes.csv"
    rows = [f"{n},1,0" for n in range(1, TRAIN + TEST + 1)]
    rows[1] = "2,1"  # too few values (wrong width)
    rows[2] = "3,1,0,1"  # too many
    rows[3] = "4,0.5,"  # not binary, and an empty cell
    table.write_text("\n".join(["instance,strap,laces", *rows, "5,0,0"]) + "\n")
    problems = check_qmul_shoe(root=base, attributes=str(table))
    text = _problem_text(problems)
    assert f"{table}: row 3 (instance '2') has 2 values; expected 3 (the header's)" in text
    assert f"{table}: row 4 (instance '3') has 4 values; expected 3 (the header's)" in text
    assert f"{table}: row 5 (instance '4'): not 0/1: strap='0.5', laces=''" in text
    assert f"{table}: row 9 (instance '5') disagrees with an earlier row of instance '5'" in text
    assert len(problems) == 4
    with pytest.raises(DatasetError, match=r"4 problem\(s\)"):
        build_qmul_shoe(tmp_path / "cache", root=base, attributes=str(table), progress=False)


def test_attribute_names_are_the_table_columns(tmp_path):
    base = make_folders(tmp_path / "data")
    table = tmp_path / "attributes.csv"
    rows = [f"{n},{n % 2},1.0" for n in range(1, TRAIN + TEST + 1)]
    table.write_text(
        "\n".join(["strap,instance,laces", *[f"{r.split(',')[1]},{r.split(',')[0]},1" for r in rows]])
    )
    catalog = build_qmul_shoe(tmp_path / "cache", root=base, attributes=str(table), progress=False)
    assert catalog.attribute_names == ["strap", "laces"]
    assert catalog.instance_attributes["3"].tolist() == [1.0, 1.0]
    assert build_qmul_shoe(tmp_path / "cache", root=base, progress=False).attribute_names == []


def test_test_triplets_are_kept_as_record_indices_of_the_test_part(tmp_path):
    base = make_folders(tmp_path / "data")
    catalog = build_qmul_shoe(tmp_path / "cache", root=base, val_fraction=0.25, progress=False)
    records, split = catalog.records, catalog.split("fine_grained")
    triplets = catalog.triplets["fine_grained_test"]
    assert triplets.dtype == np.int64 and triplets.shape == (2 * TEST, 3)
    expected = {
        (str(TRAIN + 1 + a), str(TRAIN + 1 + pos), str(TRAIN + 1 + neg))
        for a, pairs in enumerate(_triplet_lists(TEST))
        for pos, neg in pairs
    }
    as_instances = {tuple(records.loc[row, "instance"] for row in triplet) for triplet in triplets.tolist()}
    assert as_instances == expected
    assert (
        np.isin(triplets[:, 0], split.test_query).all() and np.isin(triplets[:, 1:], split.test_gallery).all()
    )


def test_packed_layout_keeps_the_annotation_test_triplets(tmp_path):
    make_packed(tmp_path / "dbs", annotation=True)
    catalog = build_qmul_shoe(tmp_path / "cache", root=tmp_path, progress=False)
    assert catalog.triplets["fine_grained_test"].shape == (2 * TEST, 3)
    make_packed(tmp_path / "plain" / "dbs")
    assert build_qmul_shoe(tmp_path / "cache", root=tmp_path / "plain", progress=False).triplets == {}


def test_test_triplet_index_out_of_range_names_file_and_entry(tmp_path):
    base = make_folders(tmp_path / "data")
    _edit_annotation(base, lambda content: content["test"]["triplets"][2].append([0, TEST]))
    _edit_annotation(base, lambda content: content["test"]["triplets"][1].append([-1, 0]))
    problems = check_qmul_shoe(root=base)
    text = _problem_text(problems)
    annotation = _annotation_file(base)
    assert f"{annotation}: [test][triplets][1] has 1 pair(s) outside 0..{TEST - 1}, e.g. [-1, 0]" in text
    assert f"{annotation}: [test][triplets][2] has 1 pair(s) outside 0..{TEST - 1}, e.g. [0, {TEST}]" in text
    with pytest.raises(DatasetError, match=r"\[test\]\[triplets\]\[2\]"):
        build_qmul_shoe(tmp_path / "cache", root=base, progress=False)


def test_bad_options_are_value_errors(tmp_path):
    base = make_folders(tmp_path / "data")
    with pytest.raises(ValueError, match="layout"):
        build_qmul_shoe(tmp_path / "cache", root=base, layout="zip")
    with pytest.raises(ValueError, match="val_fraction"):
        build_qmul_shoe(tmp_path / "cache", root=base, val_fraction=1.0)
    with pytest.raises(ValueError, match="packed_photos"):
        build_qmul_shoe(tmp_path / "cache", root=base, packed_photos="depth")
    with pytest.raises(DatasetError, match="the packed .mat files not found"):
        build_qmul_shoe(tmp_path / "cache", root=base, layout="packed")


def test_registered_under_both_names():
    assert DATASETS.get("qmul_shoe") is build_qmul_shoe and DATASETS.get("qmul_chair") is build_qmul_chair
    assert DATASET_CHECKERS.get("qmul_shoe") is check_qmul_shoe
    assert DATASET_CHECKERS.get("qmul_chair") is check_qmul_chair


# --- through the DataModule ---------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["folders", "packed"])
def test_datamodule_extracts_features_for_every_record(tmp_path, layout):
    if layout == "folders":
        root = make_folders(tmp_path / "data")
    else:
        make_packed(tmp_path / "data", annotation=True)
        root = tmp_path / "data"
    module = RetrievalDataModule(
        "qmul_shoe",
        "fine_grained",
        dataset_kwargs={"root": str(root), "val_fraction": 0.25},
        cache_dir=str(tmp_path / "cache"),
        backbone={"name": "resnet10t", "image_size": 32, "pretrain_epochs": 0},
        eval_batch_size=4,
    )
    module.prepare_data()
    module.setup("test")
    assert module._features is not None and module._features.shape[0] == 2 * (TRAIN + TEST)
    assert np.isfinite(module._features).all()
    queries, gallery = module.test_dataloader()
    assert sum(len(batch["index"]) for batch in queries) == TEST
    assert sum(len(batch["index"]) for batch in gallery) == TEST
    # fine-grained relevance: a query's only relevant gallery item is the photo of its own instance
    query_labels = torch.cat([batch["label"] for batch in queries]).tolist()
    gallery_labels = torch.cat([batch["label"] for batch in gallery]).tolist()
    query_instances = module.query_records("test")["instance"].tolist()
    gallery_instances = module.gallery_records("test")["instance"].tolist()
    assert len(set(gallery_labels)) == TEST
    for label, instance in zip(query_labels, query_instances, strict=True):
        assert [gallery_instances[i] for i, g in enumerate(gallery_labels) if g == label] == [instance]
    assert module.info().num_classes == 1 and module.info().seen_classes == (0,)
    pairs = next(iter(module.train_dataloader()))
    assert pairs["sketch"].shape[0] == pairs["photo"].shape[0] > 0


def test_baseline_runs_end_to_end_with_instance_level_relevance(tmp_path):
    from sbir_bench.config import compose
    from sbir_bench.leaderboard.record import read_records
    from sbir_bench.runner import bench

    root = make_folders(tmp_path / "data")
    bench(
        compose(
            [
                "method=baseline",
                "data=qmul_shoe",
                f"data.dataset_kwargs.root={root}",
                "data.backbone.name=resnet10t",
                "data.backbone.pretrained=false",
                "data.backbone.image_size=32",
                "data.num_workers=0",
                *quiet_run_in(tmp_path, tmp_path / "cache"),
            ]
        )
    )
    (record,) = read_records(tmp_path / "results")
    assert record.status == "ok" and record.setting == "fine_grained"
    assert record.counts["n_queries"] == record.counts["n_gallery"] == TEST
    # the fine-grained metrics (configs/evaluation/fine_grained.yaml); one relevant photo per query among
    # TEST: acc@K grows with K and reaches 1 at K = TEST; map@200 is the mean of 1/rank
    metrics = record.metrics
    assert 0.0 <= metrics["acc@1"] <= metrics["acc@5"] <= metrics["acc@10"] <= 1.0
    assert 1 / TEST <= metrics["map@200"] <= 1.0 and "p@100" not in metrics
    assert "triplet_acc" in metrics and record.counts["n_triplets"] > 0, "the annotation's test triplets"


def test_data_check_lists_every_attribute_and_triplet_problem(tmp_path, capsys):
    from sbir_bench.cli import main

    base = make_folders(tmp_path / "data")
    _edit_annotation(base, lambda content: content["test"]["triplets"][0].append([TEST, 0]))
    table = tmp_path / "attributes.csv"
    rows = [f"{n},1" for n in range(2, TRAIN + TEST + 1)]  # instance 1 has no row
    table.write_text("\n".join(["instance,strap", "2,x", "3,1,1", *rows[2:]]) + "\n")
    args = ["data", "check", "qmul_shoe", "--root", str(base), "-o", f"attributes={table}"]
    assert main(args) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert "4 problem(s) found" in captured.err
    assert f"{table}: no row for 1 instance(s): '1'" in lines
    assert (
        f"{_annotation_file(base)}: [test][triplets][0] has 1 pair(s) outside 0..{TEST - 1}, e.g. [{TEST}, 0]"
        in lines
    )
    assert f"{table}: row 2 (instance '2'): not 0/1: strap='x'" in lines
    assert f"{table}: row 3 (instance '3') has 3 values; expected 2 (the header's)" in lines
