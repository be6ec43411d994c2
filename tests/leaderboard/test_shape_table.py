"""The sketch -> 3D table: rows from records scored with the shape metrics only, means and SEMs by hand,
the reported SHREC numbers, chance rows, and the files a rebuild writes."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sbir_bench.leaderboard.build import rebuild_leaderboard
from sbir_bench.leaderboard.record import write_record
from sbir_bench.leaderboard.shape import SHAPE_TABLE
from sbir_bench.leaderboard.track_table import format_markdown, load_paper_results, track_table

SHAPE_METRICS = ["nn", "ft", "st", "e", "dcg", "map@all", "p@200", "map@200", "e_mean_pr", "dcg_log2i1"]


def shape(make_record, method: str, seed: int, map_all: float, dataset: str = "shrec13", **extra):
    metrics = {name: 0.5 for name in SHAPE_METRICS}
    metrics.update({"map@all": map_all, "chance/nn": 0.011, "ceiling/nn": 1.0})
    record = make_record(
        method=method,
        dataset=dataset,
        split="official",
        setting="traditional",
        seed=seed,
        metrics=metrics,
        run_id=f"2025010{seed}T000000000000Z-{method[:8]:0>8}",
        **extra,
    )
    record.config["evaluation"] = {"metrics": SHAPE_METRICS, "monitor": "map@all"}
    return record


def test_rows_means_standard_errors_and_reported_numbers_by_hand(make_record):
    records = [
        shape(make_record, "dcml", 0, 0.60),
        shape(make_record, "dcml", 1, 0.70),
        shape(make_record, "siamese3d", 0, 0.40),
        make_record(),  # category-level image retrieval: not in this table
    ]
    table = track_table(SHAPE_TABLE, records, load_paper_results(SHAPE_TABLE))
    assert list(table.columns) == list(SHAPE_TABLE.columns)
    assert list(table["method"]) == ["dcml", "siamese3d", "(chance)", "(ceiling)"]
    dcml = table.iloc[0]
    # mean of 0.6 and 0.7 = 0.65; sample std 0.0707107 over sqrt(2): 0.05
    assert dcml["map@all"] == pytest.approx(0.65) and dcml["map@all_sem"] == pytest.approx(0.05)
    assert dcml["n"] == 2 and dcml["e_mean_pr"] == pytest.approx(0.5)
    # DCML on SHREC'13 as reproduced later: .650/.634/.719/.348/.766/.674
    assert (dcml["reported_nn"], dcml["reported_ft"], dcml["reported_map@all"]) == (0.650, 0.634, 0.674)
    assert table.iloc[1]["reported_e"] == 0.287  # Siamese, SHREC'13
    assert table.iloc[2]["nn"] == pytest.approx(0.011) and math.isnan(table.iloc[2]["ft"])
    markdown = format_markdown(SHAPE_TABLE, table)
    assert "## shrec13" in markdown and "| dcml | default | official |" in markdown
    assert "0.6500 ± 0.0500 (2)" in markdown and "reported NN" in markdown


def test_every_reported_row_is_a_fraction_and_unique():
    paper = load_paper_results(SHAPE_TABLE)
    values = paper[list(SHAPE_TABLE.headline)].to_numpy()
    assert ((values > 0) & (values < 1)).all()
    assert set(paper["dataset"]) == {"shrec13", "shrec14"}


def test_a_rebuild_writes_the_shape_files_once_there_are_shape_records(tmp_path, make_record):
    results, out = tmp_path / "results", tmp_path / "out"
    write_record(make_record(), results)
    rebuilt = rebuild_leaderboard(results, out)
    assert rebuilt.tracks["shape.csv"].empty and not (out / "shape.csv").exists()
    write_record(shape(make_record, "cdnn", 0, 0.3, dataset="synthetic_3d"), results)
    rebuilt = rebuild_leaderboard(results, out)
    written = pd.read_csv(out / "shape.csv")
    assert list(written["method"]) == ["cdnn", "(chance)", "(ceiling)"]
    assert written.loc[0, "map@all"] == 0.3 and (out / "shape.md").is_file()
    assert ("added", "cdnn") in [(c["change"], c["method"]) for c in rebuilt.changes]
