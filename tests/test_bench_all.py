"""``sbir-bench bench-all``: one process per run, failures recorded and listed, finished runs skipped."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from sbir_bench import bench_all as bench_all_module
from sbir_bench.bench_all import bench_all
from sbir_bench.config import SEARCHPATH_ENV, config_dir
from sbir_bench.leaderboard.record import read_records
from sbir_bench.methods.baseline import Baseline
from sbir_bench.registry import METHODS

from .conftest import TINY_DATA, quiet_run_in


class BrokenMethod(Baseline):
    """A lab's method that cannot even be built: its process dies before the runner can write a record."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("lab_broken cannot be built")


ENTRY_POINTS = f"""[sbir_bench.methods]
lab_broken = {__name__}:BrokenMethod
"""


@pytest.fixture
def lab_package(tmp_path, monkeypatch):
    """A lab's installed package registering ``lab_broken`` through the entry-point group (a dist-info
    folder on the path of this process and of the child processes) and the lab's config folder with its
    method config ``lab_broken.yaml``."""
    METHODS.names()  # the suite's own methods registered first (once per process), without the lab's
    site = tmp_path / "site"
    info = site / "lab_methods-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lab_methods\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    configs = tmp_path / "lab_configs"
    (configs / "method").mkdir(parents=True)
    (configs / "method" / "lab_broken.yaml").write_text(
        (config_dir() / "method" / "baseline.yaml").read_text().replace("name: baseline", "name: lab_broken")
    )
    monkeypatch.setenv(SEARCHPATH_ENV, str(configs))
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    monkeypatch.setattr(METHODS, "_loaded", False)
    return site


def test_bench_all_records_a_failure_runs_the_rest_and_skips_finished_runs(
    tmp_path, shared_cache, lab_package, capsys, monkeypatch
):
    overrides = ["data=synthetic_zs", "seeds=[0]", *quiet_run_in(tmp_path, shared_cache), *TINY_DATA]
    assert "lab_broken" in METHODS.names(), "registered by the lab's installed package"
    assert bench_all(["baseline", "lab_broken"], overrides) == 1, "a failed run: exit code 1"
    out = capsys.readouterr().out
    assert "[1/2] baseline zeroshot seed 0: done (" in out and "done 1 / to do 1 / failed 0" in out
    assert "[2/2] lab_broken zeroshot seed 0: FAILED (" in out and "done 1 / to do 0 / failed 1" in out
    assert "leaderboard rebuilt" in out and "bench-all: 1 done, 1 failed of 2 in " in out

    records = {r.method: r for r in read_records(tmp_path / "results")}
    assert records["baseline"].status == "ok" and records["baseline"].extra["efficiency"]["embedding_bytes"]
    broken = records["lab_broken"]  # the child died before the runner: bench-all wrote the record
    assert broken.status == "error" and broken.setting == "zeroshot" and broken.split == "zeroshot"
    assert broken.error.rstrip().endswith("RuntimeError: lab_broken cannot be built")
    assert broken.config["seeds"] == [0] and broken.config["data"]["splits"] == ["zeroshot"]
    markdown = (tmp_path / "leaderboard" / "leaderboard.md").read_text()
    assert "### Failed runs (1)" in markdown
    failure = f"- lab_broken/{broken.variant} zeroshot seed 0: RuntimeError: lab_broken cannot be built"
    assert failure in markdown
    table = pd.read_csv(tmp_path / "leaderboard" / "leaderboard.csv").set_index("method")
    assert table.loc["lab_broken", "failed"] == 1 and table.loc["baseline", "failed"] == 0
    assert table.loc["baseline", "zs_query_s_per_1k"] > 0 and table.loc["baseline", "emb_bytes"] > 0

    def no_process(*args, **kwargs):
        raise AssertionError(f"a finished run started a process: {args}")

    monkeypatch.setattr(bench_all_module, "run_child", no_process)
    assert bench_all(["baseline"], overrides) == 0
    assert "[1/1] baseline zeroshot seed 0: skipped (finished record" in capsys.readouterr().out
    assert len(read_records(tmp_path / "results")) == 2


def test_a_failing_run_with_its_own_error_record_is_not_recorded_twice(tmp_path, shared_cache, monkeypatch):
    """When the runner wrote the error record (training raised), bench-all reports it and writes none."""
    overrides = ["data=synthetic_zs", "seeds=[0]", *quiet_run_in(tmp_path, shared_cache), *TINY_DATA]
    jobs, _ = bench_all_module.plan_all(["baseline"], overrides)
    (job,) = jobs
    written = []

    def child_writes_an_error_record(command, log):
        written.append(bench_all_module.write_error_record(job, 1, log))
        return 1

    monkeypatch.setattr(bench_all_module, "run_child", child_writes_an_error_record)
    finished, what = bench_all_module.run_job(job, overrides)
    assert not finished and what.startswith("error record ") and len(read_records(tmp_path / "results")) == 1
    assert "rebuild_leaderboard=false" in bench_all_module.child_command(job, overrides)


def test_a_registered_method_without_config_is_reported_failed(tmp_path, shared_cache, monkeypatch, capsys):
    METHODS.names()  # loaded, then one registered name without a config added
    monkeypatch.setattr(METHODS, "_entries", {**METHODS._entries, "no_config_method": Baseline})
    overrides = ["data=synthetic_trad", "seeds=[0,1]", *quiet_run_in(tmp_path, shared_cache), *TINY_DATA]
    everything = len(METHODS.names()) * 2
    assert bench_all(None, overrides, dry_run=True) == 0  # every registered method, itself included
    out = capsys.readouterr().out
    assert (
        f"[1/{everything}] baseline traditional seed 0: to run (no finished record): bench method=baseline"
        in out
    )
    assert "no_config_method traditional seed 1: FAILED (method 'no_config_method' has no config" in out
    assert f"dry run: {everything - 2} to run, 0 to skip, 2 without a usable config" in out
    assert bench_all(["no_config_method"], overrides) == 1, "no process started, reported failed"
    assert "bench-all: 0 done, 2 failed of 2" in capsys.readouterr().out
