"""Shared helpers for the leaderboard tests: a factory of valid run records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sbir_bench.leaderboard.record import RunRecord

METRICS = {"p@100": 0.35, "p@200": 0.3, "map@200": 0.4, "map@200_yelamarthi": 0.2, "map@all": 0.1}


def record(**overrides: Any) -> RunRecord:
    """A valid ok record of cvae/default on synthetic zeroshot, seed 0; keyword arguments replace fields."""
    fields: dict[str, Any] = dict(
        method="cvae",
        variant="default",
        dataset="synthetic",
        split="zeroshot",
        setting="zeroshot",
        seed=0,
        status="ok",
        metrics=dict(METRICS),
        counts={"n_queries": 120, "n_gallery": 384},
        config={"method": {"name": "cvae", "kwargs": {"lr": 2e-4, "betas": [0.5, 0.999]}}},
        config_hash="0123456789",
        registered_variant="default",
        registered_hash="0123456789",
        commit="ed93ef87cfed83a3f9da90566340956e4bfc962d",
        versions={"python": "3.11.7", "torch": "2.14.1"},
        hardware={"cpu_count": 2, "cuda_devices": []},
        train_seconds=12.5,
        eval_seconds=0.75,
        created_at="2025-01-01T00:00:00+00:00",
        run_id="20250101T000000000000Z-00000000",
    )
    fields.update(overrides)
    return RunRecord(**fields)


@pytest.fixture
def make_record() -> Callable[..., RunRecord]:
    return record
