"""``sbir-bench submit``: every run of a config, or of a grid of configs, as its own job of one array job,
through submitit (https://github.com/facebookincubator/submitit): SLURM on a cluster, processes on this
machine (``local``) or this process (``debug``, for tests).

A run is one (split, seed) of a composed config; its job runs ``sbir-bench bench`` on exactly that run
(``data.splits=[SPLIT] seeds=[SEED]``), so each job holds one DDP process group, its lock and its record.
``method=cvae,baseline data=sketchy_zs,tuberlin_zs`` (Hydra's sweep syntax) is a grid: every combination.
Runs whose finished record is here are not submitted. A job past its time or preempted is requeued
(:meth:`BenchJob.checkpoint`) and resumes from the run's ``last.ckpt``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from typing import Any

import submitit
import yaml
from omegaconf import DictConfig, OmegaConf
from submitit.helpers import Checkpointable, DelayedSubmission

from sbir_bench.config import ConfigError, available, compose, config_dir
from sbir_bench.plan import plan_runs

EXECUTORS = ("slurm", "local", "debug")
# the overrides that choose which runs a config has: each job gets its own instead
_PER_RUN_KEYS = ("data.splits", "seeds")


@dataclass
class SubmitSettings:
    """Where and with what the jobs run: configs/submit/<launcher>.yaml, then command-line flags."""

    executor: str = "slurm"
    folder: str = "outputs/submit"
    timeout_min: int = 240
    partition: str | None = None
    cpus_per_task: int = 8
    mem_gb: float = 32
    gpus_per_node: int | None = None
    array_parallelism: int = 16
    additional: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, launcher: str, **flags: Any) -> SubmitSettings:
        """``configs/submit/<launcher>.yaml`` with the flags that are not None on top; ConfigError on an
        unknown launcher, key or executor."""
        path = config_dir() / "submit" / f"{launcher}.yaml"
        if not path.is_file():
            raise ConfigError(f"no submit config {launcher!r}; known: {', '.join(available('submit'))}")
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        values.update({key: value for key, value in flags.items() if value is not None})
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {[f.name for f in fields(cls)]}")
        settings = cls(**values)
        if settings.executor not in EXECUTORS:
            raise ConfigError(f"{path}: executor {settings.executor!r} is not one of {EXECUTORS}")
        return settings


@dataclass(frozen=True)
class BenchJob(Checkpointable):
    """One run: ``sbir-bench bench`` with these overrides (they select a single split and seed)."""

    overrides: tuple[str, ...]

    def __call__(self) -> list[str]:
        from sbir_bench.runner import bench

        return [str(path) for path in bench(compose(list(self.overrides))).written]

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """Called by submitit when the job is preempted or out of time: requeue the same run, which resumes
        from its ``last.ckpt``."""
        kept = [o for o in self.overrides if not o.startswith("resume=")]
        return DelayedSubmission(BenchJob((*kept, "resume=true")))


def grid(overrides: list[str]) -> list[list[str]]:
    """Every combination of the sweeps in ``overrides`` (``key=a,b``, Hydra's syntax) as override lists."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices = []
    for override, line in zip(OverridesParser.create().parse_overrides(overrides), overrides, strict=True):
        if override.is_sweep_override():
            key = override.get_key_element()
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([line])
    return [list(combination) for combination in itertools.product(*choices)]


@dataclass
class JobArray:
    """Jobs that share a trainer (so the same resources): one SLURM array job."""

    trainer: DictConfig
    jobs: list[BenchJob] = field(default_factory=list)


def plan_jobs(overrides: list[str]) -> tuple[list[JobArray], list[str]]:
    """One job per run of the grid that has no finished record here, grouped by trainer, and a line per
    run left out."""
    arrays: dict[str, JobArray] = {}
    skipped = []
    per_run = tuple(f"{key}=" for key in _PER_RUN_KEYS)
    for combination in grid(overrides):
        cfg = compose(combination)
        base = [o for o in combination if not o.lstrip("+~").startswith(per_run)]
        array = arrays.setdefault(OmegaConf.to_yaml(cfg.trainer), JobArray(cfg.trainer))
        for run in plan_runs(cfg).runs:
            if run.runs:
                array.jobs.append(BenchJob((*base, f"data.splits=[{run.split}]", f"seeds=[{run.seed}]")))
            else:
                skipped.append(f"{run.name}: {run.reason}")
    return [array for array in arrays.values() if array.jobs], skipped


def job_parameters(settings: SubmitSettings, trainer: DictConfig) -> dict[str, Any]:
    """submitit's parameters for the jobs of one trainer: on SLURM one task per DDP rank
    (``trainer.num_nodes`` x ``trainer.devices``, which Lightning reads back from SLURM); elsewhere one
    process per job."""
    devices = trainer.devices if isinstance(trainer.devices, int) else 1
    on_slurm = settings.executor == "slurm"
    gpus = settings.gpus_per_node
    if gpus is None:
        gpus = devices if trainer.accelerator in ("gpu", "cuda") else 0
    return {
        "name": "sbir-bench",
        "timeout_min": int(settings.timeout_min),
        "nodes": int(trainer.num_nodes) if on_slurm else 1,
        "tasks_per_node": devices if on_slurm else 1,
        "cpus_per_task": int(settings.cpus_per_task),
        "mem_gb": float(settings.mem_gb),
        "gpus_per_node": int(gpus),
        "slurm_partition": settings.partition,
        "slurm_array_parallelism": int(settings.array_parallelism),
        "slurm_additional_parameters": dict(settings.additional),
    }


def executor(settings: SubmitSettings, trainer: DictConfig) -> submitit.AutoExecutor:
    """The submitit executor of ``settings`` for jobs of this trainer."""
    try:
        runner = submitit.AutoExecutor(folder=settings.folder, cluster=settings.executor)
    except RuntimeError as error:  # e.g. no srun on this machine
        raise ConfigError(
            f"executor {settings.executor!r}: {error} (--launcher local runs the jobs here)"
        ) from None
    runner.update_parameters(**job_parameters(settings, trainer))
    return runner


def submit(
    overrides: list[str], settings: SubmitSettings
) -> tuple[list[tuple[submitit.Job, BenchJob]], list[str]]:
    """Submit one job per run of the grid, an array job per trainer; each submitted job with its run, and a
    line per run left out because it is finished."""
    arrays, skipped = plan_jobs(overrides)
    submitted = []
    for array in arrays:
        runner = executor(settings, array.trainer)
        with runner.batch():
            pending = [runner.submit(job) for job in array.jobs]
        submitted += list(zip(pending, array.jobs, strict=True))
    return submitted, skipped
