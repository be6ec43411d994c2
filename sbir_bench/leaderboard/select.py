"""Which records make a leaderboard row, and why every other record is set aside.

A row aggregates the records of exactly one configuration: one (method, variant, dataset) and, of the
configuration hashes recorded under that variant, only the newest (the hash of its latest ``ok`` record).
Within it each (setting, split, seed) counts once: its latest record. Every other record is set aside
with its reason: failed, fine-grained (not tabled here), other config (its label does not match its
configuration), superseded (an older configuration of the variant) or duplicate seed; unreadable and
outdated files are set aside by the caller (:func:`sbir_bench.leaderboard.record.scan_records`).

Failed runs never count in the numbers, yet a row shows them: its ``failed`` records are the latest error
record of each (setting, split, seed) of its configuration that has no ``ok`` record (a later successful
rerun clears it). A configuration whose runs all failed gets a row of its own, without numbers (the hash
of its latest error record).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sbir_bench.leaderboard.record import RunRecord, record_path

TABLED_SETTINGS = ("traditional", "zeroshot", "gzs")  # the category-level table
FINE_GRAINED = "fine_grained"  # instance-level records: the fine-grained table (leaderboard/fine_grained.py)
CUSTOM_PREFIX = "custom-"  # sbir_bench.variant names unnamed variants custom-<config_hash>


@dataclass(frozen=True)
class Row:
    """The records of one configuration: (method, variant, dataset, config hash); by setting and split,
    one record per seed in seed order."""

    method: str
    variant: str
    dataset: str
    config_hash: str
    runs: dict[str, dict[str, tuple[RunRecord, ...]]]
    failed: tuple[RunRecord, ...] = ()  # by (setting, split, seed): runs of this configuration without result

    @property
    def records(self) -> list[RunRecord]:
        return [r for by_split in self.runs.values() for group in by_split.values() for r in group]


@dataclass(frozen=True)
class SetAside:
    """A record file left out of every row: its path relative to the results folder, and why."""

    file: str
    reason: str


@dataclass(frozen=True)
class Selection:
    rows: tuple[Row, ...]  # by (method, variant, dataset)
    set_aside: tuple[SetAside, ...]  # by file


def relative_file(record: RunRecord) -> str:
    """Where a record lies under its results folder: ``<dataset>/<split>/<method>/<file>.json``."""
    return record_path(record, "").as_posix()


def label_problem(record: RunRecord, registered_labels: set[str]) -> str | None:
    """Why a record's variant label does not name its configuration (None when it does): the registered
    label on another configuration, a ``custom-`` name of another hash, or another registered label."""
    if record.variant == record.registered_variant and record.config_hash != record.registered_hash:
        return (
            f"other config: labelled {record.variant!r}, the registered configuration's label, but its "
            f"config hash {record.config_hash} is not the registered {record.registered_hash}"
        )
    if record.variant.startswith(CUSTOM_PREFIX) and record.variant != f"{CUSTOM_PREFIX}{record.config_hash}":
        return f"other config: labelled {record.variant!r} but its config hash is {record.config_hash}"
    if record.variant != record.registered_variant and record.variant in registered_labels:
        return (
            f"other config: {record.variant!r} labels a registered configuration, and this run is not it "
            f"(composed from the one labelled {record.registered_variant!r}; config hash "
            f"{record.config_hash})"
        )
    return None


def last_error_line(record: RunRecord) -> str:
    """The last non-empty line of a failed record's error (a traceback's exception line)."""
    return next((line.strip() for line in reversed(record.error.strip().splitlines()) if line.strip()), "")


def _failure(record: RunRecord) -> str:
    return f"failed (status error): {last_error_line(record)}"


def _slot(record: RunRecord) -> tuple[str, str, int]:
    return (record.setting, record.split, record.seed)


def _failed_runs(failures: list[RunRecord], config_hash: str, done: set[tuple[str, str, int]]) -> tuple:
    """The latest failure of each slot of ``config_hash`` that has no ok record (``done``), by slot."""
    latest: dict[tuple[str, str, int], RunRecord] = {}
    for record in sorted(failures, key=lambda r: r.recency):
        if record.config_hash == config_hash and _slot(record) not in done:
            latest[_slot(record)] = record
    return tuple(record for _, record in sorted(latest.items()))


def select(
    records: Iterable[RunRecord],
    set_aside: Iterable[SetAside] = (),
    settings: tuple[str, ...] = TABLED_SETTINGS,
) -> Selection:
    """Rows and set-aside records (``set_aside``: files already left out, e.g. unreadable ones), for the
    table of ``settings`` (the category-level one by default)."""
    records = list(records)
    aside = list(set_aside)
    registered_labels = {r.registered_variant for r in records}
    candidates: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    failures: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for record in records:
        reason = None
        if record.setting not in settings:
            table = "the fine-grained table" if record.setting == FINE_GRAINED else "no table yet"
            reason = f"{record.setting} setting: kept, not tabled here ({table})"
        elif record.status != "ok":
            reason = _failure(record)
            failures[(record.method, record.variant, record.dataset)].append(record)
        else:
            reason = label_problem(record, registered_labels)
        if reason is not None:
            aside.append(SetAside(relative_file(record), reason))
        else:
            candidates[(record.method, record.variant, record.dataset)].append(record)
    rows = []
    for (method, variant, dataset), group in sorted(candidates.items()):
        newest = max(group, key=lambda r: r.recency)
        latest: dict[tuple[str, str, int], RunRecord] = {}
        for record in sorted(group, key=lambda r: r.recency, reverse=True):
            slot = (record.setting, record.split, record.seed)
            if record.config_hash != newest.config_hash:
                reason = (
                    f"superseded: config {record.config_hash} of {method}/{variant} on {dataset}; the "
                    f"variant's newest config is {newest.config_hash} (run {newest.run_id})"
                )
            elif slot in latest:
                reason = (
                    f"duplicate seed {record.seed} of {record.split}: the later run {latest[slot].run_id} "
                    "is used"
                )
            else:
                latest[slot] = record
                continue
            aside.append(SetAside(relative_file(record), reason))
        runs: dict[str, dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
        for (setting, split, _), record in sorted(latest.items()):
            runs[setting][split].append(record)
        frozen = {s: {split: tuple(g) for split, g in by_split.items()} for s, by_split in runs.items()}
        failed = _failed_runs(failures[(method, variant, dataset)], newest.config_hash, set(latest))
        rows.append(Row(method, variant, dataset, newest.config_hash, frozen, failed))
    for (method, variant, dataset), group in sorted(failures.items()):
        if (method, variant, dataset) not in candidates:  # no ok run at all: a row of failures only
            newest_hash = max(group, key=lambda r: r.recency).config_hash
            failed = _failed_runs(group, newest_hash, set())
            rows.append(Row(method, variant, dataset, newest_hash, {}, failed))
    rows.sort(key=lambda row: (row.method, row.variant, row.dataset))
    return Selection(tuple(rows), tuple(sorted(aside, key=lambda item: (item.file, item.reason))))


def describe(selection: Selection) -> list[str]:
    """Lines saying which records each row used and which records were set aside, and why."""
    lines = []
    for row in selection.rows:
        lines.append(f"row {row.method}/{row.variant} on {row.dataset} (config {row.config_hash}) uses:")
        lines.extend(f"  {relative_file(record)}" for record in row.records)
        lines.extend(f"  failed: {relative_file(record)}" for record in row.failed)
    if selection.set_aside:
        lines.append(f"set aside ({len(selection.set_aside)}):")
        lines.extend(f"  {item.file}: {item.reason}" for item in selection.set_aside)
    else:
        lines.append("set aside: none")
    return lines
