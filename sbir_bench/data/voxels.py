"""Occupancy grids of 3D meshes (voxelisation), their on-disk cache and pictures.

Sketch -> voxel methods (sketch2voxel) reconstruct a shape as a boolean occupancy grid, scored against
the grids of the query's class models (:mod:`sbir_bench.evaluation.reconstruction`). This module makes
those grids from the suite's ``.off`` meshes with NumPy and SciPy only (no trimesh, open3d or a GPU).

Grid: :func:`voxelise` first :func:`~sbir_bench.data.render.normalise`-s the mesh (centred on its
bounding-box centre, scaled into the unit sphere, the dataset's up axis turned to +y), then covers the
cube ``[-1, 1]^3`` with ``R^3`` voxels, array axes ``(x, y, z)`` with y up: voxel ``i`` spans
``[-1 + i * 2/R, -1 + (i + 1) * 2/R)`` along each axis (the last one also holds ``+1``).

Surface: every triangle is sampled on a regular barycentric lattice ``P0 + (i/n)(P1 - P0) +
(j/n)(P2 - P0)``, ``0 <= i + j <= n``, with ``n = ceil(longest edge / (voxel / 3))``: its corners, its
edges and its inside, every sub-triangle's longest edge at most a third of a voxel, so every point of
the triangle lies within ``voxel / (3 sqrt 3) ~ 0.19`` voxel of a sample (the farthest a point of a
triangle can be from its nearest corner is its longest edge over ``sqrt 3``). Each sample marks the voxel
that holds it. A voxel the triangle only grazes (its part there fits in no disc of radius 0.19 voxel)
may stay empty. A sample on a boundary between voxels (within :data:`_ON_BOUNDARY` = 1e-6 voxel) marks
the voxels on both sides, as a surface there touches both: a flat face is one voxel thick, or two when
it lies on a voxel boundary, and a mirror-symmetric mesh gives a mirror-symmetric grid whatever the
rounding of its coordinates (its mirror plane through the centre is a voxel boundary at an even
resolution, and the half-open spans alone would put what lies on it on one side). Samples are generated
per lattice size and in chunks of at most :data:`_MAX_SAMPLES` points, so memory stays bounded whatever
the mesh's size (one core: a synthetic_3d model of a few hundred faces takes about 20 ms at 32^3; an
82k-face sphere 0.3 s at 32^3 and 2.1 s at 256^3, about 130 MB above the process's own).

Inside: ``scipy.ndimage.binary_fill_holes`` fills every empty region that no 6-connected path of empty
voxels joins to the grid's border. A closed (watertight) surface is therefore filled; an open mesh (a
single sheet, a box without its lid, a surface with a gap that leaves a 6-connected path of empty
voxels) stays a shell of its surface voxels. Degenerate triangles are sampled along their (zero-area)
extent like any other; a mesh with no face or only degenerate ones is refused
(:func:`~sbir_bench.data.mesh.check_drawable`).

Cache: ``<cache_dir>/voxels/<digest>.npy`` holds ``np.packbits`` of the flattened grid (``R^3 / 8``
bytes), the digest covering the mesh file's content (SHA-256), the resolution, the up axis and
:data:`VOXELISER_VERSION`. Files are written atomically (a concurrent writer's copy is identical); a
damaged file is logged as a warning and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
from scipy import ndimage

from sbir_bench.data.mesh import Mesh, check_drawable, read_off
from sbir_bench.data.records import DatasetError
from sbir_bench.data.render import UP_AXES, ViewRecipe, normalise, render_view
from sbir_bench.files import atomic_save_npy, sha256_file

__all__ = [
    "VOXELISER_VERSION",
    "cached_voxels",
    "check_resolution",
    "voxel_image",
    "voxelise",
    "voxels_file",
]

log = logging.getLogger(__name__)

VOXELISER_VERSION = 1  # bump whenever the grids change; part of the cache key
MIN_RESOLUTION, MAX_RESOLUTION = 2, 256
_SAMPLES_PER_VOXEL = 3  # lattice steps per voxel along a triangle's longest edge
_ON_BOUNDARY = 1e-6  # voxels: a sample this close to a voxel boundary marks the voxels on both sides
_MAX_SAMPLES = 1 << 20  # surface samples held at once (1M points: about 25 MB per coordinate array)
# the second view of an 8-view ring: azimuth 45, elevation 30 degrees (three faces of a box in view)
_IMAGE_DIRECTION = ViewRecipe(views="ring", num_views=8, elevation=30.0).directions()[1]
_UNIT_CUBE = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float64)
# the exposed face of a voxel towards each of the 6 neighbours: (axis, side, the face's 4 corners in order)
_FACES = tuple(
    (axis, side, _UNIT_CUBE[_UNIT_CUBE[:, axis] == side][[0, 1, 3, 2]])
    for axis in range(3)
    for side in (0, 1)
)


def check_resolution(resolution: int) -> int:
    """``resolution`` as an int; a ValueError unless it is an integer in 2..256."""
    try:
        whole = not isinstance(resolution, bool) and int(resolution) == resolution
    except (TypeError, ValueError):
        whole = False
    if not whole:
        raise ValueError(
            f"resolution must be an integer in {MIN_RESOLUTION}..{MAX_RESOLUTION}, got {resolution!r}"
        )
    if not MIN_RESOLUTION <= int(resolution) <= MAX_RESOLUTION:
        raise ValueError(f"resolution must be in {MIN_RESOLUTION}..{MAX_RESOLUTION}, got {resolution}")
    return int(resolution)


def _lattice(n: int) -> np.ndarray:
    """Barycentric steps ``(i/n, j/n)`` for ``0 <= i + j <= n``, float ``[(n + 1)(n + 2) / 2, 2]``."""
    i, j = np.triu_indices(n + 1)  # j >= i: (i, j - i) runs over every pair summing to at most n
    return np.stack([i, j - i], axis=1).astype(np.float64) / n


def _mark_surface(grid: np.ndarray, corners: np.ndarray) -> None:
    """Mark in ``grid`` the voxel of every lattice sample of the triangles ``corners`` ``[F, 3, 3]``."""
    resolution = grid.shape[0]
    step = 2.0 / resolution / _SAMPLES_PER_VOXEL
    edges = np.stack([corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]], axis=1)
    longest = np.linalg.norm(corners - corners[:, [1, 2, 0]], axis=2).max(axis=1)
    steps = np.maximum(np.ceil(longest / step), 1).astype(np.int64)
    for n in np.unique(steps):
        lattice = _lattice(int(n))
        members = np.flatnonzero(steps == n)
        per_chunk = max(1, _MAX_SAMPLES // len(lattice))
        for start in range(0, len(members), per_chunk):
            chunk = members[start : start + per_chunk]
            # P0 + u (P1 - P0) + v (P2 - P0): exact on a face whose corners share a coordinate
            points = corners[chunk, None, 0] + np.einsum("kb,fbc->fkc", lattice, edges[chunk])
            _mark_points(grid, points.reshape(-1, 3))


def _mark_points(grid: np.ndarray, points: np.ndarray) -> None:
    """Mark the voxel holding each point ``[P, 3]`` of ``[-1, 1]^3``, and for a point within
    :data:`_ON_BOUNDARY` voxel of a boundary the voxels on both sides (every combination per axis)."""
    resolution = grid.shape[0]
    scaled = (points + 1.0) * (resolution / 2)  # voxel units: voxel i spans [i, i + 1)
    above = np.clip(np.floor(scaled + _ON_BOUNDARY), 0, resolution - 1).astype(np.int64)
    below = np.clip(np.floor(scaled - _ON_BOUNDARY), 0, resolution - 1).astype(np.int64)
    grid[above[:, 0], above[:, 1], above[:, 2]] = True
    straddle = (above != below).any(axis=1)
    if straddle.any():
        above, below = above[straddle], below[straddle]
        for pick in np.ndindex(2, 2, 2):  # each axis: the voxel above or below the boundary
            index = [(below if side else above)[:, axis] for axis, side in enumerate(pick)]
            grid[index[0], index[1], index[2]] = True


def voxelise(mesh: Mesh, resolution: int = 32, up_axis: str = "y", source: str = "mesh") -> np.ndarray:
    """The occupancy grid of ``mesh``: bool ``[R, R, R]``, axes (x, y, z), y up (module docstring).

    Surface voxels from lattice samples of every triangle, then the inside filled
    (``binary_fill_holes``: a closed surface is filled, an open one stays a shell). A mesh with no face
    or only degenerate ones raises a DatasetError naming ``source``; ``resolution`` outside 2..256 a
    ValueError.
    """
    resolution = check_resolution(resolution)
    if up_axis not in UP_AXES:
        raise ValueError(f"unknown up_axis {up_axis!r}; expected one of {UP_AXES}")
    check_drawable(mesh, source)
    normalised = normalise(mesh, up_axis, source)
    grid = np.zeros((resolution,) * 3, dtype=bool)
    _mark_surface(grid, normalised.vertices[normalised.faces])
    return ndimage.binary_fill_holes(grid)


# --- cache ------------------------------------------------------------------------------------------
def voxels_file(mesh_path: str | Path, resolution: int, up_axis: str, cache_dir: str | Path) -> Path:
    """``<cache_dir>/voxels/<digest>.npy``: the digest covers the mesh file's content and the options."""
    try:
        content = sha256_file(mesh_path)
    except OSError as error:
        raise DatasetError(f"{mesh_path}: cannot read the mesh file ({error})") from None
    key = {
        "mesh_sha256": content,
        "resolution": resolution,
        "up_axis": up_axis,
        "voxeliser": VOXELISER_VERSION,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir) / "voxels" / f"{digest}.npy"


