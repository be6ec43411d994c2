"""DDP over gloo on CPU processes: two processes score exactly what one process scores (every query counted
once), and ranks decide together which runs to do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sbir_bench.config import compose
from sbir_bench.leaderboard.record import read_records
from sbir_bench.plan import identify
from sbir_bench.runner import bench

from .conftest import TINY_DATA, quiet_run_in
from .finished_record import write_finished_record


def _records(results: Path) -> dict[str, dict]:
    return {record.split: record.to_dict() for record in read_records(results)}


@pytest.mark.ddp
@pytest.mark.parametrize("method", ["baseline", "eszsl"])  # untrained; fitted in closed form on gathered data
def test_two_gloo_processes_match_one_process(method, tiny_overrides, tmp_path):
    overrides = [f"method={method}", "data=synthetic_zs", *tiny_overrides]
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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.ddp
def test_ranks_that_see_different_records_skip_together(tmp_path, shared_cache):
    """Two nodes without a shared file system (one process each, started outside Lightning as SLURM or
    torchrun would): only rank 0 sees the finished record; rank 1 skips with it instead of waiting for a
    partner in training (a hang)."""
    overrides = ["method=baseline", "data=synthetic_zs", "trainer=ddp", "trainer.accelerator=cpu"]
    overrides += ["trainer.devices=1", "trainer.num_nodes=2", *TINY_DATA]

    def node(rank: int) -> list[str]:
        return [*quiet_run_in(tmp_path / f"node{rank}", shared_cache), *overrides]

    cfg = compose(node(0))
    chash, variant = identify(cfg)
    write_finished_record(cfg, "zeroshot", 0, chash, variant)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    ranks = [
        subprocess.Popen(
            [sys.executable, "-m", "sbir_bench.cli", "bench", *node(rank)],
            env={**env, "NODE_RANK": str(rank), "LOCAL_RANK": "0", "WORLD_SIZE": "2"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )
        for rank in (0, 1)
    ]
    try:
        outputs = [rank.communicate(timeout=240)[0] for rank in ranks]
    finally:
        for rank in ranks:
            rank.kill()
    assert [rank.returncode for rank in ranks] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert f"skip baseline/{variant.name}/synthetic/zeroshot/0/{chash}: finished record" in outputs[0]
    assert len(read_records(tmp_path / "node0" / "results")) == 1, "nothing ran again"
    assert not (tmp_path / "node1").exists(), "rank 1 ran nothing, wrote nothing"
