"""QMUL Shoe and Chair (Yu et al., CVPR'16 "Sketch Me That Shoe"): fine-grained sketch-photo pairs.

Registered as ``qmul_shoe`` and ``qmul_chair`` (one class each: ``shoe`` / ``chair``). Both layouts in
circulation are read (README, "Real datasets"); ``<name>`` is ``shoes`` or ``chairs``:

``layout="folders"`` (the release ``sbir_cvpr2016``)::

    <root>/<name>/{train,test}/{images,sketches}/<i>.{jpg,png}
    <root>/<name>/annotation/<name>_annotation.json      (the release's place; <root>/annotation/ also works)

  The annotation ``{train: {images, sketches, triplets}, test: {...}}`` lists the files: ``images[i]``
  pairs with ``sketches[i]`` and ``triplets[i]`` holds ``[positive, negative]`` image indices for anchor
  sketch ``i``. A name whose exact file is missing resolves to the one file with its stem (``1.jpg``
  listed, ``1.JPG`` or ``1.png`` on disk); a ``sketches`` list that is absent means "same names as
  ``images``" (the release's own API looks sketches up by the image names).

``layout="packed"``: ``<name>_{sketch,image,edge}_db_{train,test}.mat``, key ``data``, N×H×W (sketches,
  edge maps) or N×H×W×3 (photos) uint8, row ``i`` of the sketches paired with row ``i`` of the photos,
  in ``<root>``, ``<root>/dbs``, ``<root>/dbs/<name>``, ``<root>/<name>`` or ``<root>/<name>/dbs``.
  ``_db_val`` is accepted for ``_db_test`` (DeepSBIR's file names). ``packed_photos="edge"`` serves the
  edge maps as the photo domain, as the original triplet network was trained. The rows are written once
  as PNG files under ``<cache_dir>/qmul/<fingerprint>/`` (built in a temporary folder, manifest last,
  renamed into place under a file lock: a partial cache is never used, it is rebuilt). MATLAB v7.3
  (HDF5) files are not read (that would need h5py): the error says to re-save them with ``-v7``.
  Triplets: the annotation JSON, when one is found beside the ``.mat`` files (or where the folder layout
  keeps it), indexes their rows and gives the triplets; without it there are no triplets
  (``Catalog.triplets`` has no ``fine_grained`` / ``fine_grained_test`` entry) and instances are named
  ``<subset>_<row>``.

``layout="auto"`` (default) takes the folders when present, else the packed files. ``root`` defaults to
``$SBIR_DATA/sbir_cvpr2016``; one extra wrapping folder (e.g. ``sbir_cvpr2016_release``) is accepted, and
``root`` may also name the ``<name>`` folder itself.

Records and split ``fine_grained`` (setting ``fine_grained``: the matching instance is the one relevant
item): train = training sketches and photos; val = a deterministic hold-out of ``val_fraction`` of the
training instances (at least one; never a test instance); test_query / test_gallery = test sketches /
test photos. Instance ids are the photo file stems (``"305"``), unique across train and test.
``Catalog.triplets["fine_grained"]`` = the annotation's training triplets as record indices (anchor
sketch, positive photo, negative photo), keeping those whose three records all stay in the train part;
``Catalog.triplets["fine_grained_test"]`` = the annotation's test triplets, all of them (the positive is
the photo the annotation names, not necessarily the anchor's own). An index outside its subset is a
problem naming the file and the entry (``[test][triplets][12]``).

Attributes (DMAR; UNVERIFIED format, the annotation is not public): ``attributes`` names a CSV with an
``instance`` column (instance ids) or an ``image`` column (file names; the stem is the instance, so a
sketch row and its photo row fall on the same instance and must agree), and binary 0/1 columns, one per
attribute. Every instance needs a row and every row an instance; the vectors become
``Catalog.instance_attributes`` and the column names ``Catalog.attribute_names``. A relative path is
looked up from the working directory, then from the dataset folder. Each bad entry is a problem naming
the file, the row (line number) and its key: a row of the wrong width, a cell that is not 0/1 (or empty),
rows of one instance that disagree, row keys that match no instance, instances without a row.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from sbir_bench.data.readers.common import (
    DATA_ROOT_ENV,
    Problem,
    image_problems,
    is_image,
    list_images,
    tree_fingerprint,
)
from sbir_bench.data.records import Catalog, DatasetError, Split
from sbir_bench.files import (
    atomic_write_text,
    building_folder,
    file_lock,
    remove_interrupted_writes,
    sha256_file,
)
from sbir_bench.registry import register_dataset, register_dataset_checker

log = logging.getLogger(__name__)

READER_VERSION = 1  # bump whenever records, splits or the packed cache change meaning
DATA_FOLDER = "sbir_cvpr2016"  # the release's folder: $SBIR_DATA/sbir_cvpr2016/{shoes,chairs}
SUBSETS = ("train", "test")
LAYOUTS = ("auto", "folders", "packed")
PACKED_PHOTOS = ("image", "edge")
PACKED_TEST_SUFFIXES = ("test", "val")
MANIFEST_NAME = "manifest.json"
_VAL_SEED = 20160627  # fixes the validation hold-out (the draw never depends on anything else)
_SHOWN_PROBLEMS = 20  # the builder's error lists this many; `sbir-bench data check` lists them all


@dataclass(frozen=True)
class QmulSpec:
    """One of the two QMUL datasets: its registry name, file-name stem and class name."""

    dataset: str  # registry name, e.g. "qmul_shoe"
    name: str  # file and folder stem in the release, e.g. "shoes"
    category: str  # the single class, e.g. "shoe"

    @property
    def annotation_name(self) -> str:
        return f"{self.name}_annotation.json"

    def packed_name(self, kind: str, subset: str) -> str:
        return f"{self.name}_{kind}_db_{subset}.mat"

    def layout_text(self) -> str:
        return (
            f"  <root>/{self.name}/{{train,test}}/{{images,sketches}}/<i>.{{jpg,png}}\n"
            f"  <root>/{self.name}/annotation/{self.annotation_name}  (or <root>/annotation/)\n"
            f"or the packed files {self.name}_{{sketch,image,edge}}_db_{{train,test}}.mat (key 'data') in "
            f"<root>, <root>/dbs, <root>/dbs/{self.name} or <root>/{self.name}"
        )


SHOE = QmulSpec("qmul_shoe", "shoes", "shoe")
CHAIR = QmulSpec("qmul_chair", "chairs", "chair")


@dataclass
class _Subset:
    """One of train / test: paired photo and sketch files (position i pairs with i) and triplets.

    ``photos`` and ``sketches`` are empty when packed arrays were only checked (nothing written, no paths).
    """

    photos: list[Path]
    sketches: list[Path]
    instances: list[str]
    triplets: np.ndarray | None = None  # int [T, 3] positions (anchor sketch, positive photo, negative photo)


@dataclass
class _Source:
    """What a reading found: the subsets, the files that define them, and every problem met."""

    layout: str
    where: Path  # the dataset folder (folders) or the folder of the .mat files (packed)
    subsets: dict[str, _Subset] = field(default_factory=dict)
    files: list[Path] = field(
        default_factory=list
    )  # every file read: fingerprinted, images decoded by checks
    problems: list[Problem] = field(default_factory=list)


# --- finding the dataset ---------------------------------------------------------------------------------
def _base_folder(root: str | os.PathLike[str] | None, spec: QmulSpec) -> Path:
    if root is None or str(root) == "":
        base = os.environ.get(DATA_ROOT_ENV)
        if not base:
            raise DatasetError(
                f"no data root given for {spec.dataset}: pass root=... (data.dataset_kwargs.root) or set "
                f"${DATA_ROOT_ENV} so that ${DATA_ROOT_ENV}/{DATA_FOLDER} exists. Expected layout:\n"
                f"{spec.layout_text()}"
            )
        root = Path(base) / DATA_FOLDER
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(
            f"{spec.dataset} root {path} is not a folder. Expected layout:\n{spec.layout_text()}"
        )
    return path


def _candidate_bases(path: Path) -> list[Path]:
    """The root, then its sub-folders (an archive unpacked into one extra wrapping folder)."""
    return [path, *(child for child in sorted(path.iterdir()) if child.is_dir())]


def _folders_dir(path: Path, spec: QmulSpec) -> Path | None:
    """The ``<name>`` folder holding ``train/`` or ``test/``: ``path/<name>``, ``path`` itself (the user
    named it), or ``<wrapper>/<name>`` one level down."""
    wrapped = [base / spec.name for base in _candidate_bases(path)[1:]]
    for folder in (path / spec.name, path, *wrapped):
        if (folder / "train").is_dir() or (folder / "test").is_dir():
            return folder
    return None


def _packed_dir(path: Path, spec: QmulSpec) -> Path | None:
    """The folder holding ``<name>_sketch_db_train.mat``."""
    marker = spec.packed_name("sketch", "train")
    for base in _candidate_bases(path):
        for folder in (
            base,
            base / "dbs",
            base / "dbs" / spec.name,
            base / spec.name,
            base / spec.name / "dbs",
        ):
            if (folder / marker).is_file():
                return folder
    return None


def _locate(root: str | os.PathLike[str] | None, spec: QmulSpec, layout: str) -> tuple[str, Path]:
    """(layout, folder): the dataset folder for ``folders``, the ``.mat`` folder for ``packed``."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    path = _base_folder(root, spec)
    if layout in ("auto", "folders") and (folder := _folders_dir(path, spec)) is not None:
        return "folders", folder
    if layout in ("auto", "packed") and (folder := _packed_dir(path, spec)) is not None:
        return "packed", folder
    wanted = {"auto": "either layout", "folders": "the folder layout", "packed": "the packed .mat files"}
    raise DatasetError(
        f"{path} does not hold {spec.dataset} ({wanted[layout]} not found). Expected layout:\n"
        f"{spec.layout_text()}"
    )


