"""``sbir-bench data summary | check``: split counts as a table or JSON, and every problem of a tree."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sbir_bench.cli import main
from sbir_bench.data.records import SPLIT_PARTS
from sbir_bench.registry import DATASETS

from .data.readers.test_qmul import TEST, TRAIN, make_folders
from .data.readers.test_sketchy import make_tree as make_sketchy_tree

TINY_SYNTHETIC = {
    "num_classes": 6,
    "photos_per_class": 4,
    "sketches_per_photo": 1,
    "image_size": 16,
    "num_unseen": 2,
}
TINY_OPTIONS = [arg for key, value in TINY_SYNTHETIC.items() for arg in ("-o", f"{key}={value}")]


@pytest.fixture(scope="module")
def synthetic_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cli-data-cache")


@pytest.fixture(scope="module")
def synthetic_catalog(synthetic_cache):
    """The catalog the summaries describe, read directly (its counts are the synthetic data's business)."""
    return DATASETS.create("synthetic", cache_dir=str(synthetic_cache), progress=False, **TINY_SYNTHETIC)


def used_counts(catalog, split_name: str) -> dict[str, int]:
    """Sketches and photos of a split's parts, counted from the catalog."""
    split = catalog.split(split_name)
    used = np.unique(np.concatenate([split.part(part) for part in SPLIT_PARTS]))
    domains = catalog.records["domain"].to_numpy()[used]
    return {"sketches": int((domains == "sketch").sum()), "photos": int((domains == "photo").sum())}


def test_summary_table_of_the_synthetic_data(synthetic_cache, synthetic_catalog, capsys):
    assert main(["data", "summary", "synthetic", "--cache-dir", str(synthetic_cache), *TINY_OPTIONS]) == 0
    lines = capsys.readouterr().out.splitlines()
    domains = synthetic_catalog.records["domain"]
    photos, sketches = (domains == "photo").sum(), (domains == "sketch").sum()
    fingerprint = synthetic_catalog.fingerprint
    assert sketches == 24
    assert (
        lines[0] == f"synthetic: 6 classes, {photos} photos, {sketches} sketches (fingerprint {fingerprint})"
    )
    header = lines[1].split()
    assert header == [
        "split",
        "setting",
        "seen_classes",
        "unseen_classes",
        "sketches",
        "photos",
        "shapes",
        "train",
        "val_query",
        "val_gallery",
        "test_query",
        "test_gallery",
        "triplets",
        "test_triplets",
    ]
    rows = {line.split()[0]: dict(zip(header, line.split(), strict=True)) for line in lines[2:]}
    assert set(rows) == set(synthetic_catalog.splits) and {"traditional", "zeroshot"} <= set(rows)
    assert rows["zeroshot"]["seen_classes"] == "4" and rows["zeroshot"]["unseen_classes"] == "2"
    for name, row in rows.items():
        assert {k: int(row[k]) for k in ("sketches", "photos")} == used_counts(synthetic_catalog, name)


def test_summary_json_matches_the_catalog(synthetic_cache, synthetic_catalog, capsys):
    args = ["data", "summary", "synthetic", "--cache-dir", str(synthetic_cache), "--json", *TINY_OPTIONS]
    assert main([*args, "--split", "zeroshot"]) == 0
    summary = json.loads(capsys.readouterr().out)
    catalog = synthetic_catalog
    split = catalog.split("zeroshot")
    assert summary["dataset"] == "synthetic" and summary["fingerprint"] == catalog.fingerprint
    records = catalog.records["domain"].value_counts().to_dict()
    assert (
        summary["records"] == records and records["sketch"] == 24 and list(summary["splits"]) == ["zeroshot"]
    )
    counts = summary["splits"]["zeroshot"]
    assert {part: counts[part] for part in split.counts()} == split.counts()
    assert counts["setting"] == "zeroshot" and counts["shapes"] == 0 and counts["triplets"] == 0
    assert {k: counts[k] for k in ("sketches", "photos")} == used_counts(catalog, "zeroshot")


def test_summary_user_errors_are_one_line_with_exit_code_2(synthetic_cache, synthetic_catalog, capsys):
    base = ["data", "summary", "synthetic", "--cache-dir", str(synthetic_cache), *TINY_OPTIONS]
    assert main([*base, "--split", "nope"]) == 2
    known = ", ".join(sorted(synthetic_catalog.splits))
    assert f"has no split 'nope'; its splits: {known}" in capsys.readouterr().err
    assert main([*base, "--root", "/data"]) == 2
    err = capsys.readouterr().err
    assert "dataset 'synthetic' takes no option(s) ['root']" in err and "num_classes" in err
    assert main([*base, "-o", "seed"]) == 2
    assert "option 'seed' is not key=value" in capsys.readouterr().err
    assert main(["data", "summary", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown dataset 'nope'" in err and "qmul_shoe" in err


def test_check_of_a_dataset_without_checker_says_so(capsys):
    assert main(["data", "check", "synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "dataset 'synthetic' has no checker" in err and "qmul_shoe" in err
    assert main(["data", "check", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


def test_summary_and_check_of_a_qmul_tree(tmp_path, capsys):
    root = make_folders(tmp_path / "data")
    args = ["data", "summary", "qmul_shoe", "--root", str(root), "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--json", "-o", "val_fraction=0.25"]) == 0
    counts = json.loads(capsys.readouterr().out)["splits"]["fine_grained"]
    assert counts["setting"] == "fine_grained" and counts["seen_classes"] == 1
    assert counts["test_query"] == counts["test_gallery"] == TEST
    assert counts["val_query"] == counts["val_gallery"] == 1 and counts["train"] == 2 * (TRAIN - 1)
    assert counts["triplets"] > 0 and counts["sketches"] == counts["photos"] == TRAIN + TEST
    assert counts["test_triplets"] > 0, "the annotation's test triplets (triplet_acc)"
    assert main(args) == 0
    assert "fine_grained" in capsys.readouterr().out

    assert main(["data", "check", "qmul_shoe", "--root", str(root)]) == 0
    assert capsys.readouterr().out.strip() == "no problem found"
    corrupt = root / "shoes" / "test" / "images" / "6.jpg"
    corrupt.write_bytes(b"\xff\xd8 truncated")
    (root / "shoes" / "test" / "sketches" / "7.png").unlink()
    assert main(["data", "check", "qmul_shoe", "--root", str(root)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 2 and "2 problem(s) found" in captured.err
    assert any(
        line.startswith(f"{root / 'shoes' / 'test' / 'sketches' / '7.png'}: missing") for line in lines
    )
    assert any(line.startswith(f"{corrupt}: unreadable image") for line in lines)


def test_check_options_reach_the_checker(tmp_path, capsys):
    root = make_folders(tmp_path / "data")
    assert main(["data", "check", "qmul_shoe", "--root", str(root), "-o", "layout=packed"]) == 1
    assert "the packed .mat files not found" in capsys.readouterr().out
    assert main(["data", "check", "qmul_shoe", "--root", str(root), "-o", "colour=red"]) == 2
    assert "takes no option(s) ['colour']" in capsys.readouterr().err


def test_summary_of_a_sketchy_tree_compares_every_zero_shot_split_with_its_source(tmp_path, capsys):
    root = make_sketchy_tree(tmp_path / "Sketchy")
    small = ["-o", "classes=present", "-o", "test_sketches_per_class=2", "-o", "val_photos_per_class=1"]
    args = ["data", "summary", "sketchy", "--root", str(root), *small]
    assert main([*args, "--json"]) == 0
    splits = json.loads(capsys.readouterr().out)["splits"]
    assert set(splits) == {
        "zeroshot_yelamarthi",
        "zeroshot_shen",
        "gzs_yelamarthi",
        "gzs_shen",
        "traditional",
    }
    assert splits["gzs_shen"]["setting"] == "gzs" and splits["zeroshot_shen"]["setting"] == "zeroshot"
    assert splits["gzs_shen"]["test_gallery"] == splits["zeroshot_shen"]["test_gallery"] + 2  # int(0.2 x 12)
    shen = splits["zeroshot_shen"]
    assert shen["literature_source"].startswith("SAKE's released file lists")
    assert shen["literature"]["test_sketches"]["expected"] == 15_229
    assert shen["literature"]["unseen_rendered_and_extended"]["expected"] == 17_101
    assert splits["gzs_yelamarthi"]["literature"]["test_gallery_seen"] == {
        "count": 2,
        "expected": 2_090,
        "difference": 2 - 2_090,
    }
    assert main([*args, "--split", "gzs_shen"]) == 0
    printed = capsys.readouterr().out
    assert "gzs_shen: counts beside the literature's\nsource: derived: zeroshot_shen's counts" in printed


def test_summary_of_one_split_builds_only_that_split_of_a_partial_tree(tmp_path, capsys):
    """8 sketches a class are too few for the traditional split's 50 query sketches, not for zero-shot."""
    root = make_sketchy_tree(tmp_path / "Sketchy")
    args = [
        "data",
        "summary",
        "sketchy",
        "--root",
        str(root),
        "-o",
        "classes=present",
        "-o",
        "val_photos_per_class=1",
    ]
    assert main(args) == 2
    assert "too few for the traditional split" in capsys.readouterr().err
    for split in ("zeroshot_yelamarthi", "gzs_shen"):
        assert main([*args, "--split", split, "--json"]) == 0
        assert list(json.loads(capsys.readouterr().out)["splits"]) == [split]
    assert main([*args, "--split", "traditional"]) == 2
    assert "too few for the traditional split" in capsys.readouterr().err
