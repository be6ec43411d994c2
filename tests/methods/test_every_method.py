"""Every registered method, with no test code of its own: one training step and one evaluation through the
real path (tiny synthetic data, DataModule, Trainer, engine, record), twice with the same seed, giving the
same metrics. A new method is covered as soon as it is registered with a config."""

from __future__ import annotations

import math

import pytest

from sbir_bench.config import compose
from sbir_bench.leaderboard.record import read_records
from sbir_bench.registry import list_methods
from sbir_bench.runner import bench

from ..conftest import TINY_3D_DATA, TINY_DATA, quiet_run_in


@pytest.mark.parametrize("method", list_methods())
def test_one_step_and_one_evaluation_then_the_same_numbers_again(method, tmp_path, shared_cache):
    # on tiny synthetic data, or tiny synthetic_3d for the methods whose default data it is (sketch -> 3D)
    on_shapes = compose([f"method={method}"]).data.dataset == "synthetic_3d"
    data = TINY_3D_DATA if on_shapes else ["data=synthetic_trad", *TINY_DATA]
    overrides = [
        f"method={method}",
        *data,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "evaluation.metrics=[map@200,p@200]",
        "evaluation.monitor=map@200",
        *quiet_run_in(tmp_path, shared_cache),
    ]
    first = bench(compose(overrides))
    again = bench(compose([*overrides, "force=true"]))
    assert len(first.written) == len(again.written) == 1
    records = sorted(read_records(tmp_path / "results"), key=lambda r: r.created_at)
    assert [r.status for r in records] == ["ok", "ok"], records[0].error or records[-1].error
    assert records[0].metrics == records[1].metrics, "the same seed gives identical metrics on CPU"
    assert all(math.isfinite(records[0].metrics[m]) for m in ("map@200", "p@200"))
    fitted = records[0].extra.get("fitted", {})  # values chosen in training (e.g. regularisers) are kept
    assert fitted == records[1].extra.get("fitted", {}) and all(math.isfinite(v) for v in fitted.values())
    if method in ("eszsl", "sae"):
        assert set(fitted) == ({"gamma", "lam"} if method == "eszsl" else {"lam"}) | {"val_map@200"}
