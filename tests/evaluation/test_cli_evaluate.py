"""``sbir-bench evaluate --out``: undefined metrics are JSON null with the count of queries left out."""

from __future__ import annotations

import json

import numpy as np

from sbir_bench.cli import main
from sbir_bench.evaluation.engine import evaluate


def test_undefined_metrics_are_written_as_null_with_the_queries_they_leave_out(tmp_path, capsys):
    np.savez(tmp_path / "q.npz", embeddings=np.ones((2, 3)), labels=np.array(["owl", "owl"]))
    np.savez(tmp_path / "g.npz", embeddings=np.eye(3), labels=np.array(["cat", "dog", "cow"]))
    out = tmp_path / "result.json"
    arguments = ["evaluate", "--queries", str(tmp_path / "q.npz"), "--gallery", str(tmp_path / "g.npz")]
    for name in ("p@2", "map@all", "map@all_voc", "map@2_voc", "p@2_minr"):
        arguments += ["--metric", name]
    assert main([*arguments, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["p@2"] == 0.0  # counted as 0
    assert all(result[name] is None for name in ("map@all", "map@all_voc", "map@2_voc", "p@2_minr"))
    assert result["queries_left_out"] == {"map@all": 2, "map@all_voc": 2, "map@2_voc": 2, "p@2_minr": 2}
    assert result["n_queries_without_relevant"] == 2
    assert "undefined (no query has a relevant item)" in capsys.readouterr().out


def test_field_conventions_are_accepted_by_the_command(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array([0, 1, 2]), 5)
    queries, gallery = rng.standard_normal((15, 4)), rng.standard_normal((15, 4))
    np.savez(tmp_path / "q.npz", embeddings=queries, labels=labels)
    np.savez(tmp_path / "g.npz", embeddings=gallery, labels=labels)
    out = tmp_path / "result.json"
    arguments = ["evaluate", "--queries", str(tmp_path / "q.npz"), "--gallery", str(tmp_path / "g.npz")]
    assert main([*arguments, "--metric", "map@all_voc", "--metric", "p@10_minr", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    expected = evaluate(queries, labels, gallery, labels, metrics=("map@all_voc", "p@10_minr"))
    assert (result["map@all_voc"], result["p@10_minr"]) == (expected["map@all_voc"], expected["p@10_minr"])
    assert result["queries_left_out"] == {"map@all_voc": 0, "p@10_minr": 0}


def test_fine_grained_metrics_with_a_triplet_file(tmp_path, capsys):
    # queries at 0 and 2 on a line, gallery 0, 1, 2: each query's own photo is the one at its position
    np.savez(tmp_path / "q.npz", embeddings=np.array([[0.0], [2.0]]), labels=np.array([0, 2]))
    np.savez(tmp_path / "g.npz", embeddings=np.array([[0.0], [1.0], [2.0]]), labels=np.array([0, 1, 2]))
    np.save(tmp_path / "t.npy", np.array([[0, 0, 1], [1, 0, 2], [1, 2, 1]]))  # right, wrong, right
    out = tmp_path / "result.json"
    arguments = ["evaluate", "--queries", str(tmp_path / "q.npz"), "--gallery", str(tmp_path / "g.npz")]
    arguments += ["--distance", "euclidean", "--metric", "acc@1", "--metric", "triplet_acc"]
    assert main([*arguments, "--triplets", str(tmp_path / "t.npy"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["acc@1"] == 1.0 and result["triplet_acc"] == 2 / 3 and result["n_triplets"] == 3
    assert result["triplets"] == str(tmp_path / "t.npy")

    np.save(tmp_path / "bad.npy", np.array([[0, 0, 3]]))
    assert main([*arguments, "--triplets", str(tmp_path / "bad.npy")]) != 0
    assert "bad.npy: triplet 0: negative index 3 is out of range 0..2" in capsys.readouterr().err
    assert main(arguments) != 0
    assert "triplet_acc needs the annotated triplets" in capsys.readouterr().err


def test_sketch_to_3d_metrics_and_class_means_from_the_command(tmp_path):
    rng = np.random.default_rng(1)
    query_labels, gallery_labels = np.repeat(np.arange(3), 4), np.repeat(np.arange(3), 6)
    queries, gallery = rng.standard_normal((12, 4)), rng.standard_normal((18, 4))
    np.savez(tmp_path / "q.npz", embeddings=queries, labels=query_labels)
    np.savez(tmp_path / "g.npz", embeddings=gallery, labels=gallery_labels)
    out = tmp_path / "result.json"
    names = ("nn", "ft", "st", "e", "dcg", "e_mean_pr", "dcg_log2i1", "map@all")
    arguments = ["evaluate", "--queries", str(tmp_path / "q.npz"), "--gallery", str(tmp_path / "g.npz")]
    for name in names:
        arguments += ["--metric", name]
    assert main([*arguments, "--class-mean", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    expected = evaluate(queries, query_labels, gallery, gallery_labels, metrics=names, class_mean=True)
    assert {name: result[name] for name in names} == {name: expected[name] for name in names}
    assert result["class_mean/ft"] == expected["class_mean/ft"]
    assert "class_mean/e_mean_pr" not in result
