"""The egress guard: tenants' URLs cannot make the service reach private addresses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from rempart.egress import EgressError, check_url, http_client, is_public
from rempart.exchanges.feeds import FeedError, add_feed, sync_feed
from rempart.service.webhooks import WebhookDispatcher
from rempart.store.webhooks import WebhookRepository


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"signal": "pdq", "value": "' + b"f" * 64 + b'"}\n'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def local_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fd00::1", False),
        ("fe80::1%eth0", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:8.8.8.8", True),
    ],
)
def test_is_public(address: str, public: bool) -> None:
    assert is_public(address) is public


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5432/",
        "http://localhost/hook",
        "https://api.localhost/x",
        "http://[::1]:8080/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/",
        "http://LOCALHOST./",
    ],
)
def test_check_url_refuses_local_destinations(url: str) -> None:
    with pytest.raises(EgressError) as info:
        check_url(url)
    assert info.value.code == "forbidden_destination"
    assert "EGRESS_ALLOW_PRIVATE" in (info.value.hint or "")
    check_url(url, allow_private=True)  # the operator's choice


def test_check_url_lets_names_through_for_the_connection_check() -> None:
    # Names are judged when connecting (they may not resolve from here, or may change).
    check_url("https://hooks.example.org/rempart")
    check_url("http://8.8.8.8/")


def test_guarded_client_refuses_to_connect_to_loopback(local_url: str) -> None:
    with (
        http_client(allow_private=False, timeout=5) as guarded,
        pytest.raises(httpx.ConnectError, match="not a public address"),
    ):
        guarded.get(local_url)
    # A name that resolves to loopback is refused the same way (the rebinding case).
    port = local_url.rsplit(":", 1)[1]
    with (
        http_client(allow_private=False, timeout=5) as guarded,
        pytest.raises(httpx.ConnectError, match="not a public address"),
    ):
        guarded.get(f"http://localhost:{port}/")
    with http_client(allow_private=True, timeout=5) as open_client:
        assert open_client.get(local_url).status_code == 200


def test_dispatcher_does_not_deliver_to_private_addresses(store: Any, local_url: str) -> None:
    repo = WebhookRepository(store)
    repo.create("acme", f"{local_url}/hook", ["match"])
    repo.enqueue("acme", "match", {"scan_id": "s1"})
    delivery = repo.claim_due(datetime.now(UTC), 1)[0]
    guarded = WebhookDispatcher(store, allow_private=False)
    try:
        assert guarded.send_one(delivery) is False
    finally:
        guarded.stop()
    failed = repo.get_delivery("acme", delivery.id)
    assert failed.status == "pending" and "not a public address" in (failed.last_error or "")


def test_feed_sync_refuses_private_address_unless_allowed(store: Any, local_url: str) -> None:
    store.create_bank("reported")
    feed = add_feed(store, bank="reported", name="f", kind="jsonl", url=f"{local_url}/l.jsonl")
    with pytest.raises(FeedError, match="not a public address"):
        sync_feed(store, feed.id, allow_private=False)
    assert store.get_bank("reported").counts.get("pdq", 0) == 0
    assert sync_feed(store, feed.id).added == 1
