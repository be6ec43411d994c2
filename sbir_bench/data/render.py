"""Headless CPU rendering of 3D meshes into view images, and their on-disk cache.

Sketch-based 3D shape retrieval methods compare sketches with 2D views of each model. This module
renders them without a display, OpenGL or a GPU: a vectorised NumPy z-buffer rasteriser (exact
point-in-triangle tests at pixel centres, nearest surface wins, ties to the lower face index), fast
enough for SHREC (a 20k-face mesh renders 12 views at 128 px in well under a second on one core) and
free of extra dependencies.

Recipes (:class:`ViewRecipe`), cameras looking at the origin, ``elevation`` measured from the ground
plane, azimuth about the up axis:

- ``ring``: ``num_views`` views every ``360/num_views`` degrees of azimuth at ``elevation`` (default 12
  views every 30 degrees at 30 degrees: MVCNN, Su et al. ICCV'15, as rendered by Thong et al. CVIU'20);
- ``two``: Wang et al. (CVPR'15) fix two viewpoints for the whole collection of upright models; the
  exact directions are UNVERIFIED: we read them as azimuths 0 and 45 degrees at ``elevation``;
- ``dodecahedron``: the 20 vertices of a regular dodecahedron (light-field descriptor, Chen et al. 2003).

Projection and framing: the model is centred on its bounding-box centre and scaled into the unit
sphere; the projection is orthographic; each view is cropped to the object's projected bounding box
(exact: the bounding box of the projected vertices) grown by ``margin`` of its larger side on every
side, made square, and rasterised at ``image_size * supersample`` pixels, then reduced by block
averaging (block maximum for contours). ``up_axis`` names the model axis that points up (``y`` for
Princeton-style files, ``z`` for ModelNet-style ones).

Image kinds (8-bit grey PNG):

- ``depth``: 0 background; the surface from 51 (farthest possible, the far side of the unit sphere) to
  255 (nearest possible);
- ``silhouette``: 255 on the object, 0 elsewhere;
- ``shaded``: flat Lambert shading on black, two-sided (SHREC meshes are not consistently oriented),
  ambient 0.15, a light from the upper left of the camera;
- ``contour``: black lines on white (like a sketch): the silhouette outline, depth discontinuities (a
  jump of more than ``0.05`` of the unit-sphere radius between neighbouring pixels) and creases (normals
  of neighbouring faces more than 45 degrees apart).

Cache: ``<cache_dir>/renders/<digest>/view_XX.png`` plus ``recipe.json``, where the digest covers the
mesh file's identity (resolved path, size, modification time), the recipe and :data:`RENDERER_VERSION`.
Views are rendered into a temporary folder that is renamed into place, so a folder that exists is
complete; a folder that lacks a view (damaged by hand) is rendered again.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sbir_bench.data.mesh import Mesh, read_off
from sbir_bench.data.records import DatasetError
from sbir_bench.files import building_folder

RENDERER_VERSION = 1  # bump whenever rendered pixels change
IMAGE_KINDS = ("depth", "silhouette", "shaded", "contour")
VIEW_SETS = ("ring", "two", "dodecahedron")
UP_AXES = ("x", "y", "z")
RECIPE_FILE = "recipe.json"
_MAX_CANDIDATES = 1 << 22  # candidate pixels rasterised at once (bounds memory to ~200 MB)
_AMBIENT = 0.15
_LIGHT_IN_CAMERA = np.array([-0.4, 0.5, 1.0]) / np.linalg.norm([-0.4, 0.5, 1.0])  # (right, up, towards)
_DEPTH_JUMP = 0.05
_CREASE_COSINE = math.cos(math.radians(45.0))
_NEAREST_DEPTH_GREY, _FARTHEST_DEPTH_GREY = 1.0, 0.2
# A rotation taking the named up axis of the model to +y, the renderer's up axis (right-handed).
_TO_Y_UP = {
    "x": np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]),
    "y": np.eye(3),
    "z": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
}


@dataclass(frozen=True)
class ViewRecipe:
    """How a model becomes view images (see the module docstring); every field enters the cache key."""

    views: str = "ring"
    num_views: int = 12  # ring only
    elevation: float = 30.0  # degrees; ring and two
    image_kind: str = "shaded"
    image_size: int = 224
    margin: float = 0.1
    up_axis: str = "y"
    supersample: int = 2

    def __post_init__(self) -> None:
        if self.views not in VIEW_SETS:
            raise ValueError(f"unknown views {self.views!r}; expected one of {VIEW_SETS}")
        if self.image_kind not in IMAGE_KINDS:
            raise ValueError(f"unknown image_kind {self.image_kind!r}; expected one of {IMAGE_KINDS}")
        if self.up_axis not in UP_AXES:
            raise ValueError(f"unknown up_axis {self.up_axis!r}; expected one of {UP_AXES}")
        if self.num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {self.num_views}")
        if not -90.0 < self.elevation < 90.0:
            raise ValueError(f"elevation must be strictly between -90 and 90 degrees, got {self.elevation}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if not 0.0 <= self.margin <= 1.0:
            raise ValueError(f"margin must be in [0, 1], got {self.margin}")
        if self.supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {self.supersample}")

    @property
    def count(self) -> int:
        """How many views the recipe renders."""
        return {"ring": self.num_views, "two": 2, "dodecahedron": 20}[self.views]

    def directions(self) -> np.ndarray:
        """Unit vectors from the origin towards each camera, ``[count, 3]``, in the y-up frame."""
        if self.views == "dodecahedron":
            return _dodecahedron_vertices()
        step = 360.0 / self.num_views if self.views == "ring" else 45.0
        azimuths = np.radians(np.arange(self.count) * step)
        elevation = math.radians(self.elevation)
        return np.stack(
            [
                math.cos(elevation) * np.sin(azimuths),
                np.full(self.count, math.sin(elevation)),
                math.cos(elevation) * np.cos(azimuths),
            ],
            axis=1,
        )


def _dodecahedron_vertices() -> np.ndarray:
    """The 20 vertices of a regular dodecahedron on the unit sphere, in a fixed order."""
    phi = (1 + math.sqrt(5)) / 2
    cube = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    rest = []
    for a in (-1, 1):
        for b in (-1, 1):
            rest += [(0, a / phi, b * phi), (a / phi, b * phi, 0), (a * phi, 0, b / phi)]
    vertices = np.array(cube + rest, dtype=np.float64)
    return vertices / np.linalg.norm(vertices, axis=1, keepdims=True)


def normalise(mesh: Mesh, up_axis: str = "y", source: str = "mesh") -> Mesh:
    """The faces' vertices centred on their bounding-box centre, scaled into the unit sphere, y up."""
    if len(mesh.faces) == 0:
        raise DatasetError(f"{source}: expected a mesh with at least one face, found none")
    used = mesh.vertices[np.unique(mesh.faces)]
    centre = (used.min(axis=0) + used.max(axis=0)) / 2
    radius = float(np.linalg.norm(used - centre, axis=1).max())
    if radius == 0.0:
        raise DatasetError(f"{source}: expected a mesh with some extent, all its face vertices coincide")
    vertices = (mesh.vertices - centre) / radius @ _TO_Y_UP[up_axis].T
    return Mesh(vertices=vertices, faces=mesh.faces)


