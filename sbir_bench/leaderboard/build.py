"""Run records -> the leaderboard table (a pure function), its CSV and Markdown files, and what changed.

One row per (method, variant, dataset): traditional and zero-shot results side by side, each metric as the
mean over seeds with its standard error (sample std, ddof = 1, over sqrt(n); empty for n = 1) and n.
Only records with status ``ok`` count; of several records with the same identity the latest wins. When a
setting was run on more than one split of a dataset (e.g. Sketchy's ``zeroshot_yelamarthi`` and
``zeroshot_shen``), the row is repeated per split (``trad_split``/``zs_split`` columns), so numbers of
different splits are never averaged together. ``paper_*`` columns quote the papers' own numbers
(``paper_results.csv``; their mAP is ``map@200_yelamarthi``) on Sketchy rows only, beside, never mixed with,
the suite's. Column meanings: leaderboard/README.md.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from sbir_bench.leaderboard.record import RunRecord, atomic_write_text, read_records

SETTING_PREFIX = {"traditional": "trad", "zeroshot": "zs"}
HEADLINE_METRICS = ("p@200", "map@200")  # mean, sem and n for each setting
OTHER_METRICS = ("p@100", "map@200_yelamarthi", "map@all")  # means only
KEY_COLUMNS = ("method", "variant", "dataset", "trad_split", "zs_split")
PAPER_COLUMNS = (
    "paper_trad_p@200",
    "paper_zs_p@200",
    "paper_trad_map@200_yelamarthi",
    "paper_zs_map@200_yelamarthi",
)
PAPER_FILE_COLUMNS = ("method", "paper_label", *PAPER_COLUMNS, "source")
COLUMNS: tuple[str, ...] = (
    *KEY_COLUMNS,
    *(
        column
        for prefix in SETTING_PREFIX.values()
        for column in (
            *(f"{prefix}_{metric}{suffix}" for metric in HEADLINE_METRICS for suffix in ("", "_sem")),
            f"{prefix}_n",
        )
    ),
    *(f"{prefix}_{metric}" for prefix in SETTING_PREFIX.values() for metric in OTHER_METRICS),
    *PAPER_COLUMNS,
)
COUNT_COLUMNS = tuple(f"{prefix}_n" for prefix in SETTING_PREFIX.values())
FLOAT_FORMAT = "%.4f"
PAPER_DECIMALS = 3  # the papers print three decimals
SORT_COLUMNS = ("dataset", "zs_map@200", "method", "variant", "trad_split", "zs_split")
CSV_NAME, MARKDOWN_NAME = "leaderboard.csv", "leaderboard.md"


def is_sketchy(dataset: str) -> bool:
    """Paper columns belong to Sketchy rows only (the reference table is on Sketchy)."""
    return dataset.lower().startswith("sketchy")


def load_paper_results() -> pd.DataFrame:
    """The reference table of the ZS-SBIR paper (package data ``paper_results.csv``), one row per method."""
    source = resources.files("sbir_bench.leaderboard").joinpath("paper_results.csv")
    with source.open("r", encoding="utf-8") as handle:
        paper = pd.read_csv(handle, dtype={"method": str, "paper_label": str, "source": str})
    if tuple(paper.columns) != PAPER_FILE_COLUMNS:
        raise ValueError(f"paper_results.csv columns {list(paper.columns)} != {list(PAPER_FILE_COLUMNS)}")
    repeated = sorted(paper["method"][paper["method"].duplicated()])
    if repeated:
        raise ValueError(f"paper_results.csv repeats methods {repeated}")
    return paper


def _current_records(records: Iterable[RunRecord]) -> dict[tuple[str, str, str, str, str], list[RunRecord]]:
    """OK records grouped by (method, variant, dataset, setting, split): one (the latest) per seed.

    A group holds only the configuration (config hash) of its latest record; records of older
    configurations of the same variant are left out with a warning rather than averaged in.
    """
    groups: dict[tuple[str, str, str, str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        if r.status == "ok":
            groups[(r.method, r.variant, r.dataset, r.setting, r.split)].append(r)
    current = {}
    for key, group in groups.items():
        config_hash = max(group, key=lambda r: r.recency).config_hash
        stale = sorted({r.config_hash for r in group if r.config_hash != config_hash})
        if stale:
            count = sum(r.config_hash != config_hash for r in group)
            warnings.warn(
                f"{'/'.join(key)}: leaving out {count} record(s) of older configurations {stale} "
                f"(current config_hash {config_hash})",
                stacklevel=3,
            )
        latest_per_seed: dict[int, RunRecord] = {}
        for record in group:
            if record.config_hash == config_hash:
                kept = latest_per_seed.get(record.seed)
                if kept is None or record.recency > kept.recency:
                    latest_per_seed[record.seed] = record
        current[key] = [latest_per_seed[seed] for seed in sorted(latest_per_seed)]
    return current


def _summarise(prefix: str, records: Sequence[RunRecord]) -> dict[str, Any]:
    """Mean, standard error of the mean (sample std / sqrt(n), NaN for n = 1) and n over seeds."""
    row: dict[str, Any] = {f"{prefix}_n": len(records)}
    for metric in (*HEADLINE_METRICS, *OTHER_METRICS):
        values = pd.Series([r.metrics[metric] for r in records if metric in r.metrics], dtype=float)
        row[f"{prefix}_{metric}"] = values.mean() if len(values) else math.nan
        if metric in HEADLINE_METRICS:
            row[f"{prefix}_{metric}_sem"] = values.sem(ddof=1) if len(values) > 1 else math.nan
    return row


def build_table(records: list[RunRecord], paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """The leaderboard: columns :data:`COLUMNS`, sorted by :data:`SORT_COLUMNS` (zs_map@200 descending).

    ``paper`` (see :func:`load_paper_results`) fills the ``paper_*`` columns of Sketchy rows; None leaves
    them empty.
    """
    splits: dict[tuple[str, str, str], dict[str, dict[str, list[RunRecord]]]] = defaultdict(
        lambda: {setting: {} for setting in SETTING_PREFIX}
    )
    for (method, variant, dataset, setting, split), group in _current_records(records).items():
        if setting in SETTING_PREFIX:  # category-level table; fine-grained records are kept, not tabled here
            splits[(method, variant, dataset)][setting][split] = group
    paper_by_method: dict[str, dict[str, float]] = (
        {}
        if paper is None
        else {
            str(entry["method"]): {c: float(entry[c]) for c in PAPER_COLUMNS}
            for entry in paper.to_dict("records")
        }
    )
    rows = []
    for (method, variant, dataset), by_setting in splits.items():
        trad_splits = sorted(by_setting["traditional"]) or [""]
        zs_splits = sorted(by_setting["zeroshot"]) or [""]
        for trad_split, zs_split in itertools.product(trad_splits, zs_splits):
            row: dict[str, Any] = dict(
                zip(KEY_COLUMNS, (method, variant, dataset, trad_split, zs_split), strict=True)
            )
            for setting, split in (("traditional", trad_split), ("zeroshot", zs_split)):
                row.update(_summarise(SETTING_PREFIX[setting], by_setting[setting].get(split, [])))
            paper_values = paper_by_method.get(method, {}) if is_sketchy(dataset) else {}
            row.update({column: paper_values.get(column, math.nan) for column in PAPER_COLUMNS})
            rows.append(row)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in COLUMNS:
        if column in KEY_COLUMNS:
            table[column] = table[column].astype(object)
        elif column in COUNT_COLUMNS:
            table[column] = table[column].astype("int64")
        else:
            table[column] = table[column].astype("float64")
    ascending = [column != "zs_map@200" for column in SORT_COLUMNS]
    table = table.sort_values(list(SORT_COLUMNS), ascending=ascending, na_position="last", kind="mergesort")
    return table.reset_index(drop=True)


def format_csv(table: pd.DataFrame) -> str:
    """The CSV text: fixed column order, floats with 4 decimals, empty cells for missing values."""
    return str(table[list(COLUMNS)].to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n"))


_MARKDOWN_HEADER = """# sbir_bench leaderboard

