"""``sbir-bench embed``: a run's checkpoint alone -> .npz files that ``sbir-bench evaluate`` scores exactly
as the run's record."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sbir_bench.cli import main
from sbir_bench.config import compose
from sbir_bench.embed import embed_checkpoint, load_run
from sbir_bench.evaluation.io import evaluate_files
from sbir_bench.leaderboard.record import read_records
from sbir_bench.runner import bench

from .conftest import TINY_DATA, quiet_run_in


@pytest.fixture(scope="module")
def records(tmp_path_factory, shared_cache):
    """One tiny zero-shot run of each method: {method: record}."""
    tmp_path = tmp_path_factory.mktemp("runs")
    for method in ("baseline", "cvae"):
        overrides = [f"method={method}", "data=synthetic_zs", "method.max_epochs=1"]
        bench(compose([*overrides, *quiet_run_in(tmp_path, shared_cache), *TINY_DATA]))
    return {record.method: record for record in read_records(tmp_path / "results")}


@pytest.mark.parametrize("method", ["baseline", "cvae"])
def test_scoring_the_embeddings_of_a_checkpoint_reproduces_the_record(method, records, tmp_path, capsys):
    record = records[method]
    checkpoint = Path(record.extra["best_checkpoint"])
    if method == "baseline":  # untrained: the run keeps the model it tested
        assert checkpoint.name == "tested.ckpt"
    assert main(["embed", "--checkpoint", str(checkpoint), "--out-dir", str(tmp_path)]) == 0
    assert "sbir-bench evaluate --queries" in capsys.readouterr().out
    metrics = record.config["evaluation"]["metrics"]
    scored = evaluate_files(tmp_path / "queries.npz", tmp_path / "gallery.npz", metrics=metrics)
    assert {name: scored[name] for name in metrics} == {name: record.metrics[name] for name in metrics}
    assert scored["n_queries"] == record.counts["n_queries"]
    with np.load(tmp_path / "queries.npz") as queries:
        assert len(queries["paths"]) == len(queries["labels"]) and queries["paths"][0].endswith(".png")


def test_another_split_of_the_run_dataset(records, tmp_path):
    checkpoint = records["baseline"].extra["best_checkpoint"]
    args = ["embed", "--checkpoint", checkpoint, "--out-dir", str(tmp_path), "--split", "traditional"]
    assert main(args) == 0
    with np.load(tmp_path / "queries.npz") as queries:
        assert len(np.unique(queries["labels"])) == 12  # every class; the zero-shot test has the 2 unseen


def test_a_checkpoint_that_cannot_load_on_its_own_is_one_clear_error(tmp_path, capsys):
    torch.save({"state_dict": {}}, tmp_path / "old.ckpt")
    assert main(["embed", "--checkpoint", str(tmp_path / "old.ckpt"), "--out-dir", str(tmp_path)]) == 2
    assert "does not name its method" in capsys.readouterr().err
    assert main(["embed", "--checkpoint", str(tmp_path / "none.ckpt"), "--out-dir", str(tmp_path)]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_embeddings_of_several_rows_per_query_are_refused(records, tmp_path, monkeypatch):
    checkpoint = records["cvae"].extra["best_checkpoint"]
    method, datamodule = load_run(checkpoint)
    method.hparams.kmeans_clusters = 2  # k-means centres: [N, 2, d] per query
    monkeypatch.setattr("sbir_bench.embed.load_run", lambda *args, **kwargs: (method, datamodule))
    with pytest.raises(ValueError, match=r"one row per item \(the CVAE: kmeans_clusters=0\)"):
        embed_checkpoint(checkpoint, tmp_path)
