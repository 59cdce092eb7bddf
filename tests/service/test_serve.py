"""`rempart serve` as a real process: start-up message, workers, and kill -9 mid-import."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REMPART = str(Path(sys.executable).parent / "rempart")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with status {proc.returncode}")
        try:
            if httpx.get(f"{url}/status", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become ready")


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    return dict(
        os.environ,
        REMPART_DATABASE_URL=db_url,
        PYTHONUNBUFFERED="1",
        REMPART_TEST_LOG_DIR=str(tmp_path),
    )


def _start(env: dict[str, str], port: int, workers: int = 1) -> subprocess.Popen[str]:
    # The server's log goes to a file, not a pipe nobody drains (a full pipe blocks it).
    log = open(Path(env["REMPART_TEST_LOG_DIR"]) / f"serve-{port}.log", "a")  # noqa: SIM115
    return subprocess.Popen(
        [REMPART, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
        start_new_session=True,
    )


def _log(env: dict[str, str], port: int) -> str:
    return (Path(env["REMPART_TEST_LOG_DIR"]) / f"serve-{port}.log").read_text()


@pytest.fixture
def server(env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = _free_port()
    proc = _start(env, port, workers=2)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)


def _key(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        [REMPART, "keys", "create", "--scopes", "admin"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = out.stdout.strip()
    assert key.startswith("rk_") and "\n" not in key  # only the key on stdout
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.slow
def test_serve_prints_how_to_start_and_serves_two_workers(server, env) -> None:  # type: ignore[no-untyped-def]
    url, proc = server
    h = _key(env)
    assert httpx.get(f"{url}/status/live").json() == {"status": "alive"}
    assert httpx.post(f"{url}/v1/banks", json={"name": "w"}, headers=h).status_code == 201
    # several requests land on both workers; all see the bank
    for _ in range(10):
        assert httpx.get(f"{url}/v1/banks/w", headers=h).status_code == 200
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=20)
    err = _log(env, int(url.rsplit(":", 1)[1]))
    assert f"serving on {url}" in err and f"{url}/docs" in err
    assert f"{url}/ui" in err and f"{url}/case" in err
    assert "rempart users create NAME --role admin" in err  # no UI account yet


@pytest.mark.slow
def test_kill_9_during_bulk_import_leaves_no_partial_rows(env) -> None:  # type: ignore[no-untyped-def]
    """A bulk import is one transaction: after kill -9 and a restart, the bank holds either
    nothing of it or all of it, and every import committed before is intact."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(env, port)
    _wait_ready(url, proc)
    h = _key(env)
    httpx.post(f"{url}/v1/banks", json={"name": "big"}, headers=h).raise_for_status()
    first = "\n".join(f'{{"md5": "{i:032x}"}}' for i in range(1, 1001)) + "\n"
    r = httpx.post(f"{url}/v1/banks/big/import?format=hma", content=first, headers=h, timeout=60)
    assert r.json()["added"] == 1000
    n = 400_000
    big = "".join(f'{{"md5": "{i:032x}"}}\n' for i in range(10**6, 10**6 + n)).encode()
    progress: list[int] = []

    def send() -> None:
        try:
            with httpx.stream(
                "POST",
                f"{url}/v1/banks/big/import?format=hma",
                content=big,
                headers={**h, "Accept": "application/x-ndjson"},
                timeout=120,
            ) as resp:
                for line in resp.iter_lines():
                    if '"progress"' in line:
                        progress.append(int(line.split(":")[1].rstrip("}")))
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=send)
    t.start()
    deadline = time.monotonic() + 90
    while not progress and time.monotonic() < deadline:
        time.sleep(0.05)
    assert progress, "the import never reported progress"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    t.join(timeout=30)
    proc = _start(env, port)
    try:
        _wait_ready(url, proc)
        entries = httpx.get(f"{url}/v1/banks/big", headers=h).json()["entries"]
        assert entries.get("md5") in (1000, 1000 + n), entries
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
