"""`rempart cases ...` and `rempart protect --submit`: on the local store, and against a
real `rempart serve` process. Plus the scanner finding a case's enrolled face."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from rempart.cli import app
from rempart.examples import jpeg_bytes, synthetic_photo

REMPART = str(Path(sys.executable).parent / "rempart")
FACES = Path(os.environ.get("REMPART_FACES_DIR", "/work/shared/data/faces"))
FACE_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


def _photos(tmp_path: Path) -> Path:
    d = tmp_path / "my photos"
    d.mkdir()
    (d / "beach-maria.jpg").write_bytes(jpeg_bytes(synthetic_photo(41)))
    return d


def _run(*args: str) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.stderr
    out: dict = json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[type-arg]
    return out


def test_submit_status_withdraw_on_the_local_store(db_url: str, tmp_path: Path) -> None:
    sub = tmp_path / "sub.json"
    _run("protect", str(_photos(tmp_path)), "-o", str(sub))
    opened = _run("cases", "submit", str(sub), "--database-url", db_url)
    assert set(opened) >= {"case", "pin"} and opened["entries"] == 3
    status = _run(
        "cases", "status", opened["case"], "--pin", opened["pin"], "--database-url", db_url
    )
    assert status["status"] == "open" and status["matches"] == 0
    shown = _run("cases", "show", opened["case"], "--database-url", db_url)
    assert shown["entries"] == 3 and shown["alerts"] == [] and "pin" not in shown
    wrong = CliRunner().invoke(
        app, ["cases", "status", opened["case"], "--pin", "1", "--database-url", db_url]
    )
    assert wrong.exit_code == 2 and "wrong PIN" in wrong.stderr
    done = _run(
        "cases", "withdraw", opened["case"], "--pin", opened["pin"], "--database-url", db_url
    )
    assert done["status"] == "withdrawn" and done["entries_removed"] == 3
    refused = CliRunner().invoke(
        app, ["bank", "create", "x", "--tenant", "_cases", "--database-url", db_url]
    )
    assert refused.exit_code == 2 and "reserved" in refused.stderr
    refused = CliRunner().invoke(
        app, ["keys", "create", "--tenant", "_cases", "--database-url", db_url]
    )
    assert refused.exit_code == 2 and "reserved" in refused.stderr


def test_keygen_writes_a_usable_pair(tmp_path: Path) -> None:
    from rempart.cases import key_fingerprint

    out = _run(
        "cases", "keygen", "--private", str(tmp_path / "k"), "--public", str(tmp_path / "k.pub")
    )
    public = bytes.fromhex((tmp_path / "k.pub").read_text().strip())
    assert out["fingerprint"] == key_fingerprint(public)
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    again = CliRunner().invoke(
        app, ["cases", "keygen", "--private", str(tmp_path / "k"), "--public", str(tmp_path / "p")]
    )
    assert again.exit_code == 2 and "exists" in again.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _copy_of_her_photo() -> bytes:
    """What a platform would see: her photo resized and recompressed."""
    img = synthetic_photo(41)
    return jpeg_bytes(img.resize((img.width * 2 // 3, img.height * 2 // 3)), quality=60)


def _scans_on_both_workers(
    url: str, key: dict[str, str], data: bytes, start: float
) -> list[tuple[int, bool, float]]:
    """Scan ``data`` on fresh connections, a few at once so the kernel hands them to
    different workers. Each connection first asks /status which worker it reached (the same
    connection stays with the same worker), and again after the scan to be sure. Returns
    ``(worker pid, matched, seconds from start to the answer)`` per scan."""
    out: list[tuple[int, bool, float]] = []
    lock = threading.Lock()

    def one() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            pid = client.get("/status").json()["worker"]
            resp = client.post("/v1/scan", headers=key, content=data)
            done = time.monotonic() - start
            assert resp.status_code == 200, resp.text
            assert client.get("/status").json()["worker"] == pid
        with lock:
            out.append((pid, bool(resp.json()["matches"]), done))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == len(threads)
    return out


@pytest.mark.slow
def test_protect_submit_and_cli_against_a_real_server(db_url: str, tmp_path: Path) -> None:
    """Against `rempart serve --workers 2`: she protects and submits with an e-mail address
    and a webhook; a platform's scans of a resized, recompressed copy match in both workers;
    she is alerted by both; she withdraws; within 1 s of that (one clock for both workers)
    neither worker matches the copy any more."""
    from aiosmtpd.controller import Controller

    from rempart.cases.service_key import write_keypair
    from rempart.service.webhooks import SIGNATURE_HEADER, verify_signature

    mails: list[tuple[list[str], bytes]] = []

    class Mailbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mails.append((list(envelope.rcpt_tos), envelope.original_content))
            return "250 OK"

    hooks: list[tuple[dict[str, str], bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hooks.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    smtp = Controller(Mailbox(), hostname="127.0.0.1", port=_free_port())
    smtp.start()
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{receiver.server_address[1]}/alerts"
    write_keypair(tmp_path / "service.key", tmp_path / "service.pub")

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        REMPART_DATABASE_URL=db_url,
        REMPART_CASES__SERVICE_KEY_FILE=str(tmp_path / "service.key"),
        REMPART_CASES__PUBLIC_URL=url,
        REMPART_SMTP__HOST="127.0.0.1",
        REMPART_SMTP__PORT=str(smtp.port),
        REMPART_SMTP__SENDER="alerts@rempart.test",
        # Her webhook receiver is on this machine (a real one would be public).
        REMPART_SERVICE__EGRESS_ALLOW_PRIVATE="true",
    )
    log = open(tmp_path / "serve.log", "a")  # noqa: SIM115
    proc = subprocess.Popen(
        [REMPART, "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/status", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)

        # Without --submit, a contact has nowhere to go: refused, and said why.
        refused = CliRunner().invoke(
            app, ["protect", str(tmp_path), "--email", "her@example.org", "-o", "x.json"]
        )
        assert refused.exit_code == 2 and "--submit" in refused.stderr

        # 1. She protects her photo and submits it, with where to alert her.
        result = CliRunner().invoke(
            app,
            [
                "protect", str(_photos(tmp_path)), "-o", str(tmp_path / "s.json"),
                "--submit", url, "--email", "her@example.org", "--webhook", hook_url,
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        sending = result.stderr.split("Sending")[1]
        assert "and nothing else" in sending and "maria" not in sending
        assert "her@example.org" in sending and hook_url in sending  # she sees it all
        opened = json.loads(result.stdout)["case"]
        assert opened["webhook_secret"].startswith("whsec_")
        assert _run("cases", "show", opened["case"], "--database-url", db_url)["has_contact"]

        # 2. A platform scans a resized, recompressed copy until both workers match it.
        key = {"Authorization": "Bearer " + _key_for("pics", db_url)}
        copy = _copy_of_her_photo()
        matched: set[int] = set()
        seen: set[int] = set()
        deadline = time.monotonic() + 20
        while len(matched) < 2:
            assert time.monotonic() < deadline, f"workers {seen}, matched in {matched}"
            for pid, hit, _ in _scans_on_both_workers(url, key, copy, time.monotonic()):
                seen.add(pid)
                if hit:
                    matched.add(pid)
        assert len(seen) == 2  # two workers, and each has her hashes

        # 3. She is alerted by e-mail and by her webhook (the service's own alert job).
        deadline = time.monotonic() + 30
        while not (mails and hooks) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert mails and hooks, (mails, hooks, (tmp_path / "serve.log").read_text()[-2000:])
        to, raw = mails[0]
        assert to == ["her@example.org"] and opened["case"].encode() in raw
        assert f"{url}/case".encode() in raw
        headers, body = hooks[0]
        sig = {k.lower(): v for k, v in headers.items()}[SIGNATURE_HEADER.lower()]
        verify_signature(opened["webhook_secret"], sig, body)
        assert json.loads(body)["case"] == opened["case"]
        status = _run("cases", "status", opened["case"], "--pin", opened["pin"], "--url", url)
        assert status["status"] == "open" and status["matches"] >= 1

        wrong = CliRunner().invoke(
            app, ["cases", "withdraw", opened["case"], "--pin", "0", "--url", url]
        )
        assert wrong.exit_code == 2 and "wrong PIN" in wrong.stderr

        # 4. She withdraws. From that moment, one clock: within 1 s neither worker matches.
        done = _run("cases", "withdraw", opened["case"], "--pin", opened["pin"], "--url", url)
        start = time.monotonic()
        assert done["status"] == "withdrawn"
        cleared: dict[int, float] = {}
        while set(cleared) != matched and time.monotonic() - start < 1.0:
            for pid, hit, at in _scans_on_both_workers(url, key, copy, start):
                if hit:
                    assert pid not in cleared, f"worker {pid} matched again after it stopped"
                elif pid not in cleared:
                    cleared[pid] = at
        assert set(cleared) == matched, f"still matching 1 s after withdrawal: {cleared}"
        assert max(cleared.values()) < 1.0, cleared
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
        smtp.stop()
        receiver.shutdown()
        receiver.server_close()


def _key_for(tenant: str, db_url: str) -> str:
    result = CliRunner().invoke(
        app, ["keys", "create", "--tenant", tenant, "--scopes", "scan", "--database-url", db_url]
    )
    assert result.exit_code == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("rk_")
    return key


def test_scanner_finds_a_case_face_for_every_tenant(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("dlib", reason="dlib-bin is not installed")
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        if not (FACES / name).is_file():
            pytest.skip(f"reference portrait {name} not found in {FACES}")
    from rempart.cases import build_submission, load_submission
    from rempart.cases.registry import CaseRepository
    from rempart.cases.service_key import write_keypair
    from rempart.evidence.collect import parse_signals
    from rempart.scan import Scanner
    from rempart.settings import MediaLimits, load_settings

    write_keypair(tmp_path / "k", tmp_path / "k.pub")
    public = bytes.fromhex((tmp_path / "k.pub").read_text().strip())
    settings = load_settings(database_url=store.url, face_template_key=FACE_KEY)
    settings.cases = settings.cases.model_copy(update={"service_key_file": tmp_path / "k"})
    sub = build_submission(
        [FACES / "obama.jpg"], limits=MediaLimits(), enrol_face=True, service_public_key=public
    )
    new = CaseRepository(store, settings).submit(load_submission(sub.to_json()))
    assert new.face_templates == 1
    scanner = Scanner(store, settings)
    same = scanner.scan_bytes(
        (FACES / "obama2.jpg").read_bytes(), tenant="acme", signals=parse_signals("faces")
    )
    leads = [m for f in same.evidence.parts["faces"] for m in f.get("matches", [])]
    assert [m["list"] for m in leads] == ["cases"] and leads[0]["person"].startswith("p_")
    assert new.number not in json.dumps(same.to_dict())
    other = scanner.scan_bytes(
        (FACES / "biden.jpg").read_bytes(), tenant="acme", signals=parse_signals("faces")
    )
    assert not [m for f in other.evidence.parts["faces"] for m in f.get("matches", [])]
