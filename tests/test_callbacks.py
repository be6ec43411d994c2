"""Callbacks and Trainer options from configs/ (lightning-hydra-template style), and debug runs."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import (
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    RichModelSummary,
    RichProgressBar,
    Timer,
)
from omegaconf import OmegaConf

from sbir_bench.config import ConfigError, available, compose, config_hash
from sbir_bench.random_state import RandomStateCheckpoint
from sbir_bench.runner import bench, build_callbacks, build_trainer

from .conftest import TINY_DATA, quiet_run_in


def kinds(callbacks) -> list[type]:
    return [type(c) for c in callbacks]


def test_default_callbacks_are_instantiated_beside_the_resume_ones(tmp_path):
    cfg = compose([])
    callbacks, best = build_callbacks(cfg, run_dir=tmp_path, needs_training=True, has_logger=True)
    assert kinds(callbacks) == [
        RandomStateCheckpoint,
        ModelCheckpoint,
        RichProgressBar,
        RichModelSummary,
        LearningRateMonitor,
        ModelCheckpoint,
    ]
    assert best is callbacks[1] and (best.monitor, best.mode) == ("val/map@200", "max")
    assert best.dirpath == str(tmp_path / "checkpoints") and callbacks[-1].filename == "last"
    # Lightning refuses a progress bar with enable_progress_bar=false and a learning-rate monitor without
    # a logger: those are left out
    quiet = compose(["trainer.enable_progress_bar=false"])
    callbacks, _ = build_callbacks(quiet, run_dir=tmp_path, needs_training=True, has_logger=False)
    assert RichProgressBar not in kinds(callbacks) and LearningRateMonitor not in kinds(callbacks)


def test_without_configured_callbacks_the_best_checkpoint_and_resume_remain(tmp_path):
    callbacks, best = build_callbacks(
        compose(["callbacks=none"]), run_dir=tmp_path, needs_training=True, has_logger=False
    )
    assert kinds(callbacks) == [RandomStateCheckpoint, ModelCheckpoint, ModelCheckpoint]
    assert best.monitor == "val/map@200" and best.dirpath == str(tmp_path / "checkpoints")
    untrained, none = build_callbacks(compose([]), run_dir=tmp_path, needs_training=False, has_logger=False)
    assert none is None and not [c for c in untrained if isinstance(c, ModelCheckpoint)]


def test_early_stopping_is_selectable_overridable_and_part_of_the_identity(tmp_path):
    plain = compose([])
    stopping = compose(["callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=5"])
    callbacks, _ = build_callbacks(stopping, run_dir=tmp_path, needs_training=True, has_logger=False)
    (early,) = [c for c in callbacks if isinstance(c, EarlyStopping)]
    assert (early.monitor, early.mode, early.patience) == ("val/map@200", "max", 5)
    assert config_hash(stopping) != config_hash(plain)
    assert "early_stopping" not in plain.callbacks, "off by default: it changes what runs compute"
    for display_only in (
        ["callbacks=none"],
        ["callbacks.model_summary.max_depth=3"],
        ["~callbacks.rich_progress_bar"],
    ):
        assert config_hash(compose(display_only)) == config_hash(plain), display_only


def test_a_checkpoint_on_another_metric_is_refused(tmp_path):
    cfg = compose(["callbacks.model_checkpoint.mode=min"])
    with pytest.raises(ConfigError, match="must be a ModelCheckpoint on val/map@200, mode max"):
        build_callbacks(cfg, run_dir=tmp_path, needs_training=True, has_logger=False)


def test_listed_trainer_options_need_no_plus_and_null_keeps_the_hash(tmp_path):
    cfg = compose(["trainer.max_time=00:00:10:00", "trainer.gradient_clip_val=1.0"])
    trainer, _ = build_trainer(cfg, run_dir=tmp_path, logger=[], needs_training=True)
    assert trainer.gradient_clip_val == 1.0 and Timer in kinds(trainer.callbacks)
    listed = OmegaConf.to_container(compose([]).trainer)
    accepted = set(inspect.signature(L.Trainer.__init__).parameters)
    assert set(listed) <= accepted, set(listed) - accepted
    # the committed records' configurations keep their hash although the null options were added
    committed = {
        json.loads(p.read_text())["config_hash"]
        for p in (Path(__file__).parents[1] / "leaderboard" / "results").rglob("default-*.json")
    }
    assert {config_hash(compose(["method=baseline"])), config_hash(compose(["method=cvae"]))} <= committed


@pytest.mark.parametrize("debug", available("debug"))
def test_debug_configs_stay_off_the_leaderboard(debug):
    cfg = compose([f"debug={debug}"])
    assert cfg.to_leaderboard is False and not cfg.get("logger") and cfg.trainer.accelerator == "cpu"


def test_a_debug_run_writes_its_record_into_its_run_folder_only(tmp_path, shared_cache):
    overrides = ["method=cvae", "data=synthetic_zs", "debug=fast_dev_run", *TINY_DATA]
    summary = bench(compose([*overrides, *quiet_run_in(tmp_path, shared_cache)]))
    (record,) = summary.written
    assert (tmp_path / "outputs") in record.parents
    assert not (tmp_path / "results").exists() and not (tmp_path / "leaderboard").exists()
    assert summary.leaderboard is None
    assert json.loads(record.read_text())["extra"]["epochs_trained"] == 1  # fast_dev_run: one batch
