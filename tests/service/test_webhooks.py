"""Webhooks: the outbox in the store, signed delivery over real HTTP, retries and dead letters.

Receivers are real HTTP servers on 127.0.0.1 (``http.server`` in a thread); nothing leaves
the machine. Every test that touches the store runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rempart.errors import ConflictError, NotFoundError
from rempart.service.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    SignatureError,
    WebhookDispatcher,
    sign,
    verify_signature,
)
from rempart.store import Store
from rempart.store.webhooks import (
    DEFAULT_BACKOFF_BASE_S,
    DEFAULT_MAX_ATTEMPTS,
    EVENTS,
    MAX_WEBHOOKS_PER_TENANT,
    Delivery,
    WebhookError,
    WebhookRepository,
    retry_delay,
    validate_url,
)

# -- a local receiver -----------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def delivery_id(self) -> int:
        return int(self.headers[DELIVERY_HEADER])


class Receiver:
    """A webhook receiver on 127.0.0.1: records each POST, answers from a script.

    ``statuses`` are answered in order, then ``default``; ``delay_s`` makes it slow. Given a
    socket that is bound but not yet listening, it takes over that port (so a test can make
    a receiver that is "down" -- connections refused -- and later bring it up).
    """

    def __init__(
        self,
        statuses: list[int] | None = None,
        *,
        default: int = 200,
        delay_s: float = 0.0,
        sock: socket.socket | None = None,
    ) -> None:
        self.requests: list[Received] = []
        self._statuses = list(statuses or [])
        self._default = default
        self._delay_s = delay_s
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(
            ("127.0.0.1", 0), self._handler(), bind_and_activate=sock is None
        )
        self._server.daemon_threads = True
        if sock is not None:
            self._server.socket.close()
            self._server.socket = sock
            self._server.server_address = sock.getsockname()
            self._server.server_activate()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def wait_for(self, n: int, timeout_s: float = 10.0) -> list[Received]:
        wait_until(lambda: len(self.requests) >= n, timeout_s, f"{n} requests")
        return list(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    status = receiver._statuses.pop(0) if receiver._statuses else receiver._default
                if receiver._delay_s:
                    time.sleep(receiver._delay_s)
                with receiver._lock:
                    receiver.requests.append(
                        Received(self.path, dict(self.headers.items()), body, time.monotonic())
                    )
                answer = b'{"ok":true}' if status < 300 else b"receiver says no"
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
        time.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """``receiver(statuses, default=200, delay_s=0, sock=None)``; closed after the test."""
    made: list[Receiver] = []

    def make(*args: Any, **kwargs: Any) -> Receiver:
        made.append(Receiver(*args, **kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def dispatcher() -> Iterator[Callable[..., WebhookDispatcher]]:
    """``dispatcher(store, **options)``: started, fast-polling, stopped after the test."""
    made: list[WebhookDispatcher] = []

    def make(store: Store, *, start: bool = True, **options: Any) -> WebhookDispatcher:
        options.setdefault("poll_interval_s", 0.05)
        options.setdefault("timeout_s", 5.0)
        options.setdefault("backoff_base_s", 0.05)
        d = WebhookDispatcher(store, **options)
        made.append(d)
        if start:
            d.start()
        return d

    yield make
    for d in made:
        d.stop()


@pytest.fixture
def down_port() -> Iterator[socket.socket]:
    """A loopback port that refuses connections: bound, not listening (yet)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def wait_status(
    repo: WebhookRepository, tenant: str, delivery_id: int, status: str, timeout_s: float = 10.0
) -> Delivery:
    wait_until(
        lambda: repo.get_delivery(tenant, delivery_id).status == status,
        timeout_s,
        f"delivery {delivery_id} to be {status}",
    )
    return repo.get_delivery(tenant, delivery_id)


def only_delivery(repo: WebhookRepository, tenant: str, webhook_id: int) -> Delivery:
    (delivery,) = repo.deliveries(tenant, webhook_id)
    return delivery


# -- signatures (pure) ----------------------------------------------------------------------

SECRET = "whsec_test-secret"
BODY = b'{"id":1,"event":"match","data":{}}'
T0 = 1_800_000_000