def _camera(direction: np.ndarray) -> np.ndarray:
    """Rows: right, up and towards-the-camera unit vectors for a camera at ``direction``."""
    towards = direction / np.linalg.norm(direction)
    helper = np.array([0.0, 1.0, 0.0]) if abs(towards[1]) < 0.999 else np.array([0.0, 0.0, -1.0])
    right = np.cross(helper, towards)
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(towards, right), towards])


def rasterize(corners: np.ndarray, depths: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer ``[F, 3, 2]`` pixel-space triangles (x right, y down) with per-corner ``depths`` ``[F, 3]``.

    A pixel ``(row, col)`` is covered when its centre ``(col + 0.5, row + 0.5)`` lies in the triangle
    (edges included); the largest depth (nearest) wins. Returns ``(depth [size, size]`` with ``-inf`` on
    the background, ``face [size, size]`` with ``-1`` there).
    """
    depth_buffer = np.full(size * size, -np.inf)
    face_buffer = np.full(size * size, -1, dtype=np.int64)
    x, y = corners[..., 0], corners[..., 1]
    doubled_area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    col_lo = np.maximum(np.ceil(x.min(axis=1) - 0.5), 0).astype(np.int64)
    col_hi = np.minimum(np.floor(x.max(axis=1) - 0.5), size - 1).astype(np.int64)
    row_lo = np.maximum(np.ceil(y.min(axis=1) - 0.5), 0).astype(np.int64)
    row_hi = np.minimum(np.floor(y.max(axis=1) - 0.5), size - 1).astype(np.int64)
    widths = np.maximum(col_hi - col_lo + 1, 0)
    heights = np.maximum(row_hi - row_lo + 1, 0)
    counts = np.where(np.abs(doubled_area) > 1e-12, widths * heights, 0)
    faces = np.flatnonzero(counts)
    ends = np.cumsum(counts[faces])
    start = 0
    while start < len(faces):  # chunks of whole triangles with at most _MAX_CANDIDATES pixels (or one)
        offset = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, offset + _MAX_CANDIDATES, side="right")), start + 1)
        chunk = faces[start:stop]
        start = stop
        per_face = counts[chunk]
        face = np.repeat(chunk, per_face)
        local = np.arange(per_face.sum()) - np.repeat(np.cumsum(per_face) - per_face, per_face)
        col = col_lo[face] + local % widths[face]
        row = row_lo[face] + local // widths[face]
        px, py = col + 0.5, row + 0.5
        fx, fy, area = x[face], y[face], doubled_area[face]
        w0 = ((fx[:, 1] - px) * (fy[:, 2] - py) - (fx[:, 2] - px) * (fy[:, 1] - py)) / area
        w1 = ((fx[:, 2] - px) * (fy[:, 0] - py) - (fx[:, 0] - px) * (fy[:, 2] - py)) / area
        w2 = 1.0 - w0 - w1
        inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        face, pixel = face[inside], (row * size + col)[inside]
        z = (depths[face] * np.stack([w0[inside], w1[inside], w2[inside]], axis=1)).sum(axis=1)
        if len(z) == 0:
            continue
        # per pixel: nearest first, then the lower face index (a stable sort on one key, faster than lexsort)
        farness = (z.max() - z) / max(float(np.ptp(z)), 1e-300)  # in [0, 1]
        order = np.argsort(pixel * 2.0 + farness, kind="stable")
        pixel, z, face = pixel[order], z[order], face[order]
        first = np.ones(len(pixel), dtype=bool)
        first[1:] = pixel[1:] != pixel[:-1]
        pixel, z, face = pixel[first], z[first], face[first]
        nearer = z > depth_buffer[pixel]
        depth_buffer[pixel[nearer]] = z[nearer]
        face_buffer[pixel[nearer]] = face[nearer]
    return depth_buffer.reshape(size, size), face_buffer.reshape(size, size)


def _contour_lines(depth: np.ndarray, face: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Object pixels on the near side of an outline, depth jump or crease with a 4-neighbour."""
    lines = np.zeros(depth.shape, dtype=bool)
    padded_depth = np.pad(depth, 1, constant_values=-np.inf)
    padded_face = np.pad(face, 1, constant_values=-1)
    unit = np.zeros((len(normals) + 1, 3))
    unit[:-1] = normals  # index -1 (background) reads the zero row
    height, width = depth.shape
    for d_row, d_col in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        other_depth = padded_depth[1 + d_row : 1 + d_row + height, 1 + d_col : 1 + d_col + width]
        other_face = padded_face[1 + d_row : 1 + d_row + height, 1 + d_col : 1 + d_col + width]
        outline = other_face < 0
        both = (face >= 0) & ~outline
        jump = both & (np.abs(depth - np.where(both, other_depth, 0.0)) > _DEPTH_JUMP)
        cosine = np.abs((unit[face] * unit[other_face]).sum(axis=-1))
        crease = both & (face != other_face) & (cosine < _CREASE_COSINE)
        near_side = depth >= np.where(both, other_depth, -np.inf)
        lines |= (face >= 0) & (outline | ((jump | crease) & near_side))
    return lines


def _reduce(image: np.ndarray, factor: int, *, maximum: bool) -> np.ndarray:
    size = image.shape[0] // factor
    blocks = image.reshape(size, factor, size, factor)
    return blocks.max(axis=(1, 3)) if maximum else blocks.mean(axis=(1, 3))


def render_view(mesh: Mesh, direction: np.ndarray, recipe: ViewRecipe) -> np.ndarray:
    """One ``uint8 [image_size, image_size]`` view of a :func:`normalise`-d mesh from ``direction``."""
    camera = _camera(direction)
    view = mesh.vertices @ camera.T  # (right, up, towards) coordinates
    used = view[np.unique(mesh.faces)]
    low, high = used[:, :2].min(axis=0), used[:, :2].max(axis=0)
    side = max(float((high - low).max()) * (1 + 2 * recipe.margin), 1e-9)
    centre = (low + high) / 2
    size = recipe.image_size * recipe.supersample
    pixels = np.stack(
        [
            (view[:, 0] - centre[0] + side / 2) / side * size,
            (centre[1] + side / 2 - view[:, 1]) / side * size,
        ],
        axis=1,
    )
    triangles = view[mesh.faces]
    depth, face = rasterize(pixels[mesh.faces], triangles[..., 2], size)
    covered = face >= 0
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, lengths, out=np.zeros_like(normals), where=lengths > 0)
    if recipe.image_kind == "contour":
        lines = _reduce(
            _contour_lines(depth, face, normals).astype(np.float64), recipe.supersample, maximum=True
        )
        return np.round(255 * (1.0 - lines)).astype(np.uint8)
    if recipe.image_kind == "silhouette":
        value = covered.astype(np.float64)
    elif recipe.image_kind == "depth":
        nearness = (np.where(covered, depth, -1.0) + 1) / 2  # the unit sphere spans depths -1..1
        grey = _FARTHEST_DEPTH_GREY + (_NEAREST_DEPTH_GREY - _FARTHEST_DEPTH_GREY) * nearness
        value = np.where(covered, grey, 0.0)
    else:  # shaded
        lambert = _AMBIENT + (1 - _AMBIENT) * np.abs(normals @ _LIGHT_IN_CAMERA)
        value = np.where(covered, lambert[np.maximum(face, 0)], 0.0)
    return np.round(255 * _reduce(value, recipe.supersample, maximum=False)).astype(np.uint8)


