"""Chance and ceiling rows: taken from the records, checked for agreement, never ranked among methods."""

from __future__ import annotations

import math

import pytest

from sbir_bench.leaderboard.build import build_table, format_markdown
from sbir_bench.leaderboard.references import collect
from sbir_bench.leaderboard.select import select

from .conftest import record


def scored(p200: float, chance: float, **fields) -> object:
    metrics = {"p@200": p200, "map@200": p200, "chance/p@200": chance, "ceiling/p@200": 0.32}
    return record(metrics=metrics, **fields)


def test_reference_rows_close_the_dataset_block_even_above_a_method():
    records = [
        scored(0.05, 0.17, method="worse_than_chance", run_id="a"),
        scored(0.60, 0.17, method="cvae", run_id="b"),
        scored(0.30, 0.17, dataset="other", run_id="c"),
    ]
    table = build_table(records)
    assert list(zip(table["dataset"], table["method"], strict=True)) == [
        ("other", "cvae"),
        ("other", "(chance)"),
        ("other", "(ceiling)"),
        ("synthetic", "cvae"),
        ("synthetic", "worse_than_chance"),
        ("synthetic", "(chance)"),
        ("synthetic", "(ceiling)"),
    ]
    chance = table[(table["method"] == "(chance)") & (table["dataset"] == "synthetic")].iloc[0]
    assert chance["zs_p@200"] == pytest.approx(0.17) and math.isnan(chance["zs_map@200"])
    assert "| (chance) | – | zeroshot | – | 0.1700 | – |" in format_markdown(table), (
        "no seed count on references"
    )


def test_records_that_disagree_leave_the_cell_empty_and_say_so():
    records = [
        scored(0.5, 0.17, run_id="a"),
        scored(0.5, 0.17, seed=1, run_id="b"),
        scored(0.6, 0.25, variant="custom-4444444444", config_hash="4444444444", run_id="c"),
    ]
    found = collect(select(records).rows)
    assert math.isnan(found.values[("chance", "synthetic", "zeroshot", "zeroshot")]["p@200"])
    assert found.values[("ceiling", "synthetic", "zeroshot", "zeroshot")]["p@200"] == pytest.approx(0.32)
    (note,) = found.notes
    assert note.startswith("synthetic/zeroshot: the records disagree on chance/p@200 (")
    assert "0.2500 (cvae/custom-4444444444 seed 0)" in note and "0.1700 (cvae/default seed 1)" in note
    chance = build_table(records).set_index("method").loc["(chance)"]
    assert math.isnan(chance["zs_p@200"])


def test_values_within_the_printed_precision_agree():
    records = [scored(0.5, 0.17, run_id="a"), scored(0.5, 0.17004, seed=1, run_id="b")]
    found = collect(select(records).rows)
    assert found.notes == ()
    assert found.values[("chance", "synthetic", "zeroshot", "zeroshot")]["p@200"] == pytest.approx(0.17002)


def test_no_reference_rows_without_reference_values():
    table = build_table([record()])
    assert list(table["method"]) == ["cvae"]