def _find_annotation(spec: QmulSpec, folders: Iterable[Path]) -> Path | None:
    for folder in folders:
        for candidate in (folder / "annotation" / spec.annotation_name, folder / spec.annotation_name):
            if candidate.is_file():
                return candidate
    return None


# --- the annotation ------------------------------------------------------------------------------------
def _read_annotation(path: Path, problems: list[Problem]) -> dict | None:
    try:
        annotation = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        problems.append(Problem(str(path), f"unreadable annotation ({error}); expected JSON"))
        return None
    missing = [
        s for s in SUBSETS if not isinstance(annotation, dict) or not isinstance(annotation.get(s), dict)
    ]
    if missing:
        problems.append(
            Problem(str(path), f"no {missing} object; expected {{train: {{images, ...}}, test: ...}}")
        )
        return None
    for subset in SUBSETS:
        images = annotation[subset].get("images")
        if not isinstance(images, list) or not all(isinstance(name, str) for name in images):
            problems.append(Problem(str(path), f"[{subset}][images] is not a list of file names"))
            return None
    return annotation


def _subset_names(annotation: dict, subset: str, path: Path, problems: list[Problem]) -> tuple[list, list]:
    """(image names, sketch names) of one subset; sketches default to the image names."""
    entry = annotation[subset]
    images, sketches = entry["images"], entry.get("sketches", entry["images"])
    if not isinstance(sketches, list) or not all(isinstance(name, str) for name in sketches):
        problems.append(Problem(str(path), f"[{subset}][sketches] is not a list of file names"))
        return images, []
    if len(sketches) != len(images):
        problems.append(
            Problem(
                str(path),
                f"[{subset}] lists {len(images)} images but {len(sketches)} sketches; "
                "expected one sketch per image (sketches[i] pairs with images[i])",
            )
        )
    return images, sketches


