"""The ``synthetic`` dataset: generation into an on-disk cache, its records and its three splits.

Built as Sketchy and Sketchy Extended are: per class, ``photos_per_class`` photos each with
``sketches_per_photo`` sketches of the same instance, plus ``extended_per_class`` unpaired photos (the
extended pool, Sketchy Extended's role), which are only ever gallery items: never trained on, never in
the stand-in pre-training. Splits (``test_gallery`` sizes for the default 36 classes, 6 unseen):

- ``traditional``: every class seen; per class a quarter of the paired photos held out, their sketches
  query the held-out photos plus every class's extended photos (36 × 216 = 7,776; relevant 216).
- ``zeroshot``: the unseen classes' sketches query all their photos plus their extended photos
  (6 × 264 = 1,584); the seen classes train (1/8 of each held out for validation).
- ``gzs`` (generalised zero-shot): the same queries and training set, against a gallery of every class:
  the zero-shot gallery plus the seen classes' extended photos (1,584 + 30 × 200 = 7,584).

The unseen classes carry part types no seen class has (:mod:`.shapes`). ``train_on_unseen=True``
(``benchmarks/seen_unseen_gap.py`` only) adds, per unseen class, as many fresh paired instances as a seen
class trains on to the training part of every split, which then has no unseen class: the same test
queries and gallery, trained with the unseen classes.

Layout: ``<cache_dir>/synthetic/<fingerprint>/{photo,sketch,extended}/<class>/<instance>[-<n>].png`` plus
``manifest.json`` (every file with its size). A build writes into a temporary folder, writes the
manifest last and renames the folder into place, all under an exclusive file lock (:mod:`sbir_bench.files`),
so concurrent builders (DDP ranks) wait for one another and a half-written cache is never used: a cache
without a manifest, or whose files differ from it, is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from sbir_bench.data.records import Catalog, Split
from sbir_bench.data.synthetic.render import Pose, render_photo, render_sketch
from sbir_bench.data.synthetic.shapes import ShapeClass, build_parts, design_classes, sample_instance
from sbir_bench.files import building_folder, file_lock, remove_interrupted_writes
from sbir_bench.registry import register_dataset

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2  # bump whenever generated images or splits change
TEST_FRACTION = 1 / 4  # traditional split: photos per class held out for testing
VAL_FRACTION = 1 / 8  # photos per (seen) class held out for validation
MANIFEST_NAME = "manifest.json"
_SPLIT_STREAM = 7919  # RNG stream of the splits, apart from the per-instance streams
PAIRED, EXTENDED, ORACLE = 0, 1, 2  # kinds of generated instance (each its own RNG streams)


@dataclass(frozen=True)
class SyntheticConfig:
    """Generator parameters; together with :data:`GENERATOR_VERSION` they determine every byte."""

    num_classes: int = 36
    photos_per_class: int = 64
    sketches_per_photo: int = 2
    image_size: int = 64
    num_unseen: int = 6
    seed: int = 0
    extended_per_class: int = 200
    train_on_unseen: bool = False

    def __post_init__(self) -> None:
        if self.extended_per_class < 0:
            raise ValueError(f"extended_per_class must be >= 0, got {self.extended_per_class}")
        if self.photos_per_class < 3:
            raise ValueError(
                f"photos_per_class must be >= 3 (train, val and test), got {self.photos_per_class}"
            )
        if self.sketches_per_photo < 1:
            raise ValueError(f"sketches_per_photo must be >= 1, got {self.sketches_per_photo}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        if not 1 <= self.num_unseen < self.num_classes:
            raise ValueError(
                f"num_unseen must be in 1..num_classes-1, got {self.num_unseen} of {self.num_classes}"
            )
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    @property
    def fingerprint(self) -> str:
        payload = json.dumps({"generator_version": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Instance:
    kind: int  # PAIRED, EXTENDED or ORACLE
    label: int
    index: int  # index within its class and kind
    instance_id: str
    photo: str  # path relative to the cache folder
    sketches: tuple[str, ...]  # none for an extended photo
    attributes: np.ndarray


def _rng(config: SyntheticConfig, item: _Instance, stream: int) -> np.random.Generator:
    """Independent stream per (instance, purpose): 0 shape and pose, 1 photo, 2+s sketch s."""
    return np.random.default_rng([config.seed, item.kind, item.label, item.index, stream])


def _oracle_per_class(config: SyntheticConfig) -> int:
    """Paired instances per unseen class with ``train_on_unseen``: as many as a seen class trains on."""
    return config.photos_per_class - _holdout(config.photos_per_class, VAL_FRACTION)


def _plan(config: SyntheticConfig, classes: list[ShapeClass]) -> list[_Instance]:
    """Every instance to draw: the paired ones of every class, then (``train_on_unseen``) the unseen
    classes' extra paired ones, then the extended photos."""
    unseen = set(_unseen_labels(config))
    counts = {
        PAIRED: lambda label: config.photos_per_class,
        ORACLE: lambda label: _oracle_per_class(config) if config.train_on_unseen and label in unseen else 0,
        EXTENDED: lambda label: config.extended_per_class,
    }
    prefixes = {PAIRED: ("", "photo"), ORACLE: ("o", "photo"), EXTENDED: ("x", "extended")}
    width = max(3, len(str(max(config.photos_per_class, config.extended_per_class) - 1)))
    plan = []
    for kind in (PAIRED, ORACLE, EXTENDED):
        prefix, folder = prefixes[kind]
        for label, shape_class in enumerate(classes):
            for index in range(counts[kind](label)):
                instance_id = f"{shape_class.name}_{prefix}{index:0{width}d}"
                sketches = (
                    ()
                    if kind == EXTENDED
                    else tuple(
                        f"sketch/{shape_class.name}/{instance_id}-{s + 1}.png"
                        for s in range(config.sketches_per_photo)
                    )
                )
                item = _Instance(
                    kind,
                    label,
                    index,
                    instance_id,
                    f"{folder}/{shape_class.name}/{instance_id}.png",
                    sketches,
                    np.zeros(0, np.float32),
                )
                shape = sample_instance(shape_class, _rng(config, item, 0))
                plan.append(replace(item, attributes=shape.attributes()))
    return plan


