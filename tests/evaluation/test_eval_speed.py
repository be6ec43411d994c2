"""Smoke run of the engine speed benchmark (``--quick``: small sizes, a few seconds)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "eval_speed.py"


def test_quick_benchmark_prints_a_row_of_measurements():
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--bits", "--skip", "sklearn_ap", "sklearn_nn"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    row = next(line for line in completed.stdout.splitlines() if line.startswith("d=64"))
    engine_seconds, map_all_seconds, mm_seconds = (float(x) for x in row.split()[1:4])
    assert 0 < engine_seconds < 30 and 0 < map_all_seconds < 30 and 0 < mm_seconds < 30
