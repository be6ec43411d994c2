"""The fine-grained leaderboard: instance-level retrieval (QMUL Shoe / Chair, synthetic_fg) in its own table.

Fine-grained records (setting ``fine_grained``) are selected like the category-level ones
(:func:`~sbir_bench.leaderboard.select.select`: one row per configuration, the latest record of each split
and seed) and tabled as ``fine_grained.csv`` / ``fine_grained.md`` beside ``leaderboard.csv``: acc@1,
acc@10 and triplet_acc as mean ± standard error over seeds with n, acc@5 and map@200 (the mean reciprocal
rank within 200) as means, the chance and ceiling rows of each dataset, and the papers' numbers in their
own columns (``paper_results_fine_grained.csv``): ``paper_*`` from Song et al. (BMVC'16, DMAR) Tables 1/2,
``updated_*`` from Yu et al.'s released triplet model (the authors' README, cleaned sketches). Papers
print percentages; the table holds fractions, as the suite's metrics are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib import resources
from typing import Any

import pandas as pd

from sbir_bench.efficiency import EFFICIENCY_KEY, EMBEDDING, EMBEDDING_BYTES, QUERY_SECONDS_PER_1K
from sbir_bench.leaderboard import references
from sbir_bench.leaderboard.cells import efficiency_value, mean_present, typed_frame
from sbir_bench.leaderboard.record import RunRecord
from sbir_bench.leaderboard.select import FINE_GRAINED, Row, Selection, select

CSV_NAME, MARKDOWN_NAME = "fine_grained.csv", "fine_grained.md"
HEADLINE_METRICS = ("acc@1", "acc@10", "triplet_acc")  # mean, sem and n
OTHER_METRICS = ("acc@5", "map@200")  # means
KEY_COLUMNS = ("method", "variant", "dataset", "split")
PAPER_KINDS = ("paper", "updated")  # Song et al. BMVC'16 Tables 1/2; Yu et al.'s README (updated model)
PAPER_COLUMNS = tuple(f"{kind}_{metric}" for kind in PAPER_KINDS for metric in HEADLINE_METRICS)
PAPER_FILE_COLUMNS = ("method", "dataset", "kind", "paper_label", *HEADLINE_METRICS, "source")
COLUMNS: tuple[str, ...] = (
    *KEY_COLUMNS,
    "config_hash",
    *(column for metric in HEADLINE_METRICS for column in (metric, f"{metric}_sem")),
    "n",
    *OTHER_METRICS,
    *PAPER_COLUMNS,
    "failed",
    "embedding",
    "emb_bytes",
    "query_s_per_1k",
    "train_s",
)
TEXT_COLUMNS = (*KEY_COLUMNS, "config_hash", "embedding")
COUNT_COLUMNS = ("n", "failed")
FLOAT_FORMAT = "%.4f"


def load_paper_results() -> pd.DataFrame:
    """The papers' fine-grained numbers (package data ``paper_results_fine_grained.csv``), as fractions."""
    source = resources.files("sbir_bench.leaderboard").joinpath("paper_results_fine_grained.csv")
    with source.open("r", encoding="utf-8") as handle:
        paper = pd.read_csv(
            handle, dtype={c: str for c in ("method", "dataset", "kind", "paper_label", "source")}
        )
    if tuple(paper.columns) != PAPER_FILE_COLUMNS:
        raise ValueError(
            f"paper_results_fine_grained.csv columns {list(paper.columns)} != {PAPER_FILE_COLUMNS}"
        )
    if set(paper["kind"]) - set(PAPER_KINDS):
        raise ValueError(f"paper_results_fine_grained.csv: kind must be one of {PAPER_KINDS}")
    if paper.duplicated(["method", "dataset", "kind"]).any():
        raise ValueError("paper_results_fine_grained.csv repeats a (method, dataset, kind)")
    return paper


def _paper_values(paper: pd.DataFrame | None) -> dict[tuple[str, str], dict[str, float]]:
    values: dict[tuple[str, str], dict[str, float]] = {}
    for entry in [] if paper is None else paper.to_dict("records"):
        cells = values.setdefault((entry["method"], entry["dataset"]), {})
        cells.update({f"{entry['kind']}_{metric}": float(entry[metric]) for metric in HEADLINE_METRICS})
    return values


def _method_rows(row: Row, paper: dict[tuple[str, str], dict[str, float]]) -> list[dict[str, Any]]:
    entries = []
    for split, records in sorted(row.runs.get(FINE_GRAINED, {}).items()) or [("", ())]:
        entry: dict[str, Any] = dict(
            zip(KEY_COLUMNS, (row.method, row.variant, row.dataset, split), strict=True)
        )
        entry["config_hash"] = row.config_hash
        entry["n"] = len(records)
        for metric in (*HEADLINE_METRICS, *OTHER_METRICS):
            values = pd.Series([r.metrics[metric] for r in records if metric in r.metrics], dtype=float)
            entry[metric] = values.mean() if len(values) else math.nan
            if metric in HEADLINE_METRICS:
                entry[f"{metric}_sem"] = values.sem(ddof=1) if len(values) > 1 else math.nan
        cells = paper.get((row.method, row.dataset), {})
        entry.update({column: cells.get(column, math.nan) for column in PAPER_COLUMNS})
        entry["failed"] = len(row.failed)
        entry["embedding"] = ", ".join(
            sorted({str((r.extra.get(EFFICIENCY_KEY) or {}).get(EMBEDDING)) for r in records} - {"None"})
        )
        entry["emb_bytes"] = mean_present([efficiency_value(r, EMBEDDING_BYTES) for r in records])
        entry["query_s_per_1k"] = mean_present([efficiency_value(r, QUERY_SECONDS_PER_1K) for r in records])
        entry["train_s"] = mean_present([r.train_seconds for r in records])
        entries.append(entry)
    return entries