def _render(
    config: SyntheticConfig, shape_class: ShapeClass, item: _Instance, folder: Path
) -> dict[str, int]:
    """Draw and save one photo and its sketches; return their file sizes."""
    shape_rng = _rng(config, item, 0)
    shape = sample_instance(shape_class, shape_rng)
    pose = Pose.sample(shape_rng)
    parts = build_parts(shape)
    photo, _ = render_photo(parts, pose, config.image_size, _rng(config, item, 1))
    images = {item.photo: Image.fromarray(photo, mode="RGB")}
    for s, path in enumerate(item.sketches):
        sketch = render_sketch(parts, pose, config.image_size, _rng(config, item, 2 + s))
        images[path] = Image.fromarray(sketch, mode="L")
    sizes = {}
    for path, image in images.items():
        image.save(folder / path, format="PNG")
        sizes[path] = (folder / path).stat().st_size
    return sizes


def _cache_problem(root: Path, fingerprint: str, expected: list[str]) -> str | None:
    """Why the cache at ``root`` cannot be used, or None when it is complete, holds ``fingerprint``'s data
    and matches its manifest (every generated dataset's cache: synthetic, synthetic_fg, synthetic_3d)."""
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        return f"{manifest_path} is missing (no cache, or an interrupted build)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, int] = manifest["files"]
        found = manifest["fingerprint"]
    except (ValueError, KeyError, TypeError) as error:
        return f"{manifest_path} is unreadable: {error}"
    if found != fingerprint:
        return f"{manifest_path} is for fingerprint {found}, expected {fingerprint}"
    if sorted(files) != sorted(expected):
        return f"{manifest_path} lists {len(files)} files, expected {len(expected)}"
    for path, size in files.items():
        try:
            actual = (root / path).stat().st_size
        except FileNotFoundError:
            return f"{root / path} is missing"
        if actual != size:
            return f"{root / path} has {actual} bytes, the manifest says {size}"
    return None


