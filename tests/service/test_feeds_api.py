"""Feeds through the API: a JSONL list served on loopback, synced into a bank."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

LIST: dict[str, bytes] = {"body": b""}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(len(LIST["body"])))
        self.end_headers()
        self.wfile.write(LIST["body"])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def feed_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/list.jsonl"
    server.shutdown()


def test_feed_crud_and_sync(make_service, feed_url: str) -> None:  # type: ignore[no-untyped-def]
    # The feed server is on loopback, which the service refuses unless the operator allows
    # private destinations (tests/test_egress.py covers the refusal).
    service = make_service(service={"egress_allow_private": True})
    c, h = service.client, service.key("admin")
    md5s = [f"{i:032x}" for i in range(1, 4)]
    LIST["body"] = "".join(f'{{"signal": "md5", "value": "{m}"}}\n' for m in md5s).encode()
    c.post("/v1/banks", json={"name": "fed"}, headers=h)
    r = c.post(
        "/v1/feeds",
        headers=h,
        json={
            "bank": "fed",
            "name": "partner",
            "kind": "jsonl",
            "url": feed_url,
            "interval_s": 3600,
        },
    )
    assert r.status_code == 201, r.text
    feed_id = r.json()["id"]
    report = c.post(f"/v1/feeds/{feed_id}/sync", headers=h).json()
    assert report["added"] == 3
    LIST["body"] = LIST["body"].split(b"\n", 1)[1]  # the first hash left the list
    report = c.post(f"/v1/feeds/{feed_id}/sync", headers=h).json()
    assert report["removed"] == 1 and report["added"] == 0
    assert c.get("/v1/banks/fed", headers=h).json()["entries"] == {"md5": 2}
    assert [f["name"] for f in c.get("/v1/feeds", headers=h).json()["feeds"]] == ["partner"]
    other = service.key("admin", tenant="other")
    assert c.get(f"/v1/feeds/{feed_id}", headers=other).status_code == 404
    gone = c.delete(f"/v1/feeds/{feed_id}", headers=h).json()
    assert gone == {"deleted": "partner", "entries_removed": 2}
    bad = c.post(
        "/v1/feeds",
        headers=h,
        json={"bank": "fed", "name": "x", "kind": "stopncii", "url": feed_url},
    )
    assert bad.status_code in (400, 422) and bad.json()["code"]
