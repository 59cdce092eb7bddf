"""A speed smoke test: a 100k-row list imports quickly on SQLite (bounds are generous)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rempart.exchanges import export_bank, import_file
from rempart.store import Store

ROWS = 100_000


@pytest.mark.slow
def test_import_100k_rows_on_sqlite(tmp_path: Path, hex_hashes: Callable[..., list[str]]) -> None:
    path = tmp_path / "big.csv"
    with path.open("w") as fh:
        fh.write("signal,value,quality,source,tags,metadata\n")
        for h in hex_hashes(ROWS, seed=42):
            fh.write(f"pdq,{h},90,perf,,\n")
    with Store.open(f"sqlite:///{tmp_path / 'perf.db'}") as store:
        store.create_bank("big")
        started = time.perf_counter()
        report = import_file(store, "big", path)
        elapsed = time.perf_counter() - started
        assert report.added == ROWS and report.ok
        # About 2 s on a laptop core; the bound leaves room for slow, shared CI machines.
        assert elapsed < 30, f"import of {ROWS} rows took {elapsed:.1f}s"

        started = time.perf_counter()
        arrays = store.load_signal_arrays("pdq")
        assert len(arrays.entry_ids) == ROWS
        assert time.perf_counter() - started < 10

        out = tmp_path / "out.csv"
        assert export_bank(store, "big", out) == ROWS
        assert out.stat().st_size > path.stat().st_size * 0.9