def _generate(
    root: Path, config: SyntheticConfig, classes: list[ShapeClass], plan: list[_Instance], progress: bool
) -> None:
    """Render everything into a temporary folder, write the manifest last, then move it into place."""
    remove_interrupted_writes(root.parent, root.name)  # left by a builder that died (we hold the lock)
    with building_folder(root) as building:
        for domain in ("photo", "sketch", "extended"):
            for shape_class in classes:
                (building / domain / shape_class.name).mkdir(parents=True, exist_ok=True)
        sizes: dict[str, int] = {}
        for item in tqdm(plan, desc=f"synthetic data {root.name}", unit="photo", disable=not progress):
            sizes.update(_render(config, classes[item.label], item, building))
        manifest = {
            "generator_version": GENERATOR_VERSION,
            "fingerprint": config.fingerprint,
            "params": asdict(config),
            "counts": {
                "photo": sum(item.kind != EXTENDED for item in plan),
                "extended": sum(item.kind == EXTENDED for item in plan),
                "sketch": sum(len(item.sketches) for item in plan),
            },
            "files": sizes,
        }
        (building / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _holdout(count: int, fraction: float) -> int:
    """At least one, rounding half up."""
    return max(1, int(count * fraction + 0.5))


def _unseen_labels(config: SyntheticConfig) -> list[int]:
    """The unseen classes: the last ``num_unseen`` of the design, those carrying novel part types."""
    return list(range(config.num_classes - config.num_unseen, config.num_classes))


def _index(values: list[int]) -> np.ndarray:
    return np.sort(np.asarray(values, dtype=np.int64))


def _splits(config: SyntheticConfig, classes: list[ShapeClass], plan: list[_Instance]) -> dict[str, Split]:
    """Record indices: the photo of plan item i is record i; sketches follow all photos, in plan order."""
    sketch_records: list[list[int]] = []
    next_record = len(plan)
    for item in plan:
        sketch_records.append(list(range(next_record, next_record + len(item.sketches))))
        next_record += len(item.sketches)

    def photos_and_sketches(items: list[int]) -> tuple[list[int], list[int]]:
        return items, [r for i in items for r in sketch_records[i]]

    def of_kind(kind: int, label: int) -> list[int]:
        return [i for i, item in enumerate(plan) if item.kind == kind and item.label == label]

    all_classes = list(range(len(classes)))
    paired = {label: of_kind(PAIRED, label) for label in all_classes}
    extended = {label: of_kind(EXTENDED, label) for label in all_classes}
    oracle = [i for label in all_classes for i in of_kind(ORACLE, label)]
    oracle_photos, oracle_sketches = photos_and_sketches(oracle)

    rng = np.random.default_rng([config.seed, _SPLIT_STREAM, 0])
    n_test = _holdout(config.photos_per_class, TEST_FRACTION)
    n_val = _holdout(config.photos_per_class - n_test, VAL_FRACTION)
    test, val, train = [], [], []
    for label in all_classes:
        order = [paired[label][j] for j in rng.permutation(len(paired[label]))]
        test += order[:n_test]
        val += order[n_test : n_test + n_val]
        train += order[n_test + n_val :]
    test_photos, test_sketches = photos_and_sketches(test)
    val_photos, val_sketches = photos_and_sketches(val)
    train_photos, train_sketches = photos_and_sketches(train)
    traditional = Split(
        name="traditional",
        setting="traditional",
        seen_classes=tuple(all_classes),
        unseen_classes=(),
        train=_index(train_photos + train_sketches + oracle_photos + oracle_sketches),
        val_query=_index(val_sketches),
        val_gallery=_index(val_photos),
        test_query=_index(test_sketches),
        test_gallery=_index(test_photos + [i for label in all_classes for i in extended[label]]),
    )

    unseen = _unseen_labels(config)
    seen = [label for label in all_classes if label not in unseen]
    rng = np.random.default_rng([config.seed, _SPLIT_STREAM, 2])
    n_val = _holdout(config.photos_per_class, VAL_FRACTION)
    val, train = [], []
    for label in seen:
        order = [paired[label][j] for j in rng.permutation(len(paired[label]))]
        val += order[:n_val]
        train += order[n_val:]
    test_photos, test_sketches = photos_and_sketches([i for label in unseen for i in paired[label]])
    val_photos, val_sketches = photos_and_sketches(val)
    train_photos, train_sketches = photos_and_sketches(train)
    unseen_gallery = test_photos + [i for label in unseen for i in extended[label]]
    # train_on_unseen: the unseen classes train too (on their own extra instances), so none is unseen
    trained = (tuple(all_classes), ()) if config.train_on_unseen else (tuple(seen), tuple(unseen))
    common = dict(
        seen_classes=trained[0],
        unseen_classes=trained[1],
        train=_index(train_photos + train_sketches + oracle_photos + oracle_sketches),
        val_query=_index(val_sketches),
        val_gallery=_index(val_photos),
        test_query=_index(test_sketches),
    )
    zeroshot = Split(name="zeroshot", setting="zeroshot", test_gallery=_index(unseen_gallery), **common)
    every_class = unseen_gallery + [i for label in seen for i in extended[label]]
    gzs = Split(name="gzs", setting="gzs", test_gallery=_index(every_class), **common)
    return {"traditional": traditional, "zeroshot": zeroshot, "gzs": gzs}


def _catalog(
    config: SyntheticConfig, classes: list[ShapeClass], plan: list[_Instance], root: Path
) -> Catalog:
    photos = [("photo", item.label, item.instance_id, str(root / item.photo)) for item in plan]
    sketches = [
        ("sketch", item.label, item.instance_id, str(root / path)) for item in plan for path in item.sketches
    ]
    records = pd.DataFrame(photos + sketches, columns=["domain", "label", "instance", "path"])
    records["views"] = pd.Series([()] * len(records), dtype=object)
    semantics = np.stack([c.attributes() for c in classes])
    semantics /= np.linalg.norm(semantics, axis=1, keepdims=True)
    catalog = Catalog(
        name="synthetic",
        records=records,
        class_names=[c.name for c in classes],
        splits=_splits(config, classes, plan),
        class_semantics=semantics.astype(np.float32),
        semantics_kind="attributes",
        instance_attributes={item.instance_id: item.attributes for item in plan},
        fingerprint=config.fingerprint,
    )
    catalog.validate()
    return catalog


def synthetic_root(cache_dir: str | Path, config: SyntheticConfig) -> Path:
    """The folder holding the images of ``config``."""
    return Path(cache_dir) / "synthetic" / config.fingerprint


@register_dataset("synthetic")
def build_synthetic(
    cache_dir: str | Path,
    *,
    num_classes: int = 36,
    photos_per_class: int = 64,
    sketches_per_photo: int = 2,
    image_size: int = 64,
    num_unseen: int = 6,
    seed: int = 0,
    extended_per_class: int = 200,
    train_on_unseen: bool = False,
    progress: bool = True,
) -> Catalog:
    """Generate (or reuse from ``cache_dir``) the procedural photo/sketch dataset and return its catalog.

    Classes are shape-attribute combinations (:mod:`.shapes`), the last ``num_unseen`` of them with
    novel part types; ``class_semantics`` are their attribute vectors, L2-normalised per class;
    ``instance_attributes`` the raw jittered vectors. Splits ``traditional``, ``zeroshot`` and ``gzs``
    as in the module docstring; ``train_on_unseen`` is for ``benchmarks/seen_unseen_gap.py`` only.
    """
    config = SyntheticConfig(
        num_classes,
        photos_per_class,
        sketches_per_photo,
        image_size,
        num_unseen,
        seed,
        extended_per_class,
        train_on_unseen,
    )
    classes = design_classes(num_classes, num_unseen)
    plan = _plan(config, classes)
    root = synthetic_root(cache_dir, config)
    root.parent.mkdir(parents=True, exist_ok=True)
    expected = [item.photo for item in plan] + [path for item in plan for path in item.sketches]
    with file_lock(root.parent / f"{config.fingerprint}.lock"):
        problem = _cache_problem(root, config.fingerprint, expected)
        if problem is not None:
            if root.exists():
                log.warning("rebuilding the synthetic cache: %s", problem)
            _generate(root, config, classes, plan, progress)
    return _catalog(config, classes, plan, root)
