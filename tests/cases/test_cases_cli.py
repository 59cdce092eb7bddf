"""`rempart cases ...` and `rempart protect --submit`: on the local store, and against a
real `rempart serve` process. Plus the scanner finding a case's enrolled face."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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


@pytest.mark.slow
def test_protect_submit_and_cli_against_a_real_server(db_url: str, tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, REMPART_DATABASE_URL=db_url, REMPART_SERVICE__BACKGROUND_JOBS="false")
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

        result = CliRunner().invoke(
            app,
            ["protect", str(_photos(tmp_path)), "-o", str(tmp_path / "s.json"), "--submit", url],
        )
        assert result.exit_code == 0, result.stderr
        assert (
            "and nothing else" in result.stderr and "maria" not in result.stderr.split("Sending")[1]
        )
        opened = json.loads(result.stdout)["case"]
        status = _run("cases", "status", opened["case"], "--pin", opened["pin"], "--url", url)
        assert status["status"] == "open"
        wrong = CliRunner().invoke(
            app, ["cases", "withdraw", opened["case"], "--pin", "0", "--url", url]
        )
        assert wrong.exit_code == 2 and "wrong PIN" in wrong.stderr
        done = _run("cases", "withdraw", opened["case"], "--pin", opened["pin"], "--url", url)
        assert done["status"] == "withdrawn"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()


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
