"""The sketch -> 3D track end to end on tiny synthetic_3d: the record carries the SHREC metrics, their
class means and SHREC's precision-recall curve, and the leaderboard writes the sketch -> 3D table."""

from __future__ import annotations

import math

import pandas as pd

from sbir_bench.config import compose
from sbir_bench.leaderboard.record import read_records
from sbir_bench.runner import bench

from .conftest import TINY_3D_DATA, quiet_run_in

SHREC = ("nn", "ft", "st", "e", "dcg", "map@all")


def test_baseline_on_synthetic_3d_records_the_shrec_metrics_and_fills_the_shape_table(tmp_path, shared_cache):
    bench(compose(["method=baseline", *TINY_3D_DATA, *quiet_run_in(tmp_path, shared_cache)]))
    (record,) = read_records(tmp_path / "results")
    assert record.status == "ok", record.error
    assert record.dataset == "synthetic_3d" and record.split == "official"
    for name in (*SHREC, "p@200", "map@200", "e_mean_pr", "dcg_log2i1"):
        assert 0.0 <= record.metrics[name] <= 1.0, name
        assert f"chance/{name}" in record.metrics
    assert all(math.isfinite(record.metrics[f"class_mean/{name}"]) for name in SHREC)
    # 20 queries (one test sketch per class) against all 60 models, 3 per class
    assert record.counts["n_queries"] == 20 and record.counts["n_gallery"] == 60
    curve = record.extra["pr_curve"]
    assert curve["convention"] == "shrec" and curve["recall"][0] == 0.05 and len(curve["precision"]) == 20
    table = pd.read_csv(tmp_path / "leaderboard" / "shape.csv")
    assert list(table["method"]) == ["baseline", "(chance)", "(ceiling)"]
    assert table.loc[0, "map@all"] == round(record.metrics["map@all"], 4)
