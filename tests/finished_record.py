"""A finished record written by hand (no training), for tests of which runs bench does or skips."""

from __future__ import annotations

from omegaconf import DictConfig

from sbir_bench.leaderboard.record import SETTINGS, RunRecord, new_run_id, utc_now, write_record
from sbir_bench.plan import run_folder
from sbir_bench.variant import Variant


def write_finished_record(
    cfg: DictConfig, split: str, seed: int, chash: str, variant: Variant, *, run_folder_here: bool = True
) -> RunRecord:
    """An ok record of this (split, seed) of an identified ``cfg``; its run folder is made unless
    ``run_folder_here`` is false (then the record looks committed from another machine)."""
    run_dir = run_folder(cfg, split, seed, chash)
    if run_folder_here:
        run_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(
        method=cfg.method.name,
        variant=variant.name,
        dataset=cfg.data.dataset,
        split=split,
        setting=split if split in SETTINGS else "zeroshot",
        seed=seed,
        status="ok",
        metrics={"map@200": 0.5},
        counts={},
        config={},
        config_hash=chash,
        registered_variant=variant.registered_variant,
        registered_hash=variant.registered_hash,
        commit="0" * 40,
        versions={},
        hardware={},
        train_seconds=0.0,
        eval_seconds=0.0,
        created_at=utc_now(),
        run_id=new_run_id(),
        extra={"run_dir": str(run_dir)},
    )
    write_record(record, cfg.paths.results_dir)
    return record
