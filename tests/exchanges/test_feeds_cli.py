"""`rempart feeds add|list|sync|remove` against a real list served on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from rempart.cli import app
from rempart.store import Store

PDQ_A = "f" * 64
PDQ_B = "0f" * 32


class _List(BaseHTTPRequestHandler):
    lines: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        body = "".join(line + "\n" for line in self.lines).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def list_url() -> Iterator[str]:
    _List.lines = [json.dumps({"signal": "pdq", "value": v}) for v in (PDQ_A, PDQ_B)]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _List)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/list.jsonl"
    server.shutdown()
    server.server_close()


def test_feeds_cli_round_trip(tmp_path: Path, list_url: str) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> list[dict[str, Any]]:
        result = runner.invoke(app, [*args, "--database-url", db], catch_exceptions=False)
        assert result.exit_code == code, (result.stdout, result.stderr)
        return [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]

    run("bank", "create", "reported")
    [feed] = run("feeds", "add", "ngo-list", list_url, "--bank", "reported", "--interval", "600")
    assert feed["kind"] == "jsonl" and feed["interval_s"] == 600
    [listed] = run("feeds", "list")
    assert listed["name"] == "ngo-list" and listed["last_run_at"] is None
    [report] = run("feeds", "sync", str(feed["id"]))
    assert report["added"] == 2
    store = Store.open(db)
    assert store.get_bank("reported").counts["pdq"] == 2
    # The list drops a hash: the next run withdraws it.
    _List.lines = _List.lines[:1]
    [report] = run("feeds", "sync", str(feed["id"]))
    assert report["removed"] == 1
    [gone] = run("feeds", "remove", str(feed["id"]))
    assert gone == {"deleted": "ngo-list", "entries_removed": 1}
    assert store.get_bank("reported").counts.get("pdq", 0) == 0
    assert run("feeds", "list") == []


def test_feeds_cli_errors_are_clear(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    runner = CliRunner()
    runner.invoke(app, ["bank", "create", "b", "--database-url", db])
    bad = runner.invoke(
        app,
        [
            "feeds",
            "add",
            "f",
            "http://x.example/l",
            "--bank",
            "b",
            "--kind",
            "rss",
            "--database-url",
            db,
        ],
    )
    assert bad.exit_code == 2 and "error:" in bad.stderr
    missing = runner.invoke(app, ["feeds", "sync", "99", "--database-url", db])
    assert missing.exit_code == 2 and "99" in missing.stderr
    config = runner.invoke(
        app,
        [
            "feeds",
            "add",
            "f",
            "http://x.example/l",
            "--bank",
            "b",
            "--config",
            "novalue",
            "--database-url",
            db,
        ],
    )
    assert config.exit_code == 2 and "KEY=VALUE" in config.stderr
