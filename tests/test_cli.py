"""The thin CLI: listing, clear one-line errors, bring-your-own-embedding evaluation."""

from __future__ import annotations

import json

import numpy as np

from sbir_bench.cli import main


def test_list_prints_sections_one_name_a_line(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "methods:" and "  cvae" in lines and "  baseline" in lines
    assert "datasets:" in lines and "  synthetic" in lines


def test_list_json(capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert "cvae" in listing["methods"] and "synthetic" in listing["datasets"]


def test_unknown_method_is_one_clear_line(capsys):
    assert main(["bench", "method.name=nope", "logger=none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown method 'nope'" in err and "cvae" in err


def test_config_typo_is_one_clear_line(capsys):
    assert main(["bench", "methd=cvae"]) == 2
    assert "Could not override 'methd'" in capsys.readouterr().err


def test_evaluate_bring_your_own_embeddings(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(["cat", "dog", "owl"]), 10)
    centres = rng.normal(size=(3, 8))
    gallery = centres[np.repeat(np.arange(3), 10)] + 0.1 * rng.normal(size=(30, 8))
    queries = centres[np.repeat(np.arange(3), 10)] + 0.1 * rng.normal(size=(30, 8))
    np.savez(tmp_path / "q.npz", embeddings=queries, labels=labels)
    np.savez(tmp_path / "g.npz", embeddings=gallery, labels=labels)
    out = tmp_path / "result.json"
    assert (
        main(
            [
                "evaluate",
                "--queries",
                str(tmp_path / "q.npz"),
                "--gallery",
                str(tmp_path / "g.npz"),
                "--metric",
                "p@10",
                "--metric",
                "map@all",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["p@10"] == 1.0 and result["map@all"] == 1.0  # well separated clusters
    assert "p@10" in capsys.readouterr().out


def test_evaluate_malformed_file_names_it(tmp_path, capsys):
    np.savez(tmp_path / "q.npz", embeddings=np.zeros((3, 2)))  # no labels
    np.savez(tmp_path / "g.npz", embeddings=np.ones((3, 2)), labels=np.arange(3))
    assert main(["evaluate", "--queries", str(tmp_path / "q.npz"), "--gallery", str(tmp_path / "g.npz")]) == 2
    err = capsys.readouterr().err
    assert "q.npz" in err and "labels" in err