def test_signature_round_trip() -> None:
    header = sign(SECRET, BODY, T0)
    assert header.startswith(f"t={T0},v1=") and len(header.split("v1=")[1]) == 64
    assert verify_signature(SECRET, header, BODY, now=T0 + 10) == T0
    assert verify_signature(SECRET, header, BODY.decode(), now=T0 - 10) == T0


@pytest.mark.parametrize(
    ("secret", "header", "body", "now", "code"),
    [
        ("whsec_other", sign(SECRET, BODY, T0), BODY, T0, "bad_signature"),
        (SECRET, sign(SECRET, BODY, T0), BODY + b" ", T0, "bad_signature"),
        (
            SECRET,
            sign(SECRET, BODY, T0).replace(f"t={T0}", f"t={T0 + 1}"),
            BODY,
            T0,
            "bad_signature",
        ),
        (SECRET, sign(SECRET, BODY, T0), BODY, T0 + 301, "stale_signature"),
        (SECRET, sign(SECRET, BODY, T0), BODY, T0 - 301, "stale_signature"),
        (SECRET, None, BODY, T0, "malformed_signature"),
        (SECRET, "", BODY, T0, "malformed_signature"),
        (SECRET, "garbage", BODY, T0, "malformed_signature"),
        (SECRET, f"t={T0}", BODY, T0, "malformed_signature"),
        (SECRET, "t=abc,v1=00", BODY, T0, "malformed_signature"),
        (SECRET, f"t={T0},v0={'0' * 64}", BODY, T0, "malformed_signature"),
    ],
    ids=[
        "wrong-secret",
        "body-changed",
        "timestamp-changed",
        "too-old",
        "from-the-future",
        "missing",
        "empty",
        "garbage",
        "no-v1",
        "bad-t",
        "unknown-scheme-only",
    ],
)
def test_bad_signatures_are_rejected(
    secret: str, header: str | None, body: bytes, now: int, code: str
) -> None:
    with pytest.raises(SignatureError) as info:
        verify_signature(secret, header, body, now=now)
    assert info.value.code == code
    assert info.value.hint  # says what to check


def test_any_of_several_v1_signatures_passes() -> None:
    """Several v1 values (e.g. while a receiver rotates secrets): one match is enough."""
    good = sign(SECRET, BODY, T0).split(",")[1]
    header = f"t={T0},v1={'0' * 64}, {good},v2=whatever"
    assert verify_signature(SECRET, header, BODY, now=T0) == T0


def test_tolerance_is_configurable() -> None:
    header = sign(SECRET, BODY, T0)
    assert verify_signature(SECRET, header, BODY, tolerance_s=3600, now=T0 + 3000) == T0
    with pytest.raises(SignatureError):
        verify_signature(SECRET, header, BODY, tolerance_s=5, now=T0 + 6)


@settings(max_examples=60, deadline=None)
@given(
    secret=st.text(min_size=1, max_size=80),
    body=st.binary(max_size=300),
    flip=st.integers(min_value=0, max_value=10_000),
)
def test_signature_binds_secret_and_every_byte(secret: str, body: bytes, flip: int) -> None:
    header = sign(secret, body, T0)
    assert verify_signature(secret, header, body, now=T0) == T0
    if body:
        i = flip % len(body)
        changed = body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]
        with pytest.raises(SignatureError):
            verify_signature(secret, header, changed, now=T0)
    with pytest.raises(SignatureError):
        verify_signature(secret + "x", header, body, now=T0)


def test_backoff_schedule_doubles_caps_and_jitters() -> None:
    middle = [retry_delay(n, base_s=5, cap_s=3600, rand=lambda: 0.5) for n in range(1, 12)]
    assert middle == [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]
    assert retry_delay(200, base_s=5, cap_s=3600, rand=lambda: 0.5) == 3600
    low = retry_delay(3, base_s=5, cap_s=3600, rand=lambda: 0.0)
    high = retry_delay(3, base_s=5, cap_s=3600, rand=lambda: 0.999999)
    assert low == pytest.approx(16) and high == pytest.approx(24, rel=1e-3)
    assert retry_delay(20, base_s=5, cap_s=3600, rand=lambda: 0.999999) == 3600  # never past


# -- the repository -------------------------------------------------------------------------


