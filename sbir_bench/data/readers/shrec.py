"""SHREC'13, SHREC'14 and PART-SHREC14: sketch-based 3D shape retrieval (datasets ``shrec13``,
``shrec14``, ``part_shrec14``; Li et al., SHREC'13 and SHREC'14 tracks on sketch-based 3D shape retrieval;
layouts as the contest archives unpack, README "Real datasets").

Layouts (each folder may also sit inside a wrapping folder of its own name, as the archives unpack, and
the whole tree inside one more wrapping folder)::

    <root>/SHREC13_SBR_TRAINING_SKETCHES/<class>/train/<id>.png
    <root>/SHREC13_SBR_TESTING_SKETCHES/<class>/test/<id>.png
    <root>/SHREC13_SBR_TARGET_MODELS/models/m<ID>.off
    <root>/SHREC2013_Sketch_Evaluation/SHREC13_SBR_Model.cla   (+ SHREC13_SBR_Sketch_{Train,Test}.cla)

    <root>/SHREC14LSSTB_SKETCHES/<class>/{train,test}/<id>.png
    <root>/SHREC14LSSTB_TARGET_MODELS/<prefix><ID>.off
    <root>/SHREC14_Sketch_Evaluation_CVIU/SHREC14_SBR_Model.cla

Lenient choices (names vary between releases, UNVERIFIED): component folders are found by the
case-insensitive patterns of :data:`SHREC13` / :data:`SHREC14` (e.g. ``SHREC14*_Sketch_Evaluation*``
accepts the CVIU release and the original one); model files are every ``*.off`` (any case) under the
models folder, at any depth, named ``<letters><digits>.off`` (``m``, ``M`` or no prefix), matched to
``.cla`` ids by number (``M000012.off`` is id 12); class folders match ``.cla`` class names through
:func:`~.common.match_class_folders`. Sketch ``.cla`` files (``*Sketch*Train*.cla``,
``*Sketch*Test*.cla``) are optional; when present every id they list must be a sketch file of that class
and split, and the other way round.

Bad input (:mod:`sbir_bench.data.mesh`): a malformed ``.off`` (non-finite coordinates included), one with
more than ``MAX_FACES`` triangles, no face or only degenerate ones, ``.cla`` counts that disagree with their
lists, a class of the model ``.cla`` without models (its sketches would have no relevant target) or
without sketches are errors naming the file; degenerate triangles and non-manifold edges of a mesh that
still renders are warnings (logged when its views are rendered). ``check_*`` (``sbir-bench data check``)
lists every one, warnings marked as such.

Classes and labels: the model ``.cla`` (``*Model*.cla``) defines the classes, in its order. Records:
one per sketch (domain ``sketch``, instance ``<split>/<class>/<file stem>``), then one per model
(domain ``shape``, path ``""``, instance the file stem, ``views`` its rendered view PNGs from
:mod:`sbir_bench.data.render`, made while the catalog is built and cached under ``cache_dir``); each
model's ``.off`` path is in ``Catalog.meshes`` (record index -> path) for :mod:`sbir_bench.data.voxels`.
Sketches have no paired model, so the catalog's ``pairing`` is ``"class"``: pair- and triplet-trained
methods meet each training sketch with a training model of its class drawn afresh every epoch (Wang et
al.'s Siamese pairs, DCML's and Dai et al.'s same-class positives).

Split ``official`` (setting ``traditional``, every class seen):

- ``shrec13`` / ``shrec14``: ``test_query`` = the test sketches, ``test_gallery`` = every target model.
  ``train`` = the training sketches **and every target model** with its class: the target collection
  is the labelled retrieval set of the contest, and the learned sketch-to-3D methods (Wang et al.
  CVPR'15, Xie et al. CVPR'17, Dai et al. AAAI'17, Thong et al. CVIU'20) train on it; PART-SHREC14
  exists because this shares the gallery between training and test. ``val_query`` = a deterministic
  hold-out of 10% of each class's training sketches (at least one when a class has two or more; drawn
  with ``np.random.default_rng(0)``), removed from ``train``; ``val_gallery`` = every model.
- ``part_shrec14`` (Qi et al. BMVC'18, as built by Thong et al.'s ``shrec-sketches-helpers/meta.py``):
  the SHREC'14 classes with more than 50 models; in each, ``floor(0.2 n)`` models go to test, drawn by
  ``np.random.choice(ids, size, replace=False)`` after one ``np.random.seed(1234)``, classes in sorted
  name order (``np.unique``). Their ``ids`` followed ``os.walk``'s file-system order, which cannot be
  reproduced; we use the models' file names in sorted order (UNVERIFIED reading). Sketches keep their
  official split. ``train`` = training sketches (minus the validation hold-out) + training models;
  ``val_gallery`` = the training models; ``test_gallery`` = the test models.

Rendering options (``views``, ``num_views``, ``elevation``, ``image_kind``, ``image_size``,
``margin``, ``up_axis``) form a :class:`~sbir_bench.data.render.ViewRecipe` and enter the catalog
fingerprint; ``render_workers`` > 1 renders missing views in that many processes.
"""

