"""Princeton Shape Benchmark file formats: ``.off`` triangle meshes and ``.cla`` class files.

SHREC'13 and SHREC'14 ship their target models as ``.off`` files and their labels as ``.cla`` files
(Shilane et al., "The Princeton Shape Benchmark", SMI 2004). Both parsers read line by line and raise a
:class:`DatasetError` naming the file, the line number and what was expected there.

``.off`` (what is accepted)
  - a header keyword ``OFF`` (also ``COFF``/``NOFF``/``CNOFF``/``STOFF``...: per-vertex extras are
    ignored), alone on its line or followed by the counts on the same line, with or without a space
    (``OFF 8 6 0`` and ``OFF8 6 0``, as some SHREC/ModelNet files have); ``4OFF``/``nOFF`` (other
    dimensions) are rejected;
  - the counts ``<vertices> <faces> [<edges>]`` (the edge count is ignored);
  - one vertex per line (``x y z`` then anything), one face per line (``k i_1 .. i_k`` then anything,
    e.g. a per-face colour); ``#`` starts a comment anywhere, blank lines are skipped;
  - faces with ``k > 3`` vertices are triangulated as a fan ``(i_1, i_j, i_j+1)`` (exact for the
    convex, planar polygons of these files); ``k < 3``, an index out of range, a non-numeric token,
    a non-finite coordinate (``nan``, ``inf``), fewer lines than the counts promise or data after the
    last face are errors;
  - at most :data:`MAX_FACES` triangles (checked on the header's count, then after triangulation): the
    CPU renderer's time and memory grow linearly with the face count (12 views at 224 px on one core:
    200k faces 8.4 s and 0.23 GB peak, 400k 11 s and 0.29 GB, 2M 74 s and 0.70 GB; parsing 800k
    triangles takes 14 s), so a mesh at the limit costs about a minute and under 0.6 GB, and a file above
    it is refused with a message rather than rendered for minutes; simplify it first.

:func:`mesh_defects` lists what a readable mesh may still get wrong (rendered anyway, reported as
warnings): degenerate triangles (a repeated vertex or zero area: not drawn) and non-manifold edges
(shared by more than two triangles: drawn as a triangle soup). A mesh with no face, or whose every
triangle is degenerate, cannot be rendered: :func:`check_drawable` raises for it.

``.cla`` (Princeton format)
  ``PSB 1``; ``<numClasses> <numModels>``; then per class a header ``<className> <parent|0> <count>``
  followed by ``count`` lines of one model id each. Ids are digits with an optional ``m``/``M``
  prefix (SHREC files leave it out, model files carry it) and are kept as integers, so ``m0012``,
  ``12`` and ``0012`` name the same model. Blank lines are ignored wherever they occur. Class and model
  counts must match the header, a model may belong to one class only, class names must be unique.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sbir_bench.data.records import DatasetError

MAX_FACES = 1_000_000  # triangles per mesh (module docstring: the renderer's measured cost)
_OFF_HEADER = re.compile(r"^(ST)?C?N?OFF(?=$|[\s\d+-])", re.IGNORECASE)
_MODEL_ID = re.compile(r"^[mM]?(\d+)$")


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh: ``vertices`` float64 ``[V, 3]``, ``faces`` int64 ``[F, 3]`` indices into them."""

    vertices: np.ndarray
    faces: np.ndarray


def _content_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, content) for every line left non-blank once ``#`` comments are removed."""
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if content:
            lines.append((number, content))
    return lines


def _error(source: str, number: int | None, expected: str, found: str | None = None) -> DatasetError:
    where = source if number is None else f"{source}, line {number}"
    seen = "" if found is None else f", found {found!r}"
    return DatasetError(f"{where}: expected {expected}{seen}")


def _off_counts(source: str, lines: list[tuple[int, str]]) -> tuple[int, int, int]:
    """The vertex and face counts and the index of the first vertex line."""
    if not lines:
        raise _error(source, None, "an OFF header, found an empty file")
    number, header = lines[0]
    keyword = _OFF_HEADER.match(header)
    if keyword is None:
        raise _error(source, number, "the header keyword 'OFF'", header)
    rest = header[keyword.end() :].split()
    body = 1
    if not rest:  # the counts are on the next line
        if len(lines) < 2:
            raise _error(source, number, "a line '<vertices> <faces> <edges>' after the header")
        number, counts_line = lines[1]
        rest, body = counts_line.split(), 2
    if len(rest) not in (2, 3) or not all(token.isdigit() for token in rest):
        raise _error(
            source, number, "the counts '<vertices> <faces> <edges>' (non-negative integers)", " ".join(rest)
        )
    return int(rest[0]), int(rest[1]), body


