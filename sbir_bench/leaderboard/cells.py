"""Helpers shared by the leaderboard's tables (category-level and fine-grained): typed frames and means."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from sbir_bench.efficiency import EFFICIENCY_KEY
from sbir_bench.leaderboard.record import RunRecord


def typed_frame(
    rows: list[dict[str, Any]], columns: Sequence[str], text: Sequence[str], counts: Sequence[str]
) -> pd.DataFrame:
    """``rows`` as a frame of ``columns``: ``text`` columns as objects, ``counts`` int64, the rest float64."""
    table = pd.DataFrame(rows, columns=list(columns))
    for column in columns:
        if column in text:
            table[column] = table[column].astype(object)
        elif column in counts:
            table[column] = table[column].astype("int64")
        else:
            table[column] = table[column].astype("float64")
    return table


def efficiency_value(record: RunRecord, key: str) -> float | None:
    """One measurement of a record (None for records written before it was measured)."""
    value = (record.extra.get(EFFICIENCY_KEY) or {}).get(key)
    return None if value is None else float(value)


def mean_present(values: Sequence[float | None]) -> float:
    """The mean of the values that exist, NaN when none does."""
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else math.nan
