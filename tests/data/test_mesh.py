"""The Princeton ``.off`` and ``.cla`` parsers: every accepted variant and every error message."""

from __future__ import annotations

import numpy as np
import pytest

from sbir_bench.data.mesh import parse_cla, parse_model_id, parse_off, read_cla, read_off
from sbir_bench.data.records import DatasetError

TETRAHEDRON_BODY = "0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"
TETRAHEDRON_FACES = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]


def assert_tetrahedron(mesh) -> None:
    assert mesh.vertices.dtype == np.float64 and mesh.faces.dtype == np.int64
    np.testing.assert_array_equal(mesh.vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(mesh.faces, TETRAHEDRON_FACES)


@pytest.mark.parametrize(
    "header",
    ["OFF\n4 4 6\n", "OFF 4 4 6\n", "OFF4 4 6\n", "off\n4 4\n", "COFF\n4 4 0\n", "NOFF\n4 4 0\n"],
    ids=["own-line", "same-line", "glued", "lower-case-no-edges", "coff", "noff"],
)
def test_off_header_variants(header):
    assert_tetrahedron(parse_off(header + TETRAHEDRON_BODY))


def test_off_comments_blank_lines_crlf_colours_and_vertex_extras():
    text = (
        "# made by hand\r\nOFF # the keyword\r\n\r\n4 4 0\r\n"
        "0 0 0 255 0 0 255\r\n1 0 0\r\n  \r\n0 1 0 # a comment\r\n0 0 1\r\n"
        "3 0 2 1 255 0 0\r\n3 0 1 3 0.5 0.5 0.5 1.0\r\n# between faces\r\n3 0 3 2\r\n3 1 2 3\r\n\r\n"
    )
    assert_tetrahedron(parse_off(text))


def test_off_polygons_are_fan_triangulated():
    square_and_pentagon = "OFF\n5 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n-1 0.5 0\n4 0 1 2 3\n5 0 1 2 3 4\n"
    mesh = parse_off(square_and_pentagon)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 3], [0, 3, 4]])


def test_off_with_no_faces_parses_to_an_empty_face_array():
    mesh = parse_off("OFF\n1 0 0\n0 0 0\n")
    assert mesh.faces.shape == (0, 3) and mesh.vertices.shape == (1, 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "m.off: expected an OFF header, found an empty file"),
        ("# only a comment\n\n", "m.off: expected an OFF header, found an empty file"),
        ("PLY\n4 4 0\n", "m.off, line 1: expected the header keyword 'OFF', found 'PLY'"),
        ("4OFF\n4 4 0\n", "m.off, line 1: expected the header keyword 'OFF', found '4OFF'"),
        ("OFFICE 1 2\n", "m.off, line 1: expected the header keyword 'OFF', found 'OFFICE 1 2'"),
        ("OFF\n", "m.off, line 1: expected a line '<vertices> <faces> <edges>' after the header"),
        ("OFF\n4 x 0\n", "m.off, line 2: expected the counts '<vertices> <faces> <edges>'"),
        (
            "OFF 4\n",
            "m.off, line 1: expected the counts '<vertices> <faces> <edges>' (non-negative integers)",
        ),
        ("OFF\n4 -1 0\n", "m.off, line 2: expected the counts"),
        (
            "OFF\n4 1 0\n0 0 0\n1 0 0\n0 1 0\n",
            "m.off: expected 4 vertex lines as the header says, the file ends after 3",
        ),
        (
            "OFF\n4 5 0\n" + TETRAHEDRON_BODY,
            "m.off: expected 5 face lines as the header says, the file ends after 4",
        ),
        (
            "OFF\n4 3 0\n" + TETRAHEDRON_BODY,
            "m.off, line 10: expected the end of the file after 3 faces (the header's count), found '3 1 2 3",
        ),
        (
            "OFF\n3 1 0\n0 0 0\n1 zero 0\n0 1 0\n3 0 1 2\n",
            "m.off, line 4: expected a vertex 'x y z' of three finite",
        ),
        (
            "OFF\n3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n",
            "m.off, line 4: expected a vertex 'x y z' of three finite",
        ),
        (
            "OFF\n3 1 0\n0 0 0\n1 0 nan\n0 1 0\n3 0 1 2\n",
            "m.off, line 4: expected a vertex 'x y z' of three finite",
        ),
        (
            "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n",
            "m.off, line 6: expected vertex indices in 0..2, found '3 0 1 3'",
        ),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 -1 2\n", "m.off, line 6: expected vertex indices in 0..2"),
        (
            "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1.5 2\n",
            "m.off, line 6: expected a face 'k i_1 ... i_k' of integers",
        ),
        (
            "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\ntri 0 1 2\n",
            "m.off, line 6: expected a face 'k i_1 ... i_k' of integers",
        ),
        (
            "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n",
            "m.off, line 6: expected a face with at least 3 vertices",
        ),
        (
            "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n",
            "m.off, line 6: expected 4 vertex indices after the face size 4",
        ),
    ],
)
def test_off_errors_name_the_file_line_and_expectation(text, expected):
    with pytest.raises(DatasetError) as error:
        parse_off(text, "m.off")
    assert str(error.value).startswith(expected)