def parse_off(text: str, source: str = "<off>") -> Mesh:
    """Parse the text of an ``.off`` file (see the module docstring); ``source`` names it in errors."""
    lines = _content_lines(text)
    num_vertices, num_faces, body = _off_counts(source, lines)
    if num_faces > MAX_FACES:
        raise _too_many_faces(source, num_faces)
    vertex_lines = lines[body : body + num_vertices]
    face_lines = lines[body + num_vertices : body + num_vertices + num_faces]
    if len(vertex_lines) < num_vertices:
        raise _error(
            source,
            None,
            f"{num_vertices} vertex lines as the header says, the file ends after {len(vertex_lines)}",
        )
    if len(face_lines) < num_faces:
        raise _error(
            source, None, f"{num_faces} face lines as the header says, the file ends after {len(face_lines)}"
        )
    if len(lines) > body + num_vertices + num_faces:
        number, extra = lines[body + num_vertices + num_faces]
        raise _error(
            source, number, f"the end of the file after {num_faces} faces (the header's count)", extra
        )

    vertices = np.empty((num_vertices, 3), dtype=np.float64)
    for row, (number, line) in enumerate(vertex_lines):
        tokens = line.split()[:3]
        try:
            vertices[row] = [float(token) for token in tokens]
        except ValueError:  # a non-numeric token, or fewer than three
            raise _error(source, number, "a vertex 'x y z' of three finite numbers", line) from None
        if not np.isfinite(vertices[row]).all():
            raise _error(source, number, "a vertex 'x y z' of three finite numbers", line)

    triangles: list[tuple[int, int, int]] = []
    for number, line in face_lines:
        tokens = line.split()
        try:
            size = int(tokens[0])
            indices = [int(token) for token in tokens[1 : 1 + size]]
        except ValueError:
            raise _error(source, number, "a face 'k i_1 ... i_k' of integers", line) from None
        if size < 3:
            raise _error(source, number, "a face with at least 3 vertices", line)
        if len(indices) < size:
            raise _error(source, number, f"{size} vertex indices after the face size {size}", line)
        if min(indices) < 0 or max(indices) >= num_vertices:
            raise _error(source, number, f"vertex indices in 0..{num_vertices - 1}", line)
        triangles.extend((indices[0], indices[j], indices[j + 1]) for j in range(1, size - 1))
    if len(triangles) > MAX_FACES:
        raise _too_many_faces(source, len(triangles))
    faces = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    return Mesh(vertices=vertices, faces=faces)


def _too_many_faces(source: str, count: int) -> DatasetError:
    return DatasetError(
        f"{source}: expected at most {MAX_FACES:,} triangles (the renderer's bound on time and memory), "
        f"found {count:,}; simplify the mesh (e.g. quadric decimation) before rendering it"
    )


def _doubled_areas(mesh: Mesh) -> np.ndarray:
    corners = mesh.vertices[mesh.faces]
    return np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)


def _degenerate(mesh: Mesh) -> np.ndarray:
    """Triangles with a repeated vertex index or (relative to the mesh's extent) zero area."""
    f = mesh.faces
    repeated = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])
    used = mesh.vertices[np.unique(f)]
    extent = float(np.ptp(used, axis=0).max()) if len(used) else 0.0
    return repeated | (_doubled_areas(mesh) <= 1e-12 * max(extent, 1e-300) ** 2)


