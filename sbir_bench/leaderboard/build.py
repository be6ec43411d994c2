"""Run records -> the leaderboard table (a pure function), its CSV and Markdown files, and what changed.

One row per configuration (:mod:`sbir_bench.leaderboard.select`: method, variant, dataset and one config
hash, shown in ``config_hash``): traditional, zero-shot and generalised zero-shot results side by side,
each metric as the mean over seeds with its standard error (sample std, ddof = 1, over sqrt(n); empty for
n = 1) and n. When a setting was run on more than one split of a dataset (e.g. Sketchy's
``zeroshot_yelamarthi`` and ``zeroshot_shen``), the row is repeated per split (``*_split`` columns), so
numbers of different splits are never averaged together. Each dataset block ends with its ``(chance)`` and
``(ceiling)`` rows (:mod:`sbir_bench.leaderboard.references`), never sorted among the methods. ``paper_*``
columns quote the papers' own numbers (``paper_results.csv``; their mAP is ``map@200_yelamarthi``) on
Sketchy rows only, beside, never mixed with, the suite's. ``failed`` counts the row configuration's runs
that failed (:mod:`sbir_bench.leaderboard.select`); the efficiency columns (``embedding``, ``emb_bytes``,
``*_query_s_per_1k``, ``*_train_s``, ``hardware``: :mod:`sbir_bench.efficiency`) are means over seeds of what
each run measured. Column meanings: leaderboard/README.md.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from sbir_bench.efficiency import (
    EFFICIENCY_KEY,
    EMBEDDING,
    EMBEDDING_BYTES,
    QUERY_SECONDS_PER_1K,
    hardware_description,
)
from sbir_bench.files import atomic_write_text
from sbir_bench.leaderboard import references
from sbir_bench.leaderboard import track_table as tracks
from sbir_bench.leaderboard.cells import efficiency_value, mean_present, typed_frame
from sbir_bench.leaderboard.fine_grained import FINE_GRAINED_TABLE
from sbir_bench.leaderboard.record import RunRecord, scan_records
from sbir_bench.leaderboard.select import (
    TABLED_SETTINGS,
    Row,
    Selection,
    SetAside,
    last_error_line,
    relative_file,
    select,
)
from sbir_bench.leaderboard.shape import SHAPE_TABLE

SETTING_PREFIX = dict(zip(TABLED_SETTINGS, ("trad", "zs", "gzs"), strict=True))  # traditional, zeroshot, gzs
HEADLINE_METRICS = ("p@200", "map@200")  # mean, sem and n for each setting
# means only; the *_voc and *_minr conventions are those of the SAKE / ZSE-SBIR evaluation code
OTHER_METRICS = ("p@100", "map@200_yelamarthi", "map@all", "map@all_voc", "map@200_voc", "p@200_minr")
SPLIT_COLUMNS = tuple(f"{prefix}_split" for prefix in SETTING_PREFIX.values())
KEY_COLUMNS = ("method", "variant", "dataset", *SPLIT_COLUMNS)
TRACK_TABLES = (FINE_GRAINED_TABLE, SHAPE_TABLE)  # tables of their own beside leaderboard.csv
PAPER_COLUMNS = (
    "paper_trad_p@200",
    "paper_zs_p@200",
    "paper_trad_map@200_yelamarthi",
    "paper_zs_map@200_yelamarthi",
)
PAPER_FILE_COLUMNS = ("method", "paper_label", *PAPER_COLUMNS, "source")
# measured by each run (sbir_bench/efficiency.py): means over the seeds, per setting where they depend on it
EFFICIENCY_COLUMNS = (
    "emb_bytes",
    *(f"{prefix}_query_s_per_1k" for prefix in SETTING_PREFIX.values()),
    *(f"{prefix}_train_s" for prefix in SETTING_PREFIX.values()),
)
COLUMNS: tuple[str, ...] = (
    *KEY_COLUMNS,
    "config_hash",
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
    "failed",
    "embedding",
    *EFFICIENCY_COLUMNS,
    "hardware",
)
TEXT_COLUMNS = (*KEY_COLUMNS, "config_hash", "embedding", "hardware")
COUNT_COLUMNS = (*(f"{prefix}_n" for prefix in SETTING_PREFIX.values()), "failed")
FLOAT_FORMAT = "%.4f"
PAPER_DECIMALS = 3  # the papers print three decimals
REFERENCE_METHODS = tuple(references.ROW_METHOD.values())
ROW_ORDER = {"": 0, **{method: i + 1 for i, method in enumerate(references.ROW_METHOD.values())}}
SORT_COLUMNS = ("dataset", "_order", "zs_map@200", "method", "variant", *SPLIT_COLUMNS)
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


def _summarise(prefix: str, records: Sequence[RunRecord]) -> dict[str, Any]:
    """Mean, standard error of the mean (sample std / sqrt(n), NaN for n = 1) and n over seeds; the mean
    query and training times."""
    row: dict[str, Any] = {f"{prefix}_n": len(records)}
    for metric in (*HEADLINE_METRICS, *OTHER_METRICS):
        values = pd.Series([r.metrics[metric] for r in records if metric in r.metrics], dtype=float)
        row[f"{prefix}_{metric}"] = values.mean() if len(values) else math.nan
        if metric in HEADLINE_METRICS:
            row[f"{prefix}_{metric}_sem"] = values.sem(ddof=1) if len(values) > 1 else math.nan
    query_seconds = [efficiency_value(r, QUERY_SECONDS_PER_1K) for r in records]
    row[f"{prefix}_query_s_per_1k"] = mean_present(query_seconds)
    row[f"{prefix}_train_s"] = mean_present([r.train_seconds for r in records])
    return row


def _hardware(records: Sequence[RunRecord]) -> str:
    """The distinct hardware the records were measured on, sorted, joined with ``; ``
    (:func:`sbir_bench.efficiency.hardware_description`)."""
    return "; ".join(sorted({hardware_description(r.hardware, r.extra.get("accelerator")) for r in records}))


def _split_combinations(row: Row) -> list[tuple[str, ...]]:
    """Every combination of one split per setting (``""`` for a setting not run)."""
    return list(itertools.product(*(sorted(row.runs.get(setting, {})) or [""] for setting in SETTING_PREFIX)))


def _method_rows(row: Row, paper_by_method: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """The table rows of one configuration: one per combination of its splits."""
    rows = []
    for splits in _split_combinations(row):
        entry: dict[str, Any] = dict(
            zip(KEY_COLUMNS, (row.method, row.variant, row.dataset, *splits), strict=True)
        )
        entry["config_hash"] = row.config_hash
        records: list[RunRecord] = []
        for (setting, prefix), split in zip(SETTING_PREFIX.items(), splits, strict=True):
            records.extend(row.runs.get(setting, {}).get(split, ()))
            entry.update(_summarise(prefix, row.runs.get(setting, {}).get(split, ())))
        paper_values = paper_by_method.get(row.method, {}) if is_sketchy(row.dataset) else {}
        entry.update({column: paper_values.get(column, math.nan) for column in PAPER_COLUMNS})
        entry["failed"] = len(row.failed)
        entry["embedding"] = ", ".join(
            sorted({str(r.extra.get(EFFICIENCY_KEY, {}).get(EMBEDDING)) for r in records} - {"None"})
        )
        entry["emb_bytes"] = mean_present([efficiency_value(r, EMBEDDING_BYTES) for r in records])
        entry["hardware"] = _hardware(records)
        rows.append(entry)
    return rows


def _reference_rows(rows: Sequence[Row], found: references.References) -> list[dict[str, Any]]:
    """Per dataset, a ``(chance)`` and a ``(ceiling)`` row for every combination of the splits its rows
    ran (one split per setting), when the records carry such values."""
    splits_of: dict[str, dict[str, set[str]]] = {}
    for row in rows:
        by_setting = splits_of.setdefault(row.dataset, {setting: set() for setting in SETTING_PREFIX})
        for setting, by_split in row.runs.items():
            by_setting[setting].update(by_split)
    entries = []
    for dataset, by_setting in sorted(splits_of.items()):
        combinations = itertools.product(*(sorted(by_setting[setting]) or [""] for setting in SETTING_PREFIX))
        for splits, (kind, method) in itertools.product(combinations, references.ROW_METHOD.items()):
            entry: dict[str, Any] = dict(zip(KEY_COLUMNS, (method, "", dataset, *splits), strict=True))
            entry["config_hash"] = ""
            for (setting, prefix), split in zip(SETTING_PREFIX.items(), splits, strict=True):
                where = (kind, dataset, setting, split)
                values = found.values.get(where, {})
                entry[f"{prefix}_n"] = 0  # not seeds: the value is the gallery's, whichever records carry it
                for metric in HEADLINE_METRICS:
                    entry[f"{prefix}_{metric}_sem"] = math.nan
                for metric in (*HEADLINE_METRICS, *OTHER_METRICS):
                    entry[f"{prefix}_{metric}"] = values.get(metric, math.nan)
            entry.update({column: math.nan for column in (*PAPER_COLUMNS, *EFFICIENCY_COLUMNS)})
            entry.update({"failed": 0, "embedding": "", "hardware": ""})
            if any(
                (kind, dataset, setting, split) in found.values
                for setting, split in zip(SETTING_PREFIX, splits, strict=True)
            ):
                entries.append(entry)
    return entries


def _paper_by_method(paper: pd.DataFrame | None) -> dict[str, dict[str, float]]:
    if paper is None:
        return {}
    return {
        str(entry["method"]): {c: float(entry[c]) for c in PAPER_COLUMNS}
        for entry in paper.to_dict("records")
    }


def table_of(selection: Selection, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """The leaderboard of a selection: columns :data:`COLUMNS`, sorted by dataset, then method rows by
    ``zs_map@200`` descending, then the ``(chance)`` and ``(ceiling)`` rows of the dataset."""
    paper_by_method = _paper_by_method(paper)
    method_rows = [entry for row in selection.rows for entry in _method_rows(row, paper_by_method)]
    rows = method_rows + _reference_rows(selection.rows, references.collect(selection.rows))
    table = typed_frame(rows, COLUMNS, TEXT_COLUMNS, COUNT_COLUMNS)
    table["_order"] = [ROW_ORDER.get(method, 0) for method in table["method"]]
    ascending = [column != "zs_map@200" for column in SORT_COLUMNS]
    table = table.sort_values(list(SORT_COLUMNS), ascending=ascending, na_position="last", kind="mergesort")
    return table.drop(columns="_order").reset_index(drop=True)


def build_table(records: list[RunRecord], paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """The leaderboard of ``records`` (:func:`table_of` of :func:`~sbir_bench.leaderboard.select.select`).

    ``paper`` (see :func:`load_paper_results`) fills the ``paper_*`` columns of Sketchy rows; None leaves
    them empty.
    """
    return table_of(select(records), paper)


def format_csv(table: pd.DataFrame) -> str:
    """The CSV text: fixed column order, floats with 4 decimals, empty cells for missing values."""
    return str(table[list(COLUMNS)].to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n"))


_MARKDOWN_HEADER = """# sbir_bench leaderboard

