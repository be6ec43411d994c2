"""Full-size trees in the official layouts: the readers reproduce the papers' split statistics.

The real archives are not available offline, so these trees hold the papers' numbers of files with the
official names and folders, every file a hard link to one tiny valid image: 160,983 files for Sketchy +
Extended, 20,000 sketches + 34,589 photos for TU-Berlin. Per-class counts are spread so that their totals
are the ones of the papers' tables and of SAKE's file lists, for every zero-shot split at once
(Yelamarthi et al. ECCV'18; Shen et al. CVPR'18 as SAKE, Liu et al. ICCV'19, lists it; Eitz et al. 2012).
What this checks at full size: the shipped class and unseen lists match the official folder names, the
zero-shot and generalised zero-shot splits count what those sources count (the generalised galleries
as their documented rule derives), and scanning and building stay fast (about 45 s of CPU for both,
trees and summaries included; the trees are deleted afterwards).
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


def _spread_groups(totals: dict[tuple[bool, bool], int], groups: dict[tuple[bool, bool], list[str]]) -> dict:
    return {name: n for key, total in totals.items() for name, n in _spread(total, groups[key]).items()}


def make_full_sketchy(root: Path, jpg: Path, png: Path) -> None:
    """Sketches and Extended images per class such that both zero-shot splits count their sources'
    totals: classes grouped by (unseen in Yelamarthi's split, unseen in Shen's), each group's total
    chosen so that the sums over each split's unseen classes are the published ones."""
    counts = expected_counts("sketchy")
    yelamarthi, shen = counts["splits"]["zeroshot_yelamarthi"], counts["splits"]["zeroshot_shen"]
    classes = class_list("sketchy")
    unseen_y = set(unseen_classes("sketchy", "zeroshot_yelamarthi"))
    unseen_s = set(unseen_classes("sketchy", "zeroshot_shen"))
    groups: dict[tuple[bool, bool], list[str]] = {(y, z): [] for y in (True, False) for z in (True, False)}
    for name in classes:
        groups[(name in unseen_y, name in unseen_s)].append(name)
    both = len(groups[(True, True)])  # unseen in both splits: 600 sketches and 500 Extended images each

    def totals(per_class: int, yelamarthi_unseen: int, shen_unseen: int, everything: int) -> dict:
        return {
            (True, True): both * per_class,
            (True, False): yelamarthi_unseen - both * per_class,
            (False, True): shen_unseen - both * per_class,
            (False, False): everything - yelamarthi_unseen - shen_unseen + both * per_class,
        }

    sketches = _spread_groups(
        totals(600, yelamarthi["test_sketches"], shen["test_sketches"], counts["dataset"]["sketches"]), groups
    )
    extended = _spread_groups(
        totals(500, yelamarthi["test_gallery"], shen["test_gallery"], counts["dataset"]["extended_images"]),
        groups,
    )
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


def make_full_tuberlin(root: Path, jpg: Path, png: Path, seen_photos_per_class: int = 30) -> None:
    """80 sketches per class; the unseen classes' photos total SAKE's 27,989, the seen classes hold
    ``seen_photos_per_class`` each (enough for the generalised gallery's 5,597 seen-class photos)."""
    unseen = unseen_classes("tuberlin", "zeroshot_shen")
    unseen_photos = _spread(expected_counts("tuberlin")["splits"]["zeroshot_shen"]["test_gallery"], unseen)
    sketches, photos = [], []
    for c, name in enumerate(class_list("tuberlin")):
        sketches += [root / "png" / name / f"{80 * c + k + 1}.png" for k in range(80)]
        count = unseen_photos.get(name, seen_photos_per_class)
        photos += [root / "ImageResized" / name / f"{k}.JPEG" for k in range(count)]
    _link_all(png, sketches)
    _link_all(jpg, photos)


def test_full_sketchy_tree_gives_the_zero_shot_table_of_yelamarthi_et_al(scratch, capsys):
    jpg, png = _seed_images(scratch / "seed")
    root = scratch / "Sketchy"
    make_full_sketchy(root, jpg, png)
    catalog = build_sketchy(cache_dir=scratch / "cache", root=root, progress=False)
    assert len(catalog.records) == 12_500 + 75_481 + 73_002
    for split in ("zeroshot_yelamarthi", "zeroshot_shen", "gzs_yelamarthi", "gzs_shen"):
        table = sketchy_statistics(catalog, split)
        compared = table["expected"].notna()
        assert compared.sum() >= 7 and (table["difference"][compared] == 0).all(), (split, table.to_string())
    shen = catalog.split("gzs_shen")
    assert (len(shen.seen_classes), len(shen.unseen_classes), len(shen.test_query)) == (100, 25, 15_229)
    assert len(shen.test_gallery) == 14_601 + 2_920
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
    compared = [row["difference"] for row in literature.values() if row["expected"] is not None]
    assert len(compared) == 7 and set(compared) == {0}, literature
    assert literature["unseen_rendered_and_extended"]["count"] == 12_500 // 125 * 21 + 10_453  # no expected
    assert summary["splits"]["zeroshot_yelamarthi"]["literature_source"].startswith("Yelamarthi et al.")
    assert summary["splits"]["gzs_shen"]["setting"] == "gzs"
    assert summary["splits"]["gzs_shen"]["literature"]["test_gallery_seen"]["difference"] == 0

    assert cli_main(["data", "summary", "sketchy", "--root", str(root)]) == 0  # every split's table
    printed = capsys.readouterr().out
    yelamarthi_table = printed[printed.index("zeroshot_yelamarthi: counts beside the literature's") :]
    assert "train_gallery_images" in yelamarthi_table and "62549" in yelamarthi_table
    assert yelamarthi_table.splitlines()[1].startswith("source: Yelamarthi et al. (ECCV 2018)")
    shen_table = printed[printed.index("zeroshot_shen: counts beside the literature's") :]
    assert shen_table.splitlines()[1].startswith("source: SAKE's released file lists")
    assert "17101" in shen_table and "15229" in shen_table


def test_full_tuberlin_tree_gives_the_220_30_split_of_shen_et_al_as_sake_lists_it(scratch):
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
    for split, compared in (("zeroshot_shen", 5), ("gzs_shen", 7)):
        table = tuberlin_statistics(catalog, split)
        assert (table["difference"].dropna() == 0).all(), table.to_string()
        assert table["expected"].notna().sum() == compared
    gzs = catalog.split("gzs_shen")
    assert (len(gzs.test_query), len(gzs.test_gallery)) == (2_400, 27_989 + 5_597)
    photos_per_class = catalog.records.iloc[gzs.test_gallery].groupby("label").size()
    assert len(photos_per_class) == 250  # every class in the generalised gallery
    assert len(catalog.split("traditional").test_query) == 250 * 10
