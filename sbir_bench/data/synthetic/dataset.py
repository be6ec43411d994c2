"""The ``synthetic`` dataset: generation into an on-disk cache, its records and its two splits.

Layout: ``<cache_dir>/synthetic/<fingerprint>/{photo,sketch}/<class>/<instance>[-<n>].png`` plus
``manifest.json`` (every file with its size). A build writes into a temporary folder, writes the
manifest last and renames the folder into place, all under an exclusive ``fcntl.flock`` lock, so
concurrent builders (DDP ranks) wait for one another and a half-written cache is never used: a cache
without a manifest, or whose files differ from it, is rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from sbir_bench.data.records import Catalog, Split
from sbir_bench.data.synthetic.render import Pose, render_photo, render_sketch
from sbir_bench.data.synthetic.shapes import ShapeClass, build_parts, design_classes, sample_instance
from sbir_bench.registry import register_dataset

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump whenever generated images or splits change
TEST_FRACTION = 1 / 4  # traditional split: photos per class held out for testing
VAL_FRACTION = 1 / 8  # photos per (seen) class held out for validation
MANIFEST_NAME = "manifest.json"
_SPLIT_STREAM = 7919  # RNG stream of the splits, apart from the per-instance streams
_UNSEEN_DRAWS = 1000  # draws tried to find unseen classes whose attribute values all occur in seen ones


@dataclass(frozen=True)
class SyntheticConfig:
    """Generator parameters; together with :data:`GENERATOR_VERSION` they determine every byte."""

    num_classes: int = 36
    photos_per_class: int = 64
    sketches_per_photo: int = 2
    image_size: int = 64
    num_unseen: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
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
    label: int
    index: int  # photo index within its class
    instance_id: str
    photo: str  # path relative to the cache folder
    sketches: tuple[str, ...]
    attributes: np.ndarray


def _rng(config: SyntheticConfig, label: int, index: int, stream: int) -> np.random.Generator:
    """Independent stream per (instance, purpose): 0 shape and pose, 1 photo, 2+s sketch s."""
    return np.random.default_rng([config.seed, label, index, stream])


def _plan(config: SyntheticConfig, classes: list[ShapeClass]) -> list[_Instance]:
    width = max(3, len(str(config.photos_per_class - 1)))
    plan = []
    for label, shape_class in enumerate(classes):
        for index in range(config.photos_per_class):
            instance_id = f"{shape_class.name}_{index:0{width}d}"
            shape = sample_instance(shape_class, _rng(config, label, index, 0))
            plan.append(
                _Instance(
                    label=label,
                    index=index,
                    instance_id=instance_id,
                    photo=f"photo/{shape_class.name}/{instance_id}.png",
                    sketches=tuple(
                        f"sketch/{shape_class.name}/{instance_id}-{s + 1}.png"
                        for s in range(config.sketches_per_photo)
                    ),
                    attributes=shape.attributes(),
                )
            )
    return plan


def _render(
    config: SyntheticConfig, shape_class: ShapeClass, item: _Instance, folder: Path
) -> dict[str, int]:
    """Draw and save one photo and its sketches; return their file sizes."""
    shape_rng = _rng(config, item.label, item.index, 0)
    shape = sample_instance(shape_class, shape_rng)
    pose = Pose.sample(shape_rng)
    parts = build_parts(shape)
    photo, _ = render_photo(parts, pose, config.image_size, _rng(config, item.label, item.index, 1))
    images = {item.photo: Image.fromarray(photo, mode="RGB")}
    for s, path in enumerate(item.sketches):
        sketch = render_sketch(parts, pose, config.image_size, _rng(config, item.label, item.index, 2 + s))
        images[path] = Image.fromarray(sketch, mode="L")
    sizes = {}
    for path, image in images.items():
        image.save(folder / path, format="PNG")
        sizes[path] = (folder / path).stat().st_size
    return sizes


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cache_problem(root: Path, config: SyntheticConfig, expected: list[str]) -> str | None:
    """Why the cache at ``root`` cannot be used, or None when it is complete and matches its manifest."""
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        return f"{manifest_path} is missing (no cache, or an interrupted build)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, int] = manifest["files"]
        fingerprint = manifest["fingerprint"]
    except (ValueError, KeyError, TypeError) as error:
        return f"{manifest_path} is unreadable: {error}"
    if fingerprint != config.fingerprint:
        return f"{manifest_path} is for fingerprint {fingerprint}, expected {config.fingerprint}"
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
    parent = root.parent
    for stale in parent.glob(f".{root.name}.*"):  # left by a builder that died (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    building = parent / f".{root.name}.building-{os.getpid()}"
    for domain in ("photo", "sketch"):
        for shape_class in classes:
            (building / domain / shape_class.name).mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    for item in tqdm(plan, desc=f"synthetic data {root.name}", unit="photo", disable=not progress):
        sizes.update(_render(config, classes[item.label], item, building))
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "fingerprint": config.fingerprint,
        "params": asdict(config),
        "counts": {"photo": len(plan), "sketch": len(plan) * config.sketches_per_photo},
        "files": sizes,
    }
    (building / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    if root.exists():
        discarded = parent / f".{root.name}.discarded-{os.getpid()}"
        os.rename(root, discarded)
        shutil.rmtree(discarded)
    os.rename(building, root)


def _holdout(count: int, fraction: float) -> int:
    """At least one, rounding half up."""
    return max(1, int(count * fraction + 0.5))


def _choose_unseen(config: SyntheticConfig, classes: list[ShapeClass]) -> list[int]:
    """Draw ``num_unseen`` classes (fixed by the seed), preferring draws where every attribute value of
    an unseen class also occurs in a seen class, so unseen classes are describable by seen attributes."""
    rng = np.random.default_rng([config.seed, _SPLIT_STREAM, 1])
    codes = [set(c.categorical_codes()) for c in classes]
    best, best_missing = None, None
    for _ in range(_UNSEEN_DRAWS):
        unseen = sorted(rng.choice(len(classes), size=config.num_unseen, replace=False).tolist())
        seen_codes = set().union(*(codes[i] for i in range(len(classes)) if i not in unseen))
        missing = len(set().union(*(codes[i] for i in unseen)) - seen_codes)
        if best_missing is None or missing < best_missing:
            best, best_missing = unseen, missing
        if missing == 0:
            break
    assert best is not None
    return best


def _index(values: list[int]) -> np.ndarray:
    return np.sort(np.asarray(values, dtype=np.int64))


def _splits(config: SyntheticConfig, classes: list[ShapeClass], plan: list[_Instance]) -> dict[str, Split]:
    """Record indices: photo of plan item i is record i; its sketch s is record P + i·S + s."""
    num_photos, per_photo = len(plan), config.sketches_per_photo

    def with_sketches(items: list[int]) -> tuple[list[int], list[int]]:
        return items, [num_photos + i * per_photo + s for i in items for s in range(per_photo)]

    by_class = [[i for i, item in enumerate(plan) if item.label == label] for label in range(len(classes))]

    rng = np.random.default_rng([config.seed, _SPLIT_STREAM, 0])
    n_test = _holdout(config.photos_per_class, TEST_FRACTION)
    n_val = _holdout(config.photos_per_class - n_test, VAL_FRACTION)
    test, val, train = [], [], []
    for items in by_class:
        order = [items[j] for j in rng.permutation(len(items))]
        test += order[:n_test]
        val += order[n_test : n_test + n_val]
        train += order[n_test + n_val :]
    parts = {name: with_sketches(items) for name, items in (("test", test), ("val", val), ("train", train))}
    all_classes = tuple(range(len(classes)))
    traditional = Split(
        name="traditional",
        setting="traditional",
        seen_classes=all_classes,
        unseen_classes=(),
        train=_index(parts["train"][0] + parts["train"][1]),
        val_query=_index(parts["val"][1]),
        val_gallery=_index(parts["val"][0]),
        test_query=_index(parts["test"][1]),
        test_gallery=_index(parts["test"][0]),
    )

    unseen = _choose_unseen(config, classes)
    seen = [label for label in all_classes if label not in unseen]
    rng = np.random.default_rng([config.seed, _SPLIT_STREAM, 2])
    n_val = _holdout(config.photos_per_class, VAL_FRACTION)
    val, train = [], []
    for label in seen:
        order = [by_class[label][j] for j in rng.permutation(len(by_class[label]))]
        val += order[:n_val]
        train += order[n_val:]
    test_photos, test_sketches = with_sketches([i for label in unseen for i in by_class[label]])
    val_photos, val_sketches = with_sketches(val)
    train_photos, train_sketches = with_sketches(train)
    zeroshot = Split(
        name="zeroshot",
        setting="zeroshot",
        seen_classes=tuple(seen),
        unseen_classes=tuple(unseen),
        train=_index(train_photos + train_sketches),
        val_query=_index(val_sketches),
        val_gallery=_index(val_photos),
        test_query=_index(test_sketches),
        test_gallery=_index(test_photos),
    )
    return {"traditional": traditional, "zeroshot": zeroshot}


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
    progress: bool = True,
) -> Catalog:
    """Generate (or reuse from ``cache_dir``) the procedural photo/sketch dataset and return its catalog.

    Classes are shape-attribute combinations (:mod:`.shapes`); ``class_semantics`` are their attribute
    vectors, L2-normalised per class; ``instance_attributes`` the raw jittered vectors. Splits:
    ``traditional`` (all classes; per class 1/4 of the photos and their sketches for test, 1/8 of the rest
    for validation) and ``zeroshot`` (``num_unseen`` classes drawn by the seed for test; 1/8 of each seen
    class for validation).
    """
    config = SyntheticConfig(num_classes, photos_per_class, sketches_per_photo, image_size, num_unseen, seed)
    classes = design_classes(num_classes)
    plan = _plan(config, classes)
    root = synthetic_root(cache_dir, config)
    root.parent.mkdir(parents=True, exist_ok=True)
    expected = [item.photo for item in plan] + [path for item in plan for path in item.sketches]
    with _exclusive_lock(root.parent / f"{config.fingerprint}.lock"):
        problem = _cache_problem(root, config, expected)
        if problem is not None:
            if root.exists():
                log.warning("rebuilding the synthetic cache: %s", problem)
            _generate(root, config, classes, plan, progress)
    return _catalog(config, classes, plan, root)
