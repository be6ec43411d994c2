"""SHREC'13 / SHREC'14 / PART-SHREC14 readers on tiny trees in the official layouts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from sbir_bench.data import render
from sbir_bench.data.readers.shrec import (
    PART_MIN_MODELS,
    build_part_shrec14,
    build_shrec13,
    build_shrec14,
    check_shrec13,
    check_shrec14,
    part_test_models,
)
from sbir_bench.data.records import DatasetError
from sbir_bench.registry import DATASET_CHECKERS, DATASETS

from ...conftest import quiet_run_in

TETRAHEDRON = "OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"
CUBE = (
    "OFF8 6 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n0 0 1\n1 0 1\n1 1 1\n0 1 1\n"
    "4 0 3 2 1\n4 4 5 6 7\n4 0 1 5 4\n4 2 3 7 6\n4 1 2 6 5\n4 0 4 7 3\n"
)


PYRAMID = "OFF\n5 5 0\n0 0 0\n1 0 0\n1 0 1\n0 0 1\n0.5 1 0.5\n4 0 1 2 3\n3 0 1 4\n3 1 2 4\n3 2 3 4\n3 3 0 4\n"
TINY = {"views": "two", "image_size": 16, "progress": False}
MODELS = {"airplane": {1: TETRAHEDRON, 2: PYRAMID}, "chair": {3: CUBE}}
SKETCHES = {"airplane": {"train": [1, 2, 3], "test": [4, 5]}, "chair": {"train": [6, 7, 8], "test": [9, 10]}}


def sketch(path: Path, seed: int, suffix: str = ".png") -> Path:
    rng = np.random.default_rng(seed)
    image = Image.new("L", (16, 16), 255)
    ImageDraw.Draw(image).line([tuple(rng.integers(0, 16, 2).tolist()) for _ in range(3)], fill=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_suffix(suffix)
    image.save(target, format="PNG")
    return target


def cla(classes: dict[str, list[int]], prefix: str = "") -> str:
    blocks = [
        f"{name} 0 {len(ids)}\n" + "".join(f"{prefix}{i}\n" for i in ids) for name, ids in classes.items()
    ]
    return f"PSB 1\n{len(classes)} {sum(len(ids) for ids in classes.values())}\n\n" + "\n".join(blocks)


def make_shrec13(root: Path) -> Path:
    """The SHREC'13 layout; the training sketches sit in a wrapping folder of their own name."""
    train = root / "SHREC13_SBR_TRAINING_SKETCHES" / "SHREC13_SBR_TRAINING_SKETCHES"
    test = root / "SHREC13_SBR_TESTING_SKETCHES"
    evaluation = root / "SHREC2013_Sketch_Evaluation"
    for name, splits in SKETCHES.items():
        for split, folder in (("train", train), ("test", test)):
            for i in splits[split]:
                sketch(folder / name / split / f"{i}.png", i)
    models = root / "SHREC13_SBR_TARGET_MODELS" / "models"
    models.mkdir(parents=True)
    for ids in MODELS.values():
        for i, text in ids.items():
            (models / f"m{i}.off").write_text(text)
    evaluation.mkdir()
    (evaluation / "SHREC13_SBR_Model.cla").write_text(cla({c: list(ids) for c, ids in MODELS.items()}))
    for split, suffix in (("train", "Train"), ("test", "Test")):
        listed = {c: splits[split] for c, splits in SKETCHES.items()}
        (evaluation / f"SHREC13_SBR_Sketch_{suffix}.cla").write_text(cla(listed))
    return root


