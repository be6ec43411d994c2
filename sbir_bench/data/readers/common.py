"""What every reader of an official layout shares: finding the root, listing files, fingerprints, problems.

Readers turn a folder a user unpacked into a :class:`~sbir_bench.data.records.Catalog`; they never
download anything. A missing or misplaced root raises :class:`DatasetError` naming the folder and the
layout expected; ``check_*`` functions collect every :class:`Problem` of a tree instead of stopping at
the first (``sbir-bench data check``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from sbir_bench.data.records import DatasetError

DATA_ROOT_ENV = "SBIR_DATA"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset tree: the path concerned and what was expected there.

    ``warning``: the data can be used as it is (e.g. a mesh with a few degenerate triangles); listed by
    ``sbir-bench data check`` but neither failing it nor stopping a build."""

    path: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return f"{self.path}: {'warning: ' if self.warning else ''}{self.message}"


def resolve_root(root: str | os.PathLike[str] | None, folder: str, layout: str, *, marker: str) -> Path:
    """The dataset folder: ``root`` if given, else ``$SBIR_DATA/<folder>``.

    ``marker`` is a relative path that must exist under the root (e.g. ``"rendered_256x256"``); when it
    is found one level down instead (the archive unpacked into an extra wrapping folder) that level is
    used. Otherwise a DatasetError names the folder tried and shows ``layout``, the expected tree.
    """
    if root is None or str(root) == "":
        base = os.environ.get(DATA_ROOT_ENV)
        if not base:
            raise DatasetError(
                f"no data root given for {folder}: pass root=... (data.dataset_kwargs.root) or set "
                f"${DATA_ROOT_ENV} so that ${DATA_ROOT_ENV}/{folder} exists. Expected layout:\n{layout}"
            )
        root = Path(base) / folder
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{folder} root {path} is not a folder. Expected layout:\n{layout}")
    if (path / marker).exists():
        return path
    wrapped = [child for child in sorted(path.iterdir()) if child.is_dir() and (child / marker).exists()]
    if len(wrapped) == 1:
        return wrapped[0]
    raise DatasetError(
        f"{path} does not hold {folder}: {marker!r} not found in it. Expected layout:\n{layout}"
    )


def is_image(path: Path) -> bool:
    """Image files by suffix, case-insensitively (``.JPEG`` counts: no silent file-count drift)."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted((p for p in folder.iterdir() if is_image(p)), key=lambda p: p.name)


def tree_fingerprint(root: Path, files: Iterable[Path], *extra: object) -> str:
    """Changes whenever a file is added, removed, renamed, resized or touched, or ``extra`` changes."""
    digest = hashlib.sha256()
    for item in extra:
        digest.update(repr(item).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def selected_splits(dataset: str, requested: Sequence[str] | None, known: Sequence[str]) -> list[str]:
    """The splits a reader builds: ``requested`` (``splits=`` option) in ``known``'s order, or every
    known one; an unknown name fails naming the known ones. Building fewer lets a partial tree serve the
    splits it can (``sbir-bench data summary --split``)."""
    if requested is None:
        return list(known)
    unknown = sorted(set(requested) - set(known))
    if unknown or not requested:
        raise DatasetError(
            f"dataset {dataset!r} has no split(s) {unknown or '(none asked)'}; its splits: {', '.join(known)}"
        )
    return [name for name in known if name in requested]


def image_problems(paths: Iterable[Path]) -> list[Problem]:
    """Zero-byte, truncated or undecodable image files (each fully decoded once)."""
    from PIL import Image, UnidentifiedImageError

    problems = []
    for path in paths:
        if path.stat().st_size == 0:
            problems.append(Problem(str(path), "empty (zero-byte) file"))
            continue
        try:
            with Image.open(path) as image:
                image.load()
        except (OSError, UnidentifiedImageError, SyntaxError) as error:
            problems.append(Problem(str(path), f"unreadable image ({error})"))
    return problems


def folder_key(name: str) -> str:
    """A folder name reduced to lower-case letters and digits: ``hot-air_balloon``, ``hot_air_balloon``
    and ``Hot Air Balloon`` share the key ``hotairballoon``."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def match_class_folders(
    parent: Path, class_names: Sequence[str], aliases: Mapping[str, str] | None = None
) -> tuple[dict[str, Path], list[Path]]:
    """The folder of each class found under ``parent``, and the folders that match no class.

    A folder matches a class by its exact name, else by :func:`folder_key` (releases that rename
    ``hot-air_balloon`` to ``hot_air_balloon``), else through ``aliases`` (folder key -> class name, for
    known misspellings). A second folder for an already matched class counts as unmatched. Hidden
    folders (``.name``) are ignored.
    """
    by_key = {folder_key(name): name for name in class_names}
    by_key.update({key: name for key, name in (aliases or {}).items() if key not in by_key})
    folders = sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
    found: dict[str, Path] = {}
    for folder in folders:  # exact names first, so a renamed duplicate never shadows the original
        if folder.name in class_names:
            found[folder.name] = folder
    unmatched = []
    for folder in folders:
        if folder.name in class_names:
            continue
        name = by_key.get(folder_key(folder.name))
        if name is None or name in found:
            unmatched.append(folder)
        else:
            found[name] = folder
    return found, unmatched


def raise_for_problems(problems: Sequence[Problem], what: str, *, shown: int = 10) -> None:
    """Raise one DatasetError listing the first ``shown`` problems (and how many more), if any; warnings
    do not count."""
    problems = [problem for problem in problems if not problem.warning]
    if not problems:
        return
    lines = "\n".join(f"  - {problem}" for problem in problems[:shown])
    more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
    raise DatasetError(f"{what} has {len(problems)} problem(s):\n{lines}{more}")


def class_images(
    by_class: dict[str, Path],
    classes: Iterable[str],
    domain_folder: Path,
    domain: str,
    *,
    dataset: str,
    progress: bool,
) -> tuple[dict[str, list[Path]], list[Problem]]:
    """The image files of each class folder of one domain, and the problems seen listing them (a missing
    or empty class folder, zero-byte files); no image is decoded."""
    files: dict[str, list[Path]] = {}
    problems: list[Problem] = []
    for name in tqdm(list(classes), desc=f"{dataset} {domain}", unit="class", disable=not progress):
        if name not in by_class:
            problems.append(Problem(str(domain_folder / name), f"missing class folder ({domain} images)"))
            continue
        paths = list_images(by_class[name])
        if not paths:
            problems.append(Problem(str(by_class[name]), "holds no image files"))
        problems += [Problem(str(p), "empty (zero-byte) file") for p in paths if p.stat().st_size == 0]
        files[name] = paths
    return files, problems
