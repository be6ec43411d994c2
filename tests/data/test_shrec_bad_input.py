"""Bad input of the sketch → 3D track: empty, degenerate, non-manifold, non-finite and huge meshes,
``.cla`` counts that disagree with their lists, a class with sketches but no model; each a clear error or
warning naming the file, and ``sbir-bench data check`` lists them all."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from sbir_bench.cli import main
from sbir_bench.data import mesh as mesh_module
from sbir_bench.data.mesh import Mesh, check_drawable, mesh_defects, parse_off
from sbir_bench.data.readers.shrec import build_shrec13, check_shrec13
from sbir_bench.data.records import DatasetError

from .readers.test_shrec import MODELS, SKETCHES, TETRAHEDRON, TINY, cla, make_shrec13

# a tetrahedron plus two fins: (0, 1, 4) and (0, 1, 5) share edge 0-1 with the tetrahedron's (0, 2, 1) and
# (0, 1, 3), as does the degenerate (0, 1, 6) (vertex 6 on the line through 0 and 1): one edge in five
# triangles, the only non-manifold one; (4, 4, 5) repeats a vertex: 2 degenerate triangles of 8
FIN = (
    "OFF\n7 8 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n0.5 -1 0\n0.5 0 -1\n2 0 0\n"
    "3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n3 0 1 4\n3 0 1 5\n3 4 4 5\n3 0 1 6\n"
)
FLAT = "OFF\n3 2 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n3 2 1 0\n"  # every triangle degenerate
NO_FACES = "OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n"


def test_mesh_defects_count_degenerate_triangles_and_non_manifold_edges():
    assert mesh_defects(parse_off(TETRAHEDRON)) == []
    assert mesh_defects(parse_off(FIN)) == [
        "2 of 8 triangles are degenerate (a repeated vertex or zero area) and are not drawn",
        "1 non-manifold edges (shared by more than two triangles); rendered as a triangle soup",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (NO_FACES, "^m.off: expected a mesh with at least one face, found none$"),
        (FLAT, "^m.off: expected a mesh with some area, all its 2 triangles are degenerate$"),
    ],
)
def test_undrawable_meshes_are_errors_naming_the_file(text, message):
    with pytest.raises(DatasetError, match=message):
        check_drawable(parse_off(text), "m.off")


def test_more_faces_than_the_limit_are_refused_before_and_after_triangulation(monkeypatch):
    monkeypatch.setattr(mesh_module, "MAX_FACES", 2)
    with pytest.raises(DatasetError, match=r"^m.off: expected at most 2 triangles .* found 4; simplify"):
        parse_off(TETRAHEDRON, "m.off")  # the header's count
    pentagon = "OFF\n5 1 0\n0 0 0\n1 0 0\n1 1 0\n0.5 1.5 0\n0 1 0\n5 0 1 2 3 4\n"
    with pytest.raises(DatasetError, match="found 3; simplify"):
        parse_off(pentagon, "m.off")  # one face in the header, three triangles
    assert len(parse_off(pentagon.replace("5 0 1 2 3 4", "4 0 1 2 4")).faces) == 2  # at the limit


def test_the_limit_is_documented_with_the_measured_cost():
    assert mesh_module.MAX_FACES == 1_000_000
    assert "2M 74 s and 0.70 GB" in mesh_module.__doc__


@pytest.fixture
def broken(tmp_path):
    """A SHREC'13 tree with every kind of bad input of the issue."""
    root = make_shrec13(tmp_path / "SHREC13")
    models = root / "SHREC13_SBR_TARGET_MODELS" / "models"
    (models / "m1.off").write_text(FIN)  # warnings only
    (models / "m2.off").write_text(NO_FACES)
    (models / "m3.off").write_text(TETRAHEDRON.replace("0 1 0\n", "0 nan 0\n", 1))
    (models / "m4.off").write_text(FLAT)
    evaluation = root / "SHREC2013_Sketch_Evaluation"
    # class "chair" keeps its sketches but lists no model; m3 and m4 go to a new class "lamp"
    classes = {"airplane": [1, 2], "chair": [], "lamp": [3, 4]}
    (evaluation / "SHREC13_SBR_Model.cla").write_text(cla(classes))
    for split in ("train", "test"):
        folder = (
            "SHREC13_SBR_TRAINING_SKETCHES/SHREC13_SBR_TRAINING_SKETCHES"
            if split == "train"
            else "SHREC13_SBR_TESTING_SKETCHES"
        )
        (root / folder / "lamp" / split).mkdir(parents=True)  # a class with models, no sketches
    # the training sketch .cla says 7 sketches, its lists hold 6
    listed = {c: splits["train"] for c, splits in SKETCHES.items()}
    (evaluation / "SHREC13_SBR_Sketch_Train.cla").write_text(cla(listed).replace("2 6\n", "2 7\n", 1))
    return root


