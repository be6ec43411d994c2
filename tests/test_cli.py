"""The thin CLI: listing, clear one-line errors, bring-your-own-embedding evaluation."""

from __future__ import annotations

import json

import numpy as np

from sbir_bench.cli import main


def test_list_prints_the_names_users_type_one_a_line(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("methods") and "  cvae" in lines and "  baseline" in lines
    datasets = lines.index("datasets (data.dataset; sbir-bench data summary|check DATASET):")
    assert "  sketchy" in lines[datasets:] and "  synthetic" in lines[datasets:]
    configs = (("data", "sketchy_zs"), ("trainer", "ddp"), ("logger", "csv"), ("experiment", "cvae_paper"))
    for group, name in configs:
        start = lines.index(f"{group}= configs:")
        assert f"  {name}" in lines[start:]


def test_list_json(capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert "cvae" in listing["methods"] and "synthetic" in listing["datasets"]
    assert "sketchy_zs" in listing["configs"]["data"] and "cvae_paper" in listing["configs"]["method"]
    assert {"local", "slurm"} <= set(listing["configs"]["submit"])


def test_a_reader_that_leaves_early_ends_list_quietly(tmp_path, monkeypatch):
    """``sbir-bench list | head``: the closed pipe ends the command with code 0, not a traceback."""

    class ClosedPipe:
        def __init__(self, path):
            self.file = open(path, "w")  # noqa: SIM115 (closed by the test)

        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def fileno(self):
            return self.file.fileno()

    pipe = ClosedPipe(tmp_path / "stdout")
    monkeypatch.setattr("sys.stdout", pipe)
    try:
        assert main(["list"]) == 0
    finally:
        pipe.file.close()


def test_unknown_method_is_one_clear_line(capsys):
    assert main(["bench", "method.name=nope", "logger=none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown method 'nope'" in err and "cvae" in err


def test_config_typo_is_one_clear_line_without_hydra_search_path(capsys):
    assert main(["bench", "methd=cvae"]) == 2
    assert capsys.readouterr().err == "sbir-bench bench: error: unknown option methd; did you mean method?\n"
    assert main(["bench", "trainer=gpus"]) == 2
    err = capsys.readouterr().err
    assert err == "sbir-bench bench: error: no config 'gpus' in group trainer; known: cpu, ddp, gpu\n"


def test_every_option_of_evaluate_and_leaderboard_has_help():
    import argparse

    from sbir_bench.cli import parser

    commands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in ("evaluate", "leaderboard", "list"):
        for action in commands[name]._actions:
            assert action.help, f"sbir-bench {name} {action.option_strings} has no help text"


def test_leaderboard_prints_the_rows_it_changed(tmp_path, capsys):
    from sbir_bench.leaderboard.record import write_record

    from .leaderboard.conftest import record

    results, out = tmp_path / "results", tmp_path / "out"
    write_record(record(run_id="20250101T000000000000Z-00000001"), results)
    args = ["leaderboard", "--results", str(results), "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "1 row(s) changed" in printed and "cvae" in printed.split("1 row(s) changed")[1]
    assert main(args) == 0
    assert "0 row(s) changed" in capsys.readouterr().out


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