from __future__ import annotations

import fnmatch
import inspect
import logging
import multiprocessing
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sbir_bench.data.mesh import ClaClass, check_drawable, mesh_defects, parse_model_id, read_cla, read_off
from sbir_bench.data.readers.common import (
    DATA_ROOT_ENV,
    Problem,
    image_problems,
    list_images,
    match_class_folders,
    raise_for_problems,
    tree_fingerprint,
)
from sbir_bench.data.records import Catalog, DatasetError, Split
from sbir_bench.data.render import (
    RENDERER_VERSION,
    ViewRecipe,
    cached_views,
    cached_views_ready,
    normalise,
    view_names,
    views_folder,
)
from sbir_bench.registry import register_dataset, register_dataset_checker

log = logging.getLogger(__name__)

VAL_FRACTION = 0.1  # training sketches per class held out for validation
PART_MIN_MODELS = 50  # PART-SHREC14 keeps classes with more than this many models
PART_TEST_FRACTION = 0.2
PART_SEED = 1234
_VAL_SEED = 0
_MODEL_FILE = re.compile(r"^[A-Za-z]*(\d+)$")


@dataclass(frozen=True)
class ShrecLayout:
    """Where the parts of one SHREC release live, as case-insensitive folder-name patterns."""

    name: str
    folder: str  # under $SBIR_DATA
    sketch_folders: tuple[tuple[str, tuple[str, ...]], ...]  # (pattern, the split folders in its classes)
    models_folder: str
    evaluation_folder: str
    text: str  # the expected layout, shown in errors


SHREC13 = ShrecLayout(
    name="shrec13",
    folder="SHREC13",
    sketch_folders=(("SHREC13*_TRAINING_SKETCHES", ("train",)), ("SHREC13*_TESTING_SKETCHES", ("test",))),
    models_folder="SHREC13*_TARGET_MODELS",
    evaluation_folder="SHREC*13*_Sketch_Evaluation*",
    text=(
        "  <root>/SHREC13_SBR_TRAINING_SKETCHES/<class>/train/<id>.png\n"
        "  <root>/SHREC13_SBR_TESTING_SKETCHES/<class>/test/<id>.png\n"
        "  <root>/SHREC13_SBR_TARGET_MODELS/models/m<ID>.off\n"
        "  <root>/SHREC2013_Sketch_Evaluation/SHREC13_SBR_Model.cla"
    ),
)
SHREC14 = ShrecLayout(
    name="shrec14",
    folder="SHREC14",
    sketch_folders=(("SHREC14*_SKETCHES", ("train", "test")),),
    models_folder="SHREC14*_TARGET_MODELS",
    evaluation_folder="SHREC*14*_Evaluation*",
    text=(
        "  <root>/SHREC14LSSTB_SKETCHES/<class>/{train,test}/<id>.png\n"
        "  <root>/SHREC14LSSTB_TARGET_MODELS/<prefix><ID>.off\n"
        "  <root>/SHREC14_Sketch_Evaluation_CVIU/SHREC14_SBR_Model.cla"
    ),
)
SPLIT_FOLDERS = ("train", "test")