def test_read_off_names_the_path(tmp_path):
    path = tmp_path / "m12.off"
    path.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 9\n")
    with pytest.raises(DatasetError, match=rf"^{path}, line 6: expected vertex indices in 0\.\.2"):
        read_off(path)
    with pytest.raises(DatasetError, match=rf"^{tmp_path / 'missing.off'}: cannot read the mesh file"):
        read_off(tmp_path / "missing.off")
    path.write_text("OFF\n" + "4 4 0\n" + TETRAHEDRON_BODY)
    assert_tetrahedron(read_off(path))


# --- .cla -------------------------------------------------------------------------------------------
CLA = """PSB 1
3 5

airplane 0 2
m12
0007

chair\tfurniture 3
3
m4
M5

empty 0 0
"""


def test_cla_parses_classes_ids_with_or_without_prefix_and_blank_lines(tmp_path):
    classes = parse_cla(CLA.replace("\n", "\r\n"))
    assert [(c.name, c.parent, c.ids) for c in classes] == [
        ("airplane", "0", (12, 7)),
        ("chair", "furniture", (3, 4, 5)),
        ("empty", "0", ()),
    ]
    path = tmp_path / "Model.cla"
    path.write_text(CLA.replace("\n\n", "\n\n\n"))
    assert [c.ids for c in read_cla(path)] == [(12, 7), (3, 4, 5), ()]


@pytest.mark.parametrize(
    ("token", "expected"), [("m12", 12), ("M0012", 12), ("12", 12), ("x12", None), ("m", None)]
)
def test_model_ids(token, expected):
    assert parse_model_id(token) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "c.cla: expected the format line 'PSB 1'"),
        ("PSB 2\n1 1\n\na 0 1\n1\n", "c.cla, line 1: expected the format line 'PSB 1', found 'PSB 2'"),
        ("PSB 1\n", "c.cla: expected '<numClasses> <numModels>'"),
        ("PSB 1\n1 one\n", "c.cla, line 2: expected '<numClasses> <numModels>', found '1 one'"),
        (
            "PSB 1\n1 1\n\na 0\n1\n",
            "c.cla, line 4: expected a class header '<className> <parentClass|0> <count>'",
        ),
        ("PSB 1\n1 1\n\na 0 x\n1\n", "c.cla, line 4: expected a class header"),
        (
            "PSB 1\n2 3\n\na 0 2\n1\n\nb 0 1\n2\n",
            "c.cla, line 7: expected a model id (class 'a' declares 2, 1 read so far), found 'b 0 1'",
        ),
        (
            "PSB 1\n1 2\n\na 0 2\n1\n",
            "c.cla: expected 2 model ids in class 'a' as its header says, the file ends after 1",
        ),
        (
            "PSB 1\n1 1\n\na 0 1\nchair\n",
            "c.cla, line 5: expected a model id (class 'a' declares 1, 0 read so far)",
        ),
        (
            "PSB 1\n2 2\n\na 0 1\n1\n\nb 0 1\nm1\n",
            "c.cla, line 8: expected each model in one class, model 1 is already in 'a', found 'm1'",
        ),
        (
            "PSB 1\n2 2\n\na 0 1\n1\n\na 0 1\n2\n",
            "c.cla, line 7: expected a new class name, 'a' is declared twice",
        ),
        (
            "PSB 1\n3 2\n\na 0 1\n1\n\nb 0 1\n2\n",
            "c.cla: expected 3 classes as its second line says, found 2",
        ),
        ("PSB 1\n2 3\n\na 0 1\n1\n\nb 0 1\n2\n", "c.cla: expected 3 models as its second line says, found 2"),
    ],
)
def test_cla_errors_name_the_file_line_and_expectation(text, expected):
    with pytest.raises(DatasetError) as error:
        parse_cla(text, "c.cla")
    assert str(error.value).startswith(expected)
