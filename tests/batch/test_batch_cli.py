"""`rempart scan PATH --out DIR`: the command line's door into a batch run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import image, write_zip
from rempart.cli import app


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REMPART_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.jpg").write_bytes(image(31))
    (root / "b.jpg").write_bytes(image(32))
    (root / "bad.jpg").write_text("not an image")
    write_zip(root / "z.zip", {"c.jpg": image(33)})
    return root


def _invoke(*args: str) -> tuple[int, list[dict], str]:  # type: ignore[type-arg]
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, lines, result.stderr


def test_scan_out_runs_a_batch_and_resumes(env: Path, tmp_path: Path) -> None:
    code, _, _ = _invoke("bank", "create", "reported")
    assert code == 0
    assert _invoke("bank", "add", "reported", str(env / "a.jpg"))[0] == 0
    out = tmp_path / "out"
    code, lines, stderr = _invoke(
        "scan", str(env), "--out", str(out), "--signals", "hashes", "--bank", "reported",
        "--workers", "1",
    )  # fmt: skip
    assert code == 1, stderr  # one item could not be scanned
    (summary,) = lines
    assert summary["complete"] is True and summary["items"] == 4 and summary["done"] == 4
    assert summary["matched"] == 1 and summary["items_by_bank"] == {"reported": 1}
    assert summary["error_codes"] == {"unsupported_format": 1}
    assert summary["engine"] == "local" and summary["workers"] == 1
    assert "could not be scanned" in stderr
    for name in ("results.jsonl", "results.csv", "report.html", "run.json"):
        assert (out / name).is_file(), name
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert {r["source"]["kind"] for r in rows} == {"file", "zip"}
    # Again: nothing left to do.
    code, (again,), _ = _invoke(
        "scan", str(env), "--out", str(out), "--signals", "hashes", "--bank", "reported",
        "--workers", "1",
    )  # fmt: skip
    assert again["skipped_done"] == 4 and again["scanned_now"] == 0
    # Other options into the same folder: a clear error, exit 2.
    code, _, stderr = _invoke("scan", str(env), "--out", str(out), "--signals", "hashes")
    assert code == 2 and "other options" in stderr


def test_scan_out_usage_errors(env: Path, tmp_path: Path) -> None:
    code, _, stderr = _invoke("scan", str(env), "--out", str(tmp_path / "o"), "--engine", "spark")
    assert code == 2 and "unknown engine" in stderr
    code, _, stderr = _invoke("scan", str(env), "--out", str(tmp_path / "o"), "--bank", "nope")
    assert code == 2 and "no bank called 'nope'" in stderr
    code, _, stderr = _invoke("scan", str(env), "--out", str(tmp_path / "o"), "--workers", "0")
    assert code == 2 and "--workers" in stderr


def test_scan_without_out_is_unchanged(env: Path) -> None:
    code, lines, _ = _invoke("scan", "--signals", "hashes", str(env / "a.jpg"), str(env / "z.zip"))
    assert code == 1  # a ZIP is not an image for the one-file-at-a-time scan
    assert lines[0]["path"] == str(env / "a.jpg") and "verdict" in lines[0]
    assert lines[1]["error"]["code"] == "unsupported_format"
