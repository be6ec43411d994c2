"""End to end: data -> method -> Trainer -> engine -> record -> leaderboard, on tiny synthetic data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from sbir_bench.config import compose, config_hash
from sbir_bench.leaderboard.build import REFERENCE_METHODS
from sbir_bench.leaderboard.record import read_records
from sbir_bench.runner import bench


def records_in(tmp_path: Path):
    results = tmp_path / "results"
    return read_records(results) if results.exists() else []


def test_baseline_bench_writes_records_and_leaderboard(tiny_overrides, tmp_path, monkeypatch):
    cache_override = next(o for o in tiny_overrides if o.startswith("paths.cache_dir="))
    monkeypatch.setenv("SBIR_CACHE", cache_override.partition("=")[2])  # the cache as a shared one is given
    tiny_overrides = [o for o in tiny_overrides if o != cache_override]
    cfg = compose(["method=baseline", *tiny_overrides])
    splits = len(cfg.data.splits)
    result = bench(cfg)
    records = records_in(tmp_path)
    assert sorted(r.split for r in records) == ["gzs", "traditional", "zeroshot"]
    assert all(r.status == "ok" and 0.0 <= r.metrics["map@200"] <= 1.0 for r in records)
    zeroshot = next(r for r in records if r.split == "zeroshot")
    assert zeroshot.counts["n_queries"] == zeroshot.counts["split_test_query"]  # every query scored once
    assert zeroshot.commit and zeroshot.versions["torch"] and zeroshot.config["method"]["name"] == "baseline"
    assert zeroshot.config["paths"]["output_dir"] == str(tmp_path / "outputs"), "paths as configured"
    assert zeroshot.config["paths"]["cache_dir"] == "${oc.env:SBIR_CACHE,.cache/sbir_bench}", "as configured"
    assert cache_override.partition("=")[2] not in json.dumps(zeroshot.config)
    run_dir = Path(zeroshot.extra["run_dir"])  # keeps the resolved config and the overrides
    assert config_hash(OmegaConf.load(run_dir / "config.yaml")) == zeroshot.config_hash
    assert list(OmegaConf.load(run_dir / "overrides.yaml")) == ["method=baseline", *tiny_overrides]
    table = pd.read_csv(tmp_path / "leaderboard" / "leaderboard.csv")
    assert list(table["method"]) == ["baseline", *REFERENCE_METHODS]
    assert (tmp_path / "leaderboard" / "leaderboard.md").is_file()
    assert len(result.written) == splits and result.changed_rows

    again = bench(compose(["method=baseline", *tiny_overrides]))  # a rerun skips finished runs
    assert again.written == [] and len(again.skipped) == splits
    assert len(records_in(tmp_path)) == splits

    shutil.rmtree(tmp_path / "outputs")  # as in a fresh clone holding the committed records
    fresh = bench(compose(["method=baseline", *tiny_overrides]))
    assert len(fresh.written) == splits and fresh.skipped == []
    assert len(records_in(tmp_path)) == 2 * splits, "new records beside the old ones, none overwritten"
    table = pd.read_csv(tmp_path / "leaderboard" / "leaderboard.csv")
    assert list(table["method"]) == ["baseline", *REFERENCE_METHODS]


def test_a_seeded_rerun_gives_identical_metrics(tiny_overrides, tmp_path):
    """Same seed, same numbers: once filling the data/feature caches, once finding them."""
    overrides = [
        "method=cvae",
        "data=synthetic_trad",
        "method.max_epochs=2",
        "method.kwargs.num_test_samples=4",
        *[o for o in tiny_overrides if not o.startswith("paths.cache_dir")],
        f"paths.cache_dir={tmp_path / 'fresh_cache'}",
    ]
    bench(compose(overrides))
    bench(compose([*overrides, "force=true"]))
    first, second = sorted(records_in(tmp_path), key=lambda r: r.created_at)
    assert first.run_id != second.run_id and first.metrics == second.metrics