def make_shrec14(root: Path, evaluation_name: str = "SHREC14_Sketch_Evaluation_CVIU", models=None) -> Path:
    """The SHREC'14 layout, wrapped twice (``SHREC14LSSTB_SKETCHES/SHREC14LSSTB_SKETCHES``), ``M<id>.off``
    models with zero-padded ids, an upper-case ``.PNG`` sketch."""
    models = models or MODELS
    sketches = root / "SHREC14LSSTB_SKETCHES" / "SHREC14LSSTB_SKETCHES"
    for name in models:
        for split, ids in SKETCHES.get(name, {"train": [1, 2], "test": [3]}).items():
            for i in ids:
                sketch(sketches / name / split / f"{i}.png", i, ".PNG" if i == 1 else ".png")
    target = root / "SHREC14LSSTB_TARGET_MODELS"
    target.mkdir(parents=True)
    for ids in models.values():
        for i, text in ids.items():
            (target / f"M{i:06d}.off").write_text(text)
    evaluation = root / evaluation_name
    evaluation.mkdir()
    (evaluation / "SHREC14_SBR_Model.cla").write_text(cla({c: list(ids) for c, ids in models.items()}))
    return root


@pytest.fixture
def shrec13(tmp_path) -> Path:
    return make_shrec13(tmp_path / "SHREC13")


def test_registered():
    assert {"shrec13", "shrec14", "part_shrec14"} <= set(DATASETS.names())
    assert {"shrec13", "shrec14", "part_shrec14"} <= set(DATASET_CHECKERS.names())


def test_shrec13_catalog_records_views_and_official_split(shrec13, tmp_path):
    catalog = build_shrec13(tmp_path / "cache", root=shrec13, **TINY)
    records = catalog.records
    assert catalog.name == "shrec13" and catalog.class_names == ["airplane", "chair"]
    assert records["domain"].value_counts().to_dict() == {"sketch": 10, "shape": 3}
    shapes = records[records["domain"] == "shape"]
    assert shapes["instance"].tolist() == ["m1", "m2", "m3"] and shapes["label"].tolist() == [0, 0, 1]
    assert (shapes["path"] == "").all()
    for views in shapes["views"]:
        assert len(views) == 2 and all(Image.open(v).size == (16, 16) for v in views)
        assert Path(views[0]).parent.parent == tmp_path / "cache" / "renders"
    sketches = records[records["domain"] == "sketch"]
    assert sketches["views"].map(len).eq(0).all()
    assert sketches["instance"].iloc[0] == "train/airplane/1"

    split = catalog.split("official")
    assert split.setting == "traditional" and split.seen_classes == (0, 1) and split.unseen_classes == ()
    part = {
        name: records.iloc[split.part(name)] for name in ("train", "val_query", "test_query", "test_gallery")
    }
    assert part["test_query"]["instance"].str.startswith("test/").all() and len(part["test_query"]) == 4
    assert part["test_gallery"]["domain"].eq("shape").all() and len(part["test_gallery"]) == 3
    np.testing.assert_array_equal(split.val_gallery, split.test_gallery)
    assert part["val_query"]["label"].value_counts().to_dict() == {0: 1, 1: 1}, (
        "one of three held out per class"
    )
    train_sketches = part["train"][part["train"]["domain"] == "sketch"]
    assert len(train_sketches) == 4 and not set(split.val_query) & set(split.train)
    assert set(split.test_gallery) <= set(split.train), "the labelled target models train (official SHREC)"