def test_create_list_get_delete(store: Store) -> None:
    repo = WebhookRepository(store)
    hook, secret = repo.create(
        "acme", "https://hooks.example.org/rempart", ["verdict.block", "match", "match"], "SOC"
    )
    assert secret.startswith("whsec_") and len(secret) == len("whsec_") + 43
    assert hook.events == ("match", "verdict.block")  # deduplicated, in a stable order
    assert (hook.tenant, hook.url, hook.description, hook.enabled) == (
        "acme",
        "https://hooks.example.org/rempart",
        "SOC",
        True,
    )
    assert "whsec_" not in repr(hook)
    other, other_secret = repo.create("acme", "http://10.0.0.7:8080/x?y=1", ["verdict.review"])
    assert other_secret != secret
    assert repo.list("acme") == [hook, other]
    assert repo.get("acme", hook.id) == hook
    assert repo.delete("acme", hook.id) == hook
    assert repo.list("acme") == [other]
    with pytest.raises(NotFoundError) as info:
        repo.get("acme", hook.id)
    assert info.value.code == "webhook_not_found" and info.value.status == 404


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "ftp://example.org/x",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "example.org/hook",
        "http://",
        "https:///path",
        "http://user:pw@example.org/",
        "http://example.org:99999/",
        "http://exa mple.org/",
        "http://example.org/#frag",
        "https://example.org/" + "a" * 2100,
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(WebhookError) as info:
        validate_url(url)
    assert info.value.code == "bad_url" and info.value.status == 422 and info.value.message


def test_bad_input_is_refused(store: Store) -> None:
    repo = WebhookRepository(store)
    with pytest.raises(WebhookError) as info:
        repo.create("acme", "ftp://example.org/x", ["match"])
    assert info.value.code == "bad_url"
    for events, code in [([], "bad_events"), (["nope"], "unknown_event"), ("match", "bad_events")]:
        with pytest.raises(WebhookError) as info:
            repo.create("acme", "https://example.org/h", events)
        assert info.value.code == code and info.value.status == 422
        assert "match" in (info.value.hint or "")
    with pytest.raises(WebhookError) as info:
        repo.create("acme", "https://example.org/h", ["match"], "x" * 1001)
    assert info.value.code == "bad_description"
    assert repo.list("acme") == []
    with pytest.raises(WebhookError) as info:
        repo.enqueue("acme", "verdict.allow", {})
    assert info.value.code == "unknown_event"
    with pytest.raises(WebhookError) as info:
        repo.enqueue("acme", "match", {"score": float("nan")})
    assert info.value.code == "bad_payload"


def test_enqueue_fans_out_to_subscribers_only(store: Store) -> None:
    repo = WebhookRepository(store)
    matches, _ = repo.create("acme", "https://a.example/h", ["match"])
    verdicts, _ = repo.create("acme", "https://b.example/h", ["verdict.block", "verdict.review"])
    both, _ = repo.create("acme", "https://c.example/h", list(EVENTS))
    assert repo.enqueue("acme", "match", {"n": 1}) == 2
    assert repo.enqueue("acme", "verdict.block", {"n": 2}) == 2
    assert repo.enqueue("acme", "verdict.review", {"n": 3}) == 2
    assert repo.enqueue("nobody", "match", {"n": 4}) == 0
    assert [d.payload["n"] for d in repo.deliveries("acme", matches.id)] == [1]
    assert [d.payload["n"] for d in repo.deliveries("acme", verdicts.id)] == [3, 2]
    assert [d.event for d in repo.deliveries("acme", both.id)] == [
        "verdict.review",
        "verdict.block",
        "match",
    ]
    d = repo.deliveries("acme", both.id)[0]
    assert (d.status, d.attempts, d.tenant, d.delivered_at) == ("pending", 0, "acme", None)
    assert repo.deliveries("acme", both.id, status="delivered") == []
    with pytest.raises(WebhookError) as info:
        repo.deliveries("acme", both.id, status="lost")
    assert info.value.code == "bad_status"


