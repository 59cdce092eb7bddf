"""The StopNCII client and ``stopncii`` feeds, against a local fake of the partner API
(paging by timestamp and page token, Active/Withdrawn/Deleted records, SubmitFeedback)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from rempart.exchanges.feeds import add_feed, stopncii_client, sync_feed
from rempart.exchanges.stopncii import (
    FUNCTION_HEADER,
    SUBSCRIPTION_HEADER,
    FeedbackValue,
    HashFeedback,
    StopNCIIClient,
    StopNCIIError,
    parse_page,
)
from rempart.store import NewEntry, Store
from rempart.store.feeds import FeedRepository

Hashes = Callable[..., list[str]]
SUB_KEY = "sub-key-0123"
FN_KEY = "fn-key-4567"


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: Any = None


@dataclass
class FakeStopNCII:
    """The partner API: ``records`` is the stream (each a dict as the API sends it)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    #: Page tokens answered with 503 (a failure mid-stream).
    failing_tokens: set[str] = field(default_factory=set)
    #: (startTimestamp, offset) -> times that page was served.
    served: Counter[tuple[int, int]] = field(default_factory=Counter)
    status: int = 200
    httpd: Any = None

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def reset(self) -> None:
        self.records.clear()
        self.requests.clear()
        self.failing_tokens.clear()
        self.served.clear()
        self.status = 200

    def fetch(self, params: dict[str, str]) -> tuple[int, Any]:
        start = int(params["startTimestamp"])
        size = int(params["pageSize"])
        token = params.get("nextPageToken")
        offset = 0
        if token is not None:
            if token in self.failing_tokens:
                return 503, {"error": "try later"}
            prefix, _, rest = token.rpartition("-")
            if prefix != f"tok-{start}":
                return 400, {"error": "invalid continuation token"}
            offset = int(rest)
        stream = sorted(
            (r for r in self.records if r["lastModtimestamp"] >= start),
            key=lambda r: r["lastModtimestamp"],
        )
        page = stream[offset : offset + size]
        self.served[(start, offset)] += 1
        more = offset + size < len(stream)
        newest = max((r["lastModtimestamp"] for r in stream), default=start - 1)
        return 200, {
            "count": len(page),
            "hashRecords": page,
            "hasMoreRecords": more,
            "nextPageToken": f"tok-{start}-{offset + size}" if more else None,
            "nextSetTimestamp": newest + 1,
        }


@pytest.fixture(scope="module")
def _api() -> Iterator[FakeStopNCII]:
    api = FakeStopNCII()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _request(self, method: str) -> Request:
            parts = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            req = Request(method, parts.path, params, headers, body)
            api.requests.append(req)
            return req

        def do_GET(self) -> None:
            req = self._request("GET")
            if api.status != 200:
                self._answer(api.status, {"error": "denied"})
            elif req.path == "/v1/FetchHashes":
                self._answer(*api.fetch(req.params))
            else:
                self._answer(404, {})

        def do_POST(self) -> None:
            req = self._request("POST")
            if req.path == "/v1/SubmitFeedback":
                self._answer(200, {})
            else:
                self._answer(404, {})

        def log_message(self, format: str, *args: Any) -> None:
            pass

    api.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.httpd.daemon_threads = True
    # A client that hangs up early (the size limit test) is not a server error.
    api.httpd.handle_error = lambda request, address: None
    thread = threading.Thread(target=api.httpd.serve_forever, daemon=True)
    thread.start()
    yield api
    api.httpd.shutdown()
    api.httpd.server_close()


@pytest.fixture
def api(_api: FakeStopNCII) -> FakeStopNCII:
    _api.reset()
    return _api


def rec(value: str, status: str, ts: int, signal: str = "ImagePDQ", **extra: Any) -> dict[str, Any]:
    return {
        "lastModtimestamp": ts,
        "signalType": signal,
        "hashValue": value,
        "hashStatus": status,
        "caseNumbers": {f"case-{ts}": status},
        **extra,
    }


