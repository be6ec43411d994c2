"""Sketchy (Sangkloy et al., SIGGRAPH 2016) and Sketchy Extended (Liu et al., DSH, CVPR 2017).

Layout (the archives as unpacked; README, "Real datasets")::

    <root>/                                   default $SBIR_DATA/Sketchy; one extra wrapping folder is fine
      rendered_256x256/256x256/photo/tx_000000000000/<class>/<imageid>.jpg
      rendered_256x256/256x256/sketch/tx_000000000000/<class>/<imageid>-<n>.png
      info/invalid-{ambiguous,context,error,pose}.txt     read only with exclude_invalid=true
      EXTEND_image_sketchy/<class>/*.jpg                  Sketchy Extended, read with extended=true

Reader options and decisions:

- ``variant``: the ``tx_<12 digits>`` folder read for photos and sketches (default ``tx_000000000000``
  as SEM-PCYC, Doodle2Search and SAKE; the ZS-SBIR code reads ``tx_000100000000``). ``256x256/``
  unpacked straight under the root (without ``rendered_256x256/``) is accepted too.
- Class folders are matched to ``splits/sketchy/classes.txt`` by exact name, else up to case and
  punctuation (SEM-PCYC's download script renames ``hot-air_balloon`` to ``hot_air_balloon``).
  ``classes="all"`` (default) requires all 125 classes; ``classes="present"`` reads the classes whose
  folders exist (partial trees, tests); in both, a folder matching no class is an error.
- A sketch ``<id>-<n>.png`` pairs with photo ``<id>.jpg`` of its class: both carry instance ``<id>``.
  ``exclude_invalid=true`` drops the sketches named in ``info/invalid-*.txt`` (one sketch per line,
  ``<id>-<n>`` with or without class folder and suffix); off by default, as in the ZS-SBIR code.
- Sketchy Extended images carry instance ``extended:<class>/<stem>``; those whose stem is the id of
  a rendered photo of the class are copies of it (the release holds the 12,500 originals too).
  ``extended=true`` (default) requires the folder: both zero-shot protocols search it. With
  ``extended=false`` the zero-shot galleries are the rendered photos of the unseen classes instead,
  which is *not* the papers' protocol (a warning says so).

Splits (class lists shipped in ``sbir_bench/data/splits/sketchy``; hold-outs by
:func:`~sbir_bench.data.splits.stable_order` of file names per class, so every machine draws them alike):

- ``zeroshot_yelamarthi`` (104/21, ECCV'18) and ``zeroshot_shen`` (100/25, ZSIH as in SAKE's lists; each
  list's header names the public list it equals):
  test queries = every sketch of the unseen classes; test gallery = every Sketchy Extended image of
  the unseen classes. Training = the rendered photos of the seen classes with their own sketches; the
  first ``val_photos_per_class`` photos of each seen class (in stable order) and their sketches are
  held out for validation instead (never an unseen class). The seen classes' extended images (the
  table's "62,549 DB images for training") belong to no part: their copies of training photos would
  repeat training instances, and pair-based methods cannot use unpaired images.
- ``gzs_yelamarthi`` and ``gzs_shen``: generalised zero-shot (GZS-SBIR, SEM-PCYC, CVPR 2019), setting
  ``"gzs"``. The zero-shot split's queries (unseen-class sketches only) and training and validation parts;
  its gallery plus ``int(gzs_seen_gallery_fraction * unseen gallery size)`` seen-class images (0.2:
  SEM-PCYC's proportion), drawn by :func:`~sbir_bench.data.splits.seen_gallery_draw` (the first names in
  stable order over all seen classes) from images the split never trains on: the seen classes' Sketchy
  Extended images that copy no rendered photo (``ext_*``; training is then the zero-shot split's), or with
  ``extended=false`` their rendered photos outside validation, which then leave training with their
  sketches. SEM-PCYC's released code draws the seen-class gallery from training images at random and adds
  seen-class queries too; here neither.
- ``traditional`` (all 125 classes seen): per class, photos are taken in stable order until their
  sketches number at least ``test_sketches_per_class`` (50, as the commented non-zero-shot split of the
  ZS-SBIR code and DSH; UNVERIFIED); the first 50 of those sketches in stable order are the queries, the
  others are left out of every part. Gallery = those held-out photos plus (extended=true) the class's
  extended images that are not copies of rendered photos. The next ``val_photos_per_class`` photos and
  their sketches are the validation part; the remaining photos and their sketches train.

:func:`split_statistics` gives the counts of a split beside the literature's (the ZS-SBIR table).
"""