def test_claims_lease_and_backoff(store: Store) -> None:
    """Claims count attempts and hide rows for the lease; failures back off, then die."""
    repo = WebhookRepository(store, max_attempts=3, backoff_base_s=10, lease_s=30)
    hook, _ = repo.create("acme", "https://a.example/h", ["match"])
    repo.enqueue("acme", "match", {})
    t0 = datetime.now(UTC) + timedelta(seconds=1)
    (first,) = repo.claim_due(t0, 10)
    assert first.attempts == 1 and first.url == "https://a.example/h" and first.secret
    assert first.secret not in repr(first)
    assert repo.claim_due(t0, 10) == []  # leased
    (again,) = repo.claim_due(t0 + timedelta(seconds=31), 10)  # lease ran out: a crashed worker
    assert again.id == first.id and again.attempts == 2

    after = repo.mark_failed(first.id, 503, "HTTP 503", t0)
    assert after is not None and after.status == "pending"
    delay = (after.next_attempt_at - t0).total_seconds()
    assert 0.8 * 20 <= delay <= 1.2 * 20  # second failure: base * 2
    assert (after.last_status_code, after.last_error) == (503, "HTTP 503")
    assert repo.claim_due(t0 + timedelta(seconds=15), 10) == []
    (third,) = repo.claim_due(t0 + timedelta(seconds=25), 10)
    assert third.attempts == 3
    dead = repo.mark_failed(third.id, None, "ConnectError: refused", t0)
    assert dead is not None and dead.status == "dead" and dead.attempts == 3
    assert repo.claim_due(t0 + timedelta(days=1), 10) == []
    assert repo.deliveries("acme", hook.id, status="dead") == [dead]


def test_redeliver(store: Store) -> None:
    repo = WebhookRepository(store, max_attempts=1)
    repo.create("acme", "https://a.example/h", ["match"])
    repo.enqueue("acme", "match", {})
    (claimed,) = repo.claim_due(datetime.now(UTC), 1)
    with pytest.raises(ConflictError) as info:
        repo.redeliver("acme", claimed.id)
    assert info.value.code == "delivery_pending"
    repo.mark_failed(claimed.id, 500, "HTTP 500", datetime.now(UTC))
    assert repo.get_delivery("acme", claimed.id).status == "dead"
    again = repo.redeliver("acme", claimed.id)
    assert (again.status, again.attempts) == ("pending", 0)
    (reclaimed,) = repo.claim_due(datetime.now(UTC), 1)
    assert reclaimed.id == claimed.id
    repo.mark_delivered(reclaimed.id, 204)
    done = repo.get_delivery("acme", claimed.id)
    assert (done.status, done.last_status_code, done.last_error) == ("delivered", 204, None)
    assert done.delivered_at is not None
    # A late failure report from a worker whose lease ran out does not undo a delivery.
    repo.mark_failed(claimed.id, None, "timed out", datetime.now(UTC))
    assert repo.get_delivery("acme", claimed.id).status == "delivered"


def test_tenant_isolation(store: Store) -> None:
    repo = WebhookRepository(store, max_attempts=1)
    hook, _ = repo.create("acme", "https://a.example/h", list(EVENTS))
    assert repo.enqueue("acme", "match", {"who": "acme"}) == 1
    assert repo.enqueue("globex", "match", {"who": "globex"}) == 0
    (delivery,) = repo.deliveries("acme", hook.id)
    assert delivery.payload == {"who": "acme"}

    assert repo.list("globex") == []
    calls: list[Callable[[], object]] = [
        lambda: repo.get("globex", hook.id),
        lambda: repo.delete("globex", hook.id),
        lambda: repo.deliveries("globex", hook.id),
        lambda: repo.get_delivery("globex", delivery.id),
        lambda: repo.redeliver("globex", delivery.id),
    ]
    for call in calls:
        with pytest.raises(NotFoundError) as info:
            call()
        assert info.value.code in ("webhook_not_found", "delivery_not_found")
    assert repo.get("acme", hook.id) == hook  # untouched


def test_concurrent_claims_never_overlap(store: Store, db_url: str) -> None:
    """Workers in different processes (separate engines) claiming at once share nothing."""
    repo = WebhookRepository(store)
    repo.create("acme", "https://a.example/h", ["match"])
    for n in range(60):
        repo.enqueue("acme", "match", {"n": n})
    other = Store.open(db_url)
    repos = [repo, WebhookRepository(other), repo, WebhookRepository(other)]
    claimed: list[list[int]] = [[] for _ in repos]
    now = datetime.now(UTC) + timedelta(seconds=1)

    def work(i: int) -> None:
        while batch := repos[i].claim_due(now, 4):
            claimed[i].extend(d.id for d in batch)

    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(repos))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        other.close()
    everything = [i for ids in claimed for i in ids]
    assert len(everything) == 60 and len(set(everything)) == 60