def _triplets(
    annotation: dict, subset: str, path: Path, num_images: int, problems: list[Problem]
) -> np.ndarray | None:
    """int [T, 3] (anchor, positive, negative) positions from ``triplets[i] = [[pos, neg], ...]``."""
    raw = annotation[subset].get("triplets")
    if raw is None:
        return None
    where = f"[{subset}][triplets]"
    if not isinstance(raw, list) or len(raw) != num_images:
        count = len(raw) if isinstance(raw, list) else type(raw).__name__
        problems.append(
            Problem(str(path), f"{where} has {count} entries; expected one list per sketch ({num_images})")
        )
        return None
    rows, bad = [], []
    for anchor, pairs in enumerate(raw):
        try:
            pairs = (
                np.asarray(pairs, dtype=np.int64).reshape(-1, 2) if len(pairs) else np.zeros((0, 2), np.int64)
            )
        except (TypeError, ValueError):
            bad.append(f"{where}[{anchor}] is not a list of [positive, negative] index pairs")
            continue
        outside = pairs[(pairs < 0).any(axis=1) | (pairs >= num_images).any(axis=1)]
        if len(outside):
            bad.append(
                f"{where}[{anchor}] has {len(outside)} pair(s) outside 0..{num_images - 1}, "
                f"e.g. {outside[0].tolist()}"
            )
            continue
        rows.append(np.column_stack([np.full(len(pairs), anchor, dtype=np.int64), pairs]))
    problems.extend(Problem(str(path), message) for message in bad)
    if bad:
        return None
    return np.concatenate(rows) if rows else np.zeros((0, 3), dtype=np.int64)


