"""Full-size trees in the official layouts: the readers reproduce the papers' split statistics.

The real archives are not available offline, so these trees hold the papers' numbers of files with the
official names and folders, every file a hard link to one tiny valid image: 160,983 files for Sketchy +
Extended, 20,000 sketches + 2,500 photos for TU-Berlin. Per-class counts are spread evenly so that their
totals are the ones of the papers' tables (Yelamarthi et al. ECCV'18; Eitz et al. 2012). What this
checks at full size: the shipped class and unseen lists match the official folder names, the splits
count what the papers count, and scanning and building stay fast (about 10 s for both, trees included;
the trees are deleted afterwards).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from sbir_bench.cli import main as cli_main
from sbir_bench.data.readers.sketchy import build_sketchy
from sbir_bench.data.readers.sketchy import split_statistics as sketchy_statistics
from sbir_bench.data.readers.tuberlin import build_tuberlin
from sbir_bench.data.readers.tuberlin import split_statistics as tuberlin_statistics
from sbir_bench.data.splits import class_list, expected_counts, unseen_classes


@pytest.fixture
def scratch(tmp_path):
    """``tmp_path``, emptied afterwards: pytest keeps recent temporary folders, not 160k files of them."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def _spread(total: int, classes: list[str]) -> dict[str, int]:
    """``total`` items over ``classes``, as evenly as possible (the first classes take the remainder)."""
    base, extra = divmod(total, len(classes))
    return {name: base + (i < extra) for i, name in enumerate(classes)}


def _link_all(source: Path, targets: list[Path]) -> None:
    """Each target a hard link to a copy of ``source``, one copy per folder (file systems cap the links
    of one file, ext4 at 65,000)."""
    copies: dict[Path, Path] = {}
    for target in targets:
        if target.parent not in copies:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            copies[target.parent] = target
        else:
            os.link(copies[target.parent], target)


def _seed_images(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True)
    jpg, png = folder / "photo.jpg", folder / "sketch.png"
    Image.new("RGB", (8, 8), (200, 120, 40)).save(jpg)
    Image.new("L", (8, 8), 255).save(png)
    return jpg, png


def make_full_sketchy(root: Path, jpg: Path, png: Path) -> None:
    expected = expected_counts("sketchy")["splits"]["zeroshot_yelamarthi"]
    classes = class_list("sketchy")
    unseen = set(unseen_classes("sketchy", "zeroshot_yelamarthi"))
    seen_names = [c for c in classes if c not in unseen]
    unseen_names = [c for c in classes if c in unseen]
    sketches = {
        **_spread(expected["train_sketches"], seen_names),
        **_spread(expected["test_sketches"], unseen_names),
    }
    extended = {
        **_spread(expected["train_gallery_images"], seen_names),
        **_spread(expected["test_gallery"], unseen_names),
    }
    images = root / "rendered_256x256" / "256x256"
    photos, drawings, extras = [], [], []
    for c, name in enumerate(classes):
        ids = [f"n{c:08d}_{i}" for i in range(100)]
        photos += [images / "photo" / "tx_000000000000" / name / f"{pid}.jpg" for pid in ids]
        drawings += [
            images / "sketch" / "tx_000000000000" / name / f"{ids[k % 100]}-{k // 100 + 1}.png"
            for k in range(sketches[name])
        ]
        extras += [root / "EXTEND_image_sketchy" / name / f"ext_{k}.jpg" for k in range(extended[name])]
    _link_all(jpg, photos + extras)
    _link_all(png, drawings)


def make_full_tuberlin(root: Path, jpg: Path, png: Path, photos_per_class: int = 10) -> None:
    sketches, photos = [], []
    for c, name in enumerate(class_list("tuberlin")):
        sketches += [root / "png" / name / f"{80 * c + k + 1}.png" for k in range(80)]
        photos += [root / "ImageResized" / name / f"{k}.JPEG" for k in range(photos_per_class)]
    _link_all(png, sketches)
    _link_all(jpg, photos)


def test_full_sketchy_tree_gives_the_zero_shot_table_of_yelamarthi_et_al(scratch, capsys):
    jpg, png = _seed_images(scratch / "seed")
    root = scratch / "Sketchy"
    make_full_sketchy(root, jpg, png)
    catalog = build_sketchy(cache_dir=scratch / "cache", root=root, progress=False)
    assert len(catalog.records) == 12_500 + 75_481 + 73_002
    table = sketchy_statistics(catalog, "zeroshot_yelamarthi")
    assert (table["difference"] == 0).all(), table.to_string()
    shen = catalog.split("zeroshot_shen")
    assert (len(shen.seen_classes), len(shen.unseen_classes)) == (100, 25)
    traditional = catalog.split("traditional")
    assert len(traditional.test_query) == 125 * 50  # 50 query sketches held out per class

    capsys.readouterr()
    assert cli_main(["data", "summary", "sketchy", "--root", str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    yelamarthi = summary["splits"]["zeroshot_yelamarthi"]
    assert (yelamarthi["seen_classes"], yelamarthi["unseen_classes"]) == (104, 21)
    assert (yelamarthi["test_query"], yelamarthi["test_gallery"]) == (12_694, 10_453)
    assert summary["records"] == {"photo": 12_500 + 73_002, "sketch": 75_481}
    literature = summary["splits"]["zeroshot_yelamarthi"]["literature"]
    assert literature["train_sketches"] == {"count": 62_787, "expected": 62_787, "difference": 0}
    assert all(row["difference"] == 0 for row in literature.values()), literature

    assert (
        cli_main(["data", "summary", "sketchy", "--root", str(root), "--split", "zeroshot_yelamarthi"]) == 0
    )
    printed = capsys.readouterr().out
    assert "zeroshot_yelamarthi: counts beside the literature's" in printed
    assert "train_gallery_images" in printed and "62549" in printed


def test_full_tuberlin_tree_gives_the_220_30_split_of_shen_et_al(scratch):
    jpg, png = _seed_images(scratch / "seed")
    root = scratch / "TU-Berlin"
    make_full_tuberlin(root, jpg, png)
    catalog = build_tuberlin(
        cache_dir=scratch / "cache",
        root=root,
        progress=False,
        test_photos_per_class=5,
        val_photos_per_class=2,
    )
    table = tuberlin_statistics(catalog, "zeroshot_shen")
    assert (table["difference"].dropna() == 0).all(), table.to_string()
    assert table["expected"].notna().sum() >= 4
    assert len(catalog.split("traditional").test_query) == 250 * 10