@dataclass
class _Tree:
    """What a scan of a SHREC tree found, and every problem with it."""

    root: Path
    classes: list[ClaClass] = field(default_factory=list)
    sketches: dict[str, list[tuple[int, Path]]] = field(default_factory=dict)  # split -> (label, file)
    models: list[tuple[int, Path]] = field(default_factory=list)  # (label, file), in .cla order
    cla_files: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


# --- finding the folders ------------------------------------------------------------------------------
def _children_matching(folder: Path, pattern: str) -> list[Path]:
    pattern = pattern.lower()
    return sorted(
        child
        for child in folder.iterdir()
        if child.is_dir() and not child.name.startswith(".") and fnmatch.fnmatch(child.name.lower(), pattern)
    )


def _unwrapped(folder: Path) -> Path:
    """``folder``, or the same-named folder inside it (``X/X/...``, as some archives unpack)."""
    while True:
        inner = [
            child
            for child in folder.iterdir()
            if child.is_dir() and child.name.lower() == folder.name.lower()
        ]
        if len(inner) != 1:
            return folder
        folder = inner[0]


def locate_root(root: str | os.PathLike[str] | None, layout: ShrecLayout) -> Path:
    """The folder holding the release: ``root`` (or ``$SBIR_DATA/<folder>``) or its one wrapping child.

    It is recognised by a child folder matching ``layout.models_folder``.
    """
    expected = f"Expected layout:\n{layout.text}"
    if root is None or str(root) == "":
        base = os.environ.get(DATA_ROOT_ENV)
        if not base:
            raise DatasetError(
                f"no data root given for {layout.name}: pass root=... (data.dataset_kwargs.root) or set "
                f"${DATA_ROOT_ENV} so that ${DATA_ROOT_ENV}/{layout.folder} exists. {expected}"
            )
        root = Path(base) / layout.folder
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{layout.name} root {path} is not a folder. {expected}")
    if _children_matching(path, layout.models_folder):
        return path
    wrapped = [
        child for child in _children_matching(path, "*") if _children_matching(child, layout.models_folder)
    ]
    if len(wrapped) == 1:
        return wrapped[0]
    raise DatasetError(
        f"{path} does not hold {layout.name}: no folder matching {layout.models_folder!r} in it. {expected}"
    )


def _component(root: Path, pattern: str, problems: list[Problem]) -> Path | None:
    matches = _children_matching(root, pattern)
    if len(matches) == 1:
        return _unwrapped(matches[0])
    found = ", ".join(m.name for m in matches) if matches else "none"
    problems.append(Problem(str(root), f"expected exactly one folder matching {pattern!r}, found {found}"))
    return None


def _cla_file(folder: Path, pattern: str, problems: list[Problem], *, required: bool) -> Path | None:
    matches = sorted(p for p in folder.iterdir() if p.is_file() and fnmatch.fnmatch(p.name.lower(), pattern))
    if len(matches) == 1:
        return matches[0]
    if matches or required:
        found = ", ".join(m.name for m in matches) if matches else "none"
        problems.append(Problem(str(folder), f"expected one class file matching {pattern!r}, found {found}"))
    return None


def _read_cla(path: Path, problems: list[Problem]) -> list[ClaClass] | None:
    try:
        return read_cla(path)
    except DatasetError as error:
        problems.append(Problem(str(path), str(error)))
        return None


