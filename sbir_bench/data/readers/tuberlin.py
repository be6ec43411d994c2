"""TU-Berlin sketches (Eitz et al., SIGGRAPH 2012) with TU-Berlin Extension photos (Zhang et al., 2016).

Layout (the archives as unpacked; README, "Real datasets")::

    <root>/                        default $SBIR_DATA/TU-Berlin; one extra wrapping folder is fine
      png/<class>/<n>.png          250 classes x 80 sketches; class names with spaces ("hot air balloon")
      png/filelist.txt             optional; when present the tree must match it
      ImageResized/<class>/*.jpg   TU-Berlin Extension photos, one folder per class (.JPEG etc. count too)

Reader options and decisions:

- ``photo_folder`` (default ``ImageResized``, the name SAKE uses) is the folder under the root that
  holds the Extension photos; their layout is UNVERIFIED, so photo class folders match the class list
  by exact name, else up to case and punctuation (``hotairballoon``), else through the misspellings a
  public release uses (``griaffe``, ``spidar``, ``tromobone``...: :data:`PHOTO_FOLDER_ALIASES`).
- ``classes="all"`` (default) requires all 250 classes (``splits/tuberlin/classes.txt``);
  ``classes="present"`` reads the classes whose ``png/`` folders exist (partial trees, tests).
- TU-Berlin has no sketch-photo pairs: the catalog's ``pairing`` is ``"class"``, so pair-based methods
  meet each training sketch with a training photo of its class drawn afresh every epoch (the
  DataModule's draws, as SEM-PCYC and SAKE train on TU-Berlin). Every record is its own instance:
  ``photo/<class>/<file name>``, ``sketch/<class>/<file name>``. Evaluation is category-level.

Splits (hold-outs by :func:`~sbir_bench.data.splits.stable_order` of the file names per class: one
order for sketches, one for photos, so the hold-outs below are prefixes of it):

- ``zeroshot_shen`` (220/30, Shen et al. CVPR 2018 as listed by SAKE's ``cname_cid_zero.txt``, which
  holds the full folder names; copies split on white space cut ``bottle opener`` / ``hot air balloon`` /
  ``space shuttle`` to ``bottle`` / ``hot`` / ``space``):
  test queries = every sketch of the unseen classes, gallery = every photo of the unseen classes;
  per seen class the first ``val_sketches_per_class`` sketches and ``val_photos_per_class`` photos
  form the validation part, the rest trains.
- ``gzs_shen``: generalised zero-shot (GZS-SBIR, SEM-PCYC, CVPR 2019), setting ``"gzs"``. The zero-shot
  split's queries (unseen-class sketches only) and validation part; its gallery plus
  ``int(gzs_seen_gallery_fraction * unseen gallery size)`` seen-class photos (0.2: SEM-PCYC's
  proportion), drawn by :func:`~sbir_bench.data.splits.seen_gallery_draw` (the first names in stable order
  over all seen classes) from the zero-shot split's training photos, which leave training. SEM-PCYC's
  released code draws them from training images at random, kept in training, and adds seen-class
  queries too; here neither.
- ``traditional`` (all 250 seen): per class the first ``test_sketches_per_class`` sketches (10, as DSH;
  UNVERIFIED) are the queries and the first ``test_photos_per_class`` photos the gallery (DSH searches
  all photos, training ones included; a held-out gallery keeps training and test apart); the next
  ``val_sketches_per_class`` sketches and ``val_photos_per_class`` photos validate; the rest trains.

:func:`split_statistics` gives the counts of a split beside the expected ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sbir_bench.data.readers.common import (
    Problem,
    class_images,
    image_problems,
    match_class_folders,
    raise_for_problems,
    resolve_root,
    selected_splits,
    tree_fingerprint,
)
from sbir_bench.data.records import Catalog, DatasetError, Split
from sbir_bench.data.splits import (
    SPLITS_DIR,
    SPLITS_VERSION,
    class_list,
    expected_counts,
    expected_source,
    seen_gallery_draw,
    shipped_checksums,
    stable_order,
    statistics_table,
    unseen_classes,
)
from sbir_bench.registry import register_dataset, register_dataset_checker, register_split_statistics

DATASET = "tuberlin"
FOLDER = "TU-Berlin"
SKETCH_FOLDER = "png"
PHOTO_FOLDER = "ImageResized"
FILELIST = "filelist.txt"
ZEROSHOT_SPLITS = ("zeroshot_shen",)
GZS_SPLITS = {"gzs_shen": "zeroshot_shen"}  # generalised zero-shot split -> its zero-shot split
SPLIT_NAMES = (*ZEROSHOT_SPLITS, *GZS_SPLITS, "traditional")
CLASS_MODES = ("all", "present")
LAYOUT = """<root>/
  png/<class>/<n>.png            (TU-Berlin sketches; png/filelist.txt optional)
  ImageResized/<class>/*.jpg     (TU-Berlin Extension photos; folder name: photo_folder)"""
# Photo folder names of a public TU-Berlin Extension release that are not the class names up to
# punctuation (its mapping table also lists the plain concatenations, which folder_key already covers).
PHOTO_FOLDER_ALIASES = {
    "griaffe": "giraffe",
    "spidar": "spider",
    "tromobone": "trombone",
    "chandeler": "chandelier",
    "spacesshuttle": "space shuttle",
    "wristwatching": "wrist-watch",
    "diamod": "diamond",
    "pipe": "pipe (for smoking)",
    "mouse": "mouse (animal)",
}


@dataclass(frozen=True)
class TUBerlinOptions:
    """The reader options (module docstring); they are part of the catalog's fingerprint."""

    photo_folder: str = PHOTO_FOLDER
    classes: str = "all"
    test_sketches_per_class: int = 10
    test_photos_per_class: int = 50
    val_sketches_per_class: int = 4
    val_photos_per_class: int = 10
    gzs_seen_gallery_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.classes not in CLASS_MODES:
            raise ValueError(f"classes must be one of {CLASS_MODES}, got {self.classes!r}")
        if Path(self.photo_folder).is_absolute():
            raise ValueError(f"photo_folder is a folder under the TU-Berlin root, got {self.photo_folder!r}")
        for name in ("test_sketches_per_class", "test_photos_per_class"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("val_sketches_per_class", "val_photos_per_class"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.gzs_seen_gallery_fraction > 0:
            raise ValueError(f"gzs_seen_gallery_fraction must be > 0, got {self.gzs_seen_gallery_fraction}")
        if (self.val_sketches_per_class == 0) != (self.val_photos_per_class == 0):
            raise ValueError("val_sketches_per_class and val_photos_per_class must both be 0 or both > 0")

    @property
    def photos_held_out(self) -> int:
        """Photos per class in some split's test or validation part (the traditional split's)."""
        return self.test_photos_per_class + self.val_photos_per_class

    @property
    def sketches_held_out(self) -> int:
        return self.test_sketches_per_class + self.val_sketches_per_class


@dataclass
class _Tree:
    """What a scan of a TU-Berlin tree found (classes in label order, files sorted by name)."""

    root: Path
    folders: dict[str, Path]  # "sketch" / "photo" -> the folder holding class folders
    classes: list[str]
    class_folders: dict[str, dict[str, Path]]  # domain -> class -> its folder (names may differ)
    files: dict[str, dict[str, list[Path]]] = field(default_factory=dict)  # domain -> class -> files
    filelist: Path | None = None

    def all_files(self) -> list[Path]:
        return [p for by_class in self.files.values() for paths in by_class.values() for p in paths]


def _missing_domain_message(domain: str) -> str:
    if domain == "photo":
        return (
            "missing: expected the TU-Berlin Extension photos here, one folder per class "
            "(set photo_folder to the folder's name under the root)"
        )
    return "missing: expected the TU-Berlin sketches here, png/<class>/<n>.png"


def _filelist_problems(tree: _Tree, filelist: Path) -> list[Problem]:
    """Sketches ``png/filelist.txt`` lists that are missing, and sketches it does not list (of the classes
    read)."""
    on_disk = {
        f"{path.parent.name}/{path.name}": path
        for paths in tree.files.get("sketch", {}).values()
        for path in paths
    }
    folders_read = set(tree.classes) | {entry.split("/", 1)[0] for entry in on_disk}
    listed = {
        entry
        for entry in (
            line.strip().replace("\\", "/") for line in filelist.read_text(errors="replace").splitlines()
        )
        if entry and entry.split("/", 1)[0] in folders_read
    }
    problems = [
        Problem(str(tree.folders["sketch"] / entry), f"listed in {filelist} but missing")
        for entry in sorted(listed - set(on_disk))
    ]
    problems += [
        Problem(str(on_disk[entry]), f"not listed in {filelist}") for entry in sorted(set(on_disk) - listed)
    ]
    return problems


def _scan(root: str | Path | None, options: TUBerlinOptions, progress: bool) -> tuple[_Tree, list[Problem]]:
    """List the tree and every structural problem (no image is decoded). A root that is not a TU-Berlin
    tree at all raises DatasetError."""
    base = resolve_root(root, FOLDER, LAYOUT, marker=SKETCH_FOLDER)
    folders = {"sketch": base / SKETCH_FOLDER, "photo": base / options.photo_folder}
    names = class_list(DATASET)
    problems: list[Problem] = []
    found: dict[str, dict[str, Path]] = {}
    for domain, folder in folders.items():
        if not folder.is_dir():
            problems.append(Problem(str(folder), _missing_domain_message(domain)))
            continue
        aliases = PHOTO_FOLDER_ALIASES if domain == "photo" else None
        found[domain], unmatched = match_class_folders(folder, names, aliases)
        problems += [
            Problem(
                str(p),
                f"folder matches no TU-Berlin class (the 250 names: {SPLITS_DIR}/tuberlin/classes.txt)",
            )
            for p in unmatched
        ]
    chosen = names if options.classes == "all" else [c for c in names if c in found.get("sketch", {})]
    if not chosen and "sketch" in found:
        problems.append(Problem(str(folders["sketch"]), "no TU-Berlin class folder found"))
    tree = _Tree(root=base, folders=folders, classes=chosen, class_folders=found)
    for domain, by_class in found.items():
        tree.files[domain], listed = class_images(
            by_class, chosen, folders[domain], domain, dataset="TU-Berlin", progress=progress
        )
        problems += listed
    if (folders["sketch"] / FILELIST).is_file():
        tree.filelist = folders["sketch"] / FILELIST
        problems += _filelist_problems(tree, tree.filelist)
    return tree, problems


@dataclass
class _ClassItems:
    """Record indices of one class, each list in stable order."""

    sketches: list[int]
    photos: list[int]


def _hold_out_problems(tree: _Tree, options: TUBerlinOptions, splits: Sequence[str]) -> list[Problem]:
    """Classes too small for the hold-outs of ``splits``: the traditional split's (which also cover the
    zero-shot ones) when it is built, else the zero-shot split's validation items of its seen classes."""
    if "traditional" in splits:
        sketches_held, photos_held = options.sketches_held_out, options.photos_held_out
        unseen: set[str] = set()
    else:
        sketches_held, photos_held = options.val_sketches_per_class, options.val_photos_per_class
        unseen = set.intersection(*(set(unseen_classes(DATASET, GZS_SPLITS.get(s, s))) for s in splits))
    problems = []
    for name in tree.classes:
        sketches, photos = tree.files["sketch"][name], tree.files["photo"][name]
        if name not in unseen and (len(sketches) <= sketches_held or len(photos) <= photos_held):
            photo_folder = tree.class_folders["photo"][name]
            problems.append(
                Problem(
                    str(tree.class_folders["sketch"][name]),
                    f"{len(sketches)} sketches and {len(photos)} photos (in {photo_folder}) are too few: "
                    f"the splits hold out {sketches_held} sketches and {photos_held} "
                    "photos per class and train on the rest (lower the *_per_class options)",
                )
            )
    return problems


def _records(tree: _Tree, options: TUBerlinOptions) -> tuple[pd.DataFrame, list[_ClassItems]]:
    rows: list[tuple[str, int, str, str]] = []
    items = []
    for label, name in enumerate(tree.classes):
        sketches = {p.name: p for p in tree.files["sketch"][name]}
        photos = {p.name: p for p in tree.files["photo"][name]}
        sketch_order = stable_order(sketches, f"{DATASET}/{name}/sketches")
        photo_order = stable_order(photos, f"{DATASET}/{name}/photos")
        first = len(rows)
        rows += [("photo", label, f"photo/{name}/{p}", str(photos[p])) for p in photo_order]
        rows += [("sketch", label, f"sketch/{name}/{s}", str(sketches[s])) for s in sketch_order]
        items.append(
            _ClassItems(
                photos=list(range(first, first + len(photo_order))),
                sketches=list(range(first + len(photo_order), len(rows))),
            )
        )
    records = pd.DataFrame(rows, columns=["domain", "label", "instance", "path"])
    records["views"] = pd.Series([()] * len(records), dtype=object)
    return records, items


def _index(values: list[int]) -> np.ndarray:
    return np.sort(np.asarray(values, dtype=np.int64))


def _zeroshot_split(split: str, tree: _Tree, items: list[_ClassItems], options: TUBerlinOptions) -> Split:
    unseen_names = set(unseen_classes(DATASET, split))
    unseen = [label for label, name in enumerate(tree.classes) if name in unseen_names]
    seen = [label for label, name in enumerate(tree.classes) if name not in unseen_names]
    if not unseen or not seen:
        raise DatasetError(
            f"{tree.root}: split {split} needs seen and unseen classes among the classes read "
            f"({len(seen)} seen, {len(unseen)} unseen; the unseen list: "
            f"{SPLITS_DIR}/{DATASET}/{split}_unseen.txt)"
        )
    val_sketches, val_photos = options.val_sketches_per_class, options.val_photos_per_class
    parts: dict[str, list[int]] = {name: [] for name in ("train", "val_query", "val_gallery")}
    for label in seen:
        item = items[label]
        parts["val_query"] += item.sketches[:val_sketches]
        parts["val_gallery"] += item.photos[:val_photos]
        parts["train"] += item.sketches[val_sketches:] + item.photos[val_photos:]
    return Split(
        name=split,
        setting="zeroshot",
        seen_classes=tuple(seen),
        unseen_classes=tuple(unseen),
        test_query=_index([s for label in unseen for s in items[label].sketches]),
        test_gallery=_index([p for label in unseen for p in items[label].photos]),
        **{part: _index(indices) for part, indices in parts.items()},
    )


def _gzs_split(name: str, zeroshot: Split, records: pd.DataFrame, options: TUBerlinOptions) -> Split:
    """Generalised zero-shot ``name``: ``zeroshot`` with some of its training photos moved to its gallery
    (module docstring)."""
    pools: dict[str, dict[str, int]] = {}  # seen class -> file name -> record
    for record in zeroshot.train[records["domain"].to_numpy()[zeroshot.train] == "photo"]:
        _, class_name, file_name = records.at[record, "instance"].split("/", 2)  # photo/<class>/<file>
        pools.setdefault(class_name, {})[file_name] = int(record)
    drawn = seen_gallery_draw(
        pools, len(zeroshot.test_gallery), options.gzs_seen_gallery_fraction, f"{DATASET}/{name}/seen_gallery"
    )
    return replace(
        zeroshot,
        name=name,
        setting="gzs",
        train=zeroshot.train[~np.isin(zeroshot.train, drawn)],
        test_gallery=_index([*zeroshot.test_gallery.tolist(), *drawn]),
    )


def _traditional_split(tree: _Tree, items: list[_ClassItems], options: TUBerlinOptions) -> Split:
    test_sketches, test_photos = options.test_sketches_per_class, options.test_photos_per_class
    parts: dict[str, list[int]] = {
        "train": [],
        "val_query": [],
        "val_gallery": [],
        "test_query": [],
        "test_gallery": [],
    }
    for item in items:
        parts["test_query"] += item.sketches[:test_sketches]
        parts["test_gallery"] += item.photos[:test_photos]
        parts["val_query"] += item.sketches[test_sketches : options.sketches_held_out]
        parts["val_gallery"] += item.photos[test_photos : options.photos_held_out]
        parts["train"] += item.sketches[options.sketches_held_out :] + item.photos[options.photos_held_out :]
    return Split(
        name="traditional",
        setting="traditional",
        seen_classes=tuple(range(len(tree.classes))),
        unseen_classes=(),
        **{part: _index(indices) for part, indices in parts.items()},
    )


def _catalog(tree: _Tree, options: TUBerlinOptions, splits: Sequence[str] | None = None) -> Catalog:
    chosen = selected_splits(DATASET, splits, SPLIT_NAMES)
    raise_for_problems(_hold_out_problems(tree, options, chosen), f"the TU-Berlin tree at {tree.root}")
    records, items = _records(tree, options)
    built = {
        split: _zeroshot_split(split, tree, items, options)
        for split in ZEROSHOT_SPLITS
        if split in chosen or any(GZS_SPLITS.get(asked) == split for asked in chosen)
    }
    for split, zeroshot in GZS_SPLITS.items():
        if split in chosen:
            built[split] = _gzs_split(split, built[zeroshot], records, options)
    if "traditional" in chosen:
        built["traditional"] = _traditional_split(tree, items, options)
    splits = {split: built[split] for split in chosen}
    shipped = {k: v for k, v in shipped_checksums().items() if k.startswith(f"{DATASET}/")}
    extra_files = [tree.filelist] if tree.filelist else []
    catalog = Catalog(
        name=DATASET,
        records=records,
        class_names=list(tree.classes),
        splits=splits,
        fingerprint=tree_fingerprint(
            tree.root,
            tree.all_files() + extra_files,
            SPLITS_VERSION,
            asdict(options),
            shipped,
            *([chosen] if len(chosen) < len(SPLIT_NAMES) else []),  # fewer splits: another catalog
        ),
        pairing="class",
    )
    catalog.validate()
    return catalog


@register_dataset(DATASET)
def build_tuberlin(
    cache_dir: str | Path,
    *,
    root: str | Path | None = None,
    photo_folder: str = PHOTO_FOLDER,
    classes: str = "all",
    test_sketches_per_class: int = 10,
    test_photos_per_class: int = 50,
    val_sketches_per_class: int = 4,
    val_photos_per_class: int = 10,
    gzs_seen_gallery_fraction: float = 0.2,
    splits: Sequence[str] | None = None,
    progress: bool = True,
) -> Catalog:
    """Read a TU-Berlin (+ Extension photos) tree in place (``cache_dir`` is unused: nothing is
    generated) and return its catalog with splits ``zeroshot_shen``, ``gzs_shen`` and ``traditional``,
    or only ``splits`` (a partial tree may serve some of them only).

    Raises one DatasetError listing the tree's structural problems; :func:`check_tuberlin` lists every
    problem, decoding each image too.
    """
    options = TUBerlinOptions(
        photo_folder,
        classes,
        test_sketches_per_class,
        test_photos_per_class,
        val_sketches_per_class,
        val_photos_per_class,
        gzs_seen_gallery_fraction,
    )
    tree, problems = _scan(root, options, progress)
    raise_for_problems(problems, f"the TU-Berlin tree at {tree.root} (check_tuberlin lists every problem)")
    return _catalog(tree, options, splits)


def _count_problems(tree: _Tree) -> list[Problem]:
    """Differences from the literature's sketch counts (meaningful for a full tree only)."""
    expected = expected_counts(DATASET)["dataset"]
    sketches = tree.files.get("sketch", {})
    problems = [
        Problem(
            str(tree.folders["sketch"] / name),
            f"holds {len(paths)} sketches, expected {expected['sketches_per_class']}",
        )
        for name, paths in sketches.items()
        if len(paths) != expected["sketches_per_class"]
    ]
    total = sum(len(paths) for paths in sketches.values())
    if sketches and total != expected["sketches"]:
        problems.append(
            Problem(
                str(tree.folders["sketch"]),
                f"holds {total:,} sketches; the literature's count is {expected['sketches']:,} "
                f"(difference {total - expected['sketches']:+,})",
            )
        )
    return problems


@register_dataset_checker(DATASET)
def check_tuberlin(
    root: str | Path | None = None,
    *,
    photo_folder: str = PHOTO_FOLDER,
    classes: str = "all",
    test_sketches_per_class: int = 10,
    test_photos_per_class: int = 50,
    val_sketches_per_class: int = 4,
    val_photos_per_class: int = 10,
    gzs_seen_gallery_fraction: float = 0.2,
    progress: bool = True,
) -> list[Problem]:
    """Every problem of a TU-Berlin tree: missing or unknown folders, missing classes, empty classes,
    zero-byte or undecodable images, disagreements with ``png/filelist.txt``, sketch counts differing
    from the literature's (``classes="all"``), and classes too small for the splits' hold-outs."""
    options = TUBerlinOptions(
        photo_folder,
        classes,
        test_sketches_per_class,
        test_photos_per_class,
        val_sketches_per_class,
        val_photos_per_class,
        gzs_seen_gallery_fraction,
    )
    try:
        tree, problems = _scan(root, options, progress)
    except DatasetError as error:
        return [Problem(str(root or f"$SBIR_DATA/{FOLDER}"), str(error))]
    structural = bool(problems)
    files = [p for p in tree.all_files() if p.stat().st_size > 0]
    problems += image_problems(
        tqdm(files, desc="decoding TU-Berlin images", unit="image", disable=not progress)
    )
    if options.classes == "all":
        problems += _count_problems(tree)
    if not structural:
        too_small = _hold_out_problems(tree, options, SPLIT_NAMES)
        problems += too_small
        if not too_small:
            try:
                _catalog(tree, options)
            except DatasetError as error:
                problems.append(Problem(str(tree.root), str(error)))
    return problems


@register_split_statistics(DATASET)
def split_statistics(catalog: Catalog, split: str) -> pd.DataFrame:
    """The counts of ``split`` beside the expected ones (``table.attrs["source"]`` says where those come
    from); ``train_*`` count the training and validation parts together (the papers hold out no
    validation items); a generalised zero-shot gallery is also counted by seen and unseen classes."""
    chosen = catalog.split(split)
    domain = catalog.records["domain"].to_numpy()
    training = np.zeros(len(domain), dtype=bool)
    training[np.concatenate([chosen.train, chosen.val_query, chosen.val_gallery])] = True
    observed = {
        "seen_classes": len(chosen.seen_classes),
        "unseen_classes": len(chosen.unseen_classes),
        "train_photos": int((training & (domain == "photo")).sum()),
        "train_sketches": int((training & (domain == "sketch")).sum()),
        "test_sketches": len(chosen.test_query),
        "test_gallery": len(chosen.test_gallery),
    }
    if chosen.setting == "gzs":
        labels = catalog.records["label"].to_numpy()[chosen.test_gallery]
        gallery_seen = int(np.isin(labels, chosen.seen_classes).sum())
        observed["test_gallery_unseen"] = len(chosen.test_gallery) - gallery_seen
        observed["test_gallery_seen"] = gallery_seen
    table = statistics_table(observed, expected_counts(DATASET)["splits"].get(split, {}))
    table.attrs["source"] = expected_source(DATASET, split)
    return table
