"""From a batch scan to evidence: a Telegram export scanned with `rempart scan --out`, its
flagged photos recorded as scans with where they were posted, packaged with `rempart
evidence SCAN_ID` (and with the case's own package when a photo is one of her images), and
the packages verified. All through the command line, on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import image, write_export
from rempart.batch import BatchConfig, iter_rows, run_batch
from rempart.cases import build_submission, load_submission
from rempart.cases.registry import CaseRepository
from rempart.cli import app
from rempart.settings import MediaLimits, load_settings
from rempart.store import Store
from rempart.store.scans import ScanRepository


def _invoke(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, lines, result.stderr


def _submit_case(db_url: str, folder: Path, *datas: bytes) -> str:
    """A victim's case opened for real (her images hashed on her side, as `rempart protect`
    does); its number."""
    folder.mkdir()
    for n, data in enumerate(datas):
        (folder / f"{n}.jpg").write_bytes(data)
    submission = load_submission(build_submission([folder], limits=MediaLimits()).to_json())
    with Store.open(db_url) as store:
        return CaseRepository(store, load_settings(database_url=db_url)).submit(submission).number


def _manifest(package: Path) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(package.read_bytes())) as zf:
        return json.loads(zf.read("manifest.json"))  # type: ignore[no-any-return]


def test_telegram_export_to_verified_evidence_with_provenance(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMPART_DATABASE_URL", db_url)
    monkeypatch.setenv("REMPART_EVIDENCE__SIGNING_KEY_FILE", str(tmp_path / "sign.pem"))
    assert _invoke("evidence", "keygen")[0] == 0
    export = write_export(tmp_path / "corpus" / "export", seeds=(16, 17))
    assert _invoke("bank", "create", "reported")[0] == 0
    (tmp_path / "reported.jpg").write_bytes(image(17))
    assert _invoke("bank", "add", "reported", str(tmp_path / "reported.jpg"))[0] == 0
    number = _submit_case(db_url, tmp_path / "hers", image(16))

    out = tmp_path / "out"
    code, (summary,), stderr = _invoke(
        "scan", str(tmp_path / "corpus"), "--out", str(out), "--signals", "hashes",
        "--workers", "1",
    )  # fmt: skip
    assert code == 1, stderr  # the export names a video it does not hold
    assert summary["matched"] == 2
    rows = {r["source"].get("message_id"): r for r in iter_rows(out / "results.jsonl")}
    reported, hers = rows[3], rows[2]
    assert reported["matches"][0]["bank"] == "reported" and reported["scan_id"]
    assert hers["matches"][0]["bank"] == "cases" and hers["scan_id"]
    assert "scan_id" not in rows[10]  # an error row is not a scan
    with (out / "results.csv").open(encoding="utf-8") as f:
        assert reported["scan_id"] in f.read()

    # rempart evidence SCAN_ID: where it was posted, signed, verified.
    package = tmp_path / "reported.zip"
    code, (built,), stderr = _invoke("evidence", reported["scan_id"], "-o", str(package))
    assert code == 0, stderr
    assert built["items"] == 1
    (item,) = _manifest(package)["items"]
    found = item["found"]
    assert found["kind"] == "telegram" and found["chat"] == "Gallery"
    assert found["chat_id"] == "1234567" and found["message_id"] == "3"
    assert found["sender"] == "nudify_bot" and found["sender_id"] == "user777"
    assert found["date"] == "2020-10-20T12:03:00"
    assert found["path"] == f"{export.root}/photos/photo_3@20-10-2020_12-00-00.jpg"
    assert found["content_id"] == "1234567/3" and found["platform"] == "default"
    assert item["hashes"]["sha256"] == reported["hashes"]["sha256"]
    assert item["matches"][0]["bank"] == "reported"
    code, (verdict,), _ = _invoke("evidence", "verify", str(package), "--json")
    assert code == 0 and verdict["ok"] is True
    # The readable report says where it was posted too, not only the manifest.
    with zipfile.ZipFile(package) as zf:
        report = zf.read("report.html").decode("utf-8")
    assert "Found in:" in report
    assert "chat: Gallery · chat id: 1234567 · message: 3 · sender: nudify_bot" in report

    # Her case: the batch scan raised its alert, so the case's package holds the photo.
    case_package = tmp_path / "case.zip"
    code, (built,), stderr = _invoke("evidence", number, "-o", str(case_package))
    assert code == 0, stderr
    manifest = _manifest(case_package)
    assert manifest["case"]["number"] == number
    (item,) = manifest["items"]
    assert item["scan_id"] == hers["scan_id"] and item["alerts"]
    assert item["found"]["message_id"] == "2" and item["found"]["sender"] == "nudify_bot"
    assert _invoke("evidence", "verify", str(case_package), "--json")[1][0]["ok"] is True

    # Resumed or re-run, nothing is recorded twice.
    assert _invoke("scan", str(tmp_path / "corpus"), "--out", str(out), "--signals", "hashes",
                   "--workers", "1")[1][0]["scanned_now"] == 0  # fmt: skip
    with Store.open(db_url) as store:
        for row in (reported, hers):
            assert ScanRepository(store).get("default", row["scan_id"]).result["source"]


def test_a_record_made_before_an_interruption_is_found_again(
    tmp_path: Path, settings: Any, add_to_bank: Any, serial: Any
) -> None:
    """The scan id of an item derives from the results folder and the item: recording it
    again (a run killed between recording and writing its row) finds the first record."""
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.jpg").write_bytes(image(5))
    add_to_bank("reported", image(5))
    out = tmp_path / "out"
    run_batch(BatchConfig([root], out, settings), engine=serial)
    (row,) = list(iter_rows(out / "results.jsonl"))
    # The row is lost, as if the process died right after recording the scan.
    (out / "results.jsonl").write_text("", encoding="utf-8")
    run_batch(BatchConfig([root], out, settings), engine=serial)
    (again,) = list(iter_rows(out / "results.jsonl"))
    assert again["scan_id"] == row["scan_id"]
    with Store.open(settings.database_url) as store:
        assert ScanRepository(store).get("default", row["scan_id"]).result["matches"]
    # --no-record: no scan id, nothing stored.
    run_batch(BatchConfig([root], tmp_path / "o2", settings, record=False), engine=serial)
    (plain,) = list(iter_rows(tmp_path / "o2" / "results.jsonl"))
    assert "scan_id" not in plain and plain["matches"]
