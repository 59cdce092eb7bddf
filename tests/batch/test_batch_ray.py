"""`--engine ray`: the same rows as the local engine, on a local Ray the test starts
(loopback only, no dashboard, its files inside the test's temporary folder)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import SerialEngine, image, write_export, write_tar, write_zip
from rempart.batch import BatchConfig, iter_rows, run_batch

ray = pytest.importorskip("ray")


@pytest.fixture
def local_ray(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    # A short folder: Ray's socket paths must stay under the 107 bytes Unix allows.
    temp = tmp_path_factory.mktemp("ray")
    monkeypatch.setenv("RAY_TMPDIR", str(temp))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=str(temp),
        configure_logging=False,
        log_to_driver=False,
    )
    try:
        yield
    finally:
        ray.shutdown()


def _rows(out: Path) -> dict[str, dict[str, Any]]:
    rows = {}
    for row in iter_rows(out / "results.jsonl"):
        row.pop("timings_ms", None)
        row.pop("scan_id", None)  # each results folder records its own scans
        assert row["key"] not in rows
        rows[row["key"]] = row
    return rows


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_ray_engine_gives_the_local_results(
    local_ray: None,
    tmp_path: Path,
    config: Callable[..., BatchConfig],
    add_to_bank: Callable[..., list[int]],
    serial: SerialEngine,
) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    for n in range(4):
        (root / f"{n}.jpg").write_bytes(image(50 + n))
    (root / "bad.jpg").write_text("nope")
    write_zip(root / "a.zip", {"z.jpg": image(60), "../x.jpg": image(61)})
    write_tar(root / "b.tar.gz", {"t.jpg": image(62)}, mode="w:gz")  # bytes sent inline
    write_export(root / "tg", seeds=(63,))
    add_to_bank("reported", image(51), image(60), image(62), image(63))
    run_batch(config(root, out=tmp_path / "local", previews=True), engine=serial)
    summary = run_batch(config(root, out=tmp_path / "ray", engine="ray", workers=2, previews=True))
    assert summary.stats.engine == "ray" and summary.complete
    local, on_ray = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert local == on_ray
    assert sum(1 for r in on_ray.values() if r.get("matches")) == 4
    assert (tmp_path / "ray" / "previews.jsonl").read_text().count("data:image/jpeg") == 4
    assert ray.is_initialized()  # the engine leaves a Ray it did not start running