def test_check_lists_every_bad_input_naming_the_file(broken):
    problems = check_shrec13(broken, **TINY)
    found = {(p.path.rsplit("/", 1)[-1], p.message, p.warning) for p in problems}
    assert ("m1.off", mesh_defects(parse_off(FIN))[0], True) in found
    assert ("m1.off", mesh_defects(parse_off(FIN))[1], True) in found
    assert any(name == "m2.off" and "at least one face" in m and not w for name, m, w in found)
    assert any(
        name == "m3.off" and "line 5: expected a vertex 'x y z' of three finite" in m for name, m, w in found
    )
    assert any(name == "m4.off" and "all its 2 triangles are degenerate" in m for name, m, w in found)
    assert ("SHREC13_SBR_Model.cla", "expected target models of class 'chair', it lists none", False) in found
    assert any(
        name == "SHREC13_SBR_Sketch_Train.cla"
        and m.endswith("expected 7 models as its second line says, found 6")
        for name, m, w in found
    )
    assert any(
        name == "train" and "expected train sketches of class 'lamp', found none" in m for name, m, w in found
    )


def test_data_check_lists_them_all_and_fails_only_on_errors(broken, capsys):
    assert main(["data", "check", "shrec13", "--root", str(broken)]) == 1
    captured = capsys.readouterr()
    assert f"{broken}/SHREC13_SBR_TARGET_MODELS/models/m1.off: warning: 2 of 8 triangles" in captured.out
    assert "m2.off: expected a mesh with at least one face" in captured.out
    assert "problem(s) found, 2 warning(s)" in captured.err

    clean = make_shrec13(broken.parent / "clean")
    (clean / "SHREC13_SBR_TARGET_MODELS" / "models" / "m1.off").write_text(FIN)
    assert main(["data", "check", "shrec13", "--root", str(clean)]) == 0
    captured = capsys.readouterr()
    assert (
        captured.out.strip().endswith("no problem found, 2 warning(s)") and "m1.off: warning:" in captured.out
    )


def test_build_warns_naming_the_file_and_refuses_an_undrawable_mesh(tmp_path, caplog):
    root = make_shrec13(tmp_path / "SHREC13")
    models = root / "SHREC13_SBR_TARGET_MODELS" / "models"
    (models / "m1.off").write_text(FIN)
    with caplog.at_level(logging.WARNING, logger="sbir_bench.data.readers.shrec"):
        catalog = build_shrec13(tmp_path / "cache", root=root, **TINY)
    assert len(catalog.records) == 10 + sum(len(ids) for ids in MODELS.values())
    assert any(
        str(models / "m1.off") in r.getMessage() and "degenerate" in r.getMessage() for r in caplog.records
    )

    (models / "m2.off").write_text(FLAT)
    with pytest.raises(DatasetError, match=f"^{models / 'm2.off'}: expected a mesh with some area"):
        build_shrec13(tmp_path / "cache", root=root, **TINY)


def test_non_finite_coordinates_never_reach_the_renderer():
    with pytest.raises(DatasetError, match="line 3: expected a vertex 'x y z' of three finite numbers"):
        parse_off("OFF\n3 1 0\ninf 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "m.off")
    mesh = Mesh(np.zeros((3, 3)), np.array([[0, 1, 2]]))
    with pytest.raises(DatasetError, match="all its 1 triangles are degenerate"):
        check_drawable(mesh, "m.off")
