"""Smoke run of benchmarks/feature_throughput.py on tiny data (the real figures come from a full run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "feature_throughput.py"


def test_quick_run_prints_both_throughputs_and_the_overhead(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick", "--num-workers", "0", "--cache-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "synthetic: 48 images of 32 px" in completed.stdout
    row = re.search(r"^\s+0\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(-?[\d.]+)%", completed.stdout, re.MULTILINE)
    assert row, completed.stdout
    cached, forward, ratio, overhead = map(float, row.groups())
    assert cached > 0 and forward > 0
    rounding = 0.005 + cached / forward * (0.5 / cached + 0.5 / forward) * 1.1  # integers printed
    assert abs(ratio - cached / forward) <= rounding and abs(overhead - 100 * (1 - ratio)) <= 0.56
    assert (tmp_path / "synthetic").is_dir(), "the data is built in --cache-dir, for reuse"
