"""The CPU renderer: recipes, rasterisation, the four image kinds and the view cache."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sbir_bench.data import render
from sbir_bench.data.mesh import Mesh, parse_off
from sbir_bench.data.records import DatasetError
from sbir_bench.data.render import (
    ViewRecipe,
    cached_views,
    normalise,
    rasterize,
    render_view,
    render_views,
    views_folder,
)

CUBE_OFF = """OFF
8 6 0
0 0 0
1 0 0
1 1 0
0 1 0
0 0 1
1 0 1
1 1 1
0 1 1
4 0 3 2 1
4 4 5 6 7
4 0 1 5 4
4 2 3 7 6
4 1 2 6 5
4 0 4 7 3
"""
TETRAHEDRON_OFF = "OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"


def cube() -> Mesh:
    return parse_off(CUBE_OFF)


def front_view(
    mesh: Mesh, kind: str, size: int = 32, azimuth: float = 0.0, margin: float = 0.1
) -> np.ndarray:
    """One view at elevation 0 from ``azimuth`` degrees (0: looking along -z)."""
    recipe = ViewRecipe(image_kind=kind, image_size=size, margin=margin, elevation=0.0)
    direction = np.array([math.sin(math.radians(azimuth)), 0.0, math.cos(math.radians(azimuth))])
    return render_view(normalise(mesh), direction, recipe)


# --- recipes -----------------------------------------------------------------------------------------
def test_ring_recipe_is_twelve_views_every_30_degrees_at_30_degrees_elevation():
    directions = ViewRecipe().directions()
    assert directions.shape == (12, 3)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0)
    np.testing.assert_allclose(np.degrees(np.arcsin(directions[:, 1])), 30.0)
    azimuths = np.degrees(np.arctan2(directions[:, 0], directions[:, 2])) % 360
    np.testing.assert_allclose(azimuths, np.arange(12) * 30.0, atol=1e-9)
    assert ViewRecipe(num_views=5).directions().shape == (5, 3)


def test_two_view_and_dodecahedron_recipes():
    two = ViewRecipe(views="two").directions()
    assert two.shape == (2, 3) and not np.allclose(two[0], two[1])
    dodecahedron = ViewRecipe(views="dodecahedron").directions()
    assert dodecahedron.shape == (20, 3) and ViewRecipe(views="dodecahedron").count == 20
    np.testing.assert_allclose(np.linalg.norm(dodecahedron, axis=1), 1.0)
    cosines = dodecahedron @ dodecahedron.T
    np.fill_diagonal(cosines, -2)
    nearest = np.degrees(np.arccos(cosines.max(axis=1)))
    np.testing.assert_allclose(nearest, nearest[0])  # every vertex has its neighbours at the same angle
    assert len({tuple(np.round(d, 9)) for d in dodecahedron}) == 20


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"views": "sphere"}, "unknown views 'sphere'; expected one of"),
        ({"image_kind": "normal"}, "unknown image_kind 'normal'"),
        ({"up_axis": "w"}, "unknown up_axis 'w'"),
        ({"num_views": 0}, "num_views must be >= 1"),
        ({"elevation": 90.0}, "elevation must be strictly between -90 and 90"),
        ({"image_size": 4}, "image_size must be >= 8"),
        ({"margin": -0.1}, r"margin must be in \[0, 1\]"),
        ({"supersample": 0}, "supersample must be >= 1"),
    ],
)
def test_recipe_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        ViewRecipe(**options)


# --- rasteriser ----------------------------------------------------------------------------------------
def test_rasterize_covers_the_pixel_centres_inside_a_triangle():
    corners = np.array([[[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]]])
    depth, face = rasterize(corners, np.array([[0.5, 0.5, 0.5]]), 4)
    rows, cols = np.indices((4, 4))
    np.testing.assert_array_equal(face >= 0, rows + cols <= 3)  # centre (c+.5, r+.5) with x + y <= 4
    assert np.all(depth[face >= 0] == 0.5) and np.all(np.isneginf(depth[face < 0]))


def test_rasterize_keeps_the_nearest_surface_whatever_the_order():
    square = np.array([[[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]], [[8.0, 0.0], [8.0, 8.0], [0.0, 8.0]]])
    far, near = np.full((2, 3), -0.5), np.full((2, 3), 0.25)
    for first, second, nearest_faces in ((far, near, {2, 3}), (near, far, {0, 1})):
        depth, face = rasterize(np.concatenate([square, square]), np.concatenate([first, second]), 8)
        assert set(np.unique(face).tolist()) == nearest_faces and np.all(depth == 0.25)


def test_rasterize_in_chunks_matches_one_pass(monkeypatch):
    mesh = normalise(cube())
    recipe = ViewRecipe(image_kind="depth", image_size=24)
    whole = render_views(mesh, recipe)
    monkeypatch.setattr(render, "_MAX_CANDIDATES", 50)
    for single, chunked in zip(whole, render_views(mesh, recipe), strict=True):
        np.testing.assert_array_equal(single, chunked)


# --- image kinds -----------------------------------------------------------------------------------------
def test_cube_silhouette_fills_the_crop_but_its_margin_and_is_symmetric():
    silhouette = front_view(cube(), "silhouette", size=50, margin=0.1)
    covered = silhouette > 127
    assert covered.mean() == pytest.approx(1 / 1.2**2, abs=0.03)  # a square of side 1/(1 + 2 * margin)
    np.testing.assert_array_equal(silhouette, silhouette[:, ::-1])
    np.testing.assert_array_equal(silhouette, silhouette[::-1, :])
    assert set(np.unique(silhouette).tolist()) <= {0, 127, 128, 255}  # edges anti-aliased at most by half
    assert silhouette[0].max() == 0 and silhouette[25, 25] == 255


def test_depth_is_brighter_where_the_surface_is_nearer():
    corner_on = front_view(cube(), "depth", size=40, azimuth=45.0)  # the nearest edge runs down the middle
    middle_row = corner_on[20]
    covered = np.flatnonzero(middle_row)
    assert middle_row[20] > middle_row[covered[1]] and middle_row[20] > middle_row[covered[-2]]
    assert middle_row[0] == 0
    # two boxes: the small one in front of the big one is brighter
    big, small = cube(), cube()
    two_boxes = Mesh(
        np.concatenate([big.vertices, small.vertices * 0.4 + [0.3, 0.3, 1.5]]),
        np.concatenate([big.faces, small.faces + 8]),
    )
    depth = front_view(two_boxes, "depth", size=40, margin=0.0)
    assert depth[20, 20] > depth[3, 3] > 0


def test_shaded_is_lit_on_black_and_faces_differ():
    shaded = render_views(cube(), ViewRecipe(image_kind="shaded", image_size=32, num_views=1))[0]
    assert shaded[0, 0] == 0 and shaded[16, 16] > 0
    object_pixels = shaded[shaded > 0]
    assert len(np.unique(object_pixels)) > 2, "the front and top faces of the cube get different light"


def test_contour_draws_outline_and_the_crease_in_front():
    contour = front_view(cube(), "contour", size=40, azimuth=45.0)
    assert contour[0, 0] == 255, "white background"
    silhouette = front_view(cube(), "silhouette", size=40, azimuth=45.0) > 0
    rows = np.flatnonzero(silhouette[:, 20])
    interior = contour[rows[3] : rows[-3], 18:22]
    assert (interior == 0).any(axis=1).all(), "the vertical front edge of the cube is a line"
    assert contour[20, 10] == 255, "a flat face carries no line"
    outline_rows = np.flatnonzero(silhouette.any(axis=1))
    assert (contour[outline_rows[0]] == 0).any(), "the top of the outline is drawn"


def test_views_differ_by_azimuth_and_rendering_is_deterministic():
    mesh = parse_off(TETRAHEDRON_OFF)
    recipe = ViewRecipe(image_kind="shaded", image_size=32, num_views=4)
    views = render_views(mesh, recipe)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.array_equal(views[i], views[j]), f"views {i} and {j} are the same"
    again = render_views(mesh, recipe)
    for first, second in zip(views, again, strict=True):
        np.testing.assert_array_equal(first, second)


def test_up_axis_turns_the_model():
    tall = Mesh(cube().vertices * [1.0, 1.0, 3.0], cube().faces)  # tall along z
    level = {"image_kind": "silhouette", "image_size": 32, "num_views": 1, "elevation": 0.0}
    z_up = render_views(tall, ViewRecipe(**level, up_axis="z"))[0]
    y_up = render_views(tall, ViewRecipe(**level, up_axis="y"))[0]
    z_rows, z_cols = np.flatnonzero(z_up.any(axis=1)), np.flatnonzero(z_up.any(axis=0))
    y_rows, y_cols = np.flatnonzero(y_up.any(axis=1)), np.flatnonzero(y_up.any(axis=0))
    assert np.ptp(z_rows) > 2 * np.ptp(z_cols), "z up: the tall side stands upright"
    assert np.ptp(y_rows) == np.ptp(y_cols), "y up: the tall side points at the camera (a square end)"


def test_meshes_that_cannot_be_rendered_are_dataset_errors():
    with pytest.raises(DatasetError, match="^m.off: expected a mesh with at least one face, found none"):
        render_views(Mesh(np.zeros((3, 3)), np.zeros((0, 3), dtype=np.int64)), ViewRecipe(), "m.off")
    point = Mesh(np.ones((3, 3)), np.array([[0, 1, 2]]))
    with pytest.raises(DatasetError, match="^m.off: expected a mesh with some extent"):
        render_views(point, ViewRecipe(), "m.off")


# --- cache ---------------------------------------------------------------------------------------------
@pytest.fixture
def mesh_file(tmp_path) -> Path:
    path = tmp_path / "m1.off"
    path.write_text(TETRAHEDRON_OFF)
    return path


def test_cached_views_are_written_once_and_reused(mesh_file, tmp_path, monkeypatch):
    recipe = ViewRecipe(image_size=16, num_views=3)
    paths = cached_views(mesh_file, recipe, tmp_path / "cache")
    folder = views_folder(mesh_file, recipe, tmp_path / "cache")
    assert [Path(p) for p in paths] == [folder / f"view_{i:02d}.png" for i in range(3)]
    assert folder.parent == tmp_path / "cache" / "renders"
    assert all(Image.open(p).size == (16, 16) for p in paths)
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name], "no temporary folder left"

    def fail(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(render, "render_views", fail)
    assert cached_views(mesh_file, recipe, tmp_path / "cache") == paths


def test_partial_cache_is_rendered_again(mesh_file, tmp_path):
    recipe = ViewRecipe(image_size=16, num_views=3)
    paths = cached_views(mesh_file, recipe, tmp_path / "cache")
    original = Path(paths[1]).read_bytes()
    Path(paths[1]).unlink()
    Path(paths[2]).write_bytes(b"")
    assert cached_views(mesh_file, recipe, tmp_path / "cache") == paths
    assert Path(paths[1]).read_bytes() == original and Path(paths[2]).stat().st_size > 0
    assert len(list((tmp_path / "cache" / "renders").iterdir())) == 1, "the incomplete copy is gone"


def test_cache_key_follows_the_recipe_and_the_mesh_file(mesh_file, tmp_path):
    cache = tmp_path / "cache"
    base = views_folder(mesh_file, ViewRecipe(), cache)
    assert views_folder(mesh_file, ViewRecipe(), cache) == base
    assert views_folder(mesh_file, ViewRecipe(image_kind="depth"), cache) != base
    assert views_folder(mesh_file, ViewRecipe(image_size=32), cache) != base
    stat = mesh_file.stat()
    os.utime(mesh_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert views_folder(mesh_file, ViewRecipe(), cache) != base


def test_cached_views_are_byte_identical_across_caches(mesh_file, tmp_path):
    recipe = ViewRecipe(image_kind="contour", image_size=16, views="two")
    first = cached_views(mesh_file, recipe, tmp_path / "a")
    second = cached_views(mesh_file, recipe, tmp_path / "b")
    assert [Path(p).read_bytes() for p in first] == [Path(p).read_bytes() for p in second]


def test_malformed_mesh_file_leaves_no_cache(tmp_path):
    path = tmp_path / "m2.off"
    path.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n")
    with pytest.raises(DatasetError, match=rf"^{path}, line 6: expected vertex indices in 0\.\.2"):
        cached_views(path, ViewRecipe(image_size=16), tmp_path / "cache")
    assert not (tmp_path / "cache" / "renders").exists() or not any(
        (tmp_path / "cache" / "renders").iterdir()
    )
