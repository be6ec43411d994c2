"""A track's own leaderboard table (fine-grained, sketch -> 3D): its records, headline metrics with mean ±
standard error over seeds, other metrics as means, chance / ceiling rows and the papers' numbers.

A :class:`TrackTable` says which records belong to the track, which metrics it shows and where its paper
numbers live (a package CSV ``method, dataset, kind, paper_label, <headline metrics...>, source``).
Records are selected like the category-level ones (:func:`~sbir_bench.leaderboard.select.select`: one
row per configuration, the latest record of each split and seed); a table has one row per (row, split).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pandas as pd

from sbir_bench.efficiency import EFFICIENCY_KEY, EMBEDDING, EMBEDDING_BYTES, QUERY_SECONDS_PER_1K
from sbir_bench.leaderboard import references
from sbir_bench.leaderboard.cells import efficiency_value, mean_present, typed_frame
from sbir_bench.leaderboard.record import RunRecord
from sbir_bench.leaderboard.select import Row, select

KEY_COLUMNS = ("method", "variant", "dataset", "split")
TEXT_COLUMNS = (*KEY_COLUMNS, "config_hash", "embedding")
COUNT_COLUMNS = ("n", "failed")
FLOAT_FORMAT = "%.4f"


@dataclass(frozen=True)
class TrackTable:
    """One track's table: ``belongs`` picks its records, ``settings`` the splits' settings it shows."""

    name: str  # in messages: "fine-grained", "sketch -> 3D"
    csv_name: str
    markdown_name: str
    settings: tuple[str, ...]
    belongs: Callable[[RunRecord], bool]
    headline: tuple[str, ...]  # mean ± sem (n)
    others: tuple[str, ...]  # means
    paper_kinds: tuple[str, ...]
    paper_file: str  # package data of sbir_bench.leaderboard
    titles: Mapping[str, str]  # metric -> Markdown column title
    header: str  # the Markdown file's opening text
    sort_by: str  # rows of a dataset by this metric, descending

    @property
    def paper_columns(self) -> tuple[str, ...]:
        return tuple(f"{kind}_{metric}" for kind in self.paper_kinds for metric in self.headline)

    @property
    def paper_file_columns(self) -> tuple[str, ...]:
        return ("method", "dataset", "kind", "paper_label", *self.headline, "source")

    @property
    def columns(self) -> tuple[str, ...]:
        return (
            *KEY_COLUMNS,
            "config_hash",
            *(column for metric in self.headline for column in (metric, f"{metric}_sem")),
            "n",
            *self.others,
            *self.paper_columns,
            "failed",
            "embedding",
            "emb_bytes",
            "query_s_per_1k",
            "train_s",
        )


def load_paper_results(track: TrackTable) -> pd.DataFrame:
    """The papers' numbers of a track (its package CSV), as fractions, checked."""
    source = resources.files("sbir_bench.leaderboard").joinpath(track.paper_file)
    with source.open("r", encoding="utf-8") as handle:
        paper = pd.read_csv(
            handle, dtype={c: str for c in ("method", "dataset", "kind", "paper_label", "source")}
        )
    if tuple(paper.columns) != track.paper_file_columns:
        raise ValueError(f"{track.paper_file} columns {list(paper.columns)} != {track.paper_file_columns}")
    if set(paper["kind"]) - set(track.paper_kinds):
        raise ValueError(f"{track.paper_file}: kind must be one of {track.paper_kinds}")
    if paper.duplicated(["method", "dataset", "kind"]).any():
        raise ValueError(f"{track.paper_file} repeats a (method, dataset, kind)")
    return paper


def _paper_values(track: TrackTable, paper: pd.DataFrame | None) -> dict[tuple[str, str], dict[str, float]]:
    values: dict[tuple[str, str], dict[str, float]] = {}
    for entry in [] if paper is None else paper.to_dict("records"):
        cells = values.setdefault((entry["method"], entry["dataset"]), {})
        cells.update({f"{entry['kind']}_{metric}": float(entry[metric]) for metric in track.headline})
    return values