Generated from the run records in `leaderboard/results/` by `sbir-bench leaderboard` (`make leaderboard`);
do not edit by hand. Columns and row rules: `leaderboard/README.md`; metric definitions: the README's metric
table and `sbir_bench/evaluation/metrics.py`.

- Cells: mean ± standard error of the mean over seeds (number of seeds); `–`: no result. A column without
  any result in a dataset's table is left out of it.
- A row is one configuration: `variant` `default` (or an experiment's `paper`) is the registered config,
  `custom-<hash>` or a user's name any other; `config` is its config hash.
- **trad**: traditional (category-level) setting; **zs**: zero-shot (unseen classes, gallery of the unseen
  classes); **gzs**: generalised zero-shot (unseen-class sketches, gallery of every class).
- **(chance)**: the expected value under a uniformly random ranking of the same gallery; **(ceiling)**: the
  best value the gallery allows. Both come from the records (they depend on the gallery only) and close
  each dataset's table; they are not methods.
- **P@200** (`p@200`): hits in the top 200 / 200. **P@100** (`p@100`): the same at 100.
- **mAP@200** (`map@200`): Σ P(k) over relevant ranks k ≤ 200, divided by the hits in the top 200.
- **mAP@200 (Y)** (`map@200_yelamarthi`): the same sum divided by 200 (the ZS-SBIR code's convention).
- **mAP@all** (`map@all`): non-interpolated average precision over the whole ranking.
- **mAP@all (VOC)** (`map@all_voc`), **mAP@200 (VOC)** (`map@200_voc`), **P@200 (min R)** (`p@200_minr`):
  the interpolated conventions of the SAKE / ZSE-SBIR evaluation code, under their own names.
- **paper** columns (Sketchy rows only) quote the numbers printed by Yelamarthi et al. (ECCV'18), Sketchy,
  104/21 zero-shot split. Their mAP is the `map@200_yelamarthi` convention: compare it with the
  mAP@200 (Y) columns, not with mAP@200.
- **failed**: runs (split, seed) of the row's configuration that failed and have no finished rerun; they
  never count in the numbers and are listed under the dataset's table with their error's last line.
- **Efficiency** (measured by each run, means over seeds): **emb bytes**: bytes per gallery item's embedding
  (Hamming codes: one bit per dimension); **query s/1k**: seconds the evaluation engine takes to search the
  test gallery for and score 1,000 test queries (embedding them excluded); **train s**: wall seconds of
  training (0: untrained). Times depend on the hardware named under each table.
"""

_METRIC_TITLES = {
    "p@200": "P@200",
    "map@200": "mAP@200",
    "p@100": "P@100",
    "map@200_yelamarthi": "mAP@200 (Y)",
    "map@all": "mAP@all",
    "map@all_voc": "mAP@all (VOC)",
    "map@200_voc": "mAP@200 (VOC)",
    "p@200_minr": "P@200 (min R)",
}
_MARKDOWN_COLUMNS = (
    ("method", "method"),
    ("variant", "variant"),
    *((f"{prefix} split", f"{prefix}_split") for prefix in SETTING_PREFIX.values()),
    ("config", "config_hash"),
    ("failed", "failed"),
    *(
        (f"{prefix} {_METRIC_TITLES[metric]}", f"{prefix}_{metric}")
        for prefix in SETTING_PREFIX.values()
        for metric in HEADLINE_METRICS
    ),
    *(
        (f"{prefix} {_METRIC_TITLES[metric]}", f"{prefix}_{metric}")
        for prefix in SETTING_PREFIX.values()
        for metric in OTHER_METRICS
    ),
)
_MARKDOWN_PAPER_COLUMNS = (
    ("paper trad P@200", "paper_trad_p@200"),
    ("paper zs P@200", "paper_zs_p@200"),
    ("paper trad mAP@200 (Y)", "paper_trad_map@200_yelamarthi"),
    ("paper zs mAP@200 (Y)", "paper_zs_map@200_yelamarthi"),
)
_EFFICIENCY_MARKDOWN_COLUMNS = (
    ("method", "method"),
    ("variant", "variant"),
    *((f"{prefix} split", f"{prefix}_split") for prefix in SETTING_PREFIX.values()),
    ("embedding", "embedding"),
    ("emb bytes", "emb_bytes"),
    *((f"{prefix} query s/1k", f"{prefix}_query_s_per_1k") for prefix in SETTING_PREFIX.values()),
    *((f"{prefix} train s", f"{prefix}_train_s") for prefix in SETTING_PREFIX.values()),
)
_EFFICIENCY_FORMATS = {"emb_bytes": "{:g}", "query_s_per_1k": "{:.4f}", "train_s": "{:.1f}"}
_ALWAYS_SHOWN = ("method", "variant")


def _markdown_cell(row: pd.Series, column: str) -> str:
    value = row[column]
    if isinstance(value, str):
        return value or "–"
    if column == "failed":
        return str(int(value)) if value else "–"
    if pd.isna(value):
        return "–"
    for suffix, form in _EFFICIENCY_FORMATS.items():
        if column.endswith(suffix):
            return form.format(float(value))
    if column.startswith("paper_"):
        return f"{value:.{PAPER_DECIMALS}f}"
    text = FLOAT_FORMAT % float(value)
    prefix, _, metric = column.partition("_")
    if metric in HEADLINE_METRICS and row["method"] not in REFERENCE_METHODS:
        sem = row[f"{column}_sem"]
        text += "" if pd.isna(sem) else f" ± {FLOAT_FORMAT % float(sem)}"
        text += f" ({row[f'{prefix}_n']})"
    return text


def _markdown_table(rows: pd.DataFrame, candidates: Sequence[tuple[str, str]]) -> list[str]:
    """The lines of a Markdown table of ``rows``, without the candidate columns empty in every row."""
    cells = {column: [_markdown_cell(row, column) for _, row in rows.iterrows()] for _, column in candidates}
    columns = [
        (title, column)
        for title, column in candidates
        if column in _ALWAYS_SHOWN or any(cell != "–" for cell in cells[column])
    ]
    lines = ["| " + " | ".join(title for title, _ in columns) + " |", "|" + "---|" * len(columns)]
    for index in range(len(rows)):
        lines.append("| " + " | ".join(cells[column][index] for _, column in columns) + " |")
    return lines


def _efficiency_block(rows: pd.DataFrame) -> list[str]:
    """The dataset's efficiency table (method rows with a measurement) and the hardware it was measured on."""
    measured = rows[~rows["method"].isin(REFERENCE_METHODS)]
    measured = measured[measured[list(EFFICIENCY_COLUMNS)].notna().any(axis=1)]
    if measured.empty:
        return []
    hardware = sorted({part for text in measured["hardware"] for part in text.split("; ") if part})
    return [
        "\n### Efficiency\n",
        *_markdown_table(measured, _EFFICIENCY_MARKDOWN_COLUMNS),
        "",
        "Measured on: " + "; ".join(hardware) + ".",
    ]


def _failure_lines(failures: Sequence[RunRecord]) -> list[str]:
    """The dataset's failed runs, one line each: the run, its error's last line and its record file."""
    if not failures:
        return []
    lines = [f"\n### Failed runs ({len(failures)})\n"]
    for record in sorted(failures, key=lambda r: (r.method, r.variant, r.split, r.seed, r.run_id)):
        message = last_error_line(record).replace("`", "'")  # the file follows in backticks
        lines.append(
            f"- {record.method}/{record.variant} {record.split} seed {record.seed}: {message} "
            f"(`{relative_file(record)}`)"
        )
    return lines


def format_markdown(table: pd.DataFrame, failures: Sequence[RunRecord] = ()) -> str:
    """A readable Markdown page: the header explaining every metric, then per dataset its table (its
    method rows, then its chance and ceiling rows; without the columns that are empty in it), its
    efficiency table with the hardware it was measured on, and its failed runs (``failures``: the
    ``failed`` records of the selection's rows)."""
    parts = [_MARKDOWN_HEADER]
    if table.empty:
        parts.append("\nNo results yet.\n")
    for dataset, rows in table.groupby("dataset", sort=True):
        candidates = _MARKDOWN_COLUMNS + (_MARKDOWN_PAPER_COLUMNS if is_sketchy(str(dataset)) else ())
        lines = [f"\n## {dataset}\n", *_markdown_table(rows, candidates)]
        lines += _efficiency_block(rows)
        lines += _failure_lines([record for record in failures if record.dataset == dataset])
        parts.append("\n".join(lines) + "\n")
    return "".join(parts)


def failed_runs(selection: Selection) -> list[RunRecord]:
    """Every row's failed runs (:attr:`~sbir_bench.leaderboard.select.Row.failed`)."""
    return [record for row in selection.rows for record in row.failed]


def write_leaderboard(
    table: pd.DataFrame, out_dir: str | os.PathLike[str], failures: Sequence[RunRecord] = ()
) -> tuple[Path, Path]:
    """Write ``leaderboard.csv`` and ``leaderboard.md`` (listing ``failures``) into ``out_dir``, each
    atomically (os.replace)."""
    out = Path(out_dir)
    csv_path = atomic_write_text(out / CSV_NAME, format_csv(table))
    markdown_path = atomic_write_text(out / MARKDOWN_NAME, format_markdown(table, failures))
    return csv_path, markdown_path


def _csv_rows(text: str, key_columns: Sequence[str]) -> dict[tuple[str, ...], dict[str, str]]:
    return {tuple(row.get(k) or "" for k in key_columns): row for row in csv.DictReader(io.StringIO(text))}


def changed_rows(
    previous_csv: str,
    table: pd.DataFrame,
    *,
    key_columns: Sequence[str] = KEY_COLUMNS,
    headline: Sequence[str] = tuple(f"{p}_{m}" for p in SETTING_PREFIX.values() for m in HEADLINE_METRICS),
    formatted: Any = None,
) -> list[dict[str, str]]:
    """Rows of ``table`` added or changed against the previous CSV text (compared as written, 4 decimals),
    then rows that disappeared. Each: ``change`` (added/changed/removed), the key, the headline values
    and ``changed_columns``. The defaults describe the category-level table; the fine-grained one passes
    its own key, headline columns and CSV writer."""
    before = _csv_rows(previous_csv, key_columns)
    after = _csv_rows((formatted or format_csv)(table), key_columns)
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
                **dict(zip(key_columns, key, strict=True)),
                **{c: row.get(c) or "" for c in headline},
                "changed_columns": ", ".join(columns),
            }
        )
    return changes


@dataclass(frozen=True)
class Rebuilt:
    """What a rebuild wrote and why: the table, its changed rows, the records used and set aside, and
    notes on reference values the records disagree on."""

    table: pd.DataFrame
    changes: list[dict[str, str]]
    selection: Selection
    tracks: dict[str, pd.DataFrame]  # each track's table by its CSV name (fine_grained.csv, shape.csv)
    notes: tuple[str, ...]
    unreadable: tuple[SetAside, ...]  # the record files that could not be read (also in selection)


def rebuild_leaderboard(
    results_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], strict: bool = False
) -> Rebuilt:
    """Read every record, build the table with the paper columns and write both files. Unreadable and
    outdated record files raise with ``strict``; otherwise they are set aside with their reason."""
    root = Path(results_dir)
    records, problems = scan_records(root)
    if strict and problems:
        raise problems[0]
    unread = [SetAside(problem.path.relative_to(root).as_posix(), problem.reason) for problem in problems]
    selection = select(records, unread)
    table = table_of(selection, load_paper_results())
    previous = Path(out_dir) / CSV_NAME
    changes = changed_rows(previous.read_text(encoding="utf-8") if previous.is_file() else "", table)
    write_leaderboard(table, out_dir, failed_runs(selection))
    by_track = {
        track.csv_name: _write_track(track, records, Path(out_dir), changes) for track in TRACK_TABLES
    }
    notes = references.collect(selection.rows).notes
    return Rebuilt(table, changes, selection, by_track, notes, tuple(unread))


