"""``sbir-bench bench-all`` (``make bench-all``): every registered method x the dataset's splits x the seeds.

Each run (method, split, seed) is one ``sbir-bench bench method=M data.splits=[S] seeds=[s] ...`` child
process, so a run that fails, crashes or is killed stops nothing else. Before anything starts, the plan is
decided from the records (:func:`sbir_bench.plan.plan_runs`, no data built): a run with a finished record
is skipped without a process, exactly as ``make bench`` would skip it (``data.splits`` and ``seeds`` are
not part of a run's identity, so the records are the same). A failed run leaves a record with status
``error``: the runner writes it when training or testing raises; when the child dies without one (an
import error, a method that cannot be built, a kill), bench-all writes it, with the last lines of the
child's log, in the same place and format (:func:`sbir_bench.leaderboard.record.write_record`). Children
do not rebuild the leaderboard (``rebuild_leaderboard=false``); it is rebuilt once at the end.

The method config of a registered method is ``configs/method/<name>.yaml``; a method without one is
reported as failed (no record: without a config there is no identity to record).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, open_dict

from sbir_bench.config import ConfigError, available, compose, record_config
from sbir_bench.leaderboard.record import (
    SETTINGS,
    RecordError,
    RunRecord,
    environment_info,
    find_record,
    new_run_id,
    read_record,
    utc_now,
    write_record,
)
from sbir_bench.plan import PlannedRun, plan_runs, run_folder
from sbir_bench.registry import METHODS, UnknownNameError
from sbir_bench.variant import Variant

# per-run values: bench-all sets them in each child's overrides, replacing the user's
PER_RUN_KEYS = ("method", "data.splits", "seeds", "rebuild_leaderboard")
LOG_TAIL_LINES = 30  # lines of a dead child's log kept in the error record bench-all writes


@dataclass
class Job:
    """One run: its place in the plan, and why it cannot start (``problem``) when its config fails."""

    method: str
    split: str
    seed: int
    planned: PlannedRun | None = None
    cfg: DictConfig | None = None
    chash: str = ""
    variant: Variant | None = None
    problem: str = ""

    @property
    def label(self) -> str:
        return f"{self.method} {self.split} seed {self.seed}"


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def plan_all(methods: Sequence[str], overrides: Sequence[str]) -> tuple[list[Job], DictConfig]:
    """Every (method, split, seed) of ``overrides`` (splits and seeds from the composed config), decided
    from the records; the config composed without a method choice (its paths, splits and seeds)."""
    chosen = [o for o in overrides if _key(o) == "method"]
    if chosen:
        raise ConfigError(f"bench-all runs every method: give --methods NAME,... instead of {chosen[0]}")
    base = compose(list(overrides))
    configs = set(available("method"))
    jobs: list[Job] = []
    for method in methods:
        problem, plan, cfg = "", None, None
        if method not in configs:
            problem = f"method {method!r} has no config configs/method/{method}.yaml"
        else:
            try:
                cfg = compose([f"method={method}", *overrides])
                plan = plan_runs(cfg)
            except (ConfigError, UnknownNameError, ImportError) as error:
                problem = f"method {method!r}: {str(error).splitlines()[0] if str(error) else error!r}"
        if plan is None:
            jobs += [
                Job(method, s, int(seed), problem=problem) for s in base.data.splits for seed in base.seeds
            ]
            continue
        for run in plan.runs:
            jobs.append(Job(method, run.split, run.seed, run, cfg, plan.config_hash, plan.variant))
    return jobs, base


def child_command(job: Job, overrides: Sequence[str]) -> list[str]:
    """The ``sbir-bench bench`` command line of one run (the user's overrides, then the run's own)."""
    kept = [o for o in overrides if _key(o) not in PER_RUN_KEYS]
    return [
        sys.executable,
        "-m",
        "sbir_bench.cli",
        "bench",
        f"method={job.method}",
        *kept,
        f"data.splits=[{job.split}]",
        f"seeds=[{job.seed}]",
        "rebuild_leaderboard=false",
    ]


def _results_dir(job: Job) -> Path:
    """Where the run's record goes: the results folder, or the run folder's ``records/`` (debug runs)."""
    cfg = job.cfg
    if cfg.to_leaderboard:
        return Path(cfg.paths.results_dir)
    return run_folder(cfg, job.split, job.seed, job.chash) / "records"


def log_path(job: Job) -> Path:
    """The child's output, beside the run folder: ``<run folder>.log``."""
    folder = run_folder(job.cfg, job.split, job.seed, job.chash)
    return folder.parent / f"{folder.name}.log"


def _records_since(job: Job, since: float) -> list[RunRecord]:
    """The records of the run's identity written since ``since`` (a time.time())."""
    folder = _results_dir(job) / job.cfg.data.dataset / job.split / job.method
    found = []
    for path in sorted(folder.glob(f"{job.variant.name}-seed{job.seed}-*.json")):
        try:
            record = read_record(path)
        except RecordError:
            continue
        if record.identity == job.planned.identity and record.created.timestamp() >= since:
            found.append(record)
    return found


def guess_setting(results_dir: Path, dataset: str, split: str) -> str:
    """A split's setting without building its data: that of another record of the split, else the
    split's name (``gzs``, ``zeroshot_shen`` -> ``zeroshot``); ``zeroshot`` when neither tells."""
    for path in sorted((results_dir / dataset / split).glob("*/*.json")):
        try:
            return read_record(path).setting
        except RecordError:
            continue
    return next((s for s in SETTINGS if split == s or split.startswith(f"{s}_")), "zeroshot")


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as log:
            return "".join(deque(log, maxlen=lines)).rstrip()
    except OSError:
        return ""