from __future__ import annotations

import logging
import re
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

log = logging.getLogger(__name__)

DATASET = "sketchy"
FOLDER = "Sketchy"
DEFAULT_VARIANT = "tx_000000000000"
EXTENDED_FOLDER = "EXTEND_image_sketchy"
EXTENDED_PREFIX = "extended:"
INVALID_FILES = tuple(f"invalid-{kind}.txt" for kind in ("ambiguous", "context", "error", "pose"))
ZEROSHOT_SPLITS = ("zeroshot_yelamarthi", "zeroshot_shen")
GZS_SPLITS = {"gzs_yelamarthi": "zeroshot_yelamarthi", "gzs_shen": "zeroshot_shen"}  # -> its zero-shot split
SPLIT_NAMES = (*ZEROSHOT_SPLITS, *GZS_SPLITS, "traditional")
CLASS_MODES = ("all", "present")
LAYOUT = """<root>/
  rendered_256x256/256x256/photo/tx_000000000000/<class>/<imageid>.jpg
  rendered_256x256/256x256/sketch/tx_000000000000/<class>/<imageid>-<n>.png
  info/invalid-*.txt                   (only for exclude_invalid=true)
  EXTEND_image_sketchy/<class>/*.jpg   (Sketchy Extended, for extended=true)"""
_SKETCH_NAME = re.compile(r"^(?P<photo>.+)-\d+$")
_VARIANT = re.compile(r"^tx_\d{12}$")


@dataclass(frozen=True)
class SketchyOptions:
    """The reader options (module docstring); they are part of the catalog's fingerprint."""

    variant: str = DEFAULT_VARIANT
    extended: bool = True
    extended_folder: str = EXTENDED_FOLDER
    exclude_invalid: bool = False
    classes: str = "all"
    test_sketches_per_class: int = 50
    val_photos_per_class: int = 5
    gzs_seen_gallery_fraction: float = 0.2

    def __post_init__(self) -> None:
        if not _VARIANT.match(self.variant):
            raise ValueError(f"variant must look like tx_000000000000, got {self.variant!r}")
        if self.classes not in CLASS_MODES:
            raise ValueError(f"classes must be one of {CLASS_MODES}, got {self.classes!r}")
        if Path(self.extended_folder).is_absolute():
            raise ValueError(
                f"extended_folder is a folder under the Sketchy root, got {self.extended_folder!r}"
            )
        if self.test_sketches_per_class < 1:
            raise ValueError(f"test_sketches_per_class must be >= 1, got {self.test_sketches_per_class}")
        if self.val_photos_per_class < 0:
            raise ValueError(f"val_photos_per_class must be >= 0, got {self.val_photos_per_class}")
        if not self.gzs_seen_gallery_fraction > 0:
            raise ValueError(f"gzs_seen_gallery_fraction must be > 0, got {self.gzs_seen_gallery_fraction}")


@dataclass
class _Tree:
    """What a scan of a Sketchy tree found (classes in label order, files sorted by name)."""

    root: Path
    folders: dict[str, Path]  # "photo" / "sketch" / "extended" -> the folder holding class folders
    classes: list[str]
    class_folders: dict[str, dict[str, Path]]  # domain -> class -> its folder (names may differ)
    files: dict[str, dict[str, list[Path]]] = field(default_factory=dict)  # domain -> class -> files
    info_files: list[Path] = field(default_factory=list)
    invalid: frozenset[str] = frozenset()  # sketch stems named in info/invalid-*.txt

    def all_files(self) -> list[Path]:
        return [p for by_class in self.files.values() for paths in by_class.values() for p in paths]


def _images_folder(root: str | Path | None) -> tuple[Path, Path]:
    """(dataset root, the ``256x256`` folder), accepting ``256x256/`` straight under the root."""
    try:
        base = resolve_root(root, FOLDER, LAYOUT, marker="rendered_256x256/256x256")
        return base, base / "rendered_256x256" / "256x256"
    except DatasetError as error:
        try:
            base = resolve_root(root, FOLDER, LAYOUT, marker="256x256/sketch")
        except DatasetError:
            raise error from None
        return base, base / "256x256"