def _reference_rows(rows: Sequence[Row]) -> list[dict[str, Any]]:
    found = references.collect(rows)
    entries = []
    for (kind, dataset, setting, split), values in sorted(found.values.items()):
        if setting != FINE_GRAINED:
            continue
        entry: dict[str, Any] = {column: math.nan for column in COLUMNS}
        entry.update(dict(zip(KEY_COLUMNS, (references.ROW_METHOD[kind], "", dataset, split), strict=True)))
        entry.update({"config_hash": "", "embedding": "", "n": 0, "failed": 0})
        entry.update({metric: values.get(metric, math.nan) for metric in (*HEADLINE_METRICS, *OTHER_METRICS)})
        entries.append(entry)
    return entries


def fine_grained_table(records: Sequence[RunRecord], paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """The fine-grained table of ``records`` (others are ignored): columns :data:`COLUMNS`, per dataset its
    method rows by acc@1 descending, then its ``(chance)`` and ``(ceiling)`` rows."""
    selection: Selection = select([r for r in records if r.setting == FINE_GRAINED], settings=(FINE_GRAINED,))
    paper_values = _paper_values(paper)
    rows = [entry for row in selection.rows for entry in _method_rows(row, paper_values)]
    table = typed_frame(rows + _reference_rows(selection.rows), COLUMNS, TEXT_COLUMNS, COUNT_COLUMNS)
    order = {method: i + 1 for i, method in enumerate(references.ROW_METHOD.values())}  # chance, ceiling
    table["_order"] = [order.get(method, 0) for method in table["method"]]
    table = table.sort_values(
        ["dataset", "_order", "acc@1", "method", "variant", "split"],
        ascending=[True, True, False, True, True, True],
        na_position="last",
        kind="mergesort",
    )
    return table.drop(columns="_order").reset_index(drop=True)


def format_csv(table: pd.DataFrame) -> str:
    return str(table[list(COLUMNS)].to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n"))


_MARKDOWN_HEADER = """# sbir_bench fine-grained leaderboard

Generated from the run records in `leaderboard/results/` by `sbir-bench leaderboard`; do not edit by hand.
Instance-level retrieval: a query sketch's one relevant item is the photo of the same instance.

- Cells: mean ± standard error of the mean over seeds (number of seeds); `–`: no result.
- **acc@K**: fraction of query sketches whose own photo is ranked within the top K (ties: ascending gallery
  index). **%corr.** (`triplet_acc`): fraction of the dataset's annotated test triplets (sketch, p+, p−)
  with d(sketch, p+) < d(sketch, p−); a tie counts as wrong. **MRR@200** (`map@200`): with one relevant
  item, mAP@200 is the mean of 1/rank within the top 200.
- **(chance)** / **(ceiling)**: a uniformly random ranking / the best the gallery allows.
- **paper** columns: Song et al. (BMVC'16, DMAR), Tables 1/2 (their triplet row is Yu et al.'s CVPR'16
  model); **updated** columns: the numbers of Yu et al.'s released model with cleaned sketches (the
  authors' README). Papers print percentages; these are fractions. They are quoted beside, never mixed
  with, the suite's numbers.
"""
_TITLES = {
    "acc@1": "acc@1",
    "acc@10": "acc@10",
    "triplet_acc": "%corr.",
    "acc@5": "acc@5",
    "map@200": "MRR@200",
}
_MARKDOWN_COLUMNS = (
    ("method", "method"),
    ("variant", "variant"),
    ("split", "split"),
    ("config", "config_hash"),
    *((_TITLES[metric], metric) for metric in (*HEADLINE_METRICS, *OTHER_METRICS)),
    *(
        (f"{kind} {_TITLES[metric]}", f"{kind}_{metric}")
        for kind in PAPER_KINDS
        for metric in HEADLINE_METRICS
    ),
    ("failed", "failed"),
    ("embedding", "embedding"),
    ("query s/1k", "query_s_per_1k"),
    ("train s", "train_s"),
)


def _cell(row: pd.Series, column: str) -> str:
    value = row[column]
    if isinstance(value, str):
        return value or "–"
    if pd.isna(value) or (column == "failed" and not value):
        return "–"
    if column == "failed":
        return str(int(value))
    if column == "query_s_per_1k":
        return f"{value:.4f}"
    if column == "train_s":
        return f"{value:.1f}"
    text = FLOAT_FORMAT % float(value)
    if column in HEADLINE_METRICS and row["method"] not in references.ROW_METHOD.values():
        sem = row[f"{column}_sem"]
        text += ("" if pd.isna(sem) else f" ± {FLOAT_FORMAT % float(sem)}") + f" ({row['n']})"
    return text


def format_markdown(table: pd.DataFrame) -> str:
    """The header, then per dataset its table without the columns empty in every row."""
    parts = [_MARKDOWN_HEADER]
    if table.empty:
        parts.append("\nNo fine-grained results yet.\n")
    for dataset, rows in table.groupby("dataset", sort=True):
        cells = {
            column: [_cell(row, column) for _, row in rows.iterrows()] for _, column in _MARKDOWN_COLUMNS
        }
        shown = [
            (title, column)
            for title, column in _MARKDOWN_COLUMNS
            if column in ("method", "variant") or any(cell != "–" for cell in cells[column])
        ]
        lines = [
            f"\n## {dataset}\n",
            "| " + " | ".join(t for t, _ in shown) + " |",
            "|" + "---|" * len(shown),
        ]
        lines += ["| " + " | ".join(cells[c][i] for _, c in shown) + " |" for i in range(len(rows))]
        parts.append("\n".join(lines) + "\n")
    return "".join(parts)