# -- delivery over HTTP ---------------------------------------------------------------------


def test_delivery_is_signed_and_shaped(
    store: Store,
    receiver: Callable[..., Receiver],
    dispatcher: Callable[..., WebhookDispatcher],
) -> None:
    rx = receiver()
    repo = WebhookRepository(store)
    hook, secret = repo.create("acme", rx.url, ["match"])
    payload = {"scan_id": "3f1c", "matches": [{"bank": "ncii", "distance": 4}], "note": "é"}
    assert repo.enqueue("acme", "match", payload) == 1
    dispatcher(store)
    (req,) = rx.wait_for(1)

    assert req.path == "/hook"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers[EVENT_HEADER] == "match"
    timestamp = verify_signature(secret, req.headers[SIGNATURE_HEADER], req.body)
    assert abs(timestamp - time.time()) < 30
    with pytest.raises(SignatureError):
        verify_signature("whsec_wrong", req.headers[SIGNATURE_HEADER], req.body)
    with pytest.raises(SignatureError):
        verify_signature(secret, req.headers[SIGNATURE_HEADER], req.body, now=timestamp + 400)

    body = json.loads(req.body)
    assert set(body) == {"id", "event", "created_at", "tenant", "data"}
    assert body["id"] == req.delivery_id
    assert (body["event"], body["tenant"], body["data"]) == ("match", "acme", payload)
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None

    done = wait_status(repo, "acme", body["id"], "delivered")
    assert (done.attempts, done.last_status_code, done.webhook_id) == (1, 200, hook.id)


def test_failure_is_retried_then_delivered(
    store: Store,
    receiver: Callable[..., Receiver],
    dispatcher: Callable[..., WebhookDispatcher],
) -> None:
    rx = receiver([500, 503])
    repo = WebhookRepository(store)
    _, secret = repo.create("acme", rx.url, ["verdict.block"])
    repo.enqueue("acme", "verdict.block", {"scan_id": "x"})
    dispatcher(store, backoff_base_s=0.2)
    requests = rx.wait_for(3)
    delivery_id = requests[0].delivery_id
    done = wait_status(repo, "acme", delivery_id, "delivered")
    assert (done.attempts, done.last_status_code, done.last_error) == (3, 200, None)
    # Each attempt is the same delivery, the same body, freshly signed.
    assert {r.delivery_id for r in requests} == {delivery_id}
    assert len({r.body for r in requests}) == 1
    for r in requests:
        verify_signature(secret, r.headers[SIGNATURE_HEADER], r.body)
    # Backoff doubles: 0.2 s then 0.4 s, less 20 % jitter at worst (never early).
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    assert gaps[0] >= 0.16 and gaps[1] >= 0.32, gaps


def test_receiver_down_goes_dead_then_redelivers(
    store: Store,
    receiver: Callable[..., Receiver],
    dispatcher: Callable[..., WebhookDispatcher],
    down_port: socket.socket,
) -> None:
    host, port = down_port.getsockname()
    repo = WebhookRepository(store)
    hook, _ = repo.create("acme", f"http://{host}:{port}/hook", ["match"])
    repo.enqueue("acme", "match", {"n": 1})
    dispatcher(store, max_attempts=3, backoff_base_s=0.05)
    delivery = only_delivery(repo, "acme", hook.id)
    dead = wait_status(repo, "acme", delivery.id, "dead")
    assert dead.attempts == 3 and dead.last_status_code is None
    assert "Connect" in (dead.last_error or "")
    assert repo.deliveries("acme", hook.id, status="dead") == [dead]

    rx = receiver(sock=down_port)  # the receiver comes back up on the same port
    time.sleep(0.2)
    assert rx.requests == []  # dead letters stay dead until someone acts
    assert repo.redeliver("acme", delivery.id).status == "pending"
    (req,) = rx.wait_for(1)
    assert req.delivery_id == delivery.id
    done = wait_status(repo, "acme", delivery.id, "delivered")
    assert done.attempts == 1


