"""``sbir-bench data summary | check``: split counts as a table or JSON, and every problem of a tree."""

from __future__ import annotations

import json

import pytest

from sbir_bench.cli import main
from sbir_bench.registry import DATASETS

from .data.readers.test_qmul import TEST, TRAIN, make_folders

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


def test_summary_table_of_the_synthetic_data(synthetic_cache, capsys):
    assert main(["data", "summary", "synthetic", "--cache-dir", str(synthetic_cache), *TINY_OPTIONS]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("synthetic: 6 classes, 24 photos, 24 sketches (fingerprint ")
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
    ]
    rows = {line.split()[0]: dict(zip(header, line.split(), strict=True)) for line in lines[2:]}
    assert set(rows) == {"traditional", "zeroshot"}
    assert rows["zeroshot"]["seen_classes"] == "4" and rows["zeroshot"]["unseen_classes"] == "2"
    assert rows["traditional"]["sketches"] == rows["traditional"]["photos"] == "24"


def test_summary_json_matches_the_catalog(synthetic_cache, capsys):
    args = ["data", "summary", "synthetic", "--cache-dir", str(synthetic_cache), "--json", *TINY_OPTIONS]
    assert main([*args, "--split", "zeroshot"]) == 0
    summary = json.loads(capsys.readouterr().out)
    catalog = DATASETS.create("synthetic", cache_dir=str(synthetic_cache), progress=False, **TINY_SYNTHETIC)
    split = catalog.split("zeroshot")
    assert summary["dataset"] == "synthetic" and summary["fingerprint"] == catalog.fingerprint
    assert summary["records"] == {"photo": 24, "sketch": 24} and list(summary["splits"]) == ["zeroshot"]
    counts = summary["splits"]["zeroshot"]
    assert {part: counts[part] for part in split.counts()} == split.counts()
    assert counts["setting"] == "zeroshot" and counts["shapes"] == 0 and counts["triplets"] == 0
    assert counts["sketches"] == counts["photos"] == 24  # every record sits in one part of the split


def test_summary_user_errors_are_one_line_with_exit_code_2(synthetic_cache, capsys):
    base = ["data", "summary", "synthetic", "--cache-dir", str(synthetic_cache), *TINY_OPTIONS]
    assert main([*base, "--split", "nope"]) == 2
    assert "has no split 'nope'; its splits: traditional, zeroshot" in capsys.readouterr().err
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
