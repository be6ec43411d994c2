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


@pytest.mark.parametrize("method", list_methods())
def test_one_step_and_one_evaluation_then_the_same_numbers_again(method, tiny_overrides, tmp_path):
    overrides = [
        f"method={method}",
        "data=synthetic_trad",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "evaluation.metrics=[map@200,p@200]",
        *tiny_overrides,
    ]
    first = bench(compose(overrides))
    again = bench(compose([*overrides, "force=true"]))
    assert len(first.written) == len(again.written) == 1
    records = sorted(read_records(tmp_path / "results"), key=lambda r: r.created_at)
    assert [r.status for r in records] == ["ok", "ok"], records[0].error or records[-1].error
    assert records[0].metrics == records[1].metrics, "the same seed gives identical metrics on CPU"
    assert all(math.isfinite(records[0].metrics[m]) for m in ("map@200", "p@200"))