# --- the folder layout -----------------------------------------------------------------------------------
def _resolve_files(
    folder: Path, names: Sequence[str], what: str, annotation: Path, problems: list[Problem]
) -> list[Path]:
    """The listed files of ``folder``: exact name, else the one image file with that stem."""
    on_disk = list_images(folder)
    by_stem: dict[str, list[Path]] = {}
    for path in on_disk:
        by_stem.setdefault(path.stem.lower(), []).append(path)
    resolved, used = [], set()
    for i, name in enumerate(names):
        exact = folder / name
        matches = [exact] if is_image(exact) else by_stem.get(Path(name).stem.lower(), [])
        if len(matches) != 1:
            state = "missing" if not matches else f"ambiguous ({', '.join(p.name for p in matches)})"
            problems.append(Problem(str(exact), f"{state}; listed as {what}[{i}] in {annotation}"))
            continue
        resolved.append(matches[0])
        used.add(matches[0])
    extra = [path for path in on_disk if path not in used]
    if extra:
        problems.append(
            Problem(
                str(folder),
                f"{len(extra)} image file(s) not listed in {annotation}, e.g. {extra[0].name}; "
                f"expected exactly the {len(names)} files it lists",
            )
        )
    return resolved


def _read_folders(dataset_dir: Path, spec: QmulSpec) -> _Source:
    source = _Source("folders", dataset_dir)
    problems = source.problems
    for subset in SUBSETS:
        for kind in ("images", "sketches"):
            if not (dataset_dir / subset / kind).is_dir():
                problems.append(
                    Problem(str(dataset_dir / subset / kind), f"missing folder; expected the {subset} {kind}")
                )
    annotation_path = _find_annotation(spec, (dataset_dir, dataset_dir.parent))
    if annotation_path is None:
        problems.append(
            Problem(
                str(dataset_dir / "annotation" / spec.annotation_name),
                f"missing annotation (also looked in {dataset_dir.parent / 'annotation'}); it lists the "
                "paired images and sketches and the triplets",
            )
        )
        return source
    source.files.append(annotation_path)
    annotation = _read_annotation(annotation_path, problems)
    if annotation is None:
        return source
    for subset in SUBSETS:
        image_names, sketch_names = _subset_names(annotation, subset, annotation_path, problems)
        folders = {kind: dataset_dir / subset / kind for kind in ("images", "sketches")}
        if not all(folder.is_dir() for folder in folders.values()):
            continue
        photos = _resolve_files(
            folders["images"], image_names, f"[{subset}][images]", annotation_path, problems
        )
        sketches = _resolve_files(
            folders["sketches"], sketch_names, f"[{subset}][sketches]", annotation_path, problems
        )
        triplets = _triplets(annotation, subset, annotation_path, len(image_names), problems)
        source.files += photos + sketches
        if len(photos) == len(image_names) == len(sketches) == len(sketch_names):
            instances = [Path(name).stem for name in image_names]
            source.subsets[subset] = _Subset(photos, sketches, instances, triplets)
    _check_instances(source, annotation_path)
    return source


def _check_instances(source: _Source, where: Path) -> None:
    seen: dict[str, str] = {}
    for subset, content in source.subsets.items():
        for instance in content.instances:
            if instance in seen:
                source.problems.append(
                    Problem(
                        str(where),
                        f"instance {instance!r} appears twice ({seen[instance]} and {subset}); "
                        "expected unique image names",
                    )
                )
            seen[instance] = subset


