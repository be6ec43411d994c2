"""W&B runs people can read: grouped and tagged, one run per run identity (resumable), the environment
honoured, best validation values in the summary, counts beside the metrics, numeric tables, per-class AP and
the precision-recall curve, the run path in the record, and the leaderboard as an artifact. The run files are
read offline (tests/wandb_offline.py); two W&B runs in all, each costs seconds."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from lightning.pytorch.loggers import WandbLogger

from sbir_bench.cli import main
from sbir_bench.config import compose
from sbir_bench.leaderboard.record import read_records
from sbir_bench.loggers import RunLabels, build_loggers, wandb_mode, wandb_run_id
from sbir_bench.runner import bench, run_labels

from .conftest import TINY_DATA, quiet_run_in
from .wandb_offline import finished, history, records, summary

RUN = [
    "method=cvae",
    "data=synthetic_zs",
    "method.max_epochs=3",
    "method.kwargs.num_test_samples=2",
    *TINY_DATA,
]


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory, shared_cache):
    tmp = tmp_path_factory.mktemp("wandb_run")
    overrides = [o for o in quiet_run_in(tmp, shared_cache) if o != "logger=none"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_MODE", "offline")
        env.delenv("WANDB_DIR", raising=False)
        cfg = compose([*RUN, *overrides, "logger=wandb"])
        result = bench(cfg)
    (run_file,) = Path(result.logged_to[0]).glob("run-*.wandb")
    (record,) = read_records(tmp / "results")
    return SimpleNamespace(cfg=cfg, tmp=tmp, run_file=finished(run_file), record=record)


def test_the_run_is_grouped_tagged_and_its_id_follows_the_identity(offline_run):
    (run,) = records(offline_run.run_file, "run")
    record = offline_run.record
    assert run.run_group == f"cvae/{record.variant}/synthetic"
    assert run.job_type == "zeroshot"
    assert {"cvae", record.variant, "synthetic", "zeroshot", "seed0", f"config-{record.config_hash}"} <= set(
        run.tags
    )
    # the id the interrupted-then-resumed attempts share (resume="allow"); a rerun after this record starts
    # a new W&B run
    assert run.run_id == wandb_run_id(record.identity)
    setting = SimpleNamespace(split_=SimpleNamespace(setting="zeroshot"))
    rerun = run_labels(offline_run.cfg, record.identity, setting)
    assert wandb_run_id(rerun.key) != run.run_id and rerun.key[-1] == record.run_id


def test_summary_holds_best_validation_values_final_metrics_and_counts(offline_run):
    logged, rows = summary(offline_run.run_file), history(offline_run.run_file)
    validation = [row["val/map@200"] for row in rows if "val/map@200" in row]
    assert len(validation) == 3
    assert logged["val/map@200"] == {"max": max(validation)}
    assert logged["final/map@200"] == pytest.approx(offline_run.record.metrics["map@200"])
    assert logged["counts/n_queries"] == offline_run.record.counts["n_queries"]
    assert logged["counts/split_test_gallery"] == offline_run.record.counts["split_test_gallery"]
    assert not [key for row in rows for key in row if "n_queries" in key or "n_gallery" in key]


def test_tables_are_numeric_and_plots_sit_beside_the_grid(offline_run):
    files = offline_run.run_file.parent / "files" / "media"
    (table_file,) = (files / "table").glob("leaderboard_*.table.json")
    table = json.loads(table_file.read_text())
    row = dict(zip(table["columns"], table["data"][0], strict=True))
    assert row["map@200"] == pytest.approx(offline_run.record.metrics["map@200"]) and row["seed"] == 0
    (per_class,) = (files / "table").glob("per_class_ap_table_*.table.json")
    per_class = json.loads(per_class.read_text())
    assert per_class["columns"] == ["class", "ap"] and len(per_class["data"]) == 2  # the 2 unseen classes
    assert all(0.0 <= ap <= 1.0 for _, ap in per_class["data"])
    (curve,) = (files / "table").glob("pr_curve_table_*.table.json")
    recall, precision = zip(*json.loads(curve.read_text())["data"], strict=True)
    assert recall[0] == 0.0 and recall[-1] == 1.0 and list(precision) == sorted(precision, reverse=True)
    assert list((files / "images").glob("retrieval_grid_*.png"))


def test_the_record_names_its_wandb_run(offline_run):
    where = offline_run.record.extra["wandb_run"]
    assert where == offline_run.run_file.parent.name  # outside the working directory: the folder's name


def test_the_leaderboard_is_logged_as_an_artifact_and_a_numeric_table(offline_run, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    out = tmp_path / "board"
    assert (
        main(["leaderboard", "--results", str(offline_run.tmp / "results"), "--out", str(out), "--wandb"])
        == 0
    )
    (run_file,) = (tmp_path / "wandb_dir").glob("wandb/offline-run-*/run-*.wandb")
    (run,) = records(finished(run_file), "run")
    assert run.job_type == "leaderboard"
    (artifact,) = [a for a in records(run_file, "artifact") if a.type == "leaderboard"]
    assert {entry.path for entry in artifact.manifest.contents} == {"leaderboard.csv", "leaderboard.md"}
    (table_file,) = (run_file.parent / "files" / "media" / "table").glob("leaderboard_*.table.json")
    table = json.loads(table_file.read_text())
    rows = [dict(zip(table["columns"], data, strict=True)) for data in table["data"]]
    ours = [row for row in rows if row["method"] == "cvae"]
    assert ours and isinstance(ours[0]["zs_n"], int) and isinstance(ours[0]["zs_map@200"], float)


def test_the_environment_wins_over_the_config_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_PROJECT", "lab_project")
    node = compose(["logger=wandb"]).logger.wandb
    assert (node.mode, node.project) == ("disabled", "lab_project")
    labels = RunLabels("n", "g", "zeroshot")
    assert build_loggers(compose(["logger=wandb"]).logger, run_dir=tmp_path, labels=labels, config={}) == []
    assert compose(["logger=wandb", "logger.wandb.mode=offline"]).logger.wandb.mode == "offline"  # typed wins
    with pytest.raises(ValueError, match="logger.wandb.mode must be one of"):
        wandb_mode("sometimes")


def test_a_wandb_logger_gets_the_run_labels_a_stable_id_and_the_run_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setattr(WandbLogger, "log_hyperparams", lambda self, params: None)  # no run is started
    labels = RunLabels("name", "cvae/default/synthetic", "zeroshot", ["cvae"], key=("cvae", "default", 0))
    (logger,) = build_loggers(compose(["logger=wandb"]).logger, run_dir=tmp_path, labels=labels, config={})
    init = logger._wandb_init
    assert init["id"] == wandb_run_id(labels.key) == wandb_run_id(("cvae", "default", 0))
    assert (init["resume"], init["group"], init["job_type"], init["tags"]) == (
        "allow",
        labels.group,
        "zeroshot",
        ["cvae"],
    )
    assert (init["mode"], init["dir"]) == ("offline", str(tmp_path))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_here"))
    (logger,) = build_loggers(compose(["logger=wandb"]).logger, run_dir=tmp_path, labels=labels, config={})
    assert logger._wandb_init["dir"] == str(tmp_path / "wandb_here")
