"""Two CPU processes (DDP over gloo) score exactly what one process scores: every query counted once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sbir_bench.config import compose
from sbir_bench.leaderboard.record import read_records
from sbir_bench.runner import bench


def _records(results: Path) -> dict[str, dict]:
    return {record.split: record.to_dict() for record in read_records(results)}


@pytest.mark.ddp
def test_two_gloo_processes_match_one_process(tiny_overrides, tmp_path):
    overrides = ["method=baseline", "data=synthetic_zs", *tiny_overrides]
    bench(compose(overrides))
    one = _records(tmp_path / "results")["zeroshot"]

    ddp_results = tmp_path / "ddp_results"
    ddp_overrides = [o for o in overrides if not o.startswith(("paths.results_dir", "paths.leaderboard_dir"))]
    command = [
        sys.executable,
        "-m",
        "sbir_bench.cli",
        "bench",
        *ddp_overrides,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"paths.results_dir={ddp_results}",
        f"paths.leaderboard_dir={tmp_path / 'ddp_leaderboard'}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    two = _records(ddp_results)["zeroshot"]

    assert two["extra"]["world_size"] == 2 and one["extra"]["world_size"] == 1
    assert two["counts"]["n_queries"] == one["counts"]["n_queries"] == one["counts"]["split_test_query"]
    assert two["counts"]["n_gallery"] == one["counts"]["n_gallery"]
    assert two["metrics"] == one["metrics"], "the gathered, de-duplicated embeddings give the same numbers"
    assert two["config_hash"] == one["config_hash"], "how a run is launched is not part of its identity"
    assert (tmp_path / "ddp_leaderboard" / "leaderboard.csv").is_file(), "rank 0 rebuilt the leaderboard"