def _variants(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("tx_*") if p.is_dir()) if folder.is_dir() else []


def _missing_domain_message(domain: str, folder: Path) -> str:
    if domain == "extended":
        return (
            "missing: the Sketchy Extended images (EXTEND_image_sketchy/<class>/*.jpg) are the gallery of "
            "the zero-shot splits; unpack them here, set extended_folder to their folder name, or set "
            "extended=false for photo-only galleries (not the papers' protocol)"
        )
    return (
        f"missing: expected the {domain} folders of variant {folder.name} here; "
        f"variants present: {', '.join(_variants(folder.parent)) or 'none'}"
    )


def _invalid_stems(path: Path) -> set[str]:
    """Sketch stems of one ``invalid-*.txt``: ``<id>-<n>``, optionally with class folder and suffix."""
    stems = set()
    for line in path.read_text(errors="replace").splitlines():
        name = line.strip().replace("\\", "/").rsplit("/", 1)[-1]
        if name:
            stems.add(name.rsplit(".", 1)[0] if name.lower().endswith((".png", ".svg")) else name)
    return stems


def _scan(root: str | Path | None, options: SketchyOptions, progress: bool) -> tuple[_Tree, list[Problem]]:
    """List the tree and every structural problem (no image is decoded). A root that is not a Sketchy
    tree at all raises DatasetError."""
    base, images = _images_folder(root)
    folders = {"photo": images / "photo" / options.variant, "sketch": images / "sketch" / options.variant}
    if options.extended:
        folders["extended"] = base / options.extended_folder
    names = class_list(DATASET)
    problems: list[Problem] = []
    found: dict[str, dict[str, Path]] = {}
    for domain, folder in folders.items():
        if not folder.is_dir():
            problems.append(Problem(str(folder), _missing_domain_message(domain, folder)))
            continue
        found[domain], unmatched = match_class_folders(folder, names)
        problems += [
            Problem(
                str(p), f"folder matches no Sketchy class (the 125 names: {SPLITS_DIR}/sketchy/classes.txt)"
            )
            for p in unmatched
        ]
    if options.classes == "all":
        chosen = names
    else:
        present = {c for domain in ("photo", "sketch") for c in found.get(domain, {})}
        chosen = [c for c in names if c in present]
        if not chosen and found:
            problems.append(Problem(str(images), "no Sketchy class folder found under photo/ or sketch/"))
    tree = _Tree(root=base, folders=folders, classes=chosen, class_folders=found)
    for domain, by_class in found.items():
        tree.files[domain], listed = class_images(
            by_class, chosen, folders[domain], domain, dataset="Sketchy", progress=progress
        )
        problems += listed
    problems += _pairing_problems(tree)
    if options.exclude_invalid:
        for path in (base / "info" / name for name in INVALID_FILES):
            if path.is_file():
                tree.info_files.append(path)
            else:
                problems.append(
                    Problem(
                        str(path),
                        "missing: exclude_invalid=true reads the invalid-sketch lists of the release",
                    )
                )
        tree.invalid = frozenset().union(*(_invalid_stems(p) for p in tree.info_files))
    return tree, problems


def _pairing_problems(tree: _Tree) -> list[Problem]:
    """Sketches not named ``<id>-<n>``, sketches without their photo and photos without any sketch."""
    problems = []
    photos, sketches = tree.files.get("photo", {}), tree.files.get("sketch", {})
    for name in tree.classes:
        if name not in photos or name not in sketches:
            continue
        photo_ids = {p.stem for p in photos[name]}
        sketched = set()
        for sketch in sketches[name]:
            match = _SKETCH_NAME.match(sketch.stem)
            if match is None:
                problems.append(Problem(str(sketch), "sketch name is not <imageid>-<n>.png"))
            elif match["photo"] not in photo_ids:
                expected = tree.class_folders["photo"][name] / f"{match['photo']}.jpg"
                problems.append(Problem(str(sketch), f"sketch without photo: expected {expected}"))
            else:
                sketched.add(match["photo"])
        problems += [
            Problem(
                str(p),
                f"photo without sketch: expected {p.stem}-<n>.png in {tree.class_folders['sketch'][name]}",
            )
            for p in photos[name]
            if p.stem not in sketched
        ]
    return problems


