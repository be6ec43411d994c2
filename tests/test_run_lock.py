"""Two processes that start the same run at once: one runs it, the other waits for its lock, then skips."""

from __future__ import annotations

import threading

import sbir_bench.runner as runner
from sbir_bench.config import compose
from sbir_bench.leaderboard.record import read_records, record_path

from .finished_record import write_finished_record


def test_the_second_starter_of_a_run_waits_then_skips_it(tmp_path, monkeypatch):
    overrides = [
        "method=baseline",
        "data=synthetic_zs",
        f"paths.results_dir={tmp_path / 'results'}",
        f"paths.output_dir={tmp_path / 'outputs'}",
        f"paths.leaderboard_dir={tmp_path / 'leaderboard'}",
    ]
    first_cfg, second_cfg = compose(overrides), compose(overrides)
    second_waits = threading.Event()
    runs = []

    def run_one(cfg, *, split, seed, chash, variant):  # a run that ends once the other starter waits
        runs.append(seed)
        assert second_waits.wait(timeout=60), "the second starter never waited for the lock"
        record = write_finished_record(cfg, split, seed, chash, variant)
        return record_path(record, cfg.paths.results_dir), None

    acquired = runner._acquired

    def acquire_noting_waits(lock):
        got = acquired(lock)
        if not got:
            second_waits.set()
        return got

    monkeypatch.setattr(runner, "run_one", run_one)
    monkeypatch.setattr(runner, "_acquired", acquire_noting_waits)
    monkeypatch.setattr(runner, "LOCK_WAIT_STEP_SECONDS", 0.05)
    summaries = {}
    first = threading.Thread(target=lambda: summaries.setdefault("first", runner.bench(first_cfg)))
    first.start()
    while not runs and first.is_alive():  # the first starter holds the lock (and composes no more)
        threading.Event().wait(0.05)
    summaries["second"] = runner.bench(second_cfg)
    first.join()

    assert runs == [0], "one of the two ran it"
    (record,) = read_records(tmp_path / "results")
    assert summaries["first"].written == [record_path(record, tmp_path / "results")]
    assert summaries["second"].written == [] and summaries["second"].skipped == summaries["first"].written