def _method_rows(
    track: TrackTable, row: Row, paper: dict[tuple[str, str], dict[str, float]]
) -> list[dict[str, Any]]:
    runs = sorted(
        (split, records) for setting in track.settings for split, records in row.runs.get(setting, {}).items()
    )
    entries = []
    for split, records in runs or [("", ())]:
        entry: dict[str, Any] = dict(
            zip(KEY_COLUMNS, (row.method, row.variant, row.dataset, split), strict=True)
        )
        entry["config_hash"] = row.config_hash
        entry["n"] = len(records)
        for metric in (*track.headline, *track.others):
            values = pd.Series([r.metrics[metric] for r in records if metric in r.metrics], dtype=float)
            entry[metric] = values.mean() if len(values) else math.nan
            if metric in track.headline:
                entry[f"{metric}_sem"] = values.sem(ddof=1) if len(values) > 1 else math.nan
        cells = paper.get((row.method, row.dataset), {})
        entry.update({column: cells.get(column, math.nan) for column in track.paper_columns})
        entry["failed"] = len(row.failed)
        entry["embedding"] = ", ".join(
            sorted({str((r.extra.get(EFFICIENCY_KEY) or {}).get(EMBEDDING)) for r in records} - {"None"})
        )
        entry["emb_bytes"] = mean_present([efficiency_value(r, EMBEDDING_BYTES) for r in records])
        entry["query_s_per_1k"] = mean_present([efficiency_value(r, QUERY_SECONDS_PER_1K) for r in records])
        entry["train_s"] = mean_present([r.train_seconds for r in records])
        entries.append(entry)
    return entries


def _reference_rows(track: TrackTable, rows: Sequence[Row]) -> list[dict[str, Any]]:
    found = references.collect(rows)
    entries = []
    for (kind, dataset, setting, split), values in sorted(found.values.items()):
        if setting not in track.settings:
            continue
        entry: dict[str, Any] = {column: math.nan for column in track.columns}
        entry.update(dict(zip(KEY_COLUMNS, (references.ROW_METHOD[kind], "", dataset, split), strict=True)))
        entry.update({"config_hash": "", "embedding": "", "n": 0, "failed": 0})
        entry.update({metric: values.get(metric, math.nan) for metric in (*track.headline, *track.others)})
        entries.append(entry)
    return entries


def track_table(
    track: TrackTable, records: Sequence[RunRecord], paper: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The track's table of ``records`` (others are ignored): columns ``track.columns``, per dataset and
    split its method rows by ``track.sort_by`` descending, then its ``(chance)`` and ``(ceiling)`` rows."""
    selection = select([r for r in records if track.belongs(r)], settings=track.settings)
    paper_values = _paper_values(track, paper)
    rows = [entry for row in selection.rows for entry in _method_rows(track, row, paper_values)]
    table = typed_frame(
        rows + _reference_rows(track, selection.rows), track.columns, TEXT_COLUMNS, COUNT_COLUMNS
    )
    order = {method: i + 1 for i, method in enumerate(references.ROW_METHOD.values())}  # chance, ceiling
    table["_order"] = [order.get(method, 0) for method in table["method"]]
    table = table.sort_values(
        ["dataset", "split", "_order", track.sort_by, "method", "variant"],
        ascending=[True, True, True, False, True, True],
        na_position="last",
        kind="mergesort",
    )
    return table.drop(columns="_order").reset_index(drop=True)


def format_csv(track: TrackTable, table: pd.DataFrame) -> str:
    return str(table[list(track.columns)].to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n"))


def _markdown_columns(track: TrackTable) -> tuple[tuple[str, str], ...]:
    return (
        ("method", "method"),
        ("variant", "variant"),
        ("split", "split"),
        ("config", "config_hash"),
        *((track.titles[metric], metric) for metric in (*track.headline, *track.others)),
        *(
            (f"{kind} {track.titles[metric]}", f"{kind}_{metric}")
            for kind in track.paper_kinds
            for metric in track.headline
        ),
        ("failed", "failed"),
        ("embedding", "embedding"),
        ("query s/1k", "query_s_per_1k"),
        ("train s", "train_s"),
    )


def _cell(track: TrackTable, row: pd.Series, column: str) -> str:
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
    if column in track.headline and row["method"] not in references.ROW_METHOD.values():
        sem = row[f"{column}_sem"]
        text += ("" if pd.isna(sem) else f" ± {FLOAT_FORMAT % float(sem)}") + f" ({row['n']})"
    return text


def format_markdown(track: TrackTable, table: pd.DataFrame) -> str:
    """The header, then per dataset its table without the columns empty in every row."""
    parts = [track.header]
    if table.empty:
        parts.append(f"\nNo {track.name} results yet.\n")
    columns = _markdown_columns(track)
    for dataset, rows in table.groupby("dataset", sort=True):
        cells = {column: [_cell(track, row, column) for _, row in rows.iterrows()] for _, column in columns}
        shown = [
            (title, column)
            for title, column in columns
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
