"""Bring-your-own ``.npz`` embeddings: every malformed file is refused with its name and the problem."""

from __future__ import annotations

import numpy as np
import pytest

from sbir_bench.evaluation.engine import evaluate
from sbir_bench.evaluation.io import EmbeddingFileError, evaluate_files, load_embeddings


def _save(path, **arrays):
    np.savez(path, **arrays)
    return path


GOOD = {"embeddings": np.ones((3, 2), dtype=np.float32), "labels": np.array([0, 1, 0])}


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"labels": GOOD["labels"]}, r"missing key\(s\) \['embeddings'\]"),
        ({"embeddings": GOOD["embeddings"]}, r"missing key\(s\) \['labels'\]"),
        ({**GOOD, "embeddings": np.ones(3)}, "2-D"),
        ({**GOOD, "embeddings": np.ones((3, 2, 1))}, "2-D"),
        ({**GOOD, "embeddings": np.ones((0, 2)), "labels": np.array([], dtype=int)}, "empty"),
        ({**GOOD, "embeddings": np.array([[1.0, np.nan]] * 3)}, "NaN or inf"),
        ({**GOOD, "embeddings": np.array([[1.0, -np.inf]] * 3)}, "NaN or inf"),
        ({**GOOD, "embeddings": np.ones((3, 2), dtype=np.int64)}, "dtype int64"),
        ({**GOOD, "embeddings": np.ones((3, 2), dtype=np.complex64)}, "dtype complex64"),
        ({**GOOD, "labels": np.array([0, 1])}, "one per embedding"),
        ({**GOOD, "labels": np.array([[0], [1], [0]])}, "one per embedding"),
        ({**GOOD, "labels": np.array([0.0, 1.0, 0.0])}, "integers or strings"),
        ({**GOOD, "labels": np.array([0, None, 1], dtype=object)}, "cannot be read"),
    ],
)
def test_malformed_files_are_refused_naming_the_file(tmp_path, arrays, message):
    path = _save(tmp_path / "bad_embeddings.npz", **arrays)
    with pytest.raises(EmbeddingFileError, match=message) as raised:
        load_embeddings(path)
    assert str(path) in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_missing_file_and_files_that_are_not_npz(tmp_path):
    for path, message in (
        (tmp_path / "absent.npz", "no such file"),
        (tmp_path / "garbage.npz", "cannot be read"),
        (tmp_path / "plain.npy", "not an .npz archive"),
    ):
        if path.name == "garbage.npz":
            path.write_text("not a zip archive")
        if path.suffix == ".npy":
            np.save(path, np.ones((3, 2)))
        with pytest.raises(EmbeddingFileError, match=message) as raised:
            load_embeddings(path)
        assert str(path) in str(raised.value)


def test_valid_files_load_float_and_bit_embeddings(tmp_path):
    embeddings, labels = load_embeddings(_save(tmp_path / "float.npz", **GOOD))
    assert embeddings.shape == (3, 2) and labels.tolist() == [0, 1, 0]
    bits, _ = load_embeddings(
        _save(tmp_path / "bits.npz", embeddings=np.ones((3, 8), dtype=bool), labels=GOOD["labels"])
    )
    assert bits.dtype == bool


def test_string_labels_are_mapped_consistently_across_both_files(tmp_path):
    rng = np.random.default_rng(0)
    queries, gallery = rng.standard_normal((10, 4)), rng.standard_normal((25, 4))
    names = np.array(["zebra", "cat", "dog", "axolotl"])
    query_ids, gallery_ids = rng.integers(0, 4, 10), rng.integers(0, 3, 25)  # "axolotl": not in the gallery
    _save(tmp_path / "q.npz", embeddings=queries, labels=names[query_ids])
    _save(tmp_path / "g.npz", embeddings=gallery, labels=names[gallery_ids])
    from_files = evaluate_files(tmp_path / "q.npz", tmp_path / "g.npz", metrics=("p@5", "map@all"))
    assert from_files == evaluate(queries, query_ids, gallery, gallery_ids, metrics=("p@5", "map@all"))
    assert from_files["n_queries_without_relevant"] == (query_ids == 3).sum()


def test_files_that_do_not_fit_together_are_refused(tmp_path):
    queries = _save(tmp_path / "q.npz", embeddings=np.ones((2, 3)), labels=np.array(["a", "b"]))
    other_dim = _save(tmp_path / "g3.npz", embeddings=np.ones((2, 4)), labels=np.array(["a", "b"]))
    int_labels = _save(tmp_path / "gi.npz", embeddings=np.ones((2, 3)), labels=np.array([0, 1]))
    with pytest.raises(EmbeddingFileError, match="3-dimensional"):
        evaluate_files(queries, other_dim)
    with pytest.raises(EmbeddingFileError, match="string labels and the other integers"):
        evaluate_files(queries, int_labels)


def test_hamming_files_with_bits(tmp_path):
    rng = np.random.default_rng(1)
    q_bits, g_bits = rng.random((6, 16)) < 0.5, rng.random((9, 16)) < 0.5
    q_labels, g_labels = rng.integers(0, 2, 6), rng.integers(0, 2, 9)
    _save(tmp_path / "q.npz", embeddings=q_bits.astype(np.uint8), labels=q_labels)
    _save(tmp_path / "g.npz", embeddings=g_bits, labels=g_labels)
    result = evaluate_files(tmp_path / "q.npz", tmp_path / "g.npz", distance="hamming", metrics=("map@all",))
    assert result == evaluate(q_bits, q_labels, g_bits, g_labels, distance="hamming", metrics=("map@all",))