def test_slow_receiver_delays_neither_enqueue_nor_others(
    store: Store,
    receiver: Callable[..., Receiver],
    dispatcher: Callable[..., WebhookDispatcher],
) -> None:
    slow = receiver(delay_s=3.0)
    fast = receiver()
    repo = WebhookRepository(store)
    repo.create("acme", slow.url, ["verdict.block"])
    repo.create("acme", fast.url, ["verdict.block", "match"])
    dispatcher(store)
    started = time.monotonic()
    assert repo.enqueue("acme", "verdict.block", {"n": 0}) == 2
    fast.wait_for(1, timeout_s=2.0)
    # The fast receiver got its copy while the slow one is still sleeping...
    assert slow.requests == [] and time.monotonic() - started < 2.5
    # ...and enqueueing (the scan path) takes milliseconds while a send is stuck.
    timings = []
    for n in range(1, 21):
        t = time.perf_counter()
        repo.enqueue("acme", "match", {"n": n})
        timings.append(time.perf_counter() - t)
    assert statistics.median(timings) < 0.05 and max(timings) < 0.5, timings
    fast.wait_for(21, timeout_s=5.0)
    assert slow.requests == []
    slow.wait_for(1, timeout_s=5.0)


def test_no_event_lost_across_stop_and_restart(
    store: Store,
    receiver: Callable[..., Receiver],
    dispatcher: Callable[..., WebhookDispatcher],
) -> None:
    rx = receiver()
    repo = WebhookRepository(store)
    repo.create("acme", rx.url, ["match"])
    for n in range(3):
        repo.enqueue("acme", "match", {"n": n})  # queued before any dispatcher runs
    d = dispatcher(store)
    rx.wait_for(3)
    d.stop()
    assert not d.running
    for n in range(3, 6):
        repo.enqueue("acme", "match", {"n": n})
    time.sleep(0.3)
    assert len(rx.requests) == 3  # stopped means stopped
    d.start()  # the same dispatcher, restarted
    rx.wait_for(6)
    d.stop()
    for n in range(6, 8):
        repo.enqueue("acme", "match", {"n": n})
    dispatcher(store)  # a fresh one, as after a process restart
    requests = rx.wait_for(8)
    assert sorted(json.loads(r.body)["data"]["n"] for r in requests) == list(range(8))
    assert len({r.delivery_id for r in requests}) == 8


def test_crashed_worker_lease_runs_out_and_delivery_goes_out(
    store: Store,
    receiver: Callable[..., Receiver],
    dispatcher: Callable[..., WebhookDispatcher],
) -> None:
    rx = receiver()
    crashed = WebhookRepository(store, lease_s=0.3)
    crashed.create("acme", rx.url, ["match"])
    crashed.enqueue("acme", "match", {})
    (lost,) = crashed.claim_due(datetime.now(UTC), 1)  # claimed, then the worker "dies"
    dispatcher(store)
    (req,) = rx.wait_for(1, timeout_s=5.0)
    assert req.delivery_id == lost.id
    assert wait_status(crashed, "acme", lost.id, "delivered").attempts == 2


def test_two_dispatchers_never_double_send(
    store: Store,
    db_url: str,
    receiver: Callable[..., Receiver],
    dispatcher: Callable[..., WebhookDispatcher],
) -> None:
    rx = receiver(delay_s=0.02)
    repo = WebhookRepository(store)
    hook, _ = repo.create("acme", rx.url, ["match"])
    for n in range(30):
        repo.enqueue("acme", "match", {"n": n})
    other = Store.open(db_url)  # as a second process would
    second: WebhookDispatcher | None = None
    try:
        dispatcher(store, poll_interval_s=0.01)
        second = dispatcher(other, poll_interval_s=0.01)
        rx.wait_for(30)
        wait_until(
            lambda: len(repo.deliveries("acme", hook.id, status="delivered")) == 30,
            10.0,
            "all delivered",
        )
        time.sleep(0.2)  # time for a (wrong) second send to arrive
    finally:
        if second is not None:
            second.stop()
        other.close()
    ids = [r.delivery_id for r in rx.requests]
    assert len(ids) == 30 and len(set(ids)) == 30, sorted(ids)
    assert all(d.attempts == 1 for d in repo.deliveries("acme", hook.id))