def mesh_defects(mesh: Mesh) -> list[str]:
    """What is wrong with a readable mesh but does not stop it rendering (module docstring)."""
    if len(mesh.faces) == 0:
        return []
    defects = []
    degenerate = int(_degenerate(mesh).sum())
    if degenerate:
        defects.append(
            f"{degenerate} of {len(mesh.faces)} triangles are degenerate (a repeated vertex or zero area) "
            "and are not drawn"
        )
    edges = np.sort(mesh.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, uses = np.unique(edges[:, 0] * len(mesh.vertices) + edges[:, 1], return_counts=True)
    shared = int((uses > 2).sum())
    if shared:
        defects.append(
            f"{shared} non-manifold edges (shared by more than two triangles); rendered as a triangle soup"
        )
    return defects


def check_drawable(mesh: Mesh, source: str = "mesh") -> None:
    """Raise a DatasetError naming ``source`` when the mesh has no face or only degenerate ones."""
    if len(mesh.faces) == 0:
        raise DatasetError(f"{source}: expected a mesh with at least one face, found none")
    if _degenerate(mesh).all():
        raise DatasetError(
            f"{source}: expected a mesh with some area, all its {len(mesh.faces)} triangles are degenerate"
        )


def read_off(path: str | Path) -> Mesh:
    """Read an ``.off`` file (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the mesh file ({error})") from None
    return parse_off(text, str(path))


def format_off(mesh: Mesh, decimals: int = 6) -> str:
    """The text of an ``.off`` file holding ``mesh`` (coordinates rounded to ``decimals`` places)."""
    lines = ["OFF", f"{len(mesh.vertices)} {len(mesh.faces)} 0"]
    lines += [" ".join(f"{value:.{decimals}f}" for value in vertex) for vertex in mesh.vertices.tolist()]
    lines += [f"3 {a} {b} {c}" for a, b, c in mesh.faces.tolist()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ClaClass:
    """One class of a ``.cla`` file: its name, parent (``"0"`` at the top) and model ids."""

    name: str
    parent: str
    ids: tuple[int, ...]


def parse_model_id(token: str) -> int | None:
    """``m123``, ``M123`` or ``123`` -> 123; None when ``token`` is no model id."""
    match = _MODEL_ID.match(token)
    return None if match is None else int(match.group(1))


def parse_cla(text: str, source: str = "<cla>") -> list[ClaClass]:
    """Parse the text of a Princeton ``.cla`` file (see the module docstring) into its classes, in order."""
    lines = _content_lines(text)
    if not lines or lines[0][1].split() != ["PSB", "1"]:
        number, found = lines[0] if lines else (None, None)
        raise _error(source, number, "the format line 'PSB 1'", found)
    if len(lines) < 2 or len(lines[1][1].split()) != 2 or not all(t.isdigit() for t in lines[1][1].split()):
        number, found = lines[1] if len(lines) > 1 else (None, None)
        raise _error(source, number, "'<numClasses> <numModels>'", found)
    num_classes, num_models = (int(token) for token in lines[1][1].split())

    classes: list[ClaClass] = []
    owner: dict[int, str] = {}
    position = 2
    while position < len(lines):
        number, header = lines[position]
        tokens = header.split()
        if len(tokens) != 3 or not tokens[2].isdigit():
            raise _error(source, number, "a class header '<className> <parentClass|0> <count>'", header)
        name, parent, count = tokens[0], tokens[1], int(tokens[2])
        if any(c.name == name for c in classes):
            raise _error(source, number, f"a new class name, {name!r} is declared twice", header)
        ids = []
        for number, line in lines[position + 1 : position + 1 + count]:
            model = parse_model_id(line)
            if model is None:
                raise _error(
                    source,
                    number,
                    f"a model id (class {name!r} declares {count}, {len(ids)} read so far)",
                    line,
                )
            if model in owner:
                raise _error(
                    source,
                    number,
                    f"each model in one class, model {model} is already in {owner[model]!r}",
                    line,
                )
            owner[model] = name
            ids.append(model)
        if len(ids) < count:
            raise _error(
                source,
                None,
                f"{count} model ids in class {name!r} as its header says, the file ends after {len(ids)}",
            )
        classes.append(ClaClass(name=name, parent=parent, ids=tuple(ids)))
        position += 1 + count
    if len(classes) != num_classes:
        raise _error(source, None, f"{num_classes} classes as its second line says, found {len(classes)}")
    if len(owner) != num_models:
        raise _error(source, None, f"{num_models} models as its second line says, found {len(owner)}")
    return classes


def read_cla(path: str | Path) -> list[ClaClass]:
    """Read a Princeton ``.cla`` file (see :func:`parse_cla`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the class file ({error})") from None
    return parse_cla(text, str(path))
