"""A composed config is checked before any data work: one line per problem, with a did-you-mean."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
from omegaconf import OmegaConf

from sbir_bench.cli import main
from sbir_bench.config import ConfigError, compose
from sbir_bench.config_checks import config_problems, object_problems, trainer_parameters

ROOT = Path(__file__).resolve().parents[1]


def test_trainer_parameters_read_from_source_are_the_signature():
    assert trainer_parameters() == set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}


def test_trainer_key_typo_suggests_the_option():
    with pytest.raises(ConfigError, match=r"^unknown trainer option max_epoch; did you mean max_epochs\?$"):
        compose(["trainer.max_epoch=3"])
    with pytest.raises(ConfigError, match=r"^unknown trainer option max_epoch; did you mean max_epochs\?$"):
        compose(["+trainer.max_epoch=3"])  # added with +: caught by the check of the composed config
    # configs/trainer/cpu.yaml lists every Trainer option (null: Lightning's default): no `+` needed
    assert compose(["trainer.gradient_clip_val=1.0"]).trainer.gradient_clip_val == 1.0


def test_other_unknown_keys_are_named_with_their_closest_sibling():
    with pytest.raises(ConfigError, match=r"^unknown option methd; did you mean method\?$"):
        compose(["methd=cvae"])
    with pytest.raises(ConfigError, match=r"^unknown option data.batchsize; did you mean data.batch_size\?$"):
        compose(["data.batchsize=3"])
    with pytest.raises(
        ConfigError, match=r"^no config 'nope' in group method; known: baseline, .*cvae, cvae_paper, "
    ):
        compose(["method=nope"])


def test_every_problem_of_the_config_is_one_line():
    cfg = compose(
        [
            "+trainer.max_epoch=3",
            "evaluation.metrics=[p@1,x@2]",
            "evaluation.monitor=map@200",
            "seeds=[a]",
            "data.splits=[]",
            "logger=wandb",
            "logger.wandb.mode=offlin",
        ],
        check=False,
    )
    problems = config_problems(cfg)
    assert len(problems) == 6 and all("\n" not in problem for problem in problems)
    assert problems[0] == "unknown trainer option max_epoch; did you mean max_epochs?"
    assert problems[1].startswith("evaluation.metrics: unknown metric 'x@2'; known forms: p@<K>")
    assert problems[2].startswith("evaluation.monitor map@200 (the validation metric")
    assert problems[2].endswith("is not among evaluation.metrics (p@1, x@2)")
    assert problems[3] == "seeds must be a non-empty list of integers, e.g. seeds=[0,1,2], not ['a']"
    assert problems[4] == "data.splits must be a non-empty list of split names, not []"
    assert problems[5] == "logger.wandb.mode offlin is none of auto, online, offline, disabled"
    assert config_problems(compose([])) == []


def test_target_nodes_are_importable_and_take_their_keys():
    cfg = OmegaConf.create(
        {
            "callbacks": {
                "early_stopping": {
                    "_target_": "lightning.pytorch.callbacks.EarlyStopping",
                    "monitor": "val/map@200",
                    "patiense": 3,
                },
                "gone": {"_target_": "lightning.pytorch.callbacks.NoSuchCallback"},
            },
            "logger": {"csv": {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": "x"}},
            "method": {"name": "nope"},
            "data": {"dataset": "synthetic"},
        }
    )
    problems = object_problems(cfg)
    assert problems[0] == (
        "unknown option callbacks.early_stopping.patiense of lightning.pytorch.callbacks.EarlyStopping; "
        "did you mean callbacks.early_stopping.patience?"
    )
    assert problems[1].startswith("callbacks.gone._target_: cannot import lightning.pytorch.callbacks.NoSuch")
    assert problems[2].startswith("method.name: unknown method 'nope'; known methods: baseline")
    assert len(problems) == 3  # the CSV logger's keys and the dataset are fine


def test_bench_config_errors_are_fast_and_import_nothing_heavy(tmp_path):
    """``bench`` with a typo and ``list`` answer without pandas, torch, Lightning, W&B or timm."""
    heavy = ("pandas", "torch", "lightning", "wandb", "timm")
    script = (
        "import sys, json; from sbir_bench.cli import main; "
        "codes = [main(['bench', 'trainer.max_epoch=3']), main(['bench', 'seeds=[a]']), main(['list'])]; "
        f"print(json.dumps([codes, [m for m in {heavy!r} if m in sys.modules]]))"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": ROOT}
    )
    seconds = time.perf_counter() - started
    codes, imported = json.loads(done.stdout.splitlines()[-1])
    assert codes == [2, 2, 0] and imported == []
    assert done.stderr.splitlines() == [
        "sbir-bench bench: error: unknown trainer option max_epoch; did you mean max_epochs?",
        "sbir-bench bench: error: seeds must be a non-empty list of integers, e.g. seeds=[0,1,2], not ['a']",
    ]
    assert seconds < 10, f"{seconds:.1f} s (about 1 s on an idle machine)"


def test_bench_cfg_prints_the_resolved_config_and_runs_nothing(tmp_path, capsys):
    overrides = ["method=baseline", "data=synthetic_zs", f"paths.output_dir={tmp_path / 'outputs'}"]
    assert main(["bench", "--cfg", *overrides]) == 0
    printed = OmegaConf.create(capsys.readouterr().out)
    assert OmegaConf.to_container(printed) == OmegaConf.to_container(compose(overrides), resolve=True)
    assert printed.paths.cache_dir != "${oc.env:SBIR_CACHE,.cache/sbir_bench}", "resolved"
    assert not (tmp_path / "outputs").exists()
    assert main(["bench", "--cfg", "seeds=[a]"]) == 0, "--cfg shows even a config that would be refused"


def test_an_unresolvable_value_is_a_config_error():
    with pytest.raises(ConfigError, match="Environment variable 'SBIR_TEST_UNSET' not found"):
        compose(["paths.cache_dir=${oc.env:SBIR_TEST_UNSET}"])


def test_sketch_to_3d_evaluation_group_and_its_options_are_checked():
    cfg = compose(["data=shrec13"])
    assert cfg.evaluation.monitor == "map@all" and cfg.evaluation.pr_curve == "shrec"
    assert config_problems(cfg) == []
    problems = config_problems(
        compose(["+evaluation.pr_curve=shrec20", "+evaluation.class_mean=yes"], check=False)
    )
    assert problems == [
        "evaluation.pr_curve 'shrec20': expected one of voc, shrec",
        "evaluation.class_mean must be true or false, got 'yes'",
    ]
