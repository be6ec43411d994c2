"""Which runs bench does or skips, and why (``bench --dry-run``), decided from the records alone."""

from __future__ import annotations

from sbir_bench.cli import main
from sbir_bench.config import compose
from sbir_bench.plan import identify, plan_runs

from .finished_record import write_finished_record


def test_plan_and_dry_run_say_what_runs_and_why(tmp_path, capsys):
    overrides = [
        "method=baseline",
        "data=synthetic_zs",
        "seeds=[0,1,2]",
        f"paths.results_dir={tmp_path / 'results'}",
        f"paths.output_dir={tmp_path / 'outputs'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    cfg = compose(overrides)
    chash, variant = identify(cfg)
    done = write_finished_record(cfg, "zeroshot", 1, chash, variant)
    elsewhere = write_finished_record(cfg, "zeroshot", 2, chash, variant, run_folder_here=False)

    plan = plan_runs(compose(overrides))
    assert (plan.config_hash, plan.variant.name) == (chash, "default")
    assert [(run.seed, run.runs) for run in plan.runs] == [(0, True), (1, False), (2, True)]
    assert plan.runs[0].reason == "no finished record"
    assert plan.runs[1].reason == f"finished record {done.run_id}" and plan.runs[1].record.is_file()
    assert elsewhere.run_id in plan.runs[2].reason and "elsewhere" in plan.runs[2].reason
    forced = plan_runs(compose([*overrides, "force=true"]))
    assert all(run.runs and run.reason == "force=true" for run in forced.runs)

    assert main(["bench", "--dry-run", *overrides]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"config {chash}, variant default")
    assert lines[1] == f"run   baseline/default/synthetic/zeroshot/0/{chash}: no finished record"
    skipped = f"skip  baseline/default/synthetic/zeroshot/1/{chash}: finished record {done.run_id}"
    assert lines[2].startswith(skipped)
    assert lines[3].startswith("run   ") and "elsewhere" in lines[3]
    assert lines[4] == "2 to run, 1 to skip"
    assert not (tmp_path / "cache").exists(), "a dry run builds no data"