# --- scanning ----------------------------------------------------------------------------------------
def _scan_models(folder: Path, classes: list[ClaClass], tree: _Tree) -> None:
    """Match each ``.off`` under ``folder`` to the ``.cla`` ids; one unmatched on either side is a problem."""
    files: dict[int, Path] = {}
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".off" and p.is_file()):
        match = _MODEL_FILE.match(path.stem)
        if match is None:
            tree.problems.append(Problem(str(path), "expected a model file named <prefix><number>.off"))
        elif int(match.group(1)) in files:
            tree.problems.append(
                Problem(
                    str(path), f"expected one file per model id, {files[int(match.group(1))]} has the same id"
                )
            )
        else:
            files[int(match.group(1))] = path
    listed = set()
    for label, cla_class in enumerate(classes):
        if not cla_class.ids:  # its sketches would query a gallery without one relevant model
            tree.problems.append(
                Problem(
                    str(tree.cla_files[0]),
                    f"expected target models of class {cla_class.name!r}, it lists none",
                )
            )
        for model in cla_class.ids:
            listed.add(model)
            path = files.get(model)
            if path is None:
                tree.problems.append(
                    Problem(
                        str(folder),
                        f"expected a model file for id {model} (class {cla_class.name!r} in the .cla)",
                    )
                )
            elif path.stat().st_size == 0:
                tree.problems.append(Problem(str(path), "empty (zero-byte) model file"))
            else:
                tree.models.append((label, path))
    for model, path in sorted(files.items()):
        if model not in listed:
            tree.problems.append(
                Problem(str(path), f"expected model id {model} in the model .cla, it is not listed")
            )


def _scan_sketches(folder: Path, splits: Sequence[str], classes: list[ClaClass], tree: _Tree) -> None:
    names = [c.name for c in classes]
    found, unmatched = match_class_folders(folder, names)
    for extra in unmatched:
        tree.problems.append(
            Problem(str(extra), "expected a class folder named after a class of the model .cla")
        )
    for label, name in enumerate(names):
        class_folder = found.get(name)
        if class_folder is None:
            tree.problems.append(
                Problem(str(folder / name), f"missing class folder (class {name!r} of the .cla)")
            )
            continue
        subfolders = {child.name.lower(): child for child in class_folder.iterdir() if child.is_dir()}
        for split in splits:
            split_folder = subfolders.get(split)
            if split_folder is None:
                tree.problems.append(
                    Problem(str(class_folder / split), f"missing {split} folder of class {name!r}")
                )
                continue
            images = list_images(split_folder)
            if not images:
                tree.problems.append(
                    Problem(str(split_folder), f"expected {split} sketches of class {name!r}, found none")
                )
            for image in images:
                if image.stat().st_size == 0:
                    tree.problems.append(Problem(str(image), "empty (zero-byte) file"))
                else:
                    tree.sketches.setdefault(split, []).append((label, image))


def _compare_sketch_cla(path: Path, split: str, tree: _Tree) -> None:
    """Every id a sketch ``.cla`` lists is a sketch file of that class and split, and the other way round."""
    listed = _read_cla(path, tree.problems)
    if listed is None:
        return
    names = [c.name for c in tree.classes]
    on_disk: dict[str, set[int | None]] = {name: set() for name in names}
    for label, image in tree.sketches.get(split, []):
        on_disk[names[label]].add(parse_model_id(image.stem))
    for cla_class in listed:
        if cla_class.name not in on_disk:
            tree.problems.append(
                Problem(str(path), f"expected classes of the model .cla, found {cla_class.name!r}")
            )
            continue
        missing = sorted(set(cla_class.ids) - on_disk[cla_class.name])
        unlisted = sorted(str(i) for i in on_disk[cla_class.name] - set(cla_class.ids))
        if missing:
            tree.problems.append(
                Problem(
                    str(path),
                    f"lists {len(missing)} {split} sketches of {cla_class.name!r} with no file, "
                    f"e.g. {missing[0]}",
                )
            )
        if unlisted:
            tree.problems.append(
                Problem(
                    str(path),
                    f"does not list {len(unlisted)} {split} sketch files of {cla_class.name!r}, "
                    f"e.g. {unlisted[0]}",
                )
            )