# --- the packed layout -------------------------------------------------------------------------------------
def _load_mat(path: Path, problems: list[Problem]) -> np.ndarray | None:
    """The ``data`` array of a MATLAB file (v4–v7; v7.3 is HDF5 and named as such)."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        data = loadmat(path, variable_names=["data"]).get("data")
    except NotImplementedError:
        problems.append(
            Problem(str(path), "MATLAB v7.3 (HDF5) file, not read here; re-save it with save(..., '-v7')")
        )
        return None
    except (MatReadError, OSError, ValueError, TypeError, IndexError) as error:
        problems.append(Problem(str(path), f"unreadable .mat file ({type(error).__name__}: {error})"))
        return None
    if data is None:
        problems.append(
            Problem(str(path), "no variable 'data'; expected an N×H×W(×3) uint8 array under 'data'")
        )
        return None
    if data.dtype != np.uint8 or not (data.ndim == 3 or (data.ndim == 4 and data.shape[3] in (1, 3))):
        problems.append(
            Problem(
                str(path), f"'data' is {data.dtype} of shape {data.shape}; expected N×H×W or N×H×W×3 uint8"
            )
        )
        return None
    return data


def _packed_files(mat_dir: Path, spec: QmulSpec, packed_photos: str) -> tuple[dict, list[Problem]]:
    """subset -> (sketch file, photo file), and the files that are missing."""
    files, problems = {}, []
    for subset in SUBSETS:
        suffixes = PACKED_TEST_SUFFIXES if subset == "test" else (subset,)
        pair = []
        for kind in ("sketch", packed_photos):
            found = [
                mat_dir / spec.packed_name(kind, s)
                for s in suffixes
                if (mat_dir / spec.packed_name(kind, s)).is_file()
            ]
            if not found:
                problems.append(
                    Problem(str(mat_dir / spec.packed_name(kind, subset)), f"missing packed {kind} file")
                )
            pair.append(found[0] if found else None)
        files[subset] = tuple(pair)
    return files, problems


def _load_packed(files: dict, problems: list[Problem]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    arrays = {}
    for subset, (sketch_file, photo_file) in files.items():
        if sketch_file is None or photo_file is None:
            continue
        sketches, photos = _load_mat(sketch_file, problems), _load_mat(photo_file, problems)
        if sketches is None or photos is None:
            continue
        if len(sketches) != len(photos):
            problems.append(
                Problem(
                    str(photo_file),
                    f"{len(photos)} rows but {sketch_file.name} has {len(sketches)}; expected row i of the "
                    "sketches to pair with row i of the photos",
                )
            )
            continue
        arrays[subset] = (sketches, photos)
    return arrays


def _cache_problem(folder: Path, fingerprint: str) -> str | None:
    """Why the PNG cache in ``folder`` cannot be used; None when it is complete."""
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        return f"{manifest_path} is missing (no cache, or an interrupted build)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, int] = manifest["files"]
        if manifest["fingerprint"] != fingerprint:
            return f"{manifest_path} is for another fingerprint"
    except (ValueError, KeyError, TypeError) as error:
        return f"{manifest_path} is unreadable ({error})"
    for name, size in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return f"{path} is missing or has changed"
    return None


def _write_cache(folder: Path, fingerprint: str, arrays: dict, progress: bool) -> None:
    """Write every row as ``<subset>/{sketches,images}/<row>.png`` in a temporary folder, then rename it."""
    remove_interrupted_writes(folder.parent, folder.name)  # left by a builder that died (we hold the lock)
    sizes, counts = {}, {}
    total = sum(2 * len(sketches) for sketches, _ in arrays.values())
    with (
        building_folder(folder) as building,
        tqdm(total=total, desc=f"unpacking {folder.name}", unit="image", disable=not progress) as bar,
    ):
        for subset, (sketches, photos) in arrays.items():
            counts[subset] = len(sketches)
            for kind, rows in (("sketches", sketches), ("images", photos)):
                (building / subset / kind).mkdir(parents=True)
                for row, pixels in enumerate(rows):
                    name = f"{subset}/{kind}/{row:04d}.png"
                    Image.fromarray(pixels.squeeze()).save(building / name, format="PNG")
                    sizes[name] = (building / name).stat().st_size
                    bar.update()
        manifest = {"fingerprint": fingerprint, "counts": counts, "files": sizes}
        atomic_write_text(building / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True))


def _packed_subsets(
    folder: Path | None, counts: dict[str, int], names: dict[str, list[str]], triplets: dict
) -> dict[str, _Subset]:
    """The subsets of the PNG cache in ``folder`` (None when the arrays were only checked: no paths)."""
    subsets = {}
    for subset in SUBSETS:
        rows = range(counts[subset]) if folder is not None else range(0)
        subsets[subset] = _Subset(
            photos=[folder / subset / "images" / f"{row:04d}.png" for row in rows] if folder else [],
            sketches=[folder / subset / "sketches" / f"{row:04d}.png" for row in rows] if folder else [],
            instances=names.get(subset) or [f"{subset}_{row:04d}" for row in range(counts[subset])],
            triplets=triplets.get(subset),
        )
    return subsets


def _cached_counts(folder: Path, fingerprint: str, files: dict, problems: list[Problem], progress: bool):
    """Rows per subset of the PNG cache in ``folder``, (re)built from the arrays unless it is complete."""
    with file_lock(folder.parent / f"{fingerprint}.lock"):
        problem = _cache_problem(folder, fingerprint)
        if problem is not None:
            if folder.exists():
                log.warning("rebuilding the QMUL PNG cache: %s", problem)
            arrays = _load_packed(files, problems)
            if problems:
                return {}
            _write_cache(folder, fingerprint, arrays, progress)
        return json.loads((folder / MANIFEST_NAME).read_text())["counts"]


def _read_packed(
    mat_dir: Path, spec: QmulSpec, packed_photos: str, cache_dir: str | Path | None, progress: bool
) -> _Source:
    """Build (or reuse) the PNG cache under ``cache_dir`` and read its subsets; with ``cache_dir`` None,
    only check: every array is loaded and nothing is written."""
    source = _Source("packed", mat_dir)
    files, source.problems = _packed_files(mat_dir, spec, packed_photos)
    source.files = [path for pair in files.values() for path in pair if path is not None]
    annotation_path = _find_annotation(spec, (mat_dir, mat_dir.parent, mat_dir.parent / spec.name))
    annotation = None
    if annotation_path is not None:
        source.files.append(annotation_path)
        annotation = _read_annotation(annotation_path, source.problems)
    if source.problems:
        return source
    fingerprint = tree_fingerprint(mat_dir, sorted(source.files, key=str), READER_VERSION, packed_photos)
    folder = None if cache_dir is None else Path(cache_dir) / "qmul" / fingerprint
    if folder is None:
        counts = {subset: len(pair[0]) for subset, pair in _load_packed(files, source.problems).items()}
    else:
        counts = _cached_counts(folder, fingerprint, files, source.problems, progress)
    if source.problems:
        return source
    names, triplets = {}, {}
    if annotation is not None and annotation_path is not None:
        for subset in SUBSETS:
            images, _ = _subset_names(annotation, subset, annotation_path, source.problems)
            if len(images) != counts[subset]:
                source.problems.append(
                    Problem(
                        str(annotation_path),
                        f"[{subset}] lists {len(images)} images but the .mat files hold "
                        f"{counts[subset]} rows; expected one name per row",
                    )
                )
                continue
            names[subset] = [Path(name).stem for name in images]
            triplets[subset] = _triplets(annotation, subset, annotation_path, counts[subset], source.problems)
    if not source.problems:
        source.subsets = _packed_subsets(folder, counts, names, triplets)
        _check_instances(source, annotation_path or mat_dir)
    return source


# --- attributes ---------------------------------------------------------------------------------------------
def _attribute_file(attributes: str | os.PathLike[str], dataset_dir: Path) -> Path:
    path = Path(attributes).expanduser()
    if not path.is_absolute() and not path.exists() and (dataset_dir / path).exists():
        return dataset_dir / path
    return path


def _binary(value: str) -> float | None:
    """0.0 / 1.0 for a cell holding 0 or 1 (``0``, ``1.0``, ...), None for anything else."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number in (0.0, 1.0) else None


