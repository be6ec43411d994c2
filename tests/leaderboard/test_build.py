"""Leaderboard builder: golden files, mean ± SEM, latest record wins, exclusions, paper columns, changes.

The golden files are written by this module's code, never by hand:
``.venv/bin/python -m tests.leaderboard.test_build`` rewrites them from :func:`golden_records`.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from sbir_bench.leaderboard.build import (
    COLUMNS,
    PAPER_COLUMNS,
    TEXT_COLUMNS,
    build_table,
    changed_rows,
    format_csv,
    load_paper_results,
    rebuild,
    write_leaderboard,
)
from sbir_bench.leaderboard.record import RunRecord, write_record
from sbir_bench.leaderboard.select import select

from .conftest import record

GOLDEN = Path(__file__).parent / "golden"


def scores(p200: float, map200: float, yelamarthi: float, p100: float, map_all: float) -> dict[str, float]:
    names = ("p@200", "map@200", "map@200_yelamarthi", "p@100", "map@all")
    return dict(zip(names, (p200, map200, yelamarthi, p100, map_all), strict=True))


def with_references(metrics: dict[str, float], chance: float, ceiling: float) -> dict[str, float]:
    """``metrics`` plus the ``chance/`` and ``ceiling/`` values a test run records for each of them."""
    return {
        **metrics,
        **{f"chance/{name}": chance for name in metrics},
        **{f"ceiling/{name}": ceiling for name in metrics},
    }


SETTING_OF = {"traditional": "traditional", "zeroshot": "zeroshot", "gzs": "gzs"}


def run(index: int, method: str, dataset: str, split: str, seed: int, metrics: dict, **extra) -> RunRecord:
    setting = next(s for prefix, s in SETTING_OF.items() if split.startswith(prefix))
    return record(
        method=method,
        dataset=dataset,
        split=split,
        setting=setting,
        seed=seed,
        metrics=metrics,
        **{
            "created_at": f"2025-01-{index + 1:02d}T00:00:00+00:00",
            "run_id": f"202501{index + 1:02d}T000000000000Z-{index:08x}",
            **extra,
        },
    )


CUSTOM = {"variant": "custom-abcdef0123", "config_hash": "abcdef0123"}
CPU = {"cpu_model": "Example CPU @ 2.00GHz", "torch_threads": 1, "cuda_devices": []}


def measured(emb_bytes: float, query_s_per_1k: float, train_seconds: float, **hardware) -> dict:
    """The efficiency measurements of a run (extra, train_seconds) and the hardware it ran on."""
    return {
        "extra": {
            "efficiency": {
                "embedding": f"{int(emb_bytes) // 4} × float32",
                "embedding_bytes": emb_bytes,
                "query_seconds_per_1k": query_s_per_1k,
            },
            "accelerator": "CUDAAccelerator" if hardware.get("cuda_devices") else "CPUAccelerator",
        },
        "train_seconds": train_seconds,
        "hardware": {**CPU, **hardware},
    }


def golden_records() -> list[RunRecord]:
    """Two datasets, methods, variants and seeds; a rerun, a failed run, a method without paper row; gzs,
    chance/ceiling values and the interpolated metrics on synthetic; a custom variant, a superseded
    configuration and a mislabelled record; efficiency measurements on two machines (older records
    without them) and a method whose only run failed."""
    trad_refs, zs_refs, gzs_refs = (0.05, 0.9), (0.17, 0.32), (0.03, 0.32)
    return [
        # sketchy: cvae, 3 zero-shot seeds and 2 traditional ones
        run(0, "cvae", "sketchy", "zeroshot_yelamarthi", 0, scores(0.30, 0.40, 0.20, 0.35, 0.10)),
        run(1, "cvae", "sketchy", "zeroshot_yelamarthi", 1, scores(0.33, 0.42, 0.22, 0.38, 0.12)),
        run(2, "cvae", "sketchy", "zeroshot_yelamarthi", 2, scores(0.36, 0.47, 0.25, 0.41, 0.14)),
        run(3, "cvae", "sketchy", "traditional", 0, scores(0.70, 0.80, 0.50, 0.75, 0.40)),
        run(4, "cvae", "sketchy", "traditional", 1, scores(0.74, 0.82, 0.54, 0.77, 0.42)),
        # the zero-shot seed 0 run again later (its numbers win over index 0) ...
        run(5, "cvae", "sketchy", "zeroshot_yelamarthi", 0, scores(0.27, 0.38, 0.19, 0.33, 0.09)),
        # ... and a seed that failed (left out)
        run(6, "cvae", "sketchy", "zeroshot_yelamarthi", 3, {}, status="error", error="CUDA out of memory"),
        # baseline: one zero-shot seed; gdh: no paper row
        run(7, "baseline", "sketchy", "zeroshot_yelamarthi", 0, scores(0.11, 0.25, 0.05, 0.12, 0.04)),
        run(8, "gdh", "sketchy", "zeroshot_yelamarthi", 0, scores(0.20, 0.45, 0.12, 0.22, 0.08)),
        # synthetic: no paper columns; chance and ceiling values; the paper variant of cvae is its own row
        run(
            9,
            "cvae",
            "synthetic",
            "zeroshot",
            0,
            with_references(scores(0.50, 0.60, 0.40, 0.55, 0.30), *zs_refs),
            **measured(256, 0.0125, 60.0),
        ),
        run(
            10,
            "cvae",
            "synthetic",
            "zeroshot",
            1,
            with_references(scores(0.52, 0.61, 0.42, 0.57, 0.31), *zs_refs),
            **measured(256, 0.0175, 70.0),
        ),
        run(
            11,
            "cvae",
            "synthetic",
            "traditional",
            0,
            with_references(scores(0.90, 0.95, 0.85, 0.92, 0.80), *trad_refs),
            **measured(256, 0.05, 30.0, cuda_devices=["Example GPU"]),
        ),
        run(
            12,
            "cvae",
            "synthetic",
            "zeroshot",
            0,
            scores(0.55, 0.65, 0.45, 0.58, 0.33),
            variant="paper",
            config_hash="9999999999",
            registered_variant="paper",
            registered_hash="9999999999",
        ),
        run(
            13,
            "baseline",
            "synthetic",
            "zeroshot",
            0,
            with_references(scores(0.25, 0.70, 0.10, 0.30, 0.15), *zs_refs),
            **measured(2048, 0.25, 0.0),
        ),
        run(
            14,
            "baseline",
            "synthetic",
            "traditional",
            0,
            with_references(scores(0.60, 0.75, 0.45, 0.65, 0.35), *trad_refs),
        ),
        # generalised zero-shot, with the interpolated conventions of the SAKE / ZSE-SBIR code
        run(
            15,
            "cvae",
            "synthetic",
            "gzs",
            0,
            with_references(
                {
                    **scores(0.20, 0.30, 0.10, 0.25, 0.12),
                    "map@all_voc": 0.14,
                    "map@200_voc": 0.33,
                    "p@200_minr": 0.31,
                },
                *gzs_refs,
            ),
        ),
        # cvae with another configuration (method.max_epochs=2): a row of its own, never merged into default
        run(
            16,
            "cvae",
            "synthetic",
            "zeroshot",
            0,
            with_references(scores(0.70, 0.80, 0.60, 0.75, 0.50), *zs_refs),
            **CUSTOM,
        ),
        # baseline's configuration changed: the older zero-shot record of seed 1 is superseded
        run(
            17,
            "baseline",
            "synthetic",
            "zeroshot",
            1,
            scores(0.99, 0.99, 0.99, 0.99, 0.99),
            config_hash="0000000000",
            registered_hash="0000000000",
            created_at="2024-12-01T00:00:00+00:00",
        ),
        # labelled default although its configuration is not the registered one (written by hand)
        run(
            18,
            "cvae",
            "synthetic",
            "traditional",
            1,
            scores(0.01, 0.01, 0.01, 0.01, 0.01),
            config_hash="fedcba9876",
        ),
        # a method whose only run failed: a row without numbers, its failure listed
        run(
            19,
            "dsh",
            "synthetic",
            "zeroshot",
            0,
            {},
            status="error",
            error="Traceback (most recent call last):\n  ...\nValueError: codes | of `dsh` are not binary\n",
        ),
    ]


def write_all(records: list[RunRecord], results: Path) -> None:
    for item in records:
        write_record(item, results)


def regenerate_golden() -> None:
    """Rewrite the golden files from :func:`golden_records` (after a deliberate change of the format)."""
    with tempfile.TemporaryDirectory() as folder:
        write_all(golden_records(), Path(folder) / "results")
        rebuild(Path(folder) / "results", GOLDEN)


def test_rebuild_matches_the_golden_files(tmp_path):
    write_all(golden_records(), tmp_path / "results")
    table, changes = rebuild(tmp_path / "results", tmp_path / "out")
    assert (tmp_path / "out" / "leaderboard.csv").read_text() == (GOLDEN / "leaderboard.csv").read_text()
    assert (tmp_path / "out" / "leaderboard.md").read_text() == (GOLDEN / "leaderboard.md").read_text()
    assert list(table.columns) == list(COLUMNS)
    assert [c["change"] for c in changes] == ["added"] * len(table)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["leaderboard.csv", "leaderboard.md"]


def test_golden_row_order_and_hand_checked_values():
    table = build_table(golden_records(), load_paper_results())
    keys = list(zip(table["dataset"], table["method"], table["variant"], strict=True))
    assert keys == [
        ("sketchy", "gdh", "default"),  # zs map@200 0.45
        ("sketchy", "cvae", "default"),  # (0.38 + 0.42 + 0.47) / 3 = 0.4233
        ("sketchy", "baseline", "default"),  # 0.25
        ("synthetic", "cvae", "custom-abcdef0123"),  # 0.80: its own row, above, never merged into default
        ("synthetic", "baseline", "default"),  # 0.70
        ("synthetic", "cvae", "paper"),  # 0.65
        ("synthetic", "cvae", "default"),  # 0.605
        ("synthetic", "dsh", "default"),  # no ok run: no numbers, last among the methods
        ("synthetic", "(chance)", ""),  # below every method although the custom row's numbers are higher
        ("synthetic", "(ceiling)", ""),
    ]
    cvae = table.iloc[1]
    assert cvae["zs_n"] == 3 and cvae["trad_n"] == 2, "the failed seed is left out, the rerun counted once"
    assert cvae["zs_p@200"] == pytest.approx((0.27 + 0.33 + 0.36) / 3), "the rerun replaces the first run"
    assert cvae["paper_zs_p@200"] == 0.333 and cvae["paper_zs_map@200_yelamarthi"] == 0.225
    assert math.isnan(cvae["paper_trad_p@200"]), "the paper has no traditional CVAE number"
    synthetic = table[(table["method"] == "cvae") & (table["dataset"] == "synthetic")].set_index("variant")
    assert synthetic.loc["default", "trad_n"] == 1, "the mislabelled seed-1 record is left out"
    assert synthetic.loc["default", "trad_p@200"] == pytest.approx(0.90)
    assert synthetic.loc["default", "gzs_split"] == "gzs" and synthetic.loc["default", "gzs_n"] == 1
    assert synthetic.loc["default", "gzs_map@200_voc"] == pytest.approx(0.33)
    assert synthetic.loc["default", "gzs_p@200_minr"] == pytest.approx(0.31)
    assert math.isnan(synthetic.loc["default", "zs_map@all_voc"]), "a metric no record has: empty"
    # efficiency: zero-shot seeds 0.0125 and 0.0175 s per 1k queries -> 0.015; 60 and 70 s of training -> 65
    assert synthetic.loc["default", "zs_query_s_per_1k"] == pytest.approx(0.015)
    assert synthetic.loc["default", "zs_train_s"] == pytest.approx(65.0)
    assert synthetic.loc["default", "emb_bytes"] == 256 and synthetic.loc["default", "failed"] == 0
    assert math.isnan(synthetic.loc["paper", "emb_bytes"]), "a record written before it was measured: empty"
    assert synthetic.loc["default", "hardware"].count("; ") == 2, "three machines: two CPU-only, one GPU"
    assert table.iloc[1]["failed"] == 1, "sketchy cvae: its failed seed 3 is counted"
    dsh = table[table["method"] == "dsh"].iloc[0]
    assert dsh["failed"] == 1 and dsh["zs_n"] == 0 and math.isnan(dsh["zs_map@200"])
    baseline = table[(table["method"] == "baseline") & (table["dataset"] == "synthetic")].iloc[0]
    assert baseline["zs_n"] == 1 and baseline["zs_p@200"] == pytest.approx(0.25), "0.99 is superseded"
    chance = table[table["method"] == "(chance)"].iloc[0]
    assert (chance["trad_p@200"], chance["zs_p@200"], chance["gzs_map@200"]) == pytest.approx(
        (0.05, 0.17, 0.03)
    )
    assert (chance["trad_n"], chance["zs_n"], chance["gzs_n"]) == (0, 0, 0), "a gallery's value, not seeds"
    assert math.isnan(chance["zs_p@200_sem"]) and chance["variant"] == "" and chance["config_hash"] == ""


def test_mean_and_standard_error_by_hand(make_record):
    # p@200 over three seeds: 0.20, 0.25, 0.30. mean = 0.25; deviations -0.05, 0, 0.05;
    # sample variance = (0.0025 + 0 + 0.0025) / (3 - 1) = 0.0025, std = 0.05; sem = 0.05 / sqrt(3) = 0.028868.
    records = [
        make_record(seed=seed, metrics={"p@200": value, "map@200": 0.5}, run_id=f"r{seed}")
        for seed, value in enumerate([0.20, 0.25, 0.30])
    ]
    row = build_table(records).iloc[0]
    assert row["zs_p@200"] == pytest.approx(0.25)
    assert row["zs_p@200_sem"] == pytest.approx(0.028867513)
    assert row["zs_map@200_sem"] == pytest.approx(0.0)
    assert row["zs_n"] == 3 and row["trad_n"] == 0 and math.isnan(row["trad_p@200"])
    assert (
        format_csv(build_table(records))
        .splitlines()[1]
        .startswith("cvae,default,synthetic,,zeroshot,,0123456789,,,,,0,0.2500,0.0289,0.5000,0.0000,3,")
    )
    single = build_table(records[:1]).iloc[0]
    assert single["zs_n"] == 1 and math.isnan(single["zs_p@200_sem"]), "no standard error from one seed"


def test_latest_record_wins_by_time_then_run_id(make_record):
    early = make_record(metrics={"p@200": 0.9}, created_at="2025-01-01T00:00:00+00:00", run_id="b")
    late = make_record(metrics={"p@200": 0.1}, created_at="2025-06-01T00:00:00+00:00", run_id="a")
    assert build_table([late, early]).iloc[0]["zs_p@200"] == pytest.approx(0.1)
    tie = make_record(metrics={"p@200": 0.5}, created_at="2025-06-01T00:00:00+00:00", run_id="c")
    row = build_table([tie, early, late]).iloc[0]
    assert row["zs_p@200"] == pytest.approx(0.5) and row["zs_n"] == 1


def test_older_configurations_of_a_variant_are_superseded(make_record):
    old = make_record(seed=1, config_hash="oldoldold0", registered_hash="oldoldold0", metrics={"p@200": 0.9})
    new = make_record(
        config_hash="newnewnew0", registered_hash="newnewnew0", created_at="2025-02-01T00:00:00+00:00"
    )
    row = build_table([old, new]).iloc[0]
    assert row["zs_n"] == 1 and row["zs_p@200"] == pytest.approx(0.3) and row["config_hash"] == "newnewnew0"
    (aside,) = select([old, new]).set_aside
    assert aside.file.endswith(f"default-seed1-{old.run_id}.json")
    assert aside.reason.startswith("superseded: config oldoldold0") and "newnewnew0" in aside.reason


def test_error_records_never_count_yet_show_as_failed(make_record):
    ok = make_record()
    failed = make_record(seed=1, status="error", metrics={}, error="boom", run_id="z")
    row = build_table([ok, failed]).iloc[0]
    assert row["zs_n"] == 1 and row["failed"] == 1
    alone = build_table([failed])  # no ok run at all: a row of its own, without numbers
    assert len(alone) == 1 and alone.iloc[0]["failed"] == 1 and alone.iloc[0]["zs_n"] == 0
    assert math.isnan(alone.iloc[0]["zs_map@200"])
    rerun = make_record(seed=1, run_id="zz", created_at="2025-02-01T00:00:00+00:00")
    assert build_table([ok, failed, rerun]).iloc[0]["failed"] == 0, "a finished rerun clears the failure"
    other_config = make_record(seed=1, status="error", metrics={}, error="boom", config_hash="ffffffffff")
    assert build_table([ok, other_config]).iloc[0]["failed"] == 0, "failures of other configs: not this row's"
    empty = build_table([])
    assert empty.empty and list(empty.columns) == list(COLUMNS)


def test_paper_columns_only_on_sketchy_rows(make_record):
    paper = load_paper_results()
    rows = [
        make_record(dataset="sketchy_extended", method="dsh", run_id="a"),
        make_record(dataset="synthetic", method="dsh", run_id="b"),
        make_record(dataset="tuberlin", method="cvae", run_id="c"),
        make_record(dataset="sketchy", method="gdh", run_id="d"),
    ]
    table = build_table(rows, paper).set_index("dataset")
    assert table.loc["sketchy_extended", list(PAPER_COLUMNS)].tolist() == [0.866, 0.153, 0.783, 0.059]
    for dataset in ("synthetic", "tuberlin", "sketchy"):  # sketchy row: gdh has no paper numbers
        assert table.loc[dataset, list(PAPER_COLUMNS)].isna().all(), dataset
    assert build_table(rows).loc[:, list(PAPER_COLUMNS)].isna().all().all(), "no paper table: no numbers"


def test_paper_results_match_the_reference_table():
    # Yelamarthi et al., ECCV'18, Tables 2/3: P@200 trad, P@200 zs, mAP@200 trad, mAP@200 zs ("–" = None).
    expected = {
        "baseline": (None, 0.106, None, 0.054),
        "siamese1": (None, 0.243, None, 0.134),
        "siamese2": (0.690, 0.251, 0.518, 0.149),
        "triplet_coarse": (0.761, 0.169, 0.573, 0.083),
        "triplet_fine": (None, 0.155, None, 0.081),
        "dsh": (0.866, 0.153, 0.783, 0.059),
        "direct_regression": (None, 0.066, None, 0.022),
        "eszsl": (None, 0.187, None, 0.117),
        "sae": (None, 0.238, None, 0.136),
        "caae": (None, 0.260, None, 0.156),
        "cvae": (None, 0.333, None, 0.225),
    }
    paper = load_paper_results()
    found = {
        row["method"]: tuple(None if pd.isna(row[c]) else row[c] for c in PAPER_COLUMNS)
        for row in paper.to_dict("records")
    }
    assert found == expected
    assert paper.set_index("method").at["dsh", "paper_label"] == "DSH (128 bits)"
    assert paper["source"].str.contains("Yelamarthi").all()


def test_splits_of_one_setting_are_never_averaged(make_record):
    rows = [
        make_record(dataset="sketchy", split="zeroshot_yelamarthi", metrics={"p@200": 0.2}, run_id="a"),
        make_record(dataset="sketchy", split="zeroshot_shen", metrics={"p@200": 0.4}, run_id="b"),
        make_record(dataset="sketchy", split="traditional", setting="traditional", run_id="c"),
    ]
    table = build_table(rows).set_index("zs_split")
    assert table.loc["zeroshot_yelamarthi", "zs_p@200"] == pytest.approx(0.2)
    assert table.loc["zeroshot_shen", "zs_p@200"] == pytest.approx(0.4)
    assert (table["trad_split"] == "traditional").all() and (table["trad_n"] == 1).all()


def test_changed_rows_against_the_previous_leaderboard(tmp_path, make_record):
    results, out = tmp_path / "results", tmp_path / "out"
    first = make_record(run_id="a")
    write_record(first, results)
    _, changes = rebuild(results, out)
    assert [(c["change"], c["method"]) for c in changes] == [("added", "cvae")]
    assert rebuild(results, out)[1] == [], "rebuilding from the same records changes nothing"

    write_record(make_record(seed=1, metrics={"p@200": 0.5, "map@200": 0.4}, run_id="b"), results)
    baseline = write_record(make_record(method="baseline", run_id="c"), results)
    _, changes = rebuild(results, out)
    by_method = {c["method"]: c for c in changes}
    assert by_method["baseline"]["change"] == "added"
    cvae = by_method["cvae"]
    assert cvae["change"] == "changed" and cvae["zs_p@200"] == "0.4000"
    assert cvae["changed_columns"].split(", ") == ["zs_p@200", "zs_p@200_sem", "zs_map@200_sem", "zs_n"]

    baseline.unlink()
    _, changes = rebuild(results, out)
    assert [(c["change"], c["method"]) for c in changes] == [("removed", "baseline")]


def test_changed_rows_ignore_differences_below_the_printed_precision(make_record):
    table = build_table([make_record()])
    nudged = build_table([make_record(metrics={**make_record().metrics, "p@200": 0.30000001})])
    assert changed_rows(format_csv(table), nudged) == []


def test_rebuild_skips_unreadable_records_with_a_warning(tmp_path, make_record):
    results = tmp_path / "results"
    write_record(make_record(), results)
    broken = results / "synthetic" / "zeroshot" / "cvae" / "default-seed9-broken.json"
    broken.write_text("{")
    with pytest.warns(UserWarning, match="default-seed9-broken.json"):
        table, _ = rebuild(results, tmp_path / "out")
    assert len(table) == 1


def test_written_csv_reads_back_with_the_same_numbers(tmp_path):
    table = build_table(golden_records(), load_paper_results())
    csv_path, md_path = write_leaderboard(table, tmp_path / "new" / "dir")
    back = pd.read_csv(csv_path)
    assert list(back.columns) == list(COLUMNS)
    numeric = [c for c in COLUMNS if c not in TEXT_COLUMNS]
    assert ((back[numeric] - table[numeric]).abs().fillna(0) <= 5e-5).all().all()
    assert md_path.read_text().count("\n## ") == 2


def test_fine_grained_records_stay_out_of_the_category_level_table(make_record):
    records = [
        make_record(dataset="synthetic", run_id="a"),
        make_record(dataset="qmul_shoe", split="fine_grained", setting="fine_grained", run_id="b"),
    ]
    assert list(build_table(records)["dataset"]) == ["synthetic"]
    (aside,) = select(records).set_aside
    assert aside.file.startswith("qmul_shoe/") and "not tabled" in aside.reason


if __name__ == "__main__":
    regenerate_golden()