def scan(root: str | os.PathLike[str] | None, layout: ShrecLayout) -> _Tree:
    """Find every part of the tree and collect its structural problems (files are not decoded)."""
    tree = _Tree(root=locate_root(root, layout))
    evaluation = _component(tree.root, layout.evaluation_folder, tree.problems)
    model_cla = (
        None if evaluation is None else _cla_file(evaluation, "*model*.cla", tree.problems, required=True)
    )
    classes = None if model_cla is None else _read_cla(model_cla, tree.problems)
    if classes is None:
        return tree  # without classes nothing else can be checked
    tree.classes, tree.cla_files = classes, [model_cla]
    models = _component(tree.root, layout.models_folder, tree.problems)
    if models is not None:
        _scan_models(models, classes, tree)
    for pattern, splits in layout.sketch_folders:
        sketches = _component(tree.root, pattern, tree.problems)
        if sketches is not None:
            _scan_sketches(sketches, splits, classes, tree)
    assert evaluation is not None
    for split in SPLIT_FOLDERS:
        sketch_cla = _cla_file(evaluation, f"*sketch*{split}*.cla", tree.problems, required=False)
        if sketch_cla is not None:
            tree.cla_files.append(sketch_cla)
            _compare_sketch_cla(sketch_cla, split, tree)
    return tree


def _mesh_problems(paths: Sequence[Path], up_axis: str) -> list[Problem]:
    """Unreadable or undrawable meshes (problems) and :func:`mesh_defects` (warnings), per file."""
    problems = []
    for path in paths:
        try:
            mesh = read_off(path)
            check_drawable(mesh, str(path))
            normalise(mesh, up_axis, str(path))
        except DatasetError as error:
            problems.append(Problem(str(path), str(error)))
            continue
        problems += [Problem(str(path), defect, warning=True) for defect in mesh_defects(mesh)]
    return problems


def _recipe(
    views: str,
    num_views: int,
    elevation: float,
    image_kind: str,
    image_size: int,
    margin: float,
    up_axis: str,
) -> ViewRecipe:
    return ViewRecipe(
        views=views,
        num_views=int(num_views),
        elevation=float(elevation),
        image_kind=image_kind,
        image_size=int(image_size),
        margin=float(margin),
        up_axis=up_axis,
    )


def _check(
    layout: ShrecLayout, root: str | os.PathLike[str] | None, recipe_options: dict[str, Any]
) -> list[Problem]:
    problems = []
    try:
        _recipe(**recipe_options)
    except ValueError as error:
        problems.append(Problem(f"{layout.name} options", str(error)))
    try:
        tree = scan(root, layout)
    except DatasetError as error:
        return [*problems, Problem(str(root or f"${DATA_ROOT_ENV}/{layout.folder}"), str(error))]
    problems += tree.problems
    problems += image_problems(path for files in tree.sketches.values() for _, path in files)
    problems += _mesh_problems([path for _, path in tree.models], recipe_options.get("up_axis", "y"))
    return problems


# --- splits ------------------------------------------------------------------------------------------
def part_test_models(ids_by_class: dict[str, Sequence[str]]) -> dict[str, list[str]]:
    """PART-SHREC14's test models per kept class (see the module docstring).

    ``ids_by_class`` maps each class to its model ids in order; classes with more than
    :data:`PART_MIN_MODELS` models are kept and visited in sorted name order, each giving
    ``floor(0.2 n)`` ids drawn from one ``RandomState(1234)`` (the state ``np.random.seed(1234)`` sets).
    """
    rng = np.random.RandomState(PART_SEED)
    chosen = {}
    for name in sorted(ids_by_class):
        ids = ids_by_class[name]
        if len(ids) > PART_MIN_MODELS:
            size = int(np.floor(len(ids) * PART_TEST_FRACTION))
            chosen[name] = rng.choice(np.asarray(ids), size=size, replace=False).tolist()
    return chosen


def _validation_holdout(labels: np.ndarray) -> np.ndarray:
    """Positions (into ``labels``) of the held-out training sketches: 10% per class, at least one of two."""
    rng = np.random.default_rng(_VAL_SEED)
    held = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, int(round(len(members) * VAL_FRACTION))) if len(members) >= 2 else 0
        held += rng.permutation(members)[:count].tolist()
    return np.sort(np.asarray(held, dtype=np.int64))


