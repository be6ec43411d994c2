"""Which runs a composed config asks for, and whether each is done already: the one decision behind
``sbir-bench bench`` (each run, decided again under its lock) and ``sbir-bench bench --dry-run``.

A run is one (split, seed) of the config; its identity is (method, variant, dataset, split, seed, config
hash). It is skipped when a finished record of that identity exists and its run folder is in this checkout
(an interrupted ``make bench`` resumes where it stopped); a record committed from another machine, or
``force=true``, does not stop it. Reads records only: no data is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from sbir_bench.config import config_hash
from sbir_bench.leaderboard.record import Identity, RunRecord, find_record, record_path
from sbir_bench.registry import method_class
from sbir_bench.variant import Variant, resolve_variant


@dataclass(frozen=True)
class PlannedRun:
    """One (split, seed): whether it runs, and why."""

    split: str
    seed: int
    identity: Identity
    runs: bool
    reason: str
    record: Path | None = None  # the finished record that makes it skip

    @property
    def name(self) -> str:
        return "/".join(map(str, self.identity))


@dataclass(frozen=True)
class Plan:
    config_hash: str
    variant: Variant
    runs: list[PlannedRun]


def identify(cfg: DictConfig) -> tuple[str, Variant]:
    """The config hash and variant of ``cfg`` (its label is set to the variant's name); unknown method
    names and refused variant labels fail here, before any data is built."""
    chash = config_hash(cfg)
    variant = resolve_variant(cfg)
    cfg.variant = variant.name
    method_class(cfg.method)
    return chash, variant


def run_folder(cfg: DictConfig, split: str, seed: int, chash: str) -> Path:
    """``<output_dir>/runs/<dataset>/<split>/<method>/<variant>-seed<seed>-<config hash>``: checkpoints,
    logs; one per identity, so a rerun resumes from its ``last.ckpt``."""
    runs = Path(cfg.paths.output_dir) / "runs"
    return runs / cfg.data.dataset / split / cfg.method.name / f"{cfg.variant}-seed{seed}-{chash}"


def lock_path(cfg: DictConfig, split: str, seed: int, chash: str) -> Path:
    """The run's lock file, beside its run folder (which exists only once the run started)."""
    folder = run_folder(cfg, split, seed, chash)
    return folder.parent / f"{folder.name}.lock"


def run_identity(cfg: DictConfig, split: str, seed: int, chash: str) -> Identity:
    """(method, variant, dataset, split, seed, config hash): what a finished record is looked up by."""
    return (cfg.method.name, cfg.variant, cfg.data.dataset, split, int(seed), chash)


def run_name(identity: Identity) -> str:
    """``method-variant-dataset-split-seedN``: the run's name in logs and the experiment logger."""
    method, variant, dataset, split, seed, _ = identity
    return f"{method}-{variant}-{dataset}-{split}-seed{seed}"


def plan_run(cfg: DictConfig, split: str, seed: int, chash: str) -> PlannedRun:
    """Decide one (split, seed) of an identified ``cfg`` (:func:`identify`) from the records."""
    identity = run_identity(cfg, split, seed, chash)
    planned = {"split": split, "seed": int(seed), "identity": identity}
    if cfg.force:
        return PlannedRun(**planned, runs=True, reason="force=true")
    results_dir = Path(cfg.paths.results_dir)
    done = find_record(results_dir, identity)
    if done is None:
        return PlannedRun(**planned, runs=True, reason="no finished record")
    if not _ran_in_this_checkout(done):
        return PlannedRun(
            **planned,
            runs=True,
            reason=f"record {done.run_id} is from elsewhere (its run folder is not here)",
        )
    path = record_path(done, results_dir)
    return PlannedRun(**planned, runs=False, reason=f"finished record {done.run_id}", record=path)


def plan_runs(cfg: DictConfig) -> Plan:
    """Every (split, seed) of ``cfg``, decided from the records as they are now."""
    chash, variant = identify(cfg)
    runs = [plan_run(cfg, split, int(seed), chash) for split in cfg.data.splits for seed in cfg.seeds]
    return Plan(chash, variant, runs)


def _ran_in_this_checkout(record: RunRecord) -> bool:
    """Whether the run's output folder is here: records committed from another machine (a fresh clone) do
    not stop a run, while a rerun in the same checkout skips what it already finished."""
    run_dir = (record.extra or {}).get("run_dir")
    return bool(run_dir) and Path(run_dir).is_dir()