@dataclass
class _ClassItems:
    """Record indices of one class, by kind."""

    photos: dict[str, int] = field(default_factory=dict)  # photo id -> record
    sketches: dict[str, list[int]] = field(default_factory=dict)  # photo id -> its sketches' records
    sketch_names: dict[int, str] = field(default_factory=dict)  # sketch record -> file stem
    extended: list[int] = field(default_factory=list)
    extended_new: list[int] = field(default_factory=list)  # extended images that copy no rendered photo
    extended_names: dict[int, str] = field(default_factory=dict)  # extended record -> file stem

    def sketches_of(self, photo_ids: list[str]) -> list[int]:
        return [s for pid in photo_ids for s in self.sketches.get(pid, [])]


def _records(tree: _Tree) -> tuple[pd.DataFrame, list[_ClassItems]]:
    rows: list[tuple[str, int, str, str]] = []
    items = []
    for label, name in enumerate(tree.classes):
        item = _ClassItems()
        for photo in tree.files["photo"][name]:
            item.photos[photo.stem] = len(rows)
            rows.append(("photo", label, photo.stem, str(photo)))
        for sketch in tree.files["sketch"][name]:
            if sketch.stem in tree.invalid:
                continue
            photo_id = sketch.stem.rsplit("-", 1)[0]  # the scan checked the <id>-<n> form
            item.sketches.setdefault(photo_id, []).append(len(rows))
            item.sketch_names[len(rows)] = sketch.stem
            rows.append(("sketch", label, photo_id, str(sketch)))
        for image in tree.files.get("extended", {}).get(name, []):
            item.extended.append(len(rows))
            item.extended_names[len(rows)] = image.stem
            if image.stem not in item.photos:
                item.extended_new.append(len(rows))
            rows.append(("photo", label, f"{EXTENDED_PREFIX}{name}/{image.stem}", str(image)))
        items.append(item)
    records = pd.DataFrame(rows, columns=["domain", "label", "instance", "path"])
    records["views"] = pd.Series([()] * len(records), dtype=object)
    return records, items


def _index(values: list[int]) -> np.ndarray:
    return np.sort(np.asarray(values, dtype=np.int64))


def _photo_order(name: str, item: _ClassItems) -> list[str]:
    return stable_order(item.photos, f"{DATASET}/{name}/photos")


def _zeroshot_split(
    split: str, tree: _Tree, items: list[_ClassItems], *, extended: bool, val_photos_per_class: int
) -> Split:
    unseen_names = set(unseen_classes(DATASET, split))
    unseen = [label for label, name in enumerate(tree.classes) if name in unseen_names]
    seen = [label for label, name in enumerate(tree.classes) if name not in unseen_names]
    if not unseen or not seen:
        raise DatasetError(
            f"{tree.root}: split {split} needs seen and unseen classes among the classes read "
            f"({len(seen)} seen, {len(unseen)} unseen; the unseen list: "
            f"{SPLITS_DIR}/{DATASET}/{split}_unseen.txt)"
        )
    parts: dict[str, list[int]] = {
        "train": [],
        "val_query": [],
        "val_gallery": [],
        "test_query": [],
        "test_gallery": [],
    }
    for label in unseen:
        item = items[label]
        parts["test_query"] += item.sketches_of(list(item.photos))
        parts["test_gallery"] += item.extended if extended else list(item.photos.values())
    for label in seen:
        name, item = tree.classes[label], items[label]
        order = _photo_order(name, item)  # long enough: checked by _hold_out_problems
        held, kept = order[:val_photos_per_class], order[val_photos_per_class:]
        parts["val_gallery"] += [item.photos[pid] for pid in held]
        parts["val_query"] += item.sketches_of(held)
        parts["train"] += [item.photos[pid] for pid in kept] + item.sketches_of(kept)
    return Split(
        name=split,
        setting="zeroshot",
        seen_classes=tuple(seen),
        unseen_classes=tuple(unseen),
        **{part: _index(indices) for part, indices in parts.items()},
    )


