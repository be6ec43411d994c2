"""Voxelisation of meshes (:mod:`sbir_bench.data.voxels`): grids checked against hand-computed counts and
analytic volumes, the cache, pictures, IoU, ``Catalog.meshes`` and ``RetrievalDataModule.shape_voxels``."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from sbir_bench.data import voxels
from sbir_bench.data.mesh import Mesh, format_off, read_off
from sbir_bench.data.modules import RetrievalDataModule
from sbir_bench.data.readers.shrec import build_shrec13
from sbir_bench.data.records import DatasetError
from sbir_bench.data.voxels import cached_voxels, voxel_image, voxelise

from .readers.test_shrec import TINY, make_shrec13


def box(a: float, b: float, c: float, lid: bool = True) -> Mesh:
    """The closed box ``[-a, a] x [-b, b] x [-c, c]`` (12 triangles; without the +y face when not ``lid``)."""
    corners = np.array([[x, y, z] for x in (-a, a) for y in (-b, b) for z in (-c, c)], dtype=np.float64)
    faces = []
    for axis in range(3):
        for side in (0, 1):
            if axis == 1 and side == 1 and not lid:
                continue
            q = [i for i in range(8) if (i >> (2 - axis)) & 1 == side]  # the face's corners, bit order
            faces += [[q[0], q[1], q[3]], [q[0], q[3], q[2]]]
    return Mesh(vertices=corners, faces=np.array(faces, dtype=np.int64))


def occupied_range(grid: np.ndarray, axis: int) -> tuple[int, int]:
    """(first, last) index along ``axis`` holding an occupied voxel."""
    along = np.flatnonzero(grid.any(axis=tuple(k for k in range(3) if k != axis)))
    return int(along[0]), int(along[-1])


def test_a_closed_box_fills_exactly_the_voxels_it_overlaps():
    grid = voxelise(box(3, 2, 6), resolution=32)
    # normalise: centre 0, radius sqrt(3^2 + 2^2 + 6^2) = 7, so the box spans +-(3, 2, 6)/7; a voxel is
    # 2/32 = 1/16 wide, voxel i spans [-1 + i/16, -1 + (i + 1)/16): index of a coordinate = floor(16 (p + 1)).
    #   x: 16 (1 - 3/7) = 9.14 -> 9,   16 (1 + 3/7) = 22.86 -> 22: 14 voxels
    #   y: 16 (1 - 2/7) = 11.43 -> 11, 16 (1 + 2/7) = 20.57 -> 20: 10 voxels
    #   z: 16 (1 - 6/7) = 2.29 -> 2,   16 (1 + 6/7) = 29.71 -> 29: 28 voxels
    # every boundary voxel holds at least 0.57 voxel of its face in each direction (more than the
    # 0.19-voxel sampling radius), so all are marked and the fill gives 14 x 10 x 28 = 3920 voxels.
    # Tolerance: the box's own volume is 13.71 x 9.14 x 27.43 = 3439 voxel^3, and any box of that size
    # overlaps between ceil(L) and ceil(L) + 1 voxels per axis (14..15, 10..11, 28..29: 3920..4785);
    # with the offsets above the count is exact.
    assert [occupied_range(grid, axis) for axis in range(3)] == [(9, 22), (11, 20), (2, 29)]
    assert grid.sum() == 14 * 10 * 28 == 3920
    assert grid[9:23, 11:21, 2:30].all()


def turned_cube() -> Mesh:
    """The cube [-1, 1]^3 turned 45 degrees about y."""
    turn = math.radians(45)
    about_y = np.array(
        [[math.cos(turn), 0, math.sin(turn)], [0, 1, 0], [-math.sin(turn), 0, math.cos(turn)]],
        dtype=np.float64,
    )
    cube = box(1, 1, 1)
    return Mesh(cube.vertices @ about_y.T, cube.faces)


def test_a_cube_turned_45_degrees_has_the_analytic_volume():
    resolution = 64
    grid = voxelise(turned_cube(), resolution=resolution)
    # normalise: the corners lie at distance sqrt 3 from the centre, so the side is a = 2 / sqrt 3:
    # volume a^3 = 8 / (3 sqrt 3) = 1.5396, surface 6 a^2 = 8; a voxel is h = 2/64 = 1/32 wide
    h = 2 / resolution
    volume, area = 8 / (3 * math.sqrt(3)), 8.0
    counted = grid.sum() * h**3
    # the occupied voxels cover the solid, and each one's centre lies within half a diagonal (h sqrt3 / 2)
    # outside it: V <= count h^3 <= V + A h sqrt3 / 2 (= V + 0.1082, i.e. 1.00 .. 1.07 V)
    assert volume <= counted <= volume + area * h * math.sqrt(3) / 2
    # boundary voxels (an empty 6-neighbour) are on average half inside: count - boundary / 2 estimates V
    boundary = grid & ~ndimage.binary_erosion(grid)
    estimate = (grid.sum() - boundary.sum() / 2) * h**3
    assert estimate == pytest.approx(volume, rel=0.03)


def test_an_open_square_stays_a_one_voxel_thick_sheet():
    square = Mesh(
        vertices=np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=np.float64),
        faces=np.array([[0, 1, 2], [0, 2, 3]]),
    )
    grid = voxelise(square, resolution=33)
    # normalise: radius sqrt 2, corners at +-0.707 in x and y, z = 0; at R = 33 a voxel is 2/33 wide and
    # index = floor(16.5 (p + 1)): z -> 16.5 (mid-voxel, layer 16); x, y: floor(16.5 (1 -+ 0.707)) =
    # floor(4.83) = 4 .. floor(28.17) = 28, 25 voxels each: 25 x 25 = 625 voxels in layer 16, nothing else
    assert occupied_range(grid, 2) == (16, 16)
    assert grid.sum() == 25 * 25 == grid[4:29, 4:29, 16].sum()
    # at R = 32, z = 0 is the boundary between layers 15 and 16: the sheet touches both (24 x 24 each)
    even = voxelise(square, resolution=32)
    assert occupied_range(even, 2) == (15, 16) and even.sum() == 2 * 24 * 24 == even[4:28, 4:28, 15:17].sum()


def test_an_open_box_stays_a_shell():
    closed, open_ = voxelise(box(3, 2, 6)), voxelise(box(3, 2, 6, lid=False))
    # without its lid (the +y face, layer y = 20) nothing is filled: the inside x 10..21, z 3..28 of
    # layers y = 12..20 (12 x 26 voxels in each of 9 layers) stays empty, the walls and the bottom stay
    assert not open_[10:22, 12:21, 3:29].any()
    assert (open_ <= closed).all()
    assert open_.sum() == closed.sum() - 12 * 9 * 26


def test_a_symmetric_mesh_gives_a_symmetric_grid():
    octahedron = Mesh(
        vertices=np.array([[2, 0, 0], [-2, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 3], [0, 0, -3]], dtype=float),
        faces=np.array([[a, b, c] for a in (0, 1) for b in (2, 3) for c in (4, 5)]),
    )
    # at an even resolution the mirror planes x, y, z = 0 are voxel boundaries, and the octahedron's
    # corners and edges lie on them: both sides are marked, so the grid stays symmetric
    for resolution in (32, 33):
        grid = voxelise(octahedron, resolution=resolution)
        assert grid.sum() > 0
        for axis in range(3):
            np.testing.assert_array_equal(grid, np.flip(grid, axis=axis))
    # a cube turned 45 degrees about y: two vertical edges at x = +-1e-16 (cos 45 - sin 45 in floating
    # point), i.e. on the boundary x = 0 up to rounding
    grid = voxelise(turned_cube(), resolution=32)
    for axis in range(3):
        np.testing.assert_array_equal(grid, np.flip(grid, axis=axis))


def test_up_axis_z_turns_the_grid_as_normalise_does():
    tall = box(3, 2, 6)  # longest along z
    grid = voxelise(tall, up_axis="z")
    # (x, y, z) -> (x, z, -y): the 28-voxel extent moves to the array's y axis, the 10-voxel one to z
    assert [occupied_range(grid, axis) for axis in range(3)] == [(9, 22), (2, 29), (11, 20)]
    # an asymmetric mesh (a tetrahedron) voxelised with up_axis z equals the same mesh turned by hand
    tetrahedron = Mesh(
        vertices=np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0.2, 0.3, 1]], dtype=float),
        faces=np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]),
    )
    to_y_up = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=float)
    turned = Mesh(tetrahedron.vertices @ to_y_up.T, tetrahedron.faces)
    np.testing.assert_array_equal(voxelise(tetrahedron, up_axis="z"), voxelise(turned))
    assert not np.array_equal(voxelise(tetrahedron, up_axis="z"), voxelise(tetrahedron))


def test_bad_meshes_and_resolutions_are_clear_errors():
    degenerate = Mesh(
        vertices=np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], dtype=float), faces=np.array([[0, 1, 2]])
    )
    with pytest.raises(DatasetError, match="bent-line.off: .*degenerate"):
        voxelise(degenerate, source="bent-line.off")
    with pytest.raises(DatasetError, match="nothing.off: .*at least one face"):
        voxelise(Mesh(np.zeros((3, 3)), np.zeros((0, 3), dtype=np.int64)), source="nothing.off")
    for resolution in (1, 257, 2.5, True, "32", None):
        with pytest.raises(ValueError, match="resolution"):
            voxelise(box(1, 1, 1), resolution=resolution)
    with pytest.raises(ValueError, match="up_axis"):
        voxelise(box(1, 1, 1), up_axis="w")


@pytest.fixture
def box_file(tmp_path) -> Path:
    path = tmp_path / "box.off"
    path.write_text(format_off(box(3, 2, 6)))
    return path


def test_cached_voxels_computes_once_then_reads_the_cache(box_file, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = cached_voxels(box_file, 32, "y", cache)
    assert first.dtype == bool and first.shape == (32, 32, 32) and first.sum() == 3920

    def refuse(*args, **kwargs):
        raise AssertionError("voxelised again instead of reading the cache")

    monkeypatch.setattr(voxels, "voxelise", refuse)
    np.testing.assert_array_equal(cached_voxels(box_file, 32, "y", cache), first)
    assert len(list((cache / "voxels").iterdir())) == 1
    stored = voxels.voxels_file(box_file, 32, "y", cache)
    assert stored.stat().st_size < 32**3 / 8 + 200  # packed bits (+ the .npy header)
    monkeypatch.undo()
    # another resolution or up axis is another entry
    assert cached_voxels(box_file, 16, "y", cache).shape == (16, 16, 16)
    assert cached_voxels(box_file, 32, "z", cache).sum() == 3920
    assert len(list((cache / "voxels").iterdir())) == 3
    # the key is the file's content: an edited model is voxelised afresh
    box_file.write_text(format_off(box(3, 3, 3)))
    assert cached_voxels(box_file, 32, "y", cache).sum() != 3920


def test_a_damaged_cache_file_is_recomputed_with_a_warning(box_file, tmp_path, caplog):
    cache = tmp_path / "cache"
    expected = cached_voxels(box_file, 32, "y", cache)
    stored = voxels.voxels_file(box_file, 32, "y", cache)
    for damage in (stored.read_bytes()[:100], b"", b"not an npy file"):
        stored.write_bytes(damage)
        with caplog.at_level(logging.WARNING, logger="sbir_bench.data.voxels"):
            np.testing.assert_array_equal(cached_voxels(box_file, 32, "y", cache), expected)
        assert "damaged voxel cache file" in caplog.text
        caplog.clear()
    np.save(stored, np.zeros(7, dtype=np.uint8))  # a readable array of the wrong size
    np.testing.assert_array_equal(cached_voxels(box_file, 32, "y", cache), expected)
    with open(stored, "wb") as handle:  # an archive instead of one array
        np.savez(handle, grid=np.packbits(expected.reshape(-1)))
    np.testing.assert_array_equal(cached_voxels(box_file, 32, "y", cache), expected)
    assert np.load(stored).shape == (32**3 // 8,)  # rewritten as one packed array


def test_a_corrupt_or_missing_mesh_file_names_the_file(tmp_path):
    broken = tmp_path / "broken.off"
    broken.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n")
    with pytest.raises(DatasetError, match="broken.off"):
        cached_voxels(broken, 32, "y", tmp_path / "cache")
    with pytest.raises(DatasetError, match="absent.off"):
        cached_voxels(tmp_path / "absent.off", 32, "y", tmp_path / "cache")
    with pytest.raises(ValueError, match="resolution"):
        cached_voxels(broken, 300, "y", tmp_path / "cache")


def test_voxel_image_shades_a_box_on_white_and_leaves_an_empty_grid_blank():
    blank = voxel_image(np.zeros((32, 32, 32), dtype=bool))
    assert blank.shape == (96, 96) and blank.dtype == np.uint8 and (blank == 255).all()
    picture = voxel_image(voxelise(box(3, 2, 6)), size=64)
    assert picture.shape == (64, 64) and picture.dtype == np.uint8
    assert picture[0, 0] == picture[-1, -1] == 255  # white background
    drawn = picture < 250
    assert 0.05 < drawn.mean() < 0.6
    assert len(np.unique(picture[drawn])) >= 3  # at least three face orientations in different shades
    with pytest.raises(ValueError, match="cubic grid"):
        voxel_image(np.zeros((4, 4), dtype=bool))


def test_the_shrec_reader_lists_every_models_file(tmp_path):
    catalog = build_shrec13(tmp_path / "cache", root=make_shrec13(tmp_path / "SHREC13"), **TINY)
    records = catalog.records
    shapes = np.flatnonzero(records["domain"].eq("shape").to_numpy())
    assert sorted(catalog.meshes) == shapes.tolist()
    for record in shapes:
        path = Path(catalog.meshes[record])
        assert path.suffix == ".off" and path.stem == records["instance"][record] and path.is_file()
        read_off(path)


def voxel_module(dataset: str, split: str, kwargs: dict, cache: str, inputs: str) -> RetrievalDataModule:
    module = RetrievalDataModule(
        dataset,
        split,
        dataset_kwargs=kwargs,
        cache_dir=cache,
        backbone={"name": "resnet10t", "image_size": 32},
    )
    module.configure_for(inputs, "pairs")
    module.setup("fit")
    return module


TINY_3D = {
    "num_classes": 20,
    "models_per_class": 3,
    "sketches_per_class": 3,
    "test_sketches_per_class": 1,
    "sketch_size": 32,
    "image_size": 32,
    "num_views": 4,
    "num_unseen": 4,
    "progress": False,
}  # tests/conftest.py's TINY_3D_DATA


def test_shape_voxels_of_the_synthetic_3d_gallery(shared_cache):
    module = voxel_module("synthetic_3d", "official", TINY_3D, shared_cache, "view_images")
    gallery = module.gallery_records("test").index
    grids = module.shape_voxels(gallery)
    assert grids.shape == (len(gallery), 32, 32, 32) == (60, 32, 32, 32) and grids.dtype == bool
    assert grids.reshape(len(grids), -1).any(axis=1).all()  # every model occupies some voxels
    first = module.catalog.meshes[int(gallery[0])]
    np.testing.assert_array_equal(grids[0], voxelise(read_off(first)))
    assert module.shape_voxels(gallery[:2], resolution=16).shape == (2, 16, 16, 16)
    sketch = module.query_records("test").index[0]
    with pytest.raises(
        DatasetError, match=r"synthetic_3d: record \d+ \(instance 'test/.*'\) has no 3D model"
    ):
        module.shape_voxels([gallery[0], sketch])


def test_shape_voxels_on_image_data_say_which_datasets_have_models(shared_cache):
    tiny = {
        "num_classes": 12,
        "photos_per_class": 12,
        "sketches_per_photo": 1,
        "image_size": 32,
        "num_unseen": 2,
        "extended_per_class": 12,
        "progress": False,
    }  # tests/conftest.py's TINY_DATA
    module = voxel_module("synthetic", "traditional", tiny, shared_cache, "images")
    photo = module.gallery_records("test").index[0]
    message = r"synthetic: record \d+ \(instance '.+'\) has no 3D model file; .*synthetic_3d, shrec13"
    with pytest.raises(DatasetError, match=message):
        module.shape_voxels([photo])
