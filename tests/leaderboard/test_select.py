"""Leaderboard integrity: a row aggregates the records of exactly one configuration, other variants never
touch it, and every record left out is reported with its reason."""

from __future__ import annotations

import json

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from sbir_bench.cli import main
from sbir_bench.leaderboard.build import build_table, format_csv, format_markdown
from sbir_bench.leaderboard.record import RunRecord, write_record
from sbir_bench.leaderboard.select import select

from .conftest import record
from .test_build import golden_records

HASHES = ("aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc")
SPLITS = (("traditional", "traditional"), ("zeroshot", "zeroshot"), ("gzs", "gzs"))


@st.composite
def runs(draw: st.DrawFn) -> list[RunRecord]:
    """Records of two methods and two labels with up to three configurations, settings, seeds and times;
    every value is unique to its record, so a mixed row would show in the means."""
    count = draw(st.integers(1, 14))
    records = []
    for index in range(count):
        config = draw(st.sampled_from(HASHES))
        split, setting = draw(st.sampled_from(SPLITS))
        label = draw(st.sampled_from(("default", f"custom-{config}")))
        records.append(
            record(
                method=draw(st.sampled_from(("cvae", "baseline"))),
                variant=label,
                split=split,
                setting=setting,
                seed=draw(st.integers(0, 2)),
                metrics={"p@200": index / 100, "map@200": draw(st.floats(0, 1))},
                config_hash=config,
                registered_hash=config if label == "default" else "aaaaaaaaaa",
                created_at=f"2025-01-{draw(st.integers(1, 28)):02d}T00:00:00+00:00",
                run_id=f"run{index:03d}",
            )
        )
    return records


@settings(max_examples=60, deadline=None)
@given(runs())
def test_a_row_never_mixes_configurations(records):
    selection = select(records)
    for row in selection.rows:
        assert {r.config_hash for r in row.records} == {row.config_hash}
        assert {(r.method, r.variant, r.dataset) for r in row.records} == {
            (row.method, row.variant, row.dataset)
        }
        slots = [(r.setting, r.split, r.seed) for r in row.records]
        assert len(slots) == len(set(slots)), "one record per seed"
    used = {r.run_id for row in selection.rows for r in row.records}
    aside = {item.file.rsplit("-", 1)[-1].removesuffix(".json") for item in selection.set_aside}
    assert used | aside == {r.run_id for r in records} and not used & aside, "each record used or set aside"
    table = build_table(records)
    for row in selection.rows:  # the table's numbers are those of the row's own records only
        line = table[(table["method"] == row.method) & (table["variant"] == row.variant)].iloc[0]
        assert line["config_hash"] == row.config_hash
        for setting, prefix in (("traditional", "trad"), ("zeroshot", "zs"), ("gzs", "gzs")):
            own = [r.metrics["p@200"] for r in row.runs.get(setting, {}).get(setting, ())]
            assert line[f"{prefix}_n"] == len(own)
            if own:
                assert line[f"{prefix}_p@200"] == sum(own) / len(own)


def test_adding_a_record_of_another_variant_leaves_the_other_rows_unchanged():
    before = build_table(golden_records())
    other = record(
        variant="custom-5555555555",
        config_hash="5555555555",
        metrics={"p@200": 0.99, "map@200": 0.99, "chance/p@200": 0.17, "ceiling/p@200": 0.32},
        created_at="2026-01-01T00:00:00+00:00",
        run_id="20260101T000000000000Z-55555555",
    )
    after = build_table([*golden_records(), other])
    assert len(after) == len(before) + 1
    unchanged = after[after["variant"] != other.variant].reset_index(drop=True)
    assert format_csv(unchanged) == format_csv(before)
    assert format_markdown(unchanged) == format_markdown(before)
    named = record(variant="mine", metrics={"p@200": 0.01, "map@200": 0.01}, run_id="named", seed=7)
    also = build_table([*golden_records(), named])
    assert format_csv(also[also["variant"] != "mine"].reset_index(drop=True)) == format_csv(before)


def test_a_registered_label_on_another_configuration_is_set_aside_with_a_clear_message():
    registered = record(run_id="r0")
    relabelled = record(seed=1, config_hash="9999999999", run_id="r1")  # "default", not the default config
    wrong_custom = record(seed=2, variant="custom-1111111111", config_hash="2222222222", run_id="r2")
    borrowed = record(seed=3, variant="paper", run_id="r3")  # composed as default, labelled paper
    paper = record(variant="paper", registered_variant="paper", config_hash="3333333333", run_id="r4")
    paper = RunRecord(**{**paper.__dict__, "registered_hash": "3333333333"})
    selection = select([registered, relabelled, wrong_custom, borrowed, paper])
    reasons = {item.file.rsplit("-", 1)[-1]: item.reason for item in selection.set_aside}
    assert reasons["r1.json"] == (
        "other config: labelled 'default', the registered configuration's label, but its config hash "
        "9999999999 is not the registered 0123456789"
    )
    assert (
        reasons["r2.json"] == "other config: labelled 'custom-1111111111' but its config hash is 2222222222"
    )
    assert reasons["r3.json"].startswith("other config: 'paper' labels a registered configuration")
    assert {(row.variant, len(row.records)) for row in selection.rows} == {("default", 1), ("paper", 1)}


def test_every_record_set_aside_says_why():
    ok = record(run_id="keep")
    rerun = record(created_at="2025-02-01T00:00:00+00:00", run_id="later")
    failed = record(
        seed=1, status="error", metrics={}, error="Traceback ...\nRuntimeError: boom\n", run_id="f"
    )
    selection = select([ok, rerun, failed])
    reasons = sorted(item.reason for item in selection.set_aside)
    assert reasons == [
        "duplicate seed 0 of zeroshot: the later run later is used",
        "failed (status error): RuntimeError: boom",
    ]


def test_the_leaderboard_command_prints_used_and_set_aside_records(tmp_path, capsys):
    results, out = tmp_path / "results", tmp_path / "out"
    kept = write_record(record(run_id="20250101T000000000000Z-00000001"), results)
    write_record(record(seed=1, status="error", metrics={}, error="boom", run_id="x"), results)
    outdated = kept.parent / "default-seed5-20240101T000000000000Z-00000000.json"
    outdated.write_text(json.dumps({**record(seed=5).to_dict(), "schema_version": 1}))
    assert main(["leaderboard", "--results", str(results), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "row cvae/default on synthetic (config 0123456789) uses:\n  synthetic/zeroshot/cvae/" in printed
    assert "default-seed1-x.json: failed (status error): boom" in printed
    assert (
        "default-seed5-20240101T000000000000Z-00000000.json: outdated run record: schema_version 1" in printed
    )
    assert list(pd.read_csv(out / "leaderboard.csv")["method"]) == ["cvae"]