def _gzs_split(
    name: str, zeroshot: Split, tree: _Tree, items: list[_ClassItems], options: SketchyOptions
) -> Split:
    """Generalised zero-shot ``name``: ``zeroshot``'s queries against its gallery plus seen-class images
    it does not train on; a drawn rendered photo (``extended=false``) leaves training with its sketches
    (module docstring)."""
    training = set(zeroshot.train.tolist())
    pools: dict[str, dict[str, int]] = {}  # seen class -> file stem -> record
    for label in zeroshot.seen_classes:
        item = items[label]
        if options.extended:
            pools[tree.classes[label]] = {item.extended_names[r]: r for r in item.extended_new}
        else:
            pools[tree.classes[label]] = {pid: r for pid, r in item.photos.items() if r in training}
    drawn = seen_gallery_draw(
        pools, len(zeroshot.test_gallery), options.gzs_seen_gallery_fraction, f"{DATASET}/{name}/seen_gallery"
    )
    left_out = set(drawn)
    for label in zeroshot.seen_classes:  # a drawn rendered photo takes its sketches out of training too
        item = items[label]
        left_out.update(item.sketches_of([pid for pid, r in item.photos.items() if r in left_out]))
    return replace(
        zeroshot,
        name=name,
        setting="gzs",
        train=zeroshot.train[~np.isin(zeroshot.train, sorted(left_out))],
        test_gallery=_index([*zeroshot.test_gallery.tolist(), *drawn]),
    )


def _traditional_hold_out(
    name: str, item: _ClassItems, test_sketches_per_class: int
) -> tuple[list[str], list[str]]:
    """(held-out photo ids, the rest): photos in stable order until their sketches reach the query count."""
    order = _photo_order(name, item)
    held: list[str] = []
    while len(item.sketches_of(held)) < test_sketches_per_class and len(held) < len(order):
        held.append(order[len(held)])
    return held, order[len(held) :]


def _hold_out_problems(
    tree: _Tree, items: list[_ClassItems], options: SketchyOptions, splits: Sequence[str]
) -> list[Problem]:
    """Classes too small for the hold-outs of ``splits``: the traditional split's (which also cover the
    zero-shot ones) when it is built, else the zero-shot splits' validation photos of their seen classes."""
    if "traditional" not in splits:
        return _zeroshot_hold_out_problems(tree, items, options, splits)
    problems = []
    for name, item in zip(tree.classes, items, strict=True):
        held, rest = _traditional_hold_out(name, item, options.test_sketches_per_class)
        if (
            len(item.sketches_of(held)) < options.test_sketches_per_class
            or len(rest) <= options.val_photos_per_class
        ):
            problems.append(
                Problem(
                    str(tree.class_folders["sketch"][name]),
                    f"{len(item.photos)} photos with {len(item.sketches_of(held + rest))} sketches are too "
                    f"few for the traditional split, which holds out {options.test_sketches_per_class} query "
                    f"sketches and {options.val_photos_per_class} validation photos per class and trains on "
                    "the rest (lower test_sketches_per_class / val_photos_per_class)",
                )
            )
    return problems


def _zeroshot_hold_out_problems(
    tree: _Tree, items: list[_ClassItems], options: SketchyOptions, splits: Sequence[str]
) -> list[Problem]:
    zeroshot = {GZS_SPLITS.get(split, split) for split in splits}
    unseen_everywhere = set.intersection(*(set(unseen_classes(DATASET, split)) for split in zeroshot))
    return [
        Problem(
            str(tree.class_folders["photo"][name]),
            f"{len(item.photos)} photos are too few for the zero-shot splits, which hold out "
            f"{options.val_photos_per_class} validation photos per seen class and train on the rest "
            "(lower val_photos_per_class)",
        )
        for name, item in zip(tree.classes, items, strict=True)
        if name not in unseen_everywhere and len(item.photos) <= options.val_photos_per_class
    ]