def _write_track(
    track: tracks.TrackTable, records: list[RunRecord], out_dir: Path, changes: list[dict[str, str]]
) -> pd.DataFrame:
    """A track's table, its changed rows added to ``changes``; its files are written once the track has
    records (or when they exist already)."""
    table = tracks.track_table(track, records, tracks.load_paper_results(track))
    path = out_dir / track.csv_name
    changes += changed_rows(
        path.read_text(encoding="utf-8") if path.is_file() else "",
        table,
        key_columns=tracks.KEY_COLUMNS,
        headline=track.headline,
        formatted=partial(tracks.format_csv, track),
    )
    if not table.empty or path.is_file():
        atomic_write_text(path, tracks.format_csv(track, table))
        atomic_write_text(out_dir / track.markdown_name, tracks.format_markdown(track, table))
    return table


def rebuild(
    results_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], strict: bool = False
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """:func:`rebuild_leaderboard`, returning the table and its changed rows (:func:`changed_rows`);
    record files that cannot be read raise with ``strict``, else each is warned about."""
    rebuilt = rebuild_leaderboard(results_dir, out_dir, strict=strict)
    for item in rebuilt.unreadable:
        warnings.warn(f"skipping {item.file}: {item.reason}", stacklevel=2)
    return rebuilt.table, rebuilt.changes