def _render_checked(path: Path, recipe: ViewRecipe, cache_dir: Path) -> tuple[str, ...]:
    """:func:`cached_views` of one model, after refusing an undrawable mesh and logging its defects
    (a warning naming the file); the views of a model already in the cache are not read again."""
    mesh = read_off(path)
    check_drawable(mesh, str(path))
    for defect in mesh_defects(mesh):
        log.warning("%s: %s", path, defect)
    return cached_views(path, recipe, cache_dir)


def _render_all(
    paths: Sequence[Path], recipe: ViewRecipe, cache_dir: Path, workers: int, progress: bool, name: str
) -> list[tuple[str, ...]]:
    """The view PNGs of every model, rendering the missing ones (in ``workers`` processes when > 1)."""
    folders = [views_folder(path, recipe, cache_dir) for path in paths]
    missing = [
        path for path, folder in zip(paths, folders, strict=True) if not cached_views_ready(folder, recipe)
    ]
    if missing:
        render = partial(_render_checked, recipe=recipe, cache_dir=cache_dir)
        bar = tqdm(total=len(missing), desc=f"rendering {name} views", unit="model", disable=not progress)
        with bar:
            if workers > 1:
                context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
                with ProcessPoolExecutor(workers, mp_context=context) as pool:
                    for _ in pool.map(render, missing, chunksize=4):
                        bar.update()
            else:
                for path in missing:
                    render(path)
                    bar.update()
    return [tuple(str(folder / view) for view in view_names(recipe)) for folder in folders]


def _build(
    layout: ShrecLayout,
    cache_dir: str | Path,
    root: str | os.PathLike[str] | None,
    recipe: ViewRecipe,
    *,
    part: bool,
    render_workers: int,
    progress: bool,
) -> Catalog:
    name = "part_shrec14" if part else layout.name
    tree = scan(root, layout)
    raise_for_problems(tree.problems, f"{name} at {tree.root}")
    class_names = [c.name for c in tree.classes]
    sketches = {split: tree.sketches.get(split, []) for split in SPLIT_FOLDERS}
    models = tree.models
    test_model_stems: set[str] = set()
    if part:
        stems_by_class: dict[str, list[str]] = {}
        for label, path in sorted(models, key=lambda item: item[1].name):
            stems_by_class.setdefault(class_names[label], []).append(path.stem)
        chosen = part_test_models(stems_by_class)
        kept = [label for label, c in enumerate(class_names) if c in chosen]
        relabel = {old: new for new, old in enumerate(kept)}
        class_names = [class_names[old] for old in kept]
        sketches = {
            s: [(relabel[lab], p) for lab, p in items if lab in relabel] for s, items in sketches.items()
        }
        models = [(relabel[lab], p) for lab, p in models if lab in relabel]
        test_model_stems = {stem for stems in chosen.values() for stem in stems}
        if not class_names:
            raise DatasetError(
                f"{name} at {tree.root}: expected classes with more than {PART_MIN_MODELS} models, found none"
            )

    sketch_rows = [
        ("sketch", label, f"{split}/{class_names[label]}/{path.stem}", str(path), ())
        for split in SPLIT_FOLDERS
        for label, path in sorted(sketches[split], key=lambda item: (item[0], item[1].name))
    ]
    models = sorted(models, key=lambda item: (item[0], item[1].name))
    views = _render_all([path for _, path in models], recipe, Path(cache_dir), render_workers, progress, name)
    shape_rows = [
        ("shape", label, path.stem, "", model_views)
        for (label, path), model_views in zip(models, views, strict=True)
    ]
    records = pd.DataFrame(sketch_rows + shape_rows, columns=["domain", "label", "instance", "path", "views"])

    num_train = len(sketches["train"])
    train_sketches = np.arange(num_train)
    held = train_sketches[_validation_holdout(records["label"].to_numpy()[:num_train])]
    shapes = np.arange(len(sketch_rows), len(records))
    # PART-SHREC14's test models (none otherwise)
    is_test_model = records["instance"].iloc[shapes].isin(test_model_stems).to_numpy()
    train_models = shapes[~is_test_model]
    test_models = shapes[is_test_model] if part else shapes
    split = Split(
        name="official",
        setting="traditional",
        seen_classes=tuple(range(len(class_names))),
        unseen_classes=(),
        train=np.concatenate([np.setdiff1d(train_sketches, held), train_models]),
        val_query=held,
        val_gallery=train_models if part else shapes,
        test_query=np.arange(num_train, len(sketch_rows)),
        test_gallery=test_models,
    )
    files = [path for items in tree.sketches.values() for _, path in items] + [p for _, p in tree.models]
    catalog = Catalog(
        name=name,
        records=records,
        class_names=class_names,
        splits={"official": split},
        fingerprint=tree_fingerprint(
            tree.root, sorted(files + tree.cla_files), name, asdict(recipe), RENDERER_VERSION
        ),
        pairing="class",
        meshes={len(sketch_rows) + k: str(path) for k, (_, path) in enumerate(models)},
    )
    catalog.validate()
    return catalog


