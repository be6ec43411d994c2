"""Run records: round trip, write-once, atomicity, validation, reading errors, look-up of finished runs."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path

import pytest

from sbir_bench.leaderboard.record import (
    SCHEMA_VERSION,
    OutdatedRecordError,
    RecordError,
    environment_info,
    find_record,
    new_run_id,
    read_records,
    record_path,
    scan_records,
    write_record,
)


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_round_trip_is_exact(tmp_path, make_record):
    original = make_record(extra={"wandb": "entity/project/run", "effective_batch_size": 128})
    path = write_record(original, tmp_path)
    assert path == tmp_path / "synthetic" / "zeroshot" / "cvae" / f"default-seed0-{original.run_id}.json"
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    (loaded,) = read_records(tmp_path)
    assert loaded == original
    assert loaded.identity == ("cvae", "default", "synthetic", "zeroshot", 0, "0123456789")
    assert path.stat().st_mode & 0o777 == 0o644, "readable like any committed file"


def test_writing_the_same_record_twice_fails_and_keeps_the_first(tmp_path, make_record):
    path = write_record(make_record(), tmp_path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        write_record(make_record(metrics={"p@200": 0.9}), tmp_path)
    assert path.read_bytes() == before
    assert all_files(tmp_path) == [path], "no temporary file is left behind"


def test_two_runs_of_one_identity_give_two_files(tmp_path, make_record):
    first = write_record(make_record(run_id=new_run_id()), tmp_path)
    second = write_record(make_record(run_id=new_run_id()), tmp_path)
    assert first != second
    assert all_files(tmp_path) == sorted([first, second])
    assert len(read_records(tmp_path)) == 2


def test_a_crash_while_writing_leaves_no_file(tmp_path, make_record, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(os, "fsync", crash)  # the JSON is written, not yet published
    with pytest.raises(KeyboardInterrupt):
        write_record(make_record(), tmp_path)
    assert all_files(tmp_path) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("metrics", {"p@200": math.nan}),
        ("metrics", {"p@200": math.inf}),
        ("metrics", {"p@200": "0.3"}),
        ("metrics", {}),  # an ok record without metrics
        ("status", "done"),
        ("setting", "fewshot"),
        ("seed", "0"),
        ("seed", True),
        ("method", "../cvae"),
        ("dataset", ""),
        ("run_id", "a/b"),
        ("config_hash", ""),
        ("created_at", "2025-01-01T00:00:00"),  # no time zone
        ("created_at", "2025-01-01T02:00:00+02:00"),  # not UTC
        ("created_at", "yesterday"),
        ("counts", {"n_queries": -1}),
        ("counts", {"n_queries": 1.5}),
        ("train_seconds", -1.0),
        ("eval_seconds", math.nan),
        ("config", {"lr": math.nan}),
        ("extra", {"callback": object()}),
    ],
)
def test_invalid_fields_are_refused_by_name(tmp_path, make_record, field, value):
    with pytest.raises(ValueError, match=f"'{field}'"):
        write_record(make_record(**{field: value}), tmp_path)
    assert all_files(tmp_path) == []


def test_error_records_need_their_message(tmp_path, make_record):
    with pytest.raises(ValueError, match="'error'"):
        write_record(make_record(status="error", metrics={}), tmp_path)
    path = write_record(make_record(status="error", metrics={}, error="Traceback: boom"), tmp_path)
    assert read_records(tmp_path)[0].error == "Traceback: boom" and path.is_file()


def write_json(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_corrupt_json_names_the_file(tmp_path, make_record):
    good = write_record(make_record(), tmp_path)
    bad = write_json(tmp_path / "synthetic" / "zeroshot" / "cvae" / "default-seed1-x.json", '{"method": "cv')
    with pytest.raises(RecordError, match=re.escape(str(bad))) as raised:
        read_records(tmp_path)
    assert raised.value.path == bad
    with pytest.warns(UserWarning, match=re.escape(str(bad))):
        records = read_records(tmp_path, strict=False)
    assert [record_path(r, tmp_path) for r in records] == [good]


def test_invalid_record_content_names_file_and_field(tmp_path, make_record):
    data = make_record().to_dict()
    del data["config_hash"]
    bad = write_json(tmp_path / "synthetic" / "zeroshot" / "cvae" / "default-seed0-y.json", json.dumps(data))
    with pytest.raises(RecordError, match=r"default-seed0-y\.json.*'config_hash'"):
        read_records(tmp_path)
    data = {**make_record().to_dict(), "schema_version": SCHEMA_VERSION + 1}
    write_json(bad, json.dumps(data))
    with pytest.raises(RecordError, match="schema_version"):
        read_records(tmp_path)
    data = {**make_record().to_dict(), "score": 1.0}
    write_json(bad, json.dumps(data))
    with pytest.raises(RecordError, match="score"):
        read_records(tmp_path)


def test_a_record_outside_its_own_path_is_an_error(tmp_path, make_record):
    path = write_record(make_record(), tmp_path)
    moved = tmp_path / "sketchy" / "zeroshot" / "cvae" / path.name
    moved.parent.mkdir(parents=True)
    path.rename(moved)
    with pytest.raises(RecordError, match="belongs at"):
        read_records(tmp_path)


def test_missing_results_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        read_records(tmp_path / "nope")


def test_find_record_returns_the_latest_finished_run(tmp_path, make_record):
    identity = make_record().identity
    assert find_record(tmp_path, identity) is None
    write_record(make_record(run_id="20250101T000000000000Z-aaaaaaaa"), tmp_path)
    latest = make_record(created_at="2025-02-01T00:00:00+00:00", run_id="20250201T000000000000Z-bbbbbbbb")
    write_record(latest, tmp_path)
    failed_later = dict(status="error", metrics={}, error="boom", created_at="2025-03-01T00:00:00+00:00")
    write_record(make_record(run_id="20250301T000000000000Z-cccccccc", **failed_later), tmp_path)
    other_config = make_record(config_hash="ffffffffff", run_id="20250401T000000000000Z-dddddddd")
    write_record(other_config, tmp_path)
    write_record(make_record(seed=1, run_id="20250501T000000000000Z-eeeeeeee"), tmp_path)
    assert find_record(tmp_path, identity) == latest
    assert find_record(tmp_path, other_config.identity) == other_config
    assert find_record(tmp_path, make_record(seed=2).identity) is None


def test_run_ids_are_unique_sortable_and_path_safe():
    ids = [new_run_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    times = [i.split("-")[0] for i in ids]
    assert times == sorted(times)
    assert all(re.fullmatch(r"\d{8}T\d{12}Z-[0-9a-f]{8}", i) for i in ids)


def test_environment_info_describes_this_machine():
    commit, versions, hardware = environment_info()
    assert commit
    assert {"python", "torch", "lightning", "timm", "numpy", "sbir_bench"} <= set(versions)
    assert versions["sbir_bench"] != "not installed"
    assert hardware["cpu_count"] >= 1 and isinstance(hardware["cuda_devices"], list)


def test_commit_marks_dirty_trees_and_survives_missing_git(monkeypatch):
    calls = []

    def fake_git(command, **kwargs):
        calls.append(command)
        out = "abc123\n" if "rev-parse" in command else " M sbir_bench/runner.py\n"
        return subprocess.CompletedProcess(command, 0, stdout=out, stderr="")

    monkeypatch.setattr(subprocess, "run", fake_git)
    assert environment_info()[0] == "abc123+dirty"
    assert ":(exclude)leaderboard" in calls[1], "rewritten leaderboard files do not make the code dirty"

    def no_git(command, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert environment_info()[0] == "unknown"


def test_records_of_an_earlier_schema_are_outdated_not_corrupt(tmp_path, make_record):
    current = write_record(make_record(), tmp_path)
    old = current.parent / "default-seed0-20240101T000000000000Z-00000000.json"
    old.write_text(
        json.dumps({**make_record(run_id=old.stem.split("-", 2)[2]).to_dict(), "schema_version": 1})
    )
    records, problems = scan_records(tmp_path)
    assert [record_path(r, tmp_path) for r in records] == [current]
    (problem,) = problems
    assert isinstance(problem, OutdatedRecordError) and problem.path == old
    assert "schema_version 1 (this code reads" in str(problem) and "make bench" in str(problem)
    assert find_record(tmp_path, make_record().identity) == make_record(), "an outdated record never matches"


def test_generalised_zero_shot_is_a_setting_and_the_registered_configuration_is_recorded(
    tmp_path, make_record
):
    gzs = make_record(split="gzs", setting="gzs", registered_variant="paper", registered_hash="9999999999")
    write_record(gzs, tmp_path)
    (loaded,) = read_records(tmp_path)
    assert (loaded.setting, loaded.registered_variant, loaded.registered_hash) == (
        "gzs",
        "paper",
        "9999999999",
    )
    with pytest.raises(ValueError, match="'registered_hash'"):
        write_record(make_record(registered_hash=""), tmp_path)
    with pytest.raises(ValueError, match="'registered_variant'"):
        write_record(make_record(registered_variant="a/b"), tmp_path)