def _traditional_split(
    tree: _Tree, items: list[_ClassItems], *, test_sketches_per_class: int, val_photos_per_class: int
) -> Split:
    parts: dict[str, list[int]] = {
        "train": [],
        "val_query": [],
        "val_gallery": [],
        "test_query": [],
        "test_gallery": [],
    }
    for name, item in zip(tree.classes, items, strict=True):
        held, rest = _traditional_hold_out(name, item, test_sketches_per_class)
        queries = stable_order(
            (item.sketch_names[s] for s in item.sketches_of(held)), f"{DATASET}/{name}/sketches"
        )[:test_sketches_per_class]
        by_name = {item.sketch_names[s]: s for s in item.sketches_of(held)}
        parts["test_query"] += [by_name[q] for q in queries]
        parts["test_gallery"] += [item.photos[pid] for pid in held] + item.extended_new
        val, train = rest[:val_photos_per_class], rest[val_photos_per_class:]
        parts["val_gallery"] += [item.photos[pid] for pid in val]
        parts["val_query"] += item.sketches_of(val)
        parts["train"] += [item.photos[pid] for pid in train] + item.sketches_of(train)
    return Split(
        name="traditional",
        setting="traditional",
        seen_classes=tuple(range(len(tree.classes))),
        unseen_classes=(),
        **{part: _index(indices) for part, indices in parts.items()},
    )


def _catalog(tree: _Tree, options: SketchyOptions, splits: Sequence[str] | None = None) -> Catalog:
    chosen = selected_splits(DATASET, splits, SPLIT_NAMES)
    records, items = _records(tree)
    raise_for_problems(_hold_out_problems(tree, items, options, chosen), f"the Sketchy tree at {tree.root}")
    built = {
        split: _zeroshot_split(
            split, tree, items, extended=options.extended, val_photos_per_class=options.val_photos_per_class
        )
        for split in ZEROSHOT_SPLITS
        if split in chosen or any(GZS_SPLITS.get(asked) == split for asked in chosen)
    }
    for split, zeroshot in GZS_SPLITS.items():
        if split in chosen:
            built[split] = _gzs_split(split, built[zeroshot], tree, items, options)
    if "traditional" in chosen:
        built["traditional"] = _traditional_split(
            tree,
            items,
            test_sketches_per_class=options.test_sketches_per_class,
            val_photos_per_class=options.val_photos_per_class,
        )
    splits = {split: built[split] for split in chosen}
    shipped = {k: v for k, v in shipped_checksums().items() if k.startswith(f"{DATASET}/")}
    catalog = Catalog(
        name=DATASET,
        records=records,
        class_names=list(tree.classes),
        splits=splits,
        fingerprint=tree_fingerprint(
            tree.root,
            tree.all_files() + tree.info_files,
            SPLITS_VERSION,
            asdict(options),
            shipped,
            *([chosen] if len(chosen) < len(SPLIT_NAMES) else []),  # fewer splits: another catalog
        ),
    )
    catalog.validate()
    return catalog


@register_dataset(DATASET)
def build_sketchy(
    cache_dir: str | Path,
    *,
    root: str | Path | None = None,
    variant: str = DEFAULT_VARIANT,
    extended: bool = True,
    extended_folder: str = EXTENDED_FOLDER,
    exclude_invalid: bool = False,
    classes: str = "all",
    test_sketches_per_class: int = 50,
    val_photos_per_class: int = 5,
    gzs_seen_gallery_fraction: float = 0.2,
    splits: Sequence[str] | None = None,
    progress: bool = True,
) -> Catalog:
    """Read a Sketchy (+ Extended) tree in place (``cache_dir`` is unused: nothing is generated) and
    return its catalog with splits ``zeroshot_yelamarthi``, ``zeroshot_shen``, ``gzs_yelamarthi``,
    ``gzs_shen`` and ``traditional``, or only ``splits`` (a partial tree may serve some of them only).

    Raises one DatasetError listing the tree's structural problems; :func:`check_sketchy` lists every
    problem, decoding each image too.
    """
    options = SketchyOptions(
        variant,
        extended,
        extended_folder,
        exclude_invalid,
        classes,
        test_sketches_per_class,
        val_photos_per_class,
        gzs_seen_gallery_fraction,
    )
    tree, problems = _scan(root, options, progress)
    raise_for_problems(problems, f"the Sketchy tree at {tree.root} (check_sketchy lists every problem)")
    if not extended:
        log.warning(
            "Sketchy read with extended=false: the zero-shot galleries are the rendered photos of the unseen "
            "classes, not the Sketchy Extended images the papers search"
        )
    return _catalog(tree, options, splits)