# --- registered builders and checkers ------------------------------------------------------------------
def _registered(
    name: str, layout: ShrecLayout, *, part: bool, summary: str
) -> tuple[Callable[..., Catalog], Callable[..., list[Problem]]]:
    """Register the builder ``name`` and its checker, which takes the builder's options (its signature
    says so, for the CLI's option check), and return both."""

    def build(
        cache_dir: str | Path,
        *,
        root: str | os.PathLike[str] | None = None,
        views: str = "ring",
        num_views: int = 12,
        elevation: float = 30.0,
        image_kind: str = "shaded",
        image_size: int = 224,
        margin: float = 0.1,
        up_axis: str = "y",
        render_workers: int = 0,
        progress: bool = True,
    ) -> Catalog:
        recipe = _recipe(views, num_views, elevation, image_kind, image_size, margin, up_axis)
        return _build(
            layout, cache_dir, root, recipe, part=part, render_workers=render_workers, progress=progress
        )

    builder_signature = inspect.signature(build)
    root, *keywords = list(builder_signature.parameters.values())[1:]  # the checker: no cache_dir
    check_signature = inspect.Signature(
        [root.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD), *keywords],
        return_annotation="list[Problem]",
    )

    def check(*args: Any, **options: Any) -> list[Problem]:
        arguments = check_signature.bind(*args, **options)  # an unknown option is a TypeError naming it
        arguments.apply_defaults()
        root = arguments.arguments.pop("root")
        recipe_options = {k: v for k, v in arguments.arguments.items() if k in RECIPE_FIELDS}
        return _check(layout, root, recipe_options)

    build.__name__ = build.__qualname__ = f"build_{name}"
    build.__doc__ = f"{summary}; split ``official`` (options and rules: the module docstring)."
    check.__name__ = check.__qualname__ = f"check_{name}"
    check.__signature__ = check_signature  # type: ignore[attr-defined]  # the CLI validates against it
    check.__doc__ = (
        "Every problem of the tree: folders, class files, model ids without files (and the reverse), "
        "malformed ``.off`` files, unreadable sketches, and invalid rendering options."
    )
    return register_dataset(name)(build), register_dataset_checker(name)(check)


RECIPE_FIELDS = frozenset(f.name for f in fields(ViewRecipe))
build_shrec13, check_shrec13 = _registered(
    "shrec13", SHREC13, part=False, summary="SHREC'13 (90 classes, 7,200 sketches, 1,258 models)"
)
build_shrec14, check_shrec14 = _registered(
    "shrec14", SHREC14, part=False, summary="SHREC'14 (171 classes, 13,680 sketches, 8,987 models)"
)
build_part_shrec14, check_part_shrec14 = _registered(
    "part_shrec14",
    SHREC14,
    part=True,
    summary="PART-SHREC14: the SHREC'14 classes with more than 50 models, models split 80/20",
)
