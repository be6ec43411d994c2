"""The fine-grained table: rows from fine-grained records only, means and SEMs by hand, paper columns,
chance rows, and the files a rebuild writes."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sbir_bench.leaderboard.build import rebuild_leaderboard
from sbir_bench.leaderboard.fine_grained import FINE_GRAINED_TABLE
from sbir_bench.leaderboard.record import write_record
from sbir_bench.leaderboard.track_table import format_markdown, load_paper_results, track_table


def fine(make_record, method: str, seed: int, acc1: float, **extra):
    metrics = {"acc@1": acc1, "acc@5": 0.5, "acc@10": 0.8, "triplet_acc": 0.7, "map@200": 0.3}
    metrics.update({"chance/acc@1": 0.01, "ceiling/acc@1": 1.0, "chance/triplet_acc": 0.5})
    return make_record(
        method=method,
        dataset="qmul_shoe",
        split="fine_grained",
        setting="fine_grained",
        seed=seed,
        metrics=metrics,
        run_id=f"2025010{seed}T000000000000Z-{method[:8]:0>8}",
        **extra,
    )


def test_rows_means_and_standard_errors_by_hand(make_record):
    records = [
        fine(make_record, "dmar", 0, 0.40),
        fine(make_record, "dmar", 1, 0.50),
        fine(make_record, "dmar", 2, 0.60),
        fine(make_record, "triplet_fg", 0, 0.30),
        make_record(),  # category-level: not in this table
    ]
    table = track_table(FINE_GRAINED_TABLE, records, load_paper_results(FINE_GRAINED_TABLE))
    assert list(table.columns) == list(FINE_GRAINED_TABLE.columns)
    assert list(table["method"]) == ["dmar", "triplet_fg", "(chance)", "(ceiling)"]
    dmar = table.iloc[0]
    # mean of 0.4, 0.5, 0.6 = 0.5; sample std 0.1 over sqrt(3): 0.057735
    assert dmar["acc@1"] == pytest.approx(0.5) and dmar["acc@1_sem"] == pytest.approx(0.1 / math.sqrt(3))
    assert (
        dmar["n"] == 3 and dmar["acc@10"] == pytest.approx(0.8) and dmar["triplet_acc"] == pytest.approx(0.7)
    )
    # DMAR on shoes, Song et al. Table 1: 50.43 / 91.30 / 70.59 %
    assert (dmar["paper_acc@1"], dmar["paper_acc@10"], dmar["paper_triplet_acc"]) == (0.5043, 0.9130, 0.7059)
    assert math.isnan(dmar["updated_acc@1"])
    triplet = table.iloc[1]
    assert triplet["updated_acc@1"] == 0.5217 and triplet["paper_acc@1"] == 0.3913
    assert math.isnan(triplet["acc@1_sem"])  # one seed
    chance = table.iloc[2]
    assert chance["acc@1"] == 0.01 and chance["triplet_acc"] == 0.5 and chance["n"] == 0
    markdown = format_markdown(FINE_GRAINED_TABLE, table)
    assert "## qmul_shoe" in markdown and "| dmar | default | fine_grained |" in markdown
    assert "0.5000 ± 0.0577 (3)" in markdown


def test_every_paper_row_is_a_fraction_and_unique():
    paper = load_paper_results(FINE_GRAINED_TABLE)
    values = paper[["acc@1", "acc@10", "triplet_acc"]].to_numpy()
    assert ((values > 0) & (values < 1)).all()
    assert set(paper["dataset"]) == {"qmul_shoe", "qmul_chair"}


def test_a_rebuild_writes_the_fine_grained_files_only_once_there_are_fine_grained_records(
    tmp_path, make_record
):
    results, out = tmp_path / "results", tmp_path / "out"
    write_record(make_record(), results)
    rebuilt = rebuild_leaderboard(results, out)
    assert rebuilt.tracks["fine_grained.csv"].empty and not (out / "fine_grained.csv").exists()
    write_record(fine(make_record, "dmar", 0, 0.4), results)
    rebuilt = rebuild_leaderboard(results, out)
    written = pd.read_csv(out / "fine_grained.csv")
    assert list(written["method"]) == ["dmar", "(chance)", "(ceiling)"]
    assert written.loc[0, "acc@1"] == 0.4 and (out / "fine_grained.md").is_file()
    assert [(c["change"], c["method"]) for c in rebuilt.changes][:1] == [("added", "dmar")]
    assert list(pd.read_csv(out / "leaderboard.csv")["method"])[0] == "cvae", (
        "the category table is unchanged"
    )