def test_webhooks_per_tenant_are_capped(store: Store) -> None:
    repo = WebhookRepository(store)
    for n in range(MAX_WEBHOOKS_PER_TENANT):
        repo.create("acme", f"https://example.org/{n}", ["match"])
    with pytest.raises(ConflictError) as info:
        repo.create("acme", "https://example.org/one-more", ["match"])
    assert info.value.code == "too_many_webhooks"
    repo.create("globex", "https://example.org/h", ["match"])  # another tenant's own quota


# -- the HTTP API ---------------------------------------------------------------------------


def _problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    assert body["status"] == status and body["code"] == code and body["detail"]
    return body


def test_api_crud_scopes_and_errors(service: Any) -> None:
    c = service.client
    h = service.key("webhooks", tenant="acme")
    _problem(c.get("/v1/webhooks"), 401, "unauthorized")
    _problem(c.get("/v1/webhooks", headers=service.key("scan", tenant="acme")), 403, "forbidden")

    r = c.post(
        "/v1/webhooks",
        headers=h,
        json={"url": "https://soc.example.org/rempart", "events": ["match"], "description": "SOC"},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created.pop("secret")
    assert secret.startswith("whsec_")
    assert created["events"] == ["match"] and created["description"] == "SOC"
    hook_id = created["id"]

    listed = c.get("/v1/webhooks", headers=h).json()
    assert listed == {"webhooks": [created]}
    assert c.get(f"/v1/webhooks/{hook_id}", headers=h).json() == created
    assert secret not in c.get("/v1/webhooks", headers=h).text  # shown once, at creation

    bad = [
        ({"url": "ftp://x.example/h", "events": ["match"]}, "bad_url"),
        ({"url": "http://", "events": ["match"]}, "bad_url"),
        ({"url": "https://x.example/h", "events": ["matches"]}, "unknown_event"),
        ({"url": "https://x.example/h", "events": []}, "bad_events"),
        ({"events": ["match"]}, "invalid_request"),
    ]
    for body, code in bad:
        problem = _problem(c.post("/v1/webhooks", headers=h, json=body), 422, code)
        assert code == "invalid_request" or problem["hint"]
    _problem(c.get(f"/v1/webhooks/{hook_id}/deliveries?status=lost", headers=h), 422, "bad_status")
    assert c.get(f"/v1/webhooks/{hook_id}/deliveries", headers=h).json() == {"deliveries": []}

    # Another tenant sees nothing, and cannot touch it.
    other = service.key("admin", tenant="globex")
    assert c.get("/v1/webhooks", headers=other).json() == {"webhooks": []}
    _problem(c.get(f"/v1/webhooks/{hook_id}", headers=other), 404, "webhook_not_found")
    _problem(c.delete(f"/v1/webhooks/{hook_id}", headers=other), 404, "webhook_not_found")
    _problem(c.get(f"/v1/webhooks/{hook_id}/deliveries", headers=other), 404, "webhook_not_found")

    assert c.delete(f"/v1/webhooks/{hook_id}", headers=h).json() == {"deleted": hook_id}
    _problem(c.get(f"/v1/webhooks/{hook_id}", headers=h), 404, "webhook_not_found")
    _problem(c.get("/v1/webhooks/deliveries/12345", headers=h), 404, "delivery_not_found")
    actions = [e.action for e in service.ctx.audit.list("acme")]
    assert "webhook.create" in actions and "webhook.delete" in actions


def test_api_scan_is_delivered_signed_and_redelivered(
    make_service: Any,
    receiver: Callable[..., Receiver],
    dispatcher: Callable[..., WebhookDispatcher],
) -> None:
    from rempart.examples import EDITS, jpeg_bytes, synthetic_photo

    # The receiver is on loopback: allowed here, refused by default (tests/test_egress.py).
    service = make_service(service={"egress_allow_private": True})
    rx = receiver()
    c, h = service.client, service.key("admin", tenant="acme")
    created = c.post(
        "/v1/webhooks", headers=h, json={"url": rx.url, "events": ["match", "verdict.block"]}
    ).json()
    original = synthetic_photo(3)
    assert c.post("/v1/banks", json={"name": "reported"}, headers=h).status_code == 201
    c.post("/v1/banks/reported/entries/file", content=jpeg_bytes(original), headers=h)
    copy = jpeg_bytes(EDITS["letterboxed"](original), quality=70)
    wait_until(
        lambda: c.post("/v1/scan", content=copy, headers=h).json()["verdict"] == "block",
        5.0,
        "the index to pick up the bank",
    )
    assert service.ctx.flush()
    dispatcher(service.store)
    # Scans before the index had the bank matched nothing and queued nothing; the one that
    # blocked queued two events.
    requests = rx.wait_for(2)
    deliveries_url = f"/v1/webhooks/{created['id']}/deliveries"
    wait_until(
        lambda: (
            len(c.get(f"{deliveries_url}?status=delivered", headers=h).json()["deliveries"]) == 2
        ),
        5.0,
        "both delivered",
    )
    assert len(rx.requests) == 2
    bodies = [json.loads(r.body) for r in requests]
    for r in requests:
        verify_signature(created["secret"], r.headers[SIGNATURE_HEADER], r.body)
    assert sorted(b["event"] for b in bodies) == ["match", "verdict.block"]
    first = bodies[0]
    assert first["tenant"] == "acme" and first["data"]["verdict"] == "block"
    assert first["data"]["matches"][0]["bank"] == "reported"
    assert set(first["data"]) >= {"scan_id", "verdict", "matches", "reasons"}
    assert bodies[0]["data"] == bodies[1]["data"]

    log = c.get(deliveries_url, headers=h).json()["deliveries"]
    assert [d["id"] for d in log] == sorted((b["id"] for b in bodies), reverse=True)
    target = log[0]
    assert target["status"] == "delivered" and target["attempts"] == 1
    assert target["next_attempt_at"] is None and target["last_status_code"] == 200
    assert target["data"] == first["data"]

    other = service.key("admin", tenant="globex")
    _problem(
        c.post(f"/v1/webhooks/deliveries/{target['id']}/redeliver", headers=other),
        404,
        "delivery_not_found",
    )
    r = c.post(f"/v1/webhooks/deliveries/{target['id']}/redeliver", headers=h)
    assert r.status_code == 202 and r.json()["status"] == "pending"
    again = rx.wait_for(3)[-1]
    assert again.delivery_id == target["id"]
    wait_until(
        lambda: (
            c.get(f"/v1/webhooks/deliveries/{target['id']}", headers=h).json()["status"]
            == "delivered"
        ),
        5.0,
        "the redelivery recorded",
    )
    assert [e.action for e in service.ctx.audit.list("acme")].count("webhook.redeliver") == 1


@pytest.mark.parametrize("bad_id", [0, -1, 2**63, 2**80])
def test_impossible_ids_are_not_found(store: Store, bad_id: int) -> None:
    repo = WebhookRepository(store)
    with pytest.raises(NotFoundError):
        repo.get("acme", bad_id)
    with pytest.raises(NotFoundError):
        repo.redeliver("acme", bad_id)


def test_retry_schedule_comes_from_the_settings(
    make_service: Any, down_port: socket.socket
) -> None:
    """``[webhooks]`` in the settings drives the service's dispatcher: with two attempts and
    short waits, a receiver that refuses connections gets a dead letter after exactly two."""
    host, port = down_port.getsockname()
    service = make_service(
        service={"background_jobs": True, "egress_allow_private": True},
        webhooks={
            "max_attempts": 2,
            "backoff_base_s": 0.05,
            "backoff_cap_s": 0.1,
            "poll_interval_s": 0.05,
        },
    )
    repo = WebhookRepository(service.store)
    hook, _ = repo.create("acme", f"http://{host}:{port}/hook", ["match"])
    assert repo.enqueue("acme", "match", {"scan_id": "s-1"}) == 1
    delivery = only_delivery(repo, "acme", hook.id)
    dead = wait_status(repo, "acme", delivery.id, "dead")
    assert dead.attempts == 2 and "Connect" in (dead.last_error or "")
    assert repo.deliveries("acme", hook.id, status="dead") == [dead]


def test_webhook_settings_are_checked() -> None:
    from pydantic import ValidationError

    from rempart.settings import Settings, WebhookSettings

    assert Settings().webhooks.max_attempts == DEFAULT_MAX_ATTEMPTS
    assert Settings().webhooks.backoff_base_s == DEFAULT_BACKOFF_BASE_S
    with pytest.raises(ValidationError, match=r"at least webhooks\.backoff_base_s"):
        WebhookSettings(backoff_base_s=60, backoff_cap_s=10)
    with pytest.raises(ValidationError):
        WebhookSettings(max_attempts=0)