def test_catalog_is_reused_from_the_render_cache_and_fingerprinted(shrec13, tmp_path, monkeypatch):
    first = build_shrec13(tmp_path / "cache", root=shrec13, **TINY)

    def fail(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(render, "render_views", fail)
    again = build_shrec13(tmp_path / "cache", root=shrec13, **TINY)
    pd.testing.assert_frame_equal(first.records, again.records)
    assert again.fingerprint == first.fingerprint and len(first.fingerprint) == 16
    monkeypatch.undo()
    assert build_shrec13(tmp_path / "cache", root=shrec13, **{**TINY, "image_kind": "depth"}).fingerprint != (
        first.fingerprint
    )
    sketch(shrec13 / "SHREC13_SBR_TESTING_SKETCHES" / "chair" / "test" / "11.png", 11)
    with pytest.raises(DatasetError, match="does not list 1 test sketch files of 'chair', e.g. 11"):
        build_shrec13(tmp_path / "cache", root=shrec13, **TINY)
    (shrec13 / "SHREC2013_Sketch_Evaluation" / "SHREC13_SBR_Sketch_Test.cla").unlink()  # optional file
    assert build_shrec13(tmp_path / "cache", root=shrec13, **TINY).fingerprint != first.fingerprint


def test_rendering_in_worker_processes_gives_the_same_catalog(shrec13, tmp_path):
    serial = build_shrec13(tmp_path / "serial", root=shrec13, **TINY)
    parallel = build_shrec13(tmp_path / "parallel", root=shrec13, render_workers=2, **TINY)
    assert parallel.fingerprint == serial.fingerprint
    for first, second in zip(serial.records["views"], parallel.records["views"], strict=True):
        assert [Path(v).read_bytes() for v in first] == [Path(v).read_bytes() for v in second]


def test_root_from_sbir_data_and_an_extra_wrapping_folder(tmp_path, monkeypatch):
    make_shrec13(tmp_path / "data" / "SHREC13" / "unpacked")
    monkeypatch.setenv("SBIR_DATA", str(tmp_path / "data"))
    catalog = build_shrec13(tmp_path / "cache", **TINY)
    assert catalog.records["path"].iloc[0].startswith(str(tmp_path / "data" / "SHREC13" / "unpacked"))


def test_missing_or_wrong_root_is_a_dataset_error(tmp_path, monkeypatch):
    monkeypatch.delenv("SBIR_DATA", raising=False)
    with pytest.raises(DatasetError, match=r"no data root given for shrec13: .*\$SBIR_DATA/SHREC13"):
        build_shrec13(tmp_path / "cache", **TINY)
    with pytest.raises(DatasetError, match=rf"shrec13 root {tmp_path / 'nowhere'} is not a folder"):
        build_shrec13(tmp_path / "cache", root=tmp_path / "nowhere", **TINY)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as error:
        build_shrec13(tmp_path / "cache", root=tmp_path / "empty", **TINY)
    message = str(error.value)
    assert (
        f"{tmp_path / 'empty'} does not hold shrec13" in message
        and "SHREC13_SBR_TARGET_MODELS/models" in message
    )


def test_check_lists_every_problem_of_a_broken_tree(shrec13):
    assert check_shrec13(shrec13) == []
    models = shrec13 / "SHREC13_SBR_TARGET_MODELS" / "models"
    (models / "m2.off").unlink()  # listed in the .cla, no file
    (models / "m3.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 5\n")  # malformed
    (models / "m9.off").write_text(TETRAHEDRON)  # not in the .cla
    (models / "cube.off").write_text(CUBE)  # no id in its name
    (models / "extra").mkdir()
    (models / "extra" / "m001.OFF").write_text(CUBE)  # id 1 again, in a subfolder
    train = shrec13 / "SHREC13_SBR_TRAINING_SKETCHES" / "SHREC13_SBR_TRAINING_SKETCHES"
    (train / "airplane" / "train" / "2.png").write_bytes(b"")  # zero-byte
    (train / "airplane" / "train" / "3.png").write_bytes(b"not a png")  # corrupt
    (train / "boat" / "train").mkdir(parents=True)  # a class the .cla does not know
    shutil.rmtree(shrec13 / "SHREC13_SBR_TESTING_SKETCHES" / "chair")  # missing class folder

    problems = {(Path(p.path).name, p.message) for p in check_shrec13(shrec13, **TINY)}
    expected = {
        ("SHREC13_SBR_TARGET_MODELS", "expected a model file for id 2 (class 'airplane' in the .cla)"),
        ("m9.off", "expected model id 9 in the model .cla, it is not listed"),
        ("cube.off", "expected a model file named <prefix><number>.off"),
        ("m1.off", f"expected one file per model id, {models / 'extra' / 'm001.OFF'} has the same id"),
        ("2.png", "empty (zero-byte) file"),
        ("boat", "expected a class folder named after a class of the model .cla"),
        ("chair", "missing class folder (class 'chair' of the .cla)"),
    }
    assert expected <= problems
    assert any(name == "3.png" and message.startswith("unreadable image") for name, message in problems)
    assert any(
        name == "m3.off" and message.endswith("line 6: expected vertex indices in 0..2, found '3 0 1 5'")
        for name, message in problems
    )
    assert any(
        name == "SHREC13_SBR_Sketch_Test.cla" and "lists 2 test sketches of 'chair' with no file" in message
        for name, message in problems
    )
    with pytest.raises(DatasetError) as error:
        build_shrec13(shrec13.parent / "cache", root=shrec13, **TINY)
    assert "shrec13 at" in str(error.value) and "expected a model file for id 2" in str(error.value)


def test_check_reports_class_file_errors_and_bad_options(shrec13):
    (shrec13 / "SHREC2013_Sketch_Evaluation" / "SHREC13_SBR_Model.cla").write_text(
        cla({c: list(ids) for c, ids in MODELS.items()}).replace("2 3\n", "2 4\n", 1)
    )
    problems = check_shrec13(shrec13, image_kind="normal")
    messages = [p.message for p in problems]
    assert any("unknown image_kind 'normal'" in m for m in messages)
    assert any(
        m.endswith("SHREC13_SBR_Model.cla: expected 4 models as its second line says, found 3")
        for m in messages
    )
    shutil.rmtree(shrec13 / "SHREC2013_Sketch_Evaluation")
    problems = check_shrec13(shrec13)
    assert [(p.path, p.message) for p in problems] == [
        (str(shrec13), "expected exactly one folder matching 'SHREC*13*_Sketch_Evaluation*', found none")
    ]
    assert check_shrec13(shrec13.parent / "nowhere")[0].message.startswith("shrec13 root")


@pytest.mark.parametrize("evaluation", ["SHREC14_Sketch_Evaluation_CVIU", "SHREC14_Sketch_Evaluation"])
def test_shrec14_release_variants(tmp_path, evaluation):
    root = make_shrec14(tmp_path / "SHREC14", evaluation)
    assert check_shrec14(root) == []
    catalog = build_shrec14(tmp_path / "cache", root=root, **TINY)
    records = catalog.records
    assert records["domain"].value_counts().to_dict() == {"sketch": 10, "shape": 3}
    assert records.loc[records["domain"] == "shape", "instance"].tolist() == ["M000001", "M000002", "M000003"]
    assert records["path"].str.endswith(".PNG").sum() == 1
    split = catalog.split("official")
    assert len(split.test_query) == 4 and len(split.test_gallery) == 3


def test_part_shrec14_needs_a_class_with_more_than_50_models(tmp_path):
    root = make_shrec14(tmp_path / "SHREC14")
    with pytest.raises(DatasetError, match=r"part_shrec14 at .*: expected classes with more than 50 models"):
        build_part_shrec14(tmp_path / "cache", root=root, **TINY)


def test_part_test_models_reproduce_thong_et_al_meta_py():
    rng = np.random.default_rng(5)
    ids = {
        f"class{c:02d}": [f"M{i:06d}" for i in rng.choice(9000, size=n, replace=False)]
        for c, n in enumerate([51, 50, 80, 120, 3, 77])
    }
    # meta.py's split_models, rewritten on a frame in the same order
    frame = pd.DataFrame([(c, i) for c, members in ids.items() for i in members], columns=["cat", "id"])
    values, counts = np.unique(frame["cat"], return_counts=True)
    np.random.seed(1234)
    expected = {}
    for c, n in zip(values[counts > 50], counts[counts > 50], strict=True):
        expected[c] = list(
            np.random.choice(frame.loc[frame["cat"] == c, "id"], size=int(np.floor(n * 0.2)), replace=False)
        )
    chosen = part_test_models(ids)
    assert chosen == expected
    assert sorted(chosen) == ["class00", "class02", "class03", "class05"]  # more than 50 models, not 50
    assert [len(v) for v in chosen.values()] == [10, 16, 24, 15]


def test_part_shrec14_keeps_big_classes_and_splits_their_models(tmp_path):
    big = {i: TETRAHEDRON for i in range(1, PART_MIN_MODELS + 2)}  # 51 models
    models = {"bench": {100: CUBE, 101: PYRAMID}, "airplane": big}
    root = make_shrec14(tmp_path / "SHREC14", models=models)
    catalog = build_part_shrec14(tmp_path / "cache", root=root, views="two", image_size=8, progress=False)
    assert catalog.name == "part_shrec14" and catalog.class_names == ["airplane"]
    records, split = catalog.records, catalog.split("official")
    test_models = records.iloc[split.test_gallery]
    stems = sorted(f"M{i:06d}" for i in big)
    assert test_models["instance"].tolist() == sorted(part_test_models({"airplane": stems})["airplane"])
    assert len(test_models) == 10 and test_models["domain"].eq("shape").all()
    train = records.iloc[split.train]
    assert (train["domain"] == "shape").sum() == 41 and not set(split.train) & set(split.test_gallery)
    np.testing.assert_array_equal(
        split.val_gallery,
        np.sort(np.setdiff1d(np.flatnonzero(records["domain"] == "shape"), split.test_gallery)),
    )
    assert records.iloc[split.test_query]["instance"].str.startswith("test/airplane/").all()
    assert (records["label"] == 0).all()
    full = build_shrec14(tmp_path / "cache", root=root, views="two", image_size=8, progress=False)
    assert full.fingerprint != catalog.fingerprint and full.class_names == ["bench", "airplane"]


# cvae trains on pairs: each training sketch with a same-class photo (shape) drawn every epoch; dcml on
# class batches of sketches and per-view shape features (a sketch -> 3D method of the track); sketch2voxel
# also voxelises the tree's meshes and records the IoU of its reconstructions
@pytest.mark.parametrize(
    "method",
    [
        ["method=baseline"],
        ["method=cvae", "method.max_epochs=2"],
        ["method=dcml", "method.max_epochs=2"],
        ["method=sketch2voxel", "method.max_epochs=1"],
    ],
    ids=["baseline", "cvae", "dcml", "sketch2voxel"],
)
def test_bench_end_to_end_on_shrec13(shrec13, tmp_path, method):
    from sbir_bench.config import compose
    from sbir_bench.leaderboard.record import read_records
    from sbir_bench.runner import bench

    overrides = [
        *method,
        "data=shrec13",
        f"data.dataset_kwargs.root={shrec13}",
        "data.dataset_kwargs.views=two",
        "data.dataset_kwargs.image_size=32",
        "data.backbone.image_size=32",
        "data.backbone.pretrained=false",
        "data.backbone.pretrain_epochs=0",
        "data.num_workers=0",
        "data.splits=[official]",
        *quiet_run_in(tmp_path, tmp_path / "cache"),
    ]
    bench(compose(overrides))
    (record,) = read_records(tmp_path / "results")
    assert (
        record.status == "ok" and record.split == "official" and record.method == method[0][len("method=") :]
    )
    assert record.counts["n_queries"] == 4 and 0.0 <= record.metrics["map@200"] <= 1.0
    assert all(0.0 <= record.metrics[name] <= 1.0 for name in ("nn", "ft", "st", "e", "dcg", "map@all"))
    if record.method == "sketch2voxel":
        ious = ("voxel_iou", "voxel_iou_nn", "voxel_iou_backbone_nn")
        assert all(0.0 <= record.metrics[name] <= 1.0 for name in ious)
        (grid,) = tmp_path.rglob("reconstructions.png")  # sketches, reconstructions, nearest models
        assert Image.open(grid).size[0] > 96