def render_views(mesh: Mesh, recipe: ViewRecipe, source: str = "mesh") -> list[np.ndarray]:
    """Every view of ``recipe`` of a raw mesh (normalised here); ``source`` names it in errors."""
    normalised = normalise(mesh, recipe.up_axis, source)
    return [render_view(normalised, direction, recipe) for direction in recipe.directions()]


# --- cache ------------------------------------------------------------------------------------------
def view_names(recipe: ViewRecipe) -> list[str]:
    return [f"view_{index:02d}.png" for index in range(recipe.count)]


def views_folder(mesh_path: str | Path, recipe: ViewRecipe, cache_dir: str | Path) -> Path:
    """``<cache_dir>/renders/<digest>``: the digest covers the mesh file's identity and the recipe."""
    path = Path(mesh_path).resolve()
    stat = path.stat()
    key = {
        "mesh": str(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "recipe": asdict(recipe),
        "renderer": RENDERER_VERSION,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir) / "renders" / digest


def cached_views_ready(folder: Path, recipe: ViewRecipe) -> bool:
    """Whether ``folder`` holds every view of ``recipe`` (each a non-empty file)."""
    for name in view_names(recipe):
        try:
            if (folder / name).stat().st_size == 0:
                return False
        except FileNotFoundError:
            return False
    return True


def cached_views(mesh_path: str | Path, recipe: ViewRecipe, cache_dir: str | Path) -> tuple[str, ...]:
    """The view PNG paths of a mesh file, rendered now unless a complete cached copy exists.

    Concurrent callers (DDP ranks, worker processes) may render the same mesh: each writes its own
    temporary folder and the first rename wins; the others discard theirs.
    """
    folder = views_folder(mesh_path, recipe, cache_dir)
    paths = tuple(str(folder / name) for name in view_names(recipe))
    if cached_views_ready(folder, recipe):
        return paths
    images = render_views(read_off(mesh_path), recipe, source=str(mesh_path))
    with building_folder(folder) as building:  # an incomplete folder is replaced; a rival's copy is kept
        for name, image in zip(view_names(recipe), images, strict=True):
            Image.fromarray(image, mode="L").save(building / name, format="PNG")
        record = {
            "mesh": str(Path(mesh_path).resolve()),
            "recipe": asdict(recipe),
            "renderer": RENDERER_VERSION,
        }
        (building / RECIPE_FILE).write_text(json.dumps(record, indent=1, sort_keys=True))
    return paths
