"""The quality bar of every trained method (issue "image method zoo"): on the traditional setting of the
embedded default, its mean mAP@200 over seeds 0, 1, 2 beats the untrained baseline by more than the seeds'
spread (max − min) and by at least MARGIN. The committed leaderboard holds the full result (`make bench-all`).

In the ``slow`` group (`make test-all`): the default data's stand-in pre-training alone takes ~8 min on one
thread, then each method runs its CPU-default configuration three times.
"""

from __future__ import annotations

import statistics

import pytest

from sbir_bench.config import compose
from sbir_bench.leaderboard.record import read_records
from sbir_bench.registry import METHODS, list_methods
from sbir_bench.runner import bench

from .conftest import quiet_run_in

SEEDS = (0, 1, 2)
MARGIN = 0.005  # absolute mAP@200, on top of the seeds' spread
TRAINED = [name for name in list_methods() if METHODS.get(name).train_sampling != "none"]


@pytest.fixture(scope="module")
def baseline_map(tmp_path_factory, shared_cache) -> float:
    where = tmp_path_factory.mktemp("baseline")
    bench(compose(["method=baseline", "data=synthetic_trad", *quiet_run_in(where, shared_cache)]))
    (record,) = read_records(where / "results")
    return record.metrics["map@200"]


@pytest.mark.slow
@pytest.mark.parametrize("method", TRAINED)
def test_a_trained_method_beats_the_baseline_on_the_traditional_setting(
    method, baseline_map, tmp_path, shared_cache
):
    seeds = ",".join(str(s) for s in SEEDS)
    overrides = [f"method={method}", "data=synthetic_trad", f"seeds=[{seeds}]"]
    bench(compose([*overrides, *quiet_run_in(tmp_path, shared_cache)]))
    scores = [r.metrics["map@200"] for r in read_records(tmp_path / "results") if r.status == "ok"]
    assert len(scores) == len(SEEDS), f"{method}: {len(scores)} of {len(SEEDS)} runs finished"
    spread = max(scores) - min(scores)
    gain = statistics.fmean(scores) - baseline_map
    assert gain > max(spread, MARGIN), f"{method}: {scores} vs baseline {baseline_map:.4f}"