Generated from the run records in `leaderboard/results/` by `sbir-bench leaderboard` (`make leaderboard`);
do not edit by hand. Columns: `leaderboard/README.md`; metric definitions: the suite's metrics spec.

- Cells: mean ± standard error of the mean over seeds (number of seeds); `–`: no result.
- **P@200** (`p@200`): hits in the top 200 / 200. **P@100** (`p@100`): the same at 100.
- **mAP@200** (`map@200`): Σ P(k) over relevant ranks k ≤ 200, divided by the hits in the top 200.
- **mAP@200 (Y)** (`map@200_yelamarthi`): the same sum divided by 200 (the ZS-SBIR code's convention).
- **mAP@all** (`map@all`): non-interpolated average precision over the whole ranking.
- **trad**: traditional (category-level) setting; **zs**: zero-shot (unseen classes).
- **paper** columns (Sketchy rows only) quote the numbers printed by Yelamarthi et al. (ECCV'18), Sketchy,
  104/21 zero-shot split. Their mAP is the `map@200_yelamarthi` convention: compare it with the
  mAP@200 (Y) columns, not with mAP@200.
"""

_MARKDOWN_COLUMNS = (
    ("method", "method"),
    ("variant", "variant"),
    ("trad split", "trad_split"),
    ("zs split", "zs_split"),
    ("trad P@200", "trad_p@200"),
    ("trad mAP@200", "trad_map@200"),
    ("zs P@200", "zs_p@200"),
    ("zs mAP@200", "zs_map@200"),
    ("trad P@100", "trad_p@100"),
    ("trad mAP@200 (Y)", "trad_map@200_yelamarthi"),
    ("trad mAP@all", "trad_map@all"),
    ("zs P@100", "zs_p@100"),
    ("zs mAP@200 (Y)", "zs_map@200_yelamarthi"),
    ("zs mAP@all", "zs_map@all"),
)
_MARKDOWN_PAPER_COLUMNS = (
    ("paper trad P@200", "paper_trad_p@200"),
    ("paper zs P@200", "paper_zs_p@200"),
    ("paper trad mAP@200 (Y)", "paper_trad_map@200_yelamarthi"),
    ("paper zs mAP@200 (Y)", "paper_zs_map@200_yelamarthi"),
)


def _markdown_cell(row: pd.Series, column: str) -> str:
    value = row[column]
    if isinstance(value, str):
        return value or "–"
    if pd.isna(value):
        return "–"
    if column.startswith("paper_"):
        return f"{value:.{PAPER_DECIMALS}f}"
    text = FLOAT_FORMAT % float(value)
    prefix, _, metric = column.partition("_")
    if metric in HEADLINE_METRICS:
        sem = row[f"{column}_sem"]
        text += "" if pd.isna(sem) else f" ± {FLOAT_FORMAT % float(sem)}"
        text += f" ({row[f'{prefix}_n']})"
    return text


def format_markdown(table: pd.DataFrame) -> str:
    """A readable Markdown page: the header explaining every metric, then one table per dataset."""
    parts = [_MARKDOWN_HEADER]
    if table.empty:
        parts.append("\nNo results yet.\n")
    for dataset, rows in table.groupby("dataset", sort=True):
        columns = _MARKDOWN_COLUMNS + (_MARKDOWN_PAPER_COLUMNS if is_sketchy(str(dataset)) else ())
        lines = [
            f"\n## {dataset}\n",
            "| " + " | ".join(title for title, _ in columns) + " |",
            "|" + "---|" * len(columns),
        ]
        for _, row in rows.iterrows():
            lines.append("| " + " | ".join(_markdown_cell(row, column) for _, column in columns) + " |")
        parts.append("\n".join(lines) + "\n")
    return "".join(parts)


def write_leaderboard(table: pd.DataFrame, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``leaderboard.csv`` and ``leaderboard.md`` into ``out_dir``, each atomically (os.replace)."""
    out = Path(out_dir)
    csv_path = atomic_write_text(out / CSV_NAME, format_csv(table))
    markdown_path = atomic_write_text(out / MARKDOWN_NAME, format_markdown(table))
    return csv_path, markdown_path


def _csv_rows(text: str) -> dict[tuple[str, ...], dict[str, str]]:
    return {tuple(row.get(k) or "" for k in KEY_COLUMNS): row for row in csv.DictReader(io.StringIO(text))}


def changed_rows(previous_csv: str, table: pd.DataFrame) -> list[dict[str, str]]:
    """Rows of ``table`` added or changed against the previous CSV text (compared as written, 4 decimals),
    then rows that disappeared. Each: ``change`` (added/changed/removed), the key, the headline values
    and ``changed_columns``."""
    before, after = _csv_rows(previous_csv), _csv_rows(format_csv(table))
    headline = [f"{p}_{m}" for p in SETTING_PREFIX.values() for m in HEADLINE_METRICS]
    changes: list[dict[str, str]] = []
    for key, row in [*after.items(), *((k, r) for k, r in before.items() if k not in after)]:
        old = before.get(key)
        columns: list[str] = []
        if key not in after:
            kind = "removed"
        elif old is None:
            kind = "added"
        else:
            columns = [c for c in dict.fromkeys([*row, *old]) if (row.get(c) or "") != (old.get(c) or "")]
            if not columns:
                continue
            kind = "changed"
        changes.append(
            {
                "change": kind,
                **dict(zip(KEY_COLUMNS, key, strict=True)),
                **{c: row.get(c) or "" for c in headline},
                "changed_columns": ", ".join(columns),
            }
        )
    return changes


def rebuild(
    results_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], strict: bool = False
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Read every record (unreadable ones warned about and skipped unless ``strict``), build the table with
    the paper columns, write both files and return the table with the rows that changed
    (:func:`changed_rows`) against the previous ``leaderboard.csv``."""
    table = build_table(read_records(results_dir, strict=strict), load_paper_results())
    previous = Path(out_dir) / CSV_NAME
    changes = changed_rows(previous.read_text(encoding="utf-8") if previous.is_file() else "", table)
    write_leaderboard(table, out_dir)
    return table, changes