def _read_cached(path: Path, resolution: int) -> np.ndarray | None:
    """The grid stored in ``path``, or None when the file is missing or damaged (a warning for the latter)."""
    if not path.exists():
        return None
    expected = (math.ceil(resolution**3 / 8),)
    try:
        packed = np.load(path, allow_pickle=False)
        if not isinstance(packed, np.ndarray):  # e.g. an .npz archive
            raise ValueError(f"expected one array, found {type(packed).__name__}")
        if packed.dtype != np.uint8 or packed.shape != expected:
            raise ValueError(f"expected uint8 {expected}, found {packed.dtype} {packed.shape}")
    except (OSError, ValueError, EOFError) as error:
        log.warning("%s: damaged voxel cache file (%s); voxelising again", path, error)
        return None
    return np.unpackbits(packed, count=resolution**3).astype(bool).reshape((resolution,) * 3)


def cached_voxels(mesh_path: str | Path, resolution: int, up_axis: str, cache_dir: str | Path) -> np.ndarray:
    """The occupancy grid (bool ``[R, R, R]``, :func:`voxelise`) of an ``.off`` file, read from the cache
    under ``cache_dir`` or computed now and stored there (module docstring). A malformed or undrawable
    mesh raises :func:`~sbir_bench.data.mesh.read_off`'s DatasetError naming the file."""
    resolution = check_resolution(resolution)
    if up_axis not in UP_AXES:
        raise ValueError(f"unknown up_axis {up_axis!r}; expected one of {UP_AXES}")
    path = voxels_file(mesh_path, resolution, up_axis, cache_dir)
    grid = _read_cached(path, resolution)
    if grid is None:
        grid = voxelise(read_off(mesh_path), resolution, up_axis, source=str(mesh_path))
        atomic_save_npy(path, np.packbits(grid.reshape(-1)))
    return grid


