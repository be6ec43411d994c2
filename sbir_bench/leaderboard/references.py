"""Chance and ceiling rows: what a uniformly random ranking scores, and the best the gallery allows.

Test records carry ``chance/<metric>`` (the expected value under a random ranking of the same gallery)
and ``ceiling/<metric>`` (the best value any ranking reaches, e.g. P@K ≤ R/K when a query has R < K
relevant items) for each evaluated metric. Both depend on the gallery only, not on the method, so the
leaderboard takes them from the records of a dataset's rows: per (dataset, setting, split) they must
agree to within :data:`TOLERANCE`; a value on which they disagree (different galleries, e.g. a variant
that changes the data) is left empty and reported.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sbir_bench.leaderboard.select import Row

KINDS = ("chance", "ceiling")
ROW_METHOD = {"chance": "(chance)", "ceiling": "(ceiling)"}  # never a method name (not a plain name)
TOLERANCE = 1e-4  # values closer than the leaderboard's 4 printed decimals agree

Where = tuple[str, str, str, str]  # kind, dataset, setting, split


@dataclass(frozen=True)
class References:
    values: dict[Where, dict[str, float]]  # metric -> value (NaN where the records disagree)
    notes: tuple[str, ...]  # one line per disagreement


def collect(rows: Sequence[Row]) -> References:
    """The chance and ceiling values of every (dataset, setting, split) of ``rows``."""
    seen: dict[Where, dict[str, list[tuple[float, str]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        for setting, by_split in row.runs.items():
            for split, records in by_split.items():
                for record in records:
                    for kind in KINDS:
                        prefix = f"{kind}/"
                        carried = {
                            k[len(prefix) :]: v for k, v in record.metrics.items() if k.startswith(prefix)
                        }
                        for metric, value in carried.items():
                            source = f"{row.method}/{row.variant} seed {record.seed}"
                            seen[(kind, row.dataset, setting, split)][metric].append((value, source))
    values: dict[Where, dict[str, float]] = {}
    notes = []
    for where in sorted(seen):
        values[where] = {}
        for metric, found in sorted(seen[where].items()):
            numbers = [value for value, _ in found]
            if max(numbers) - min(numbers) <= TOLERANCE:
                values[where][metric] = math.fsum(numbers) / len(numbers)
                continue
            values[where][metric] = math.nan
            kind, dataset, setting, split = where
            listed = ", ".join(f"{value:.4f} ({source})" for value, source in found)
            notes.append(
                f"{dataset}/{split}: the records disagree on {kind}/{metric} ({listed}): their galleries "
                f"differ; the {ROW_METHOD[kind]} cell of {setting} is left empty"
            )
    return References(values, tuple(notes))