def _read_attributes(
    path: Path, instances: Sequence[str], problems: list[Problem]
) -> tuple[dict[str, np.ndarray], list[str]]:
    """(instance -> float32 binary vector, attribute names) from the CSV (see the module docstring).

    Every problem is one :class:`Problem` naming the file and the entry (row number as a spreadsheet
    shows it, its key, the column): rows of the wrong width, non-binary or empty cells, rows of one
    instance that disagree, keys that match no instance, instances without a row."""
    try:
        with path.open(newline="", encoding="utf-8") as file:
            table = [row for row in csv.reader(file) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        problems.append(Problem(str(path), f"unreadable attribute table ({error}); expected a CSV file"))
        return {}, []
    header = [cell.strip() for cell in table[0]] if table else []
    key = next((column for column in ("instance", "image") if column in header), None)
    if key is None:
        problems.append(Problem(str(path), f"no 'instance' or 'image' column (columns: {header})"))
        return {}, []
    value_columns = [i for i, column in enumerate(header) if column not in ("instance", "image")]
    names = [header[i] for i in value_columns]
    if not names:
        problems.append(Problem(str(path), "no attribute columns; expected one 0/1 column per attribute"))
        return {}, []
    found = len(problems)
    vectors: dict[str, np.ndarray] = {}
    keys: set[str] = set()  # every row's instance, a bad row's too (it is not also "missing")
    for line, row in enumerate(table[1:], start=2):
        cells = [cell.strip() for cell in row]
        name = cells[header.index(key)] if len(cells) > header.index(key) else ""
        instance = Path(name).stem if key == "image" else name
        keys.add(instance)
        entry = f"row {line} ({key} {name!r})"
        if len(cells) != len(header):
            problems.append(
                Problem(str(path), f"{entry} has {len(cells)} values; expected {len(header)} (the header's)")
            )
            continue
        values = [_binary(cells[i]) for i in value_columns]
        bad = [(header[i], cells[i]) for i, value in zip(value_columns, values, strict=True) if value is None]
        if bad:
            shown = ", ".join(f"{column}={value!r}" for column, value in bad[:5])
            problems.append(
                Problem(str(path), f"{entry}: not 0/1: {shown}" + (" ..." if len(bad) > 5 else ""))
            )
            continue
        vector = np.asarray(values, dtype=np.float32)
        if instance in vectors and not np.array_equal(vectors[instance], vector):
            problems.append(
                Problem(str(path), f"{entry} disagrees with an earlier row of instance {instance!r}")
            )
        vectors[instance] = vector
    unknown = sorted(keys - set(instances))
    if unknown:
        problems.append(
            Problem(str(path), f"{len(unknown)} row key(s) match no instance: {_listed(unknown)}")
        )
    missing = [instance for instance in instances if instance not in keys]
    if missing:
        problems.append(Problem(str(path), f"no row for {len(missing)} instance(s): {_listed(missing)}"))
    return ({} if len(problems) > found else vectors), names


def _listed(names: Sequence[str], shown: int = 10) -> str:
    text = ", ".join(repr(name) for name in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


# --- catalog ------------------------------------------------------------------------------------------------
def _val_positions(count: int, val_fraction: float) -> np.ndarray:
    """A deterministic hold-out of about ``val_fraction`` of ``count`` training instances (>= 1, < count)."""
    if val_fraction == 0 or count < 2:
        return np.zeros(0, dtype=np.int64)
    size = min(count - 1, max(1, round(count * val_fraction)))
    return np.sort(np.random.default_rng(_VAL_SEED).permutation(count)[:size])


def _catalog(
    spec: QmulSpec,
    source: _Source,
    val_fraction: float,
    attributes: tuple[dict[str, np.ndarray], list[str]],
    fingerprint: str,
) -> Catalog:
    rows, start = [], {}
    for subset in SUBSETS:
        content = source.subsets[subset]
        start[subset] = len(rows)
        rows += [
            ("photo", 0, instance, str(path))
            for instance, path in zip(content.instances, content.photos, strict=True)
        ]
        rows += [
            ("sketch", 0, instance, str(path))
            for instance, path in zip(content.instances, content.sketches, strict=True)
        ]
    records = pd.DataFrame(rows, columns=["domain", "label", "instance", "path"])
    records["views"] = pd.Series([()] * len(records), dtype=object)

    def photo(subset: str, positions: np.ndarray) -> np.ndarray:
        return start[subset] + np.asarray(positions, dtype=np.int64)

    def sketch(subset: str, positions: np.ndarray) -> np.ndarray:
        return start[subset] + len(source.subsets[subset].instances) + np.asarray(positions, dtype=np.int64)

    num_train, num_test = (len(source.subsets[s].instances) for s in SUBSETS)
    val = _val_positions(num_train, val_fraction)
    train = np.setdiff1d(np.arange(num_train), val)
    split = Split(
        name="fine_grained",
        setting="fine_grained",
        seen_classes=(0,),
        unseen_classes=(),
        train=np.sort(np.concatenate([photo("train", train), sketch("train", train)])),
        val_query=sketch("train", val),
        val_gallery=photo("train", val),
        test_query=sketch("test", np.arange(num_test)),
        test_gallery=photo("test", np.arange(num_test)),
    )
    triplets = {}
    for subset, name in (("train", "fine_grained"), ("test", "fine_grained_test")):
        positions = source.subsets[subset].triplets
        if positions is not None:
            as_records = np.column_stack(
                [
                    sketch(subset, positions[:, 0]),
                    photo(subset, positions[:, 1]),
                    photo(subset, positions[:, 2]),
                ]
            )
            if subset == "train":  # a validation instance's triplets would leak it into training
                as_records = as_records[np.isin(as_records, split.train).all(axis=1)]
            triplets[name] = as_records
    vectors, names = attributes
    catalog = Catalog(
        name=spec.dataset,
        records=records,
        class_names=[spec.category],
        splits={"fine_grained": split},
        instance_attributes=vectors,
        triplets=triplets,
        fingerprint=fingerprint,
        attribute_names=names if vectors else [],
    )
    catalog.validate()
    return catalog


def _read(
    spec: QmulSpec,
    root: str | os.PathLike[str] | None,
    layout: str,
    packed_photos: str,
    val_fraction: float,
    attributes: str | os.PathLike[str] | None,
    cache_dir: str | Path | None,
    progress: bool,
) -> tuple[_Source, tuple[dict[str, np.ndarray], list[str]], list[Path]]:
    """Read the tree; ``cache_dir`` None checks only (packed arrays are loaded, not written)."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if packed_photos not in PACKED_PHOTOS:
        raise ValueError(f"unknown packed_photos {packed_photos!r}; expected one of {PACKED_PHOTOS}")
    found_layout, folder = _locate(root, spec, layout)
    if found_layout == "folders":
        source = _read_folders(folder, spec)
    else:
        source = _read_packed(folder, spec, packed_photos, cache_dir, progress)
    vectors: tuple[dict[str, np.ndarray], list[str]] = ({}, [])
    extra_files = []
    if attributes is not None:
        path = _attribute_file(attributes, folder)
        if not path.is_file():
            source.problems.append(Problem(str(path), "attribute table not found; expected a CSV file"))
        else:
            extra_files.append(path)
            if len(source.subsets) == len(SUBSETS):
                instances = [i for subset in SUBSETS for i in source.subsets[subset].instances]
                vectors = _read_attributes(path, instances, source.problems)
    return source, vectors, extra_files


def build_qmul(
    spec: QmulSpec,
    cache_dir: str | Path,
    *,
    root: str | os.PathLike[str] | None = None,
    layout: str = "auto",
    packed_photos: str = "image",
    val_fraction: float = 0.1,
    attributes: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Catalog:
    """The catalog of one QMUL dataset (module docstring); one DatasetError listing what is wrong."""
    source, vectors, extra_files = _read(
        spec, root, layout, packed_photos, val_fraction, attributes, cache_dir, progress
    )
    if source.problems:
        shown = "\n".join(f"  {problem}" for problem in source.problems[:_SHOWN_PROBLEMS])
        more = len(source.problems) - _SHOWN_PROBLEMS
        raise DatasetError(
            f"{spec.dataset} at {source.where} ({source.layout} layout): {len(source.problems)} problem(s):\n"
            f"{shown}" + (f"\n  ... and {more} more" if more > 0 else "") + "\n"
            f"(`sbir-bench data check {spec.dataset} --root ...` lists them all)"
        )
    files = sorted(source.files, key=str)
    base = Path(os.path.commonpath([str(source.where), *(str(path.parent) for path in files)]))
    fingerprint = tree_fingerprint(
        base,
        files,
        READER_VERSION,
        source.layout,
        packed_photos if source.layout == "packed" else "",
        val_fraction,
        *(sha256_file(path) for path in extra_files),
    )
    return _catalog(spec, source, val_fraction, vectors, fingerprint)


def check_qmul(
    spec: QmulSpec,
    root: str | os.PathLike[str] | None = None,
    *,
    layout: str = "auto",
    packed_photos: str = "image",
    val_fraction: float = 0.1,
    attributes: str | os.PathLike[str] | None = None,
) -> list[Problem]:
    """Every problem of the tree: missing folders or files, annotation and count mismatches, triplet
    indices out of range, unreadable images or arrays, attribute-table mismatches."""
    try:
        source, _, _ = _read(spec, root, layout, packed_photos, val_fraction, attributes, None, False)
    except DatasetError as error:
        path = str(root) if root else f"${DATA_ROOT_ENV}/{DATA_FOLDER}"
        return [Problem(path, str(error))]
    return source.problems + image_problems(path for path in source.files if is_image(path))


build_qmul_shoe = register_dataset(SHOE.dataset)(partial(build_qmul, SHOE))
build_qmul_chair = register_dataset(CHAIR.dataset)(partial(build_qmul, CHAIR))
check_qmul_shoe = register_dataset_checker(SHOE.dataset)(partial(check_qmul, SHOE))
check_qmul_chair = register_dataset_checker(CHAIR.dataset)(partial(check_qmul, CHAIR))