def client(api: FakeStopNCII, **kwargs: Any) -> StopNCIIClient:
    return StopNCIIClient(api.base, subscription_key=SUB_KEY, function_key=FN_KEY, **kwargs)


def feed_for(store: Store, api: FakeStopNCII, **config: Any) -> int:
    if not any(b.name == "ncii" for b in store.list_banks()):
        store.create_bank("ncii")
    feed = add_feed(
        store,
        bank="ncii",
        name="stopncii",
        kind="stopncii",
        url=api.base,
        config={"subscription_key": SUB_KEY, "function_key": FN_KEY, "retries": 0, **config},
    )
    return feed.id


def in_bank(store: Store) -> dict[str, str | None]:
    return {e.value: e.source for e in store.iter_entries("ncii")}


# -- the client -----------------------------------------------------------------------------


def test_client_pages_through_the_stream_with_its_keys(
    api: FakeStopNCII, hex_hashes: Hashes
) -> None:
    a, b, c = hex_hashes(3)
    api.records += [
        rec(a, "Received", 100, caseNumbers=[]),  # the server has sent [] for "no cases"
        rec(
            b,
            "Active",
            101,
            CSPFeedbacks=[{"source": "X", "feedbackValue": "Undefined", "tags": ["t"]}],
            hashRegions=["UK"],
        ),
        rec(c, "Withdrawn", 102),
    ]
    with client(api) as cl:
        pages = list(cl.iter_pages(start_timestamp=50, page_size=2))
    assert [len(p.records) for p in pages] == [2, 1]
    assert [p.has_more for p in pages] == [True, False]
    assert pages[-1].next_set_timestamp == 103
    first, second, third = (r for p in pages for r in p.records)
    assert (first.status, first.case_numbers, first.live) == ("Received", {}, True)
    # An unknown feedback value is kept as sent, never a reason to drop the record.
    assert second.feedbacks[0].value == "Undefined" and second.feedbacks[0].tags == ("t",)
    assert third.removed and not third.live and third.case_numbers == {"case-102": "Withdrawn"}
    assert [r.params for r in api.requests] == [
        {"startTimestamp": "50", "pageSize": "2"},
        {"startTimestamp": "50", "pageSize": "2", "nextPageToken": "tok-50-2"},
    ]
    for r in api.requests:
        assert r.headers[SUBSCRIPTION_HEADER.lower()] == SUB_KEY
        assert r.headers[FUNCTION_HEADER] == FN_KEY


def test_a_malformed_record_is_reported_not_fatal() -> None:
    page = parse_page(
        {
            "count": 3,
            "hashRecords": [
                {"hashValue": "ab", "signalType": "ImagePDQ"},
                "junk",
                {"hashValue": "cd", "hashStatus": "Deleted"},
            ],
            "hasMoreRecords": False,
            "nextPageToken": None,
            "nextSetTimestamp": "1700000000",
        }
    )
    assert [b.index for b in page.bad_records] == [1, 2]
    assert "no hashStatus" in page.bad_records[0].message
    assert page.records[0].removed and page.records[0].signal_type == "Unknown"
    assert page.next_set_timestamp == 1700000000 and page.next_page_token is None
    with pytest.raises(StopNCIIError):
        parse_page(["not", "a", "page"])


def test_submit_feedback_sends_the_partner_shape(api: FakeStopNCII, hex_hashes: Hashes) -> None:
    a, b = hex_hashes(2)
    with client(api) as cl:
        sent = cl.submit_feedback(
            [
                HashFeedback(a, FeedbackValue.BLOCKED, ("Nude", "Adult", "Nude")),
                HashFeedback(b, FeedbackValue.PENDING_REVIEW),
            ]
        )
        cl.submit_one(a, "NotBlocked", ["reviewed"])
        assert cl.submit_feedback([]) == 0
    assert sent == 2
    first, second = api.requests
    assert (first.method, first.path) == ("POST", "/v1/SubmitFeedback")
    assert first.body == {
        "count": 2,
        "hashFeedbacks": [
            {"hashValue": a, "feedbackValue": "Blocked", "tags": ["Adult", "Nude"]},
            {"hashValue": b, "feedbackValue": "PendingReview", "tags": []},
        ],
    }
    assert first.headers[SUBSCRIPTION_HEADER.lower()] == SUB_KEY
    assert first.headers[FUNCTION_HEADER] == FN_KEY
    assert first.headers["content-type"] == "application/json"
    assert second.body["hashFeedbacks"] == [
        {"hashValue": a, "feedbackValue": "NotBlocked", "tags": ["reviewed"]}
    ]


