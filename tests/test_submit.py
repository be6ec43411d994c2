"""``sbir-bench submit``: a grid of runs as one job each through submitit, requeued when preempted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sbir_bench.cli import main
from sbir_bench.config import ConfigError, compose
from sbir_bench.leaderboard.record import read_records
from sbir_bench.plan import identify
from sbir_bench.submit import BenchJob, SubmitSettings, grid, job_parameters, plan_jobs, submit

from .conftest import TINY_DATA, quiet_run_in
from .finished_record import write_finished_record


def test_a_sweep_is_a_grid_of_every_combination():
    assert grid(["method=cvae,baseline", "data=synthetic_zs,synthetic_trad", "seeds=[0,1]"]) == [
        ["method=cvae", "data=synthetic_zs", "seeds=[0,1]"],
        ["method=cvae", "data=synthetic_trad", "seeds=[0,1]"],
        ["method=baseline", "data=synthetic_zs", "seeds=[0,1]"],
        ["method=baseline", "data=synthetic_trad", "seeds=[0,1]"],
    ]


def test_one_job_per_unfinished_run(tmp_path):
    overrides = ["method=baseline", "data=synthetic_zs", "seeds=[0,1]", *quiet_run_in(tmp_path, tmp_path)]
    cfg = compose(overrides)
    chash, variant = identify(cfg)
    write_finished_record(cfg, "zeroshot", 0, chash, variant)
    (array,), skipped = plan_jobs(overrides)
    assert [job.overrides[-2:] for job in array.jobs] == [("data.splits=[zeroshot]", "seeds=[1]")]
    assert array.jobs[0].overrides[:2] == ("method=baseline", "data=synthetic_zs")
    assert "seeds=[0,1]" not in array.jobs[0].overrides
    assert skipped == [f"baseline/default/synthetic/zeroshot/0/{chash}: finished record " + skipped[0][-31:]]


def test_a_preempted_job_is_requeued_as_the_same_run_and_resumes_from_last_ckpt(
    tmp_path, shared_cache, monkeypatch
):
    from sbir_bench.methods.cvae import CVAE

    run = ["method=cvae", "data=synthetic_zs", "method.max_epochs=2", "method.batch_size=32", *TINY_DATA]
    run += ["method.kwargs.num_test_samples=4", *quiet_run_in(tmp_path, shared_cache), "seeds=[0]"]
    job = BenchJob((*run, "resume=false"))
    epochs_run: list[int] = []

    def preempted_in_epoch_one(self, batch, batch_idx):  # as SLURM's signal half-way through an epoch
        if batch_idx == 0:
            epochs_run.append(self.current_epoch)
        if self.current_epoch == 1 and batch_idx == 1 and epochs_run.count(1) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(CVAE, "on_train_batch_start", preempted_in_epoch_one, raising=False)
    with pytest.raises(SystemExit):
        job()
    requeued = job.checkpoint()  # what submitit resubmits
    assert requeued.function == BenchJob((*run, "resume=true")) and requeued.args == ()
    (path,) = requeued.result()
    assert epochs_run == [0, 1, 1], "the requeued run went on with the preempted epoch"
    assert json.loads(Path(path).read_text())["extra"]["resumed_from_epoch"] == 1


def test_slurm_tasks_follow_the_trainer_and_flags_override_the_launcher_config():
    settings = SubmitSettings.load("slurm", partition="gpu", timeout_min=30, additional={"account": "lab"})
    trainer = compose(["trainer=ddp", "trainer.accelerator=gpu", "trainer.devices=4", "trainer.num_nodes=2"])
    parameters = job_parameters(settings, trainer.trainer)
    assert (parameters["nodes"], parameters["tasks_per_node"], parameters["gpus_per_node"]) == (2, 4, 4)
    assert parameters["slurm_partition"] == "gpu" and parameters["timeout_min"] == 30
    assert parameters["slurm_additional_parameters"] == {"account": "lab"}
    local = job_parameters(SubmitSettings.load("local"), compose(["trainer=cpu"]).trainer)
    assert (local["nodes"], local["tasks_per_node"], local["gpus_per_node"]) == (1, 1, 0)
    with pytest.raises(ConfigError, match="no submit config 'nope'"):
        SubmitSettings.load("nope")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['gpu'\]"):
        SubmitSettings.load("slurm", gpu=1)


@pytest.mark.parametrize(
    "executor",
    ["debug", pytest.param("local", marks=pytest.mark.slow)],  # local: a process per job, 30-50 s on 2 cores
)
def test_a_grid_of_two_runs_writes_two_records(executor, tmp_path, shared_cache):
    overrides = ["method=baseline", "data=synthetic_zs,synthetic_trad", *quiet_run_in(tmp_path, shared_cache)]
    settings = SubmitSettings.load("local", executor=executor, folder=str(tmp_path / "submitit"))
    submitted, skipped = submit([*overrides, *TINY_DATA], settings)
    assert skipped == [] and len(submitted) == 2
    written = [path for job, _ in submitted for path in job.result()]
    records = read_records(tmp_path / "results")
    assert sorted(record.split for record in records) == ["traditional", "zeroshot"] and len(written) == 2


def test_submit_command_refuses_an_unknown_launcher_in_one_line(capsys):
    assert main(["submit", "--launcher", "nope", "method=baseline"]) == 2
    assert capsys.readouterr().err.startswith(
        "sbir-bench submit: error: no submit config 'nope'; known: local, slurm"
    )
