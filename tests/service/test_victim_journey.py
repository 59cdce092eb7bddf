"""The victim's journey end to end, as issue 5 asks, through the doors people use:

her `rempart protect` (CLI, offline) -> the submission goes to the service -> a platform scans
a resized, recompressed copy -> the case has an alert -> the operator's `rempart evidence`
package verifies with `rempart evidence verify` -> `rempart notices create` makes a notice ->
she withdraws -> the same scan no longer matches, in the worker she withdrew through and in
another worker (a second app with its own store connection and index), each within 1 s.
Images are drawn by Rempart; nothing here is intimate imagery.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rempart.cases.service_key import write_keypair
from rempart.cases.signing import generate_key, write_key
from rempart.cli import app
from rempart.examples import jpeg_bytes, synthetic_photo
from rempart.store.notices import NoticeRepository


def _copy(seed: int) -> bytes:
    img = synthetic_photo(seed)
    return jpeg_bytes(img.resize((img.width * 2 // 3, img.height * 2 // 3)), quality=60)


def _matches(service: Any, key: dict[str, str], data: bytes) -> list[dict[str, Any]]:
    resp = service.client.post(
        "/v1/scan", headers=key, content=data, params={"url": "https://pics.example/p/7"}
    )
    assert resp.status_code == 200, resp.text
    found: list[dict[str, Any]] = resp.json()["matches"]
    return found


def _until(
    check: Callable[[], bool], within_s: float, what: str, start: float | None = None
) -> float:
    """Seconds from ``start`` (default: now) until ``check()`` holds, at most ``within_s``."""
    start = time.monotonic() if start is None else start
    while not check():
        assert time.monotonic() - start < within_s, f"{what} took over {within_s} s"
        time.sleep(0.02)
    return time.monotonic() - start


def test_protect_submit_match_alert_evidence_notice_withdraw(
    make_service: Callable[..., Any],
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_keypair(tmp_path / "service.key", tmp_path / "service.pub")
    signing_pub = write_key(generate_key(), tmp_path / "evidence.pem")
    monkeypatch.setenv("REMPART_DATABASE_URL", db_url)
    monkeypatch.setenv("REMPART_EVIDENCE__SIGNING_KEY_FILE", str(tmp_path / "evidence.pem"))
    monkeypatch.setenv("REMPART_CASES__SERVICE_KEY_FILE", str(tmp_path / "service.key"))
    settings = {"cases": {"service_key_file": str(tmp_path / "service.key")}}
    worker1 = make_service(**settings)
    worker2 = make_service(**settings)  # another worker: its own store connection and index
    cli = CliRunner()

    def rempart(*args: str, code: int = 0) -> str:
        result = cli.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result.stdout

    # 1. On her device: hash her photo. Only hashes go into the submission.
    mine = tmp_path / "my-photos"
    mine.mkdir()
    (mine / "IMG_0007.jpg").write_bytes(jpeg_bytes(synthetic_photo(7)))
    rempart("protect", str(mine), "-o", str(tmp_path / "submission.json"))
    submission = (tmp_path / "submission.json").read_text()
    assert "IMG_0007" not in submission and "my-photos" not in submission

    # 2. She submits it; the service answers with a case number and a PIN.
    opened = worker1.client.post("/v1/cases", content=submission)
    assert opened.status_code == 201, opened.text
    number, pin = opened.json()["case"], opened.json()["pin"]

    # 3. A platform scans a resized, recompressed copy: it matches bank `cases`, and the
    #    platform learns nothing about whose case it is.
    platform = worker2.key("scan", tenant="pics")
    _until(lambda: bool(_matches(worker2, platform, _copy(7))), 1.0, "the case reaching worker 2")
    [match] = _matches(worker2, platform, _copy(7))
    assert match["bank"] == "cases" and match["signal"] == "pdq"
    assert number not in json.dumps(match)
    assert worker2.ctx.flush()

    # 4. Her case has an alert: which platform and when, never the content.
    status = worker1.client.post(f"/v1/cases/{number}/status", json={"pin": pin})
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["matches"] >= 1, body
    assert "pics" in json.dumps(body)
    assert _copy(7)[:64].hex() not in json.dumps(body)

    # 5. The operator builds the signed evidence package; it verifies, against the pinned key.
    package = tmp_path / "evidence.zip"
    rempart("evidence", number, "-o", str(package))
    rempart("evidence", "verify", str(package), "--key", str(signing_pub))

    # 6. A takedown notice for the platform, tracked with its deadline.
    out = rempart(
        "notices", "create", "--case", number, "--kind", "takeitdown", "--lang", "fr",
        "--name", "Camille D.", "--email", "camille@example.org",
        "--recipient", "https://pics.example/report", "--no-send",
    )  # fmt: skip
    notice = json.loads(out.splitlines()[0])
    notices = notice.get("notices", [notice])
    # --no-send to a form: recorded as to be sent by hand, never as sent.
    assert notices and all(n["status"] == "to_send" and n["deadline"] for n in notices)
    assert "https://pics.example/p/7" in notices[0]["text"]

    # 7. She withdraws. Her hashes stop matching in both workers within a second.
    done = worker1.client.post(f"/v1/cases/{number}/withdraw", json={"pin": pin})
    assert done.status_code == 200, done.text
    # One clock for both workers: each must have stopped within 1 s of the withdrawal.
    start = time.monotonic()
    for n, worker in enumerate((worker1, worker2), 1):
        _until(
            lambda w=worker: not _matches(w, platform, _copy(7)),
            1.0,
            f"withdrawal in worker {n}",
            start=start,
        )
    # Her notices are erased (they held her name and contact details); her number and PIN
    # no longer open anything.
    assert NoticeRepository(worker1.store).list(case_number=number) == []
    again = worker1.client.post(f"/v1/cases/{number}/status", json={"pin": pin})
    assert again.status_code in (403, 404)