def write_error_record(job: Job, returncode: int, log: Path) -> Path:
    """The error record of a run whose process ended without one: the runner's format, the child's log
    tail as its error (its last line: the exception, or the signal that killed it)."""
    cfg = job.cfg.copy()
    with open_dict(cfg):
        cfg.data.splits, cfg.seeds = [job.split], [job.seed]
    why = (
        f"killed by signal {signal.Signals(-returncode).name}"
        if returncode < 0
        else f"exit code {returncode}"
    )
    error = f"the run's process ended ({why}) without a record; the last lines of {log}:\n{_tail(log)}"
    if returncode < 0:
        error += f"\n{why}"
    commit, versions, hardware = environment_info()
    results_dir = _results_dir(job)
    record = RunRecord(
        method=job.method,
        variant=job.variant.name,
        dataset=cfg.data.dataset,
        split=job.split,
        setting=guess_setting(results_dir, cfg.data.dataset, job.split),
        seed=job.seed,
        status="error",
        metrics={},
        counts={},
        config=record_config(cfg),
        config_hash=job.chash,
        registered_variant=job.variant.registered_variant,
        registered_hash=job.variant.registered_hash,
        commit=commit,
        versions=versions,
        hardware=hardware,
        train_seconds=0.0,
        eval_seconds=0.0,
        created_at=utc_now(),
        run_id=new_run_id(),
        error=error,
        extra={"run_dir": str(run_folder(cfg, job.split, job.seed, job.chash)), "log": str(log)},
    )
    return write_record(record, results_dir)


def run_child(command: list[str], log: Path) -> int:
    """Run ``command`` with its output (stdout and stderr) in ``log``; its exit code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as output:
        return subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False).returncode


def run_job(job: Job, overrides: Sequence[str]) -> tuple[bool, str]:
    """Run one job in its own process; (finished, what happened)."""
    log = log_path(job)
    started = time.time()
    returncode = run_child(child_command(job, overrides), log)
    finished = find_record(_results_dir(job), job.planned.identity, strict=False)
    if returncode == 0 and finished is not None:
        return True, f"record {finished.run_id}"
    errors = [r for r in _records_since(job, started) if r.status == "error"]
    if errors:
        return False, f"error record {errors[-1].run_id}; log {log}"
    path = write_error_record(job, returncode, log)
    return False, f"no record from the run (exit code {returncode}): wrote {path}; log {log}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def bench_all(methods: Sequence[str] | None, overrides: Sequence[str], *, dry_run: bool = False) -> int:
    """Run (or, ``dry_run``, list) every job; print a progress line per run, rebuild the leaderboard once,
    print the total time. Returns 1 when a run failed, else 0."""
    started = time.perf_counter()
    names = list(methods) if methods else METHODS.names()
    jobs, base = plan_all(names, overrides)
    total = len(jobs)
    to_do = sum(1 for job in jobs if job.planned is not None and job.planned.runs)
    done = failed = ran = 0
    spent = 0.0
    print(
        f"bench-all: {len(names)} method(s) x {len(base.data.splits)} split(s) x {len(base.seeds)} seed(s) "
        f"= {total} run(s): {to_do} to run, {sum(1 for j in jobs if j.planned and not j.planned.runs)} "
        f"finished already, {sum(1 for j in jobs if j.problem)} without a usable config",
        flush=True,
    )
    for k, job in enumerate(jobs, start=1):
        head = f"[{k}/{total}] {job.label}"
        if job.problem:
            failed += 1
            print(f"{head}: FAILED ({job.problem})", flush=True)
            continue
        if not job.planned.runs:
            done += 1
            print(f"{head}: skipped ({job.planned.reason})", flush=True)
            continue
        if dry_run:
            print(f"{head}: to run ({job.planned.reason}): {' '.join(child_command(job, overrides)[3:])}")
            continue
        run_started = time.perf_counter()
        finished, what = run_job(job, overrides)
        elapsed = time.perf_counter() - run_started
        spent, ran, to_do = spent + elapsed, ran + 1, to_do - 1
        done, failed = done + finished, failed + (not finished)
        left = f"about {_duration(spent / ran * to_do)} left" if to_do else "none left"
        status = "done" if finished else "FAILED"
        print(
            f"{head}: {status} ({_duration(elapsed)}; done {done} / to do {to_do} / failed {failed}; {left}) "
            f"{what}",
            flush=True,
        )
    if dry_run:
        print(f"dry run: {to_do} to run, {done} to skip, {failed} without a usable config")
        return 0
    if base.to_leaderboard and Path(base.paths.results_dir).is_dir():
        from sbir_bench.leaderboard.build import rebuild_leaderboard

        leaderboard_dir = Path(base.paths.leaderboard_dir)
        rebuilt = rebuild_leaderboard(Path(base.paths.results_dir), leaderboard_dir)
        print(
            f"leaderboard rebuilt: {len(rebuilt.table)} row(s), {len(rebuilt.changes)} changed -> "
            f"{leaderboard_dir / 'leaderboard.csv'}, {leaderboard_dir / 'leaderboard.md'}"
        )
    print(f"bench-all: {done} done, {failed} failed of {total} in {_duration(time.perf_counter() - started)}")
    return 1 if failed else 0
