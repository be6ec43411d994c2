"""Every config composes, and every method/data/trainer/logger config instantiates its object."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
from omegaconf import OmegaConf

from sbir_bench.config import ConfigError, available, compose, config_hash
from sbir_bench.data.modules import RetrievalDataModule
from sbir_bench.data.records import DataInfo
from sbir_bench.loggers import RunLabels, build_loggers
from sbir_bench.registry import METHODS, list_methods
from sbir_bench.runner import build_trainer


def fake_info(dim: int, levels: tuple[int, ...] = ()) -> DataInfo:
    """``dim``-wide features, or with pyramid ``levels`` (pcdnn) ``dim`` channels per cell: d·Σ L² wide."""
    return DataInfo(
        num_classes=6,
        seen_classes=(0, 1, 2, 3, 4),
        feature_dim=dim * sum(level * level for level in levels) if levels else dim,
        image_size=32,
        class_semantics=np.eye(6, dtype=np.float32),
        feature_levels=levels,
    )


def test_every_registered_method_has_a_config():
    assert set(list_methods()) <= set(available("method"))


@pytest.mark.parametrize("method", available("method"))
def test_method_config_instantiates(method):
    cfg = compose([f"method={method}"])
    assert cfg.method.name in METHODS
    dim = 4096 if "paper" in method else 64
    levels = tuple(getattr(METHODS.get(cfg.method.name), "feature_pyramid", ()))
    model = METHODS.create(cfg.method.name, data=fake_info(dim, levels), **cfg.method.kwargs)
    assert isinstance(model, L.LightningModule)


@pytest.mark.parametrize("data", available("data"))
def test_data_config_instantiates(data, tmp_path):
    cfg = compose([f"data={data}"])
    assert cfg.data.splits, "a data config names at least one split"
    for split in cfg.data.splits:
        RetrievalDataModule(
            dataset=cfg.data.dataset,
            split=split,
            dataset_kwargs=dict(cfg.data.dataset_kwargs),
            cache_dir=str(tmp_path),
            backbone=dict(cfg.data.backbone),
        )


@pytest.mark.parametrize("trainer", available("trainer"))
def test_trainer_config_instantiates(trainer, tmp_path):
    cfg = compose([f"trainer={trainer}", "trainer.accelerator=cpu"])
    built, checkpoint = build_trainer(cfg, run_dir=tmp_path, logger=None, needs_training=True)
    assert isinstance(built, L.Trainer) and checkpoint is not None
    assert checkpoint.monitor == "val/map@200" and checkpoint.mode == "max"


@pytest.mark.parametrize("logger", available("logger"))
def test_logger_config_instantiates(logger, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = compose([f"logger={logger}"])
    built = build_loggers(
        cfg.get("logger"), run_dir=tmp_path, labels=RunLabels("t", "g", "j"), config={"a": 1}
    )
    assert (built == []) == (logger in ("none", "wandb")), "WANDB_MODE=disabled: no W&B run"


@pytest.mark.parametrize("experiment", available("experiment"))
def test_experiment_config_composes(experiment):
    cfg = compose([f"experiment={experiment}"])
    assert cfg.variant != "default", "an experiment labels its leaderboard rows"


def test_unknown_config_choice_names_the_known_ones():
    with pytest.raises(ConfigError, match="no config 'no_such_method' in group method; known: baseline, "):
        compose(["method=no_such_method"])


def test_config_hash_ignores_how_a_run_is_executed():
    base = config_hash(compose([]))
    assert base == config_hash(compose(["trainer=ddp", "seeds=[1,2]", "logger=none", "data=synthetic_zs"]))
    assert base != config_hash(compose(["method.max_epochs=3"]))
    assert base == config_hash(compose(["variant=other"])), "the label is a record field, not the config"


def test_trainer_epochs_override_is_part_of_the_identity():
    assert config_hash(compose(["trainer.max_epochs=2"])) != config_hash(compose([]))


def test_where_a_dataset_lies_is_not_part_of_the_identity_but_its_options_are():
    here = config_hash(compose(["data=sketchy_zs", "data.root=/data/Sketchy"]))
    assert here == config_hash(compose(["data=sketchy_zs", "data.dataset_kwargs.root=/mnt/other/Sketchy"]))
    assert here != config_hash(compose(["data=sketchy_zs", "data.dataset_kwargs.exclude_invalid=true"]))


def test_data_root_short_form_reaches_the_reader():
    cfg = compose(["data=shrec13", "data.root=/data/SHREC13"])
    assert cfg.data.dataset_kwargs.root == "/data/SHREC13"


@pytest.mark.parametrize("data", available("data"))
def test_every_data_config_takes_class_semantics_and_their_default_leaves_the_identity_alone(data):
    cfg = compose([f"data={data}"])
    assert dict(cfg.data.semantics) == {"vectors": None, "format": None, "fallback": None, "attributes": None}
    without = OmegaConf.to_container(cfg)
    del without["data"]["semantics"]
    assert config_hash(cfg) == config_hash(OmegaConf.create(without)), (
        "runs from before the option keep their hash"
    )
    vectors = compose([f"data={data}", "data.semantics.vectors=/data/GoogleNews-vectors-negative300.bin"])
    attributes = compose([f"data={data}", "data.semantics.attributes=/data/attributes.csv"])
    assert len({config_hash(cfg), config_hash(vectors), config_hash(attributes)}) == 3


def test_config_dir_is_the_variable_then_the_package_copy_then_the_checkout(tmp_path, monkeypatch):
    """A wheel holds the configs as sbir_bench/configs (pyproject's force-include); an editable install
    reads the checkout's configs/ beside the package."""
    import shutil
    from pathlib import Path

    import tomllib

    from sbir_bench import config

    checkout = Path(config.__file__).resolve().parents[1]
    pyproject = tomllib.loads((checkout / "pyproject.toml").read_text())
    assert pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]["configs"] == (
        "sbir_bench/configs"
    )
    monkeypatch.delenv(config.CONFIG_DIR_ENV, raising=False)
    assert config.config_dir() == checkout / "configs"
    installed = tmp_path / "site-packages" / "sbir_bench"
    shutil.copytree(checkout / "configs", installed / "configs")
    monkeypatch.setattr(config, "__file__", str(installed / "config.py"))
    assert config.config_dir() == installed / "configs"
    assert compose(["method=baseline"]).method.name == "baseline"
    monkeypatch.setenv(config.CONFIG_DIR_ENV, str(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError, match="no bench.yaml in config folder .*elsewhere; set SBIR_CONFIG_DIR"):
        config.config_dir()


def test_a_lab_config_folder_on_the_search_path(tmp_path, monkeypatch, capsys):
    from sbir_bench.cli import main
    from sbir_bench.variant import resolve_variant

    lab = tmp_path / "lab"
    (lab / "method").mkdir(parents=True)
    (lab / "method" / "mine.yaml").write_text("defaults:\n  - baseline\n  - _self_\nbatch_size: 32\n")
    with pytest.raises(ConfigError, match="no config 'mine' in group method"):
        compose(["method=mine"])
    for overrides in (["method=mine"], [f"hydra.searchpath=[file://{lab}]", "method=mine"]):
        if len(overrides) == 1:
            monkeypatch.setenv("SBIR_CONFIG_SEARCHPATH", str(lab))
        else:
            monkeypatch.delenv("SBIR_CONFIG_SEARCHPATH")
        cfg = compose(overrides)
        assert cfg.method.name == "baseline" and cfg.method.batch_size == 32
        assert resolve_variant(cfg).name.startswith("custom-"), "a variant of baseline's registered row"
    monkeypatch.setenv("SBIR_CONFIG_SEARCHPATH", str(lab))
    assert "mine" in available("method")
    assert main(["list", "--json"]) == 0
    assert "mine" in json.loads(capsys.readouterr().out)["configs"]["method"]


def test_save_run_config_keeps_the_resolved_config_and_the_overrides(tmp_path):
    from sbir_bench.config import save_run_config

    cfg = compose(["method=baseline", "seeds=[3]"])
    save_run_config(cfg, tmp_path)
    assert OmegaConf.load(tmp_path / "config.yaml") == cfg
    assert OmegaConf.to_container(OmegaConf.load(tmp_path / "overrides.yaml")) == [
        "method=baseline",
        "seeds=[3]",
    ]


def test_a_methods_default_data_is_used_unless_data_is_given(tmp_path, monkeypatch):
    lab = tmp_path / "lab"
    (lab / "method").mkdir(parents=True)
    config = "defaults:\n  - baseline\n  - _self_\ndefault_data: qmul_chair\n"
    (lab / "method" / "fine.yaml").write_text(config)
    monkeypatch.setenv("SBIR_CONFIG_SEARCHPATH", str(lab))
    cfg = compose(["method=fine"])
    assert cfg.data.dataset == "qmul_chair" and list(cfg.overrides) == ["method=fine", "data=qmul_chair"]
    assert cfg.evaluation.monitor == "acc@1", "the data config's evaluation group comes with it"
    assert compose(["method=fine", "data=synthetic_zs"]).data.splits == ["zeroshot"]
    assert compose(["method=baseline"]).data.dataset == "synthetic"