# --- pictures and scores -------------------------------------------------------------------------------
def _exposed_faces(grid: np.ndarray) -> Mesh:
    """The voxel faces between an occupied voxel and an empty one (or the grid's border), as triangles in
    the ``[-1, 1]^3`` frame, plus the cube's 8 corners as zero-area triangles (they fix the framing)."""
    resolution = grid.shape[0]
    padded = np.pad(grid, 1)
    quads = []
    for axis, side, corners in _FACES:
        neighbour = np.roll(padded, -1 if side else 1, axis=axis)[1:-1, 1:-1, 1:-1]
        voxels = np.argwhere(grid & ~neighbour).astype(np.float64)
        quads.append(voxels[:, None, :] + corners[None])
    quads = np.concatenate(quads) * (2.0 / resolution) - 1.0  # [Q, 4, 3]
    vertices = np.concatenate([quads.reshape(-1, 3), 2.0 * _UNIT_CUBE - 1.0])
    first = 4 * np.arange(len(quads))[:, None]
    faces = np.concatenate([first + [0, 1, 2], first + [0, 2, 3]])
    frame = len(quads) * 4 + np.repeat(np.arange(8)[:, None], 3, axis=1)
    return Mesh(vertices=vertices, faces=np.concatenate([faces, frame]).astype(np.int64))


def voxel_image(grid: np.ndarray, size: int = 96) -> np.ndarray:
    """A shaded picture of an occupancy grid, uint8 ``[size, size]``, seen from azimuth 45 and elevation 30
    degrees (the ring views' elevation; :mod:`sbir_bench.data.render`'s shaded Lambert look: the three
    visible face orientations in three greys) on a white background.

    ``grid``: ``[R, R, R]``, any non-zero value occupied (threshold predicted probabilities first). The
    exposed voxel faces are rendered as a mesh framed on the whole grid cube (not on the occupied part),
    so pictures of different grids of one resolution share a scale; an empty grid gives a blank (white)
    picture.
    """
    grid = np.asarray(grid, dtype=bool)
    if grid.ndim != 3 or len(set(grid.shape)) != 1:
        raise ValueError(f"expected a cubic grid [R, R, R], got shape {grid.shape}")
    if not grid.any():
        return np.full((size, size), 255, dtype=np.uint8)
    mesh = _exposed_faces(grid)
    shaded = render_view(
        mesh, _IMAGE_DIRECTION, ViewRecipe(image_kind="shaded", image_size=size, margin=0.02)
    )
    covered = render_view(
        mesh, _IMAGE_DIRECTION, ViewRecipe(image_kind="silhouette", image_size=size, margin=0.02)
    )
    # over white: a pixel covered by a share a of its subsamples is shaded + (1 - a) * 255
    return (shaded.astype(np.int64) + 255 - covered).clip(0, 255).astype(np.uint8)