def test_a_refused_key_is_explained_without_showing_it(api: FakeStopNCII) -> None:
    api.status = 401
    with client(api, retries=3) as cl, pytest.raises(StopNCIIError) as info:
        cl.fetch_hashes(start_timestamp=10)
    err = info.value
    assert err.http_status == 401 and "HTTP 401" in err.message
    assert "subscription key" in (err.hint or "")
    assert SUB_KEY not in str(err) and SUB_KEY not in repr(cl)
    assert len(api.requests) == 1  # a 401 is not retried
    with pytest.raises(StopNCIIError) as missing:
        StopNCIIClient(api.base, subscription_key="")
    assert missing.value.code == "bad_feed"


# -- the feed -------------------------------------------------------------------------------


def test_withdrawn_and_deleted_records_remove_their_hashes(
    store: Store, api: FakeStopNCII, hex_hashes: Hashes
) -> None:
    a, w, x, manual = hex_hashes(4, seed=1)
    video = hex_hashes(1, nbytes=16, seed=2)[0]
    store.create_bank("ncii")
    store.add_entries("ncii", [NewEntry("pdq", manual, source="own-reports")])
    api.records += [
        rec(a, "Active", 100),
        rec(video, "Received", 101, signal="VideoMD5"),
        rec("some text", "Active", 102, signal="Text"),  # not a signal Rempart stores
        rec(w, "Withdrawn", 103),  # withdrawn before we ever had it: nothing to do
        rec(x, "Pending", 104),  # unknown status: reported, nothing done
        rec(manual, "Active", 105),  # already in the bank from another source
    ]
    feed_id = feed_for(store, api, page_size=2)
    report = sync_feed(store, feed_id)
    assert (report.added, report.removed, report.duplicates, report.skipped) == (2, 0, 1, 1)
    assert report.read == 6 and [e.code for e in report.errors] == ["unknown_status"]
    assert in_bank(store) == {manual: "own-reports", a: "feed:stopncii", video: "feed:stopncii"}
    (entry,) = store.lookup_exact("pdq", a)
    assert entry.meta == {"stopncii_status": "Active", "stopncii_modified": 100}
    feed = FeedRepository(store).get(feed_id)
    assert feed.cursor == {"start_timestamp": 106, "page_token": None}
    assert feed.last_error is not None and "1 bad record(s)" in feed.last_error
    assert "'Pending'" in feed.last_error

    # The people behind a and the video withdraw them: the stream sends their new state.
    api.requests.clear()
    api.records += [
        rec(a, "Withdrawn", 200),
        rec(video, "Deleted", 201, signal="VideoMD5"),
        rec(manual, "Withdrawn", 202),
    ]
    report = sync_feed(store, feed_id)
    assert (report.added, report.removed) == (0, 2)
    assert store.lookup_exact("pdq", a) == []
    assert store.lookup_exact("md5", video) == []
    # The feed never owned the hand-imported copy: it stays (see docs/feeds.md).
    assert in_bank(store) == {manual: "own-reports"}
    assert api.requests[0].params == {"startTimestamp": "106", "pageSize": "2"}
    assert FeedRepository(store).get(feed_id).cursor["start_timestamp"] == 203

    # Nothing new: one request, nothing changes.
    report = sync_feed(store, feed_id)
    assert report.not_modified and (report.added, report.removed) == (0, 0)


