"""The batch benchmark, small, as a check that it runs (``pytest -m bench``; skipped by the
normal run). The figures themselves come from ``python bench/batch_bench.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


@pytest.mark.bench
def test_batch_bench_runs_and_reports_ratios(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    try:
        import batch_bench
    finally:
        sys.path.pop(0)
    result = batch_bench.run(40, 4, tmp_path / "corpus", with_ray=False)
    assert result["runs"]["hashes_2"]["items"] == 40
    assert result["runs"]["full_1"]["items"] == 4
    assert result["speedup_1_to_2_workers"]["hashes"] > 0
    assert 0 < result["cpu_capacity_2_vs_1"]["before"] <= 2.5