def _count_problems(tree: _Tree) -> list[Problem]:
    """Differences from the literature's counts (meaningful for a full tree only)."""
    expected = expected_counts(DATASET)["dataset"]
    problems = []
    for domain, key in (("photo", "photos"), ("sketch", "sketches"), ("extended", "extended_images")):
        if domain in tree.files:
            count = sum(len(paths) for paths in tree.files[domain].values())
            if count != expected[key]:
                problems.append(
                    Problem(
                        str(tree.folders[domain]),
                        f"holds {count:,} {key.replace('_', ' ')}; the literature's count is "
                        f"{expected[key]:,} (difference {count - expected[key]:+,})",
                    )
                )
    for name, paths in tree.files.get("photo", {}).items():
        if len(paths) != expected["photos_per_class"]:
            problems.append(
                Problem(
                    str(tree.class_folders["photo"][name]),
                    f"holds {len(paths)} photos, expected {expected['photos_per_class']}",
                )
            )
    return problems


@register_dataset_checker(DATASET)
def check_sketchy(
    root: str | Path | None = None,
    *,
    variant: str = DEFAULT_VARIANT,
    extended: bool = True,
    extended_folder: str = EXTENDED_FOLDER,
    exclude_invalid: bool = False,
    classes: str = "all",
    test_sketches_per_class: int = 50,
    val_photos_per_class: int = 5,
    gzs_seen_gallery_fraction: float = 0.2,
    progress: bool = True,
) -> list[Problem]:
    """Every problem of a Sketchy tree: missing or unknown folders, missing classes, empty classes,
    zero-byte or undecodable images, unpaired sketches and photos, counts differing from the literature's
    (``classes="all"``), and classes too small for the splits' hold-outs."""
    options = SketchyOptions(
        variant,
        extended,
        extended_folder,
        exclude_invalid,
        classes,
        test_sketches_per_class,
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
        tqdm(files, desc="decoding Sketchy images", unit="image", disable=not progress)
    )
    if classes == "all":
        problems += _count_problems(tree)
    if not structural:
        too_small = _hold_out_problems(tree, _records(tree)[1], options, SPLIT_NAMES)
        problems += too_small
        if not too_small:
            try:
                _catalog(tree, options)
            except DatasetError as error:
                problems.append(Problem(str(tree.root), str(error)))
    return problems


@register_split_statistics(DATASET)
def split_statistics(catalog: Catalog, split: str) -> pd.DataFrame:
    """The counts of ``split`` as the ZS-SBIR table and SAKE's file lists give them, beside the expected
    ones (``table.attrs["source"]`` says where those come from).

    ``train_photos`` / ``train_sketches`` count the training and validation parts together (the papers
    do not hold out validation items); ``train_gallery_images`` counts the seen classes' Sketchy Extended
    images ("DB images for training"); ``test_gallery`` the gallery searched at test time, split by
    seen and unseen classes for a generalised zero-shot split; ``unseen_rendered_and_extended`` the
    unseen classes' rendered photos plus Extended images, the gallery SAKE's file list names (the
    Extended images hold copies of the rendered photos, so the suite searches them alone).
    """
    chosen = catalog.split(split)
    records = catalog.records
    domain = records["domain"].to_numpy()
    extended = records["instance"].str.startswith(EXTENDED_PREFIX).to_numpy()
    labels = records["label"].to_numpy()
    seen = np.isin(labels, chosen.seen_classes)
    training = np.zeros(len(records), dtype=bool)
    training[np.concatenate([chosen.train, chosen.val_query, chosen.val_gallery])] = True
    observed = {
        "seen_classes": len(chosen.seen_classes),
        "unseen_classes": len(chosen.unseen_classes),
        "train_photos": int((training & (domain == "photo")).sum()),
        "train_sketches": int((training & (domain == "sketch")).sum()),
        "test_sketches": len(chosen.test_query),
        "train_gallery_images": int((extended & seen).sum()),
        "test_gallery": len(chosen.test_gallery),
    }
    if chosen.setting == "gzs":
        gallery_seen = int(seen[chosen.test_gallery].sum())
        observed["test_gallery_unseen"] = len(chosen.test_gallery) - gallery_seen
        observed["test_gallery_seen"] = gallery_seen
    if chosen.unseen_classes:
        unseen = np.isin(labels, chosen.unseen_classes)
        observed["unseen_rendered_and_extended"] = int((unseen & (domain == "photo")).sum())
    table = statistics_table(observed, expected_counts(DATASET)["splits"].get(split, {}))
    table.attrs["source"] = expected_source(DATASET, split)
    return table