def test_the_latest_record_of_a_hash_wins_within_a_run(
    store: Store, api: FakeStopNCII, hex_hashes: Hashes
) -> None:
    gone, back = hex_hashes(2, seed=3)
    api.records += [
        rec(gone, "Active", 11),
        rec(back, "Withdrawn", 12),
        rec(gone, "Withdrawn", 13),
        rec(back, "Active", 14),
    ]
    feed_id = feed_for(store, api, page_size=1)
    report = sync_feed(store, feed_id)
    assert (report.added, report.removed) == (1, 0)
    assert in_bank(store) == {back: "feed:stopncii"}


def test_a_restart_resumes_from_the_checkpoint(
    store: Store, api: FakeStopNCII, hex_hashes: Hashes
) -> None:
    hashes = hex_hashes(5, seed=4)
    api.records += [rec(h, "Active", 10 + i) for i, h in enumerate(hashes)]
    # One page per batch: each page is written and checkpointed before the next is read.
    feed_id = feed_for(store, api, page_size=2, batch_records=1)
    api.failing_tokens.add("tok-10-4")
    with pytest.raises(StopNCIIError):
        sync_feed(store, feed_id)
    feed = FeedRepository(store).get(feed_id)
    assert "HTTP 503" in (feed.last_error or "")
    assert feed.cursor == {"start_timestamp": 10, "page_token": "tok-10-4"}
    assert set(in_bank(store)) == set(hashes[:4])

    # The process restarts (a new Store on the same database would do the same).
    api.failing_tokens.clear()
    api.requests.clear()
    report = sync_feed(store, feed_id)
    assert report.added == 1 and report.read == 1
    assert api.requests[0].params["nextPageToken"] == "tok-10-4"
    assert set(in_bank(store)) == set(hashes)
    # Every page was served (and processed) once: the run resumed at the failed page.
    assert api.served == Counter({(10, 0): 1, (10, 2): 1, (10, 4): 1})
    feed = FeedRepository(store).get(feed_id)
    assert feed.cursor == {"start_timestamp": 15, "page_token": None}
    assert feed.last_error is None


def test_an_expired_page_token_rereads_from_the_timestamp(
    store: Store, api: FakeStopNCII, hex_hashes: Hashes
) -> None:
    (a,) = hex_hashes(1, seed=5)
    api.records.append(rec(a, "Active", 50))
    feed_id = feed_for(store, api)
    repo = FeedRepository(store)
    assert repo.claim(feed_id, "setup", lease_s=60, force=True) is not None
    repo.finish(feed_id, "setup", error=None, cursor={"start_timestamp": 40, "page_token": "old"})
    report = sync_feed(store, feed_id)
    assert report.added == 1
    assert [r.params.get("nextPageToken") for r in api.requests] == ["old", None]
    assert repo.get(feed_id).cursor == {"start_timestamp": 51, "page_token": None}


def test_feedback_through_the_feeds_client(
    store: Store, api: FakeStopNCII, hex_hashes: Hashes
) -> None:
    (a,) = hex_hashes(1, seed=6)
    feed = FeedRepository(store).get(feed_for(store, api))
    with stopncii_client(feed) as cl:
        cl.submit_one(a, FeedbackValue.BLOCKED, ["ncii"])
    (req,) = api.requests
    assert req.headers[SUBSCRIPTION_HEADER.lower()] == SUB_KEY
    assert req.body == {
        "count": 1,
        "hashFeedbacks": [{"hashValue": a, "feedbackValue": "Blocked", "tags": ["ncii"]}],
    }
    assert SUB_KEY not in json.dumps(feed.to_dict()) and SUB_KEY not in repr(feed)


def test_reads_are_retried_on_server_errors(api: FakeStopNCII) -> None:
    api.status = 503
    with client(api, retries=1) as cl, pytest.raises(StopNCIIError) as info:
        cl.fetch_hashes(start_timestamp=10)
    assert info.value.http_status == 503
    assert len(api.requests) == 2
