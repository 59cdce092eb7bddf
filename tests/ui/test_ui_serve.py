"""``rempart serve`` behind a TLS proxy: ``X-Forwarded-Proto: https`` makes the UI's cookies
``Secure`` only when it comes from a proxy named by ``--forwarded-allow-ips`` (or
``FORWARDED_ALLOW_IPS``; uvicorn trusts the same host by default)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

REMPART = str(Path(sys.executable).parent / "rempart")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _login_cookie(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Start ``rempart serve *args``, fetch the login form as if through a TLS proxy, and
    return the login cookie's Set-Cookie header."""
    port = _free_port()
    full_env = dict(
        os.environ,
        REMPART_DATABASE_URL=f"sqlite:///{tmp_path / 'rempart.db'}",
        REMPART_UI__SESSION_SECRET="serve-test-secret-" + "x" * 16,
    )
    full_env.pop("FORWARDED_ALLOW_IPS", None)
    full_env.update(env or {})
    log = tmp_path / f"serve-{port}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [REMPART, "serve", "--port", str(port), *args],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/status/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        r = httpx.get(f"{url}/ui/login", headers={"X-Forwarded-Proto": "https"})
        assert r.status_code == 200, r.text
        return r.headers["set-cookie"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def test_secure_cookies_follow_the_trusted_proxies(tmp_path: Path) -> None:
    # The proxy is this host (trusted by default): its https counts.
    assert "secure" in _login_cookie(tmp_path).lower()
    # The operator trusts only a proxy on another host: a request from here saying https
    # is not believed.
    untrusted = _login_cookie(tmp_path, "--forwarded-allow-ips", "10.9.9.9")
    assert "rempart_login=" in untrusted and "secure" not in untrusted.lower()
    # the environment variable does the same
    by_env = _login_cookie(tmp_path, env={"FORWARDED_ALLOW_IPS": "10.9.9.9"})
    assert "rempart_login=" in by_env and "secure" not in by_env.lower()
