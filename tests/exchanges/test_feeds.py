"""URL feeds, the feed repository and the scheduler, against a real local HTTP server and a
real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rempart.errors import ConflictError, NotFoundError, RempartError
from rempart.exchanges.feeds import (
    FeedScheduler,
    add_feed,
    delete_feed,
    sync_feed,
    update_feed,
    validate_config,
)
from rempart.store import NewEntry, Store
from rempart.store.feeds import FeedRepository, LeaseLostError, redact_url

Hashes = Callable[..., list[str]]
SECRET = "Bearer s3cret-feed-token"

# -- a tiny HTTP server ---------------------------------------------------------------------

Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


@dataclass
class FakeServer:
    """``routes[path](headers) -> (status, headers, body)``; every request is logged."""

    routes: dict[str, Callable[[dict[str, str]], Reply]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    httpd: Any = None

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def reset(self) -> None:
        self.routes.clear()
        self.seen.clear()


def _serve() -> Iterator[FakeServer]:
    server = FakeServer()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            headers = {k.lower(): v for k, v in self.headers.items()}
            server.seen.append(Seen(path, headers))
            route = server.routes.get(path)
            status, extra, body = route(headers) if route else (404, {}, b"not found")
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status != 304:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.httpd.daemon_threads = True
    # A client that hangs up early (the size limit test) is not a server error.
    server.httpd.handle_error = lambda request, address: None
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture(scope="module")
def _server() -> Iterator[FakeServer]:
    yield from _serve()


@pytest.fixture(scope="module")
def _other_server() -> Iterator[FakeServer]:
    yield from _serve()


@pytest.fixture
def server(_server: FakeServer) -> FakeServer:
    _server.reset()
    return _server


@pytest.fixture
def other(_other_server: FakeServer) -> FakeServer:
    _other_server.reset()
    return _other_server


@dataclass
class ListFeed:
    """A hash list served with an ETag; ``set`` changes it (and the ETag)."""

    body: bytes = b""
    version: int = 0

    def set(self, lines: list[str]) -> None:
        self.body = "".join(line + "\n" for line in lines).encode()
        self.version += 1

    @property
    def etag(self) -> str:
        return f'"v{self.version}"'

    def __call__(self, headers: dict[str, str]) -> Reply:
        if headers.get("if-none-match") == self.etag:
            return 304, {"ETag": self.etag}, b""
        return 200, {"ETag": self.etag, "Content-Type": "application/x-ndjson"}, self.body


def jl(signal: str, value: str, **extra: Any) -> str:
    return json.dumps({"signal": signal, "value": value, **extra})


def bank_hashes(store: Store, bank: str = "b") -> dict[str, str | None]:
    return {e.value: e.source for e in store.iter_entries(bank)}


def snapshot(store: Store, bank: str = "b") -> tuple[list[tuple[str, str, str | None]], int]:
    entries = [(e.signal, e.value, e.source) for e in store.iter_entries(bank)]
    return entries, store.latest_seq()


# -- URL feeds ------------------------------------------------------------------------------


def test_jsonl_feed_mirrors_the_list(store: Store, server: FakeServer, hex_hashes: Hashes) -> None:
    a, b, c, d, manual = hex_hashes(5)
    store.create_bank("b")
    # Already in the bank before the feed lists it: stays the importer's, never removed.
    store.add_entries("b", [NewEntry("pdq", manual, source="hotline")])
    lst = ListFeed()
    lst.set(
        [
            jl("pdq", a, source="ngo-1", tags=["ncii"]),
            jl("pdq", b, quality=90),
            '{"signal": "pdq", "value": "abc"}',  # line 3: malformed hash
            jl("pdq", manual),
            jl("md5", c[:32]),
        ]
    )
    server.routes["/list.jsonl"] = lst
    feed = add_feed(store, bank="b", name="ngo", kind="jsonl", url=server.url("/list.jsonl"))

    report = sync_feed(store, feed.id)
    assert (report.added, report.removed, report.duplicates) == (3, 0, 1)
    assert report.read == 5 and report.error_count == 1 and not report.not_modified
    assert [(e.line, e.code) for e in report.errors] == [(3, "malformed_hash")]
    assert bank_hashes(store) == {
        manual: "hotline",
        a: "feed:ngo",
        b: "feed:ngo",
        c[:32]: "feed:ngo",
    }
    (entry_a,) = store.lookup_exact("pdq", a)
    assert entry_a.tags == ("ncii",) and entry_a.meta == {"source": "ngo-1"}
    info = FeedRepository(store).get(feed.id)
    assert info.last_error is not None and "1 bad record(s)" in info.last_error
    assert "line 3" in info.last_error
    assert info.cursor["etag"] == '"v1"' and info.last_run_at is not None
    assert info.lease_until is None

    # Unchanged list: the ETag goes back, the server answers 304, nothing is read.
    before = snapshot(store)
    report = sync_feed(store, feed.id)
    assert report.not_modified and (report.added, report.removed) == (0, 0)
    assert server.seen[-1].headers["if-none-match"] == '"v1"'
    assert snapshot(store) == before
    assert "1 bad record(s)" in (FeedRepository(store).get(feed.id).last_error or "")

    # The list changes: b and the hand-imported hash leave it, d joins; the bad row is fixed.
    lst.set([jl("pdq", a), jl("pdq", d), jl("md5", c[:32])])
    report = sync_feed(store, feed.id)
    assert (report.added, report.removed, report.error_count) == (1, 1, 0)
    assert bank_hashes(store) == {
        manual: "hotline",
        a: "feed:ngo",
        c[:32]: "feed:ngo",
        d: "feed:ngo",
    }
    info = FeedRepository(store).get(feed.id)
    assert info.last_error is None and info.cursor == {"etag": '"v2"'}


def test_csv_and_hma_feeds(store: Store, server: FakeServer, hex_hashes: Hashes) -> None:
    p1, p2 = hex_hashes(2, seed=3)
    store.create_bank("b")
    server.routes["/l.csv"] = lambda h: (200, {}, f"signal,value\npdq,{p1}\n".encode())
    server.routes["/l.hma"] = lambda h: (200, {}, json.dumps({"pdq": p2}).encode() + b"\n")
    one = add_feed(store, bank="b", name="c", kind="csv", url=server.url("/l.csv"))
    two = add_feed(store, bank="b", name="h", kind="hma", url=server.url("/l.hma"))
    assert sync_feed(store, one.id).added == 1
    assert sync_feed(store, two.id).added == 1
    assert bank_hashes(store) == {p1: "feed:c", p2: "feed:h"}
    # No validators were given: the next run reads the list again and changes nothing.
    assert sync_feed(store, one.id).added == 0
    assert "if-none-match" not in server.seen[-1].headers


def test_broken_feed_records_last_error_and_leaves_the_bank(
    store: Store, server: FakeServer, hex_hashes: Hashes
) -> None:
    hashes = hex_hashes(4, seed=5)
    store.create_bank("b")
    lst = ListFeed()
    lst.set([jl("pdq", h) for h in hashes])
    server.routes["/list.jsonl"] = lst
    feed = add_feed(store, bank="b", name="f", kind="jsonl", url=server.url("/list.jsonl"))
    assert sync_feed(store, feed.id).added == 4
    before = snapshot(store)
    repo = FeedRepository(store)

    def fails(code: str) -> str:
        with pytest.raises(RempartError) as info:
            sync_feed(store, feed.id)
        assert info.value.code == code
        assert snapshot(store) == before
        error = repo.get(feed.id).last_error
        assert error is not None
        return error

    # The server goes away.
    update_feed(store, feed.id, url="http://127.0.0.1:9/list.jsonl?token=abc")
    error = fails("feed_unreachable")
    assert "ConnectError" in error and "token=abc" not in error
    update_feed(store, feed.id, url=server.url("/list.jsonl"))
    # An HTTP error.
    server.routes["/list.jsonl"] = lambda h: (500, {}, b"oops")
    assert "HTTP 500" in fails("feed_http_error")
    # An empty 200 is not "remove everything"...
    server.routes["/list.jsonl"] = lambda h: (200, {}, b"")
    fails("feed_empty")
    # ...nor is a list whose records are mostly bad (a format change, say).
    lines = [jl("pdq", hashes[0])] + ['{"signal": "pdq"}'] * 2
    server.routes["/list.jsonl"] = lambda h: (200, {}, "\n".join(lines).encode())
    fails("feed_mostly_bad")
    # A CSV feed whose header is wrong cannot be read at all.
    server.routes["/list.jsonl"] = lambda h: (200, {}, b"hash,kind\nx,y\n")
    csv_feed = add_feed(store, bank="b", name="g", kind="csv", url=server.url("/list.jsonl"))
    with pytest.raises(RempartError) as info:
        sync_feed(store, csv_feed.id)
    assert info.value.code == "bad_header"
    # Too big.
    big = [jl("pdq", h) for h in hashes] * 50
    server.routes["/list.jsonl"] = lambda h: (200, {}, "\n".join(big).encode())
    update_feed(store, feed.id, config={"max_bytes": 1000})
    fails("feed_too_large")
    # And once the list is back, the feed recovers and the error clears.
    update_feed(store, feed.id, config={})
    server.routes["/list.jsonl"] = lst
    report = sync_feed(store, feed.id)
    assert (report.added, report.removed) == (0, 0)
    assert repo.get(feed.id).last_error is None


def test_headers_are_sent_and_secrets_never_shown(
    store: Store, server: FakeServer, other: FakeServer, hex_hashes: Hashes, caplog: Any
) -> None:
    (p,) = hex_hashes(1, seed=7)
    store.create_bank("b")
    server.routes["/l"] = lambda h: (200, {}, jl("pdq", p).encode())
    # Same-origin redirect keeps the header; a redirect to another origin drops it.
    server.routes["/moved"] = lambda h: (302, {"Location": "/l"}, b"")
    server.routes["/away"] = lambda h: (302, {"Location": other.url("/l")}, b"")
    other.routes["/l"] = lambda h: (200, {}, jl("pdq", p).encode())
    config = {"headers": {"Authorization": SECRET}}
    caplog.set_level(logging.DEBUG)
    feed = add_feed(
        store, bank="b", name="f", kind="jsonl", url=server.url("/moved"), config=config
    )
    assert sync_feed(store, feed.id).added == 1
    assert [s.headers.get("authorization") for s in server.seen] == [SECRET, SECRET]
    update_feed(store, feed.id, url=server.url("/away?key=k"))
    sync_feed(store, feed.id)
    assert server.seen[-1].headers.get("authorization") == SECRET
    assert other.seen[-1].headers.get("authorization") is None

    info = FeedRepository(store).get(feed.id)
    shown = info.to_dict()
    assert shown["config"] == {"headers": {"Authorization": "***"}}
    assert shown["url"].endswith("/away?...")
    assert info.to_dict(secrets=True)["config"] == config
    # Rempart's own log lines. (httpx logs each request's full URL at INFO: a token belongs
    # in a header, not the query string -- docs/feeds.md says so.)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("rempart"))
    assert "feed f" in ours
    for text in (repr(info), json.dumps(shown), ours):
        assert "s3cret" not in text and "key=k" not in text
    assert redact_url("https://u:pw@h.example:8443/p?t=1#f") == "https://h.example:8443/p?..."


def test_feed_definitions_are_checked(store: Store, server: FakeServer) -> None:
    store.create_bank("b")
    store.create_bank("b", tenant="t2")
    url = server.url("/l")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "rss"}, "bad_feed_kind"),
        ({"url": "ftp://x/y"}, "bad_feed_url"),
        ({"url": "/relative"}, "bad_feed_url"),
        ({"interval_s": 0}, "bad_feed_interval"),
        ({"name": "no spaces"}, "bad_name"),
        ({"config": {"timout_s": 3}}, "bad_feed"),
        ({"config": {"headers": {"Host": "x"}}}, "bad_feed"),
        ({"config": {"headers": {"X-Key": "a\r\nb"}}}, "bad_feed"),
        ({"config": {"max_bytes": 0}}, "bad_feed"),
        ({"kind": "stopncii", "config": {}}, "bad_feed"),
        ({"bank": "nope"}, "bank_not_found"),
    ]
    for change, code in cases:
        args: dict[str, Any] = {"bank": "b", "name": "f", "kind": "jsonl", "url": url, **change}
        with pytest.raises(RempartError) as info:
            add_feed(store, **args)
        assert info.value.code == code, change
    feed = add_feed(store, bank="b", name="f", kind="jsonl", url=url, interval_s=60)
    with pytest.raises(ConflictError) as conflict:
        add_feed(store, bank="b", name="f", kind="csv", url=url)
    assert conflict.value.code == "feed_exists"
    # Another tenant may use the name, but only with its own bank.
    other = add_feed(store, bank="b", name="f", kind="csv", url=url, tenant="t2")
    with pytest.raises(NotFoundError):
        FeedRepository(store).create("t2", feed.bank_id, "g", "csv", url)
    repo = FeedRepository(store)
    assert [f.id for f in repo.list("default")] == [feed.id]
    assert [f.name for f in repo.list()] == ["f", "f"]
    with pytest.raises(NotFoundError) as missing:
        repo.get(other.id, tenant="default")
    assert missing.value.code == "feed_not_found"
    assert repo.get_by_name("f", "t2").id == other.id
    assert validate_config("stopncii", {"subscription_key": "k"}) == {"subscription_key": "k"}
    changed = update_feed(store, feed.id, interval_s=120, enabled=False)
    assert (changed.interval_s, changed.enabled, changed.bank) == (120, False, "b")
    assert repo.delete(feed.id).name == "f"
    assert repo.list("default") == []


def test_delete_feed_removes_only_its_entries(
    store: Store, server: FakeServer, hex_hashes: Hashes
) -> None:
    a, b, manual = hex_hashes(3, seed=9)
    store.create_bank("b")
    store.add_entries("b", [NewEntry("pdq", manual)])
    server.routes["/l"] = lambda h: (200, {}, f"{jl('pdq', a)}\n{jl('pdq', b)}\n".encode())
    feed = add_feed(store, bank="b", name="f", kind="jsonl", url=server.url("/l"))
    kept = add_feed(store, bank="b", name="k", kind="jsonl", url=server.url("/l"))
    sync_feed(store, feed.id)
    info, removed = delete_feed(store, feed.id)
    assert (info.name, removed) == ("f", 2)
    assert bank_hashes(store) == {manual: None}
    sync_feed(store, kept.id)
    assert delete_feed(store, kept.id, keep_entries=True)[1] == 0
    assert len(bank_hashes(store)) == 3


# -- claims, leases and the scheduler -------------------------------------------------------


def test_a_feed_is_never_run_twice_at_once(
    store: Store, db_url: str, server: FakeServer, hex_hashes: Hashes
) -> None:
    (p,) = hex_hashes(1, seed=11)
    store.create_bank("b")
    arrived, release = threading.Event(), threading.Event()

    def slow(headers: dict[str, str]) -> Reply:
        arrived.set()
        release.wait(10)
        return 200, {}, jl("pdq", p).encode()

    server.routes["/slow"] = slow
    feed = add_feed(store, bank="b", name="f", kind="jsonl", url=server.url("/slow"))
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(sync_feed(store, feed.id)))
    worker.start()
    try:
        assert arrived.wait(10)
        # A second worker process (its own Store on the same database) cannot claim it...
        with Store.open(db_url) as second:
            repo2 = FeedRepository(second)
            assert repo2.claim(feed.id, "w2", lease_s=60, force=True) is None
            with pytest.raises(ConflictError) as busy:
                sync_feed(second, feed.id)
            assert busy.value.code == "feed_busy"
            assert repo2.get(feed.id).running(datetime.now(UTC))
    finally:
        release.set()
        worker.join(10)
    assert results and results[0].added == 1
    assert FeedRepository(store).get(feed.id).lease_until is None


def test_claims_are_exclusive_and_leases_expire(store: Store, server: FakeServer) -> None:
    store.create_bank("b")
    feed = add_feed(store, bank="b", name="f", kind="jsonl", url=server.url("/l"), interval_s=60)
    repo = FeedRepository(store)
    t0 = datetime.now(UTC)
    first = repo.claim(feed.id, "w1", lease_s=30, now=t0)
    assert first is not None and first.last_run_at == t0 and first.lease_owner == "w1"
    assert repo.claim(feed.id, "w2", lease_s=30, now=t0) is None
    assert repo.claim(feed.id, "w2", lease_s=30, force=True, now=t0) is None
    repo.checkpoint(feed.id, "w1", {"n": 1}, lease_s=30)
    assert repo.get(feed.id).cursor == {"n": 1}
    # w1 dies; once its lease runs out (and the feed is due) w2 takes over...
    later = t0 + timedelta(seconds=61)
    second = repo.claim(feed.id, "w2", lease_s=30, now=later)
    assert second is not None and second.lease_owner == "w2"
    # ...and w1, waking up, is stopped instead of writing over w2's cursor.
    with pytest.raises(LeaseLostError):
        repo.checkpoint(feed.id, "w1", {"n": 0}, lease_s=30)
    with pytest.raises(LeaseLostError):
        repo.finish(feed.id, "w1", error=None)
    repo.finish(feed.id, "w2", error="boom", cursor={"n": 2})
    info = repo.get(feed.id)
    assert (info.cursor, info.last_error, info.lease_until) == ({"n": 2}, "boom", None)
    # After a failure the retry delay replaces the interval when shorter.
    assert info.next_run_at(retry_s=5) == later + timedelta(seconds=5)
    assert not info.is_due(later + timedelta(seconds=4), retry_s=5)
    assert info.is_due(later + timedelta(seconds=5), retry_s=5)


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_scheduler_runs_due_feeds_and_survives_failures(
    store: Store, server: FakeServer, hex_hashes: Hashes
) -> None:
    a, b = hex_hashes(2, seed=13)
    store.create_bank("b")
    lst = ListFeed()
    lst.set([jl("pdq", a)])
    server.routes["/l"] = lst
    bad = add_feed(store, bank="b", name="bad", kind="jsonl", url="http://127.0.0.1:9/x")
    good = add_feed(store, bank="b", name="good", kind="jsonl", url=server.url("/l"), interval_s=1)
    off = add_feed(store, bank="b", name="off", kind="jsonl", url=server.url("/l"), enabled=False)
    repo = FeedRepository(store)
    reports: list[Any] = []
    scheduler = FeedScheduler(store, tick_s=0.05, retry_s=3600, on_report=reports.append)
    scheduler.start()
    try:
        wait_for(lambda: a in bank_hashes(store))
        wait_for(lambda: repo.get(bad.id).last_error is not None)
        failed = repo.get(bad.id)
        assert "ConnectError" in (failed.last_error or "")
        # The good feed runs again once its interval has passed, and picks up the change.
        lst.set([jl("pdq", b)])
        wait_for(lambda: set(bank_hashes(store)) == {b})
        assert scheduler.running
    finally:
        scheduler.stop()
    assert not scheduler.running
    assert repo.get(off.id).last_run_at is None
    # The failed feed is retried no sooner than retry_s (an hour here): it ran once.
    assert repo.get(bad.id).last_run_at == failed.last_run_at
    assert {r.feed for r in reports} == {"good"}
    assert repo.get(good.id).last_error is None
