"""Hash feeds: keep a bank in step with a remote hash list, on a schedule.

Two families of feed (see docs/feeds.md):

* **URL feeds** (``jsonl``, ``csv``, ``hma``): a hash list at an HTTP(S) address, in one of
  the exchange formats, read with the same parsers as :func:`~rempart.exchanges.import_file`.
  Each run makes the feed's part of the bank *mirror* the list: hashes new to the list are
  added, hashes this feed added earlier that the list no longer holds are removed. An ETag
  or Last-Modified from the last run is sent back; ``304 Not Modified`` means nothing to do.
* **StopNCII** (``stopncii``): the partner API's hash stream, read incrementally from a
  checkpoint. ``Active``/``Received`` records add their hash; a ``Withdrawn`` or ``Deleted``
  record removes it at once.

**Ownership.** Every entry a feed adds has ``source = "feed:<name>"`` (feed names are unique
per tenant and cannot be renamed). A feed only ever removes entries carrying its own tag, so
a hash someone imported by hand, or another feed added, is never taken out by this one; a
hash already in the bank when the feed first lists it stays owned by whoever added it. (A
row's own ``source`` field, if the list gives one, is kept in the entry's metadata as
``source``.) The source column was chosen over a metadata key because it is a plain
indexed-by-bank column, comparable the same way on SQLite and PostgreSQL, and it shows in
every match explanation and export.

**Atomicity.** A URL run reads and validates the whole list before it writes anything, then
applies removals in one transaction and additions in another, and saves its cursor last. A
run that fails before the writes (unreachable, HTTP error, too large, bad header, more bad
records than good) leaves the bank untouched and records ``last_error``. If it dies between
the two transactions, the next run completes the job: a run's effect depends only on the
list and the bank, never on the previous run. StopNCII runs apply their records in batches
(removals first, then additions) and checkpoint after each, so a restart resumes where the
last completed batch ended; re-reading a page is harmless, every change is idempotent.

**Concurrency.** A run first *claims* its feed (:meth:`FeedRepository.claim`), which sets
``last_run_at`` by an UPDATE guarded by its old value and takes a lease; other workers skip
a claimed feed, and a worker whose lease ran out is stopped at its next checkpoint.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import httpx

from rempart.egress import guarded_transport, http_client, is_refusal
from rempart.errors import ConflictError, HashFormatError, NotFoundError, RempartError
from rempart.exchanges.formats import RowError
from rempart.exchanges.importer import _READERS, _Lines
from rempart.exchanges.stopncii import SIGNALS, HashRecord, StopNCIIClient, StopNCIIError
from rempart.signals import get_signal
from rempart.store import NewEntry, Store
from rempart.store.feeds import (
    FEED_KINDS,
    FeedConfigError,
    FeedInfo,
    FeedKind,
    FeedRepository,
    LeaseLostError,
    redact_url,
)

__all__ = [
    "FEED_KINDS",
    "FeedError",
    "FeedInfo",
    "FeedKind",
    "FeedRepository",
    "FeedScheduler",
    "SyncReport",
    "add_feed",
    "delete_feed",
    "stopncii_client",
    "sync_feed",
    "update_feed",
    "validate_config",
]

log = logging.getLogger("rempart.feeds")

#: How long a run holds its feed. Longer than a URL run can take (``max_duration_s`` plus
#: the writes); StopNCII runs renew it at every checkpoint.
DEFAULT_LEASE_S: Final = 900.0
#: After a failed run, try again this soon (or at the feed's interval, if shorter).
DEFAULT_RETRY_S: Final = 60.0
#: Bad records listed in a report (all are counted).
MAX_LISTED_ERRORS: Final = 100
_REDIRECTS: Final = 5
_CONDITIONAL: Final = frozenset({"if-none-match", "if-modified-since"})
#: Request headers a feed's config may not set: they belong to the HTTP layer.
_RESERVED_HEADERS: Final = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", *_CONDITIONAL}
)


class FeedError(RempartError):
    """A feed run failed; the bank was left as it was (``feed_failed`` and more specific
    codes: ``feed_unreachable``, ``feed_http_error``, ``feed_too_large``, ``feed_empty``,
    ``feed_mostly_bad``, ``feed_busy``)."""

    code = "feed_failed"
    status = 502


# -- configuration --------------------------------------------------------------------------

_Checker = Callable[[str, Any], Any]


def _number(low: float, high: float) -> _Checker:
    def check(key: str, value: Any) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (low <= value <= high)
        ):
            raise FeedConfigError(f"config.{key} must be a number from {low:g} to {high:g}")
        return float(value)

    return check


def _integer(low: int, high: int) -> _Checker:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise FeedConfigError(f"config.{key} must be a whole number from {low} to {high}")
        return value

    return check


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FeedConfigError(f"config.{key} must be true or false")
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in "\r\n\x00"):
        raise FeedConfigError(f"config.{key} must be a non-empty single-line string")
    return value


def _headers(key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise FeedConfigError(
            f"config.{key} must be an object of header names to values",
            hint='e.g. {"Authorization": "Bearer <token>"}',
        )
    out: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_" for c in name):
            raise FeedConfigError(f"config.{key}: invalid header name {str(name)[:40]!r}")
        if name.lower() in _RESERVED_HEADERS:
            raise FeedConfigError(f"config.{key}: the {name} header is set by Rempart itself")
        # A header value never names itself in the error: it is usually a secret.
        if not isinstance(text, str) or any(c in text for c in "\r\n\x00"):
            raise FeedConfigError(f"config.{key}.{name} must be a single-line string")
        out[name] = text
    return out


#: Each kind's config keys: the check, and the default (``...``: required).
_URL_CONFIG: Final[dict[str, tuple[_Checker, Any]]] = {
    # Sent with every request, e.g. {"Authorization": "Bearer ..."}. Dropped if the server
    # redirects to another origin, so a secret never follows a redirect off its host.
    "headers": (_headers, {}),
    # Connect/read timeout of each network operation.
    "timeout_s": (_number(0.1, 600), 30.0),
    # The whole download, decompressed; a bigger body fails the run (the wrong URL, or a bomb).
    "max_bytes": (_integer(1, 8 * 1024**3), 512 * 1024 * 1024),
    # Wall-clock limit of one download, so a trickling server cannot hold the feed for ever.
    "max_duration_s": (_number(1, 3600), 600.0),
    # By default a list with no valid hash at all is treated as a broken feed rather than
    # "remove everything": an empty 200 is far more often a server fault than a real list.
    "allow_empty": (_flag, False),
}
_STOPNCII_CONFIG: Final[dict[str, tuple[_Checker, Any]]] = {
    "subscription_key": (_text, ...),
    "function_key": (_text, None),
    "page_size": (_integer(1, 10_000), 800),
    "timeout_s": (_number(0.1, 600), 30.0),
    "retries": (_integer(0, 10), 2),
    # Where the very first run starts (unix seconds); Meta's client starts at 10.
    "start_timestamp": (_integer(0, 2**62), 10),
    # Records gathered before they are written and the checkpoint moves (memory vs. redo).
    "batch_records": (_integer(1, 1_000_000), 50_000),
    # Pages read by one run; the next run continues from the checkpoint.
    "max_pages": (_integer(1, 1_000_000), 10_000),
}


def _spec(kind: str) -> dict[str, tuple[_Checker, Any]]:
    if kind not in FEED_KINDS:
        raise FeedConfigError(
            f"unknown feed kind {kind!r}",
            code="bad_feed_kind",
            hint=f"use one of: {', '.join(FEED_KINDS)}",
        )
    return _STOPNCII_CONFIG if kind == "stopncii" else _URL_CONFIG


def validate_config(kind: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check a feed's ``config`` for ``kind``; returns it cleaned (defaults not filled in).

    Unknown keys are refused (a misspelt ``timout_s`` would otherwise be ignored silently).
    """
    spec = _spec(kind)
    given = dict(config or {})
    unknown = sorted(k for k in given if k not in spec)
    if unknown:
        raise FeedConfigError(
            f"unknown config key(s) for a {kind} feed: {', '.join(unknown)}",
            hint=f"known: {', '.join(spec)}",
        )
    out: dict[str, Any] = {}
    for key, (check, default) in spec.items():
        if key in given and given[key] is not None:
            out[key] = check(key, given[key])
        elif default is ...:
            raise FeedConfigError(
                f"a {kind} feed needs config.{key}",
                hint="StopNCII gives partners an Ocp-Apim-Subscription-Key"
                if key == "subscription_key"
                else None,
            )
    return out


def _settings(feed: FeedInfo) -> dict[str, Any]:
    spec = _spec(feed.kind)
    given = validate_config(feed.kind, feed.config)
    return {k: given.get(k, default) for k, (_, default) in spec.items()}


# -- reports --------------------------------------------------------------------------------


@dataclass(slots=True)
class SyncReport:
    """What one run of a feed did.

    ``added``/``removed`` count entries written/deleted in the bank; ``duplicates`` hashes
    the bank already had; ``skipped`` records of a kind Rempart does not store (StopNCII
    text or URL signals); ``errors`` the bad records (at most 100 listed, ``error_count``
    counts all). ``not_modified``: the server said nothing changed (HTTP 304, or no new
    StopNCII records).
    """

    feed_id: int
    feed: str
    kind: str
    added: int = 0
    removed: int = 0
    duplicates: int = 0
    skipped: int = 0
    read: int = 0
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    not_modified: bool = False

    def error(self, err: RowError) -> None:
        """Count a bad record (and list it, up to the limit)."""
        self.error_count += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append(err)

    def problem(self) -> str | None:
        """The one-line note a good run with bad records leaves in ``last_error``."""
        if not self.error_count:
            return None
        return f"{self.error_count} bad record(s) skipped; first: {self.errors[0]}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for the API and the CLI's ``--json``)."""
        return {
            "feed_id": self.feed_id,
            "feed": self.feed,
            "kind": self.kind,
            "added": self.added,
            "removed": self.removed,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "read": self.read,
            "not_modified": self.not_modified,
            "error_count": self.error_count,
            "errors": [e.to_dict() for e in self.errors],
        }


# -- public API -----------------------------------------------------------------------------


def add_feed(
    store: Store,
    *,
    bank: str | int,
    name: str,
    kind: str,
    url: str,
    tenant: str = "default",
    interval_s: int = 3600,
    config: Mapping[str, Any] | None = None,
    enabled: bool = True,
) -> FeedInfo:
    """Define a feed that fills ``bank`` (of ``tenant``) from ``url`` every ``interval_s``.

    For ``stopncii``, ``url`` is the API's base URL (``https://api.stopncii.org/v1``) and
    ``config`` needs ``subscription_key``. The first run happens on the scheduler's next
    tick (or call :func:`sync_feed`).
    """
    cleaned = validate_config(kind, config)
    return FeedRepository(store).create(
        tenant, bank, name, kind, url, interval_s, cleaned, enabled=enabled
    )


def update_feed(
    store: Store,
    feed_id: int,
    *,
    tenant: str | None = None,
    url: str | None = None,
    interval_s: int | None = None,
    config: Mapping[str, Any] | None = None,
    enabled: bool | None = None,
    reset_cursor: bool = False,
) -> FeedInfo:
    """Change a feed (``config`` replaces the whole config and is checked for the kind)."""
    repo = FeedRepository(store)
    if config is not None:
        config = validate_config(repo.get(feed_id, tenant).kind, config)
    return repo.update(
        feed_id,
        tenant=tenant,
        url=url,
        interval_s=interval_s,
        config=config,
        enabled=enabled,
        reset_cursor=reset_cursor,
    )


def sync_feed(
    store: Store,
    feed_id: int,
    *,
    tenant: str | None = None,
    owner: str | None = None,
    lease_s: float = DEFAULT_LEASE_S,
    allow_private: bool = True,
) -> SyncReport:
    """Run one feed now, whatever its schedule (a person asked for it); returns the report.

    ``allow_private=False`` refuses to connect to non-public addresses
    (:mod:`rempart.egress`); the service passes its ``egress_allow_private`` setting.

    Raises ``feed_not_found``, ConflictError ``feed_busy`` when another worker is running
    it, or the run's error (a :class:`FeedError`, an ImportFormatError for a list that
    cannot be read, a StopNCIIError), after recording it in ``last_error``.
    """
    repo = FeedRepository(store)
    repo.get(feed_id, tenant)  # not found (or another tenant's) -> NotFoundError
    who = owner or _owner_id()
    feed = repo.claim(feed_id, who, lease_s=lease_s, force=True)
    if feed is None:
        raise ConflictError(
            f"feed {feed_id} is being synced by another worker",
            code="feed_busy",
            hint="wait for that run to finish, then look at the feed's last_run_at",
        )
    return _run(repo, feed, who, lease_s, allow_private)


def delete_feed(
    store: Store,
    feed_id: int,
    *,
    tenant: str | None = None,
    keep_entries: bool = False,
) -> tuple[FeedInfo, int]:
    """Delete a feed and, unless ``keep_entries``, the entries it added; returns the feed
    as it was and how many entries went.

    Removing them is the default: once the feed is gone nothing would ever withdraw them,
    and for StopNCII that would break the promise that a withdrawn hash stops matching.
    """
    repo = FeedRepository(store)
    info = repo.get(feed_id, tenant)
    who = _owner_id()
    # Holding the lease keeps a run from adding entries behind our back.
    if repo.claim(feed_id, who, lease_s=DEFAULT_LEASE_S, force=True) is None:
        raise ConflictError(
            f"feed {feed_id} is being synced by another worker",
            code="feed_busy",
            hint="try again when the run is over",
        )
    removed = 0
    try:
        if not keep_entries:
            ids = list(repo.owned_entries(info).values())
            if ids:
                removed = store.remove_entries(info.bank_id, ids).count
    except BaseException:
        repo.finish(feed_id, who, error=info.last_error)
        raise
    repo.delete(feed_id)
    log.info("feed %s (%d) deleted; %d entries removed", info.name, info.id, removed)
    return info, removed


def stopncii_client(feed: FeedInfo, *, allow_private: bool = True) -> StopNCIIClient:
    """A StopNCII client with a ``stopncii`` feed's URL and keys (e.g. to send feedback)."""
    if feed.kind != "stopncii":
        raise FeedConfigError(f"feed {feed.name!r} is a {feed.kind} feed, not a stopncii one")
    cfg = _settings(feed)
    return StopNCIIClient(
        feed.url,
        subscription_key=cfg["subscription_key"],
        function_key=cfg["function_key"],
        timeout_s=cfg["timeout_s"],
        retries=cfg["retries"],
        transport=None if allow_private else guarded_transport(),
    )


# -- one run --------------------------------------------------------------------------------


def _owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _run(
    repo: FeedRepository, feed: FeedInfo, owner: str, lease_s: float, allow_private: bool
) -> SyncReport:
    """Run a claimed feed, record the outcome and release it."""
    report = SyncReport(feed_id=feed.id, feed=feed.name, kind=feed.kind)
    started = time.monotonic()
    try:
        if feed.kind == "stopncii":
            _sync_stopncii(repo, feed, owner, lease_s, report, allow_private)
            cursor: dict[str, Any] | None = None  # checkpointed as it went
            note = report.problem()
        else:
            cursor, note = _sync_url(repo, feed, report, allow_private)
    except LeaseLostError:
        log.warning("feed %s (%d): lease lost; run abandoned", feed.name, feed.id)
        raise
    except BaseException as exc:
        message = _describe(exc)
        log.warning("feed %s (%d) failed: %s", feed.name, feed.id, message)
        with suppress(LeaseLostError):  # another worker owns the record now
            repo.finish(feed.id, owner, error=message)
        if isinstance(exc, (RempartError, KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(exc, Exception):
            raise FeedError(message) from exc
        raise
    repo.finish(feed.id, owner, error=note, cursor=cursor)
    log.info(
        "feed %s (%d): +%d -%d, %d bad record(s)%s in %.2f s",
        feed.name,
        feed.id,
        report.added,
        report.removed,
        report.error_count,
        " (not modified)" if report.not_modified else "",
        time.monotonic() - started,
    )
    return report


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RempartError):
        return str(exc)
    if isinstance(exc, httpx.HTTPError):
        # httpx's own text may include the URL (and a token in it): name the failure only.
        return f"cannot fetch the feed: {type(exc).__name__}"
    return f"internal error: {type(exc).__name__} (see the service log)"


# -- URL feeds ------------------------------------------------------------------------------


class _Body(io.RawIOBase):
    """A streamed response body as a file, enforcing the size and time limits."""

    def __init__(self, chunks: Iterator[bytes], max_bytes: int, deadline: float) -> None:
        self._chunks = chunks
        self._max = max_bytes
        self._deadline = deadline
        self._held = memoryview(b"")
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._held:
            if time.monotonic() > self._deadline:
                raise FeedError(
                    "the download took longer than config.max_duration_s",
                    code="feed_timeout",
                    hint="raise max_duration_s, or check the server",
                )
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self.total += len(chunk)
            if self.total > self._max:
                raise FeedError(
                    f"the feed is larger than config.max_bytes ({self._max} bytes)",
                    code="feed_too_large",
                    hint="raise max_bytes if the list really is that big",
                )
            self._held = memoryview(chunk)
        n = min(len(buffer), len(self._held))
        buffer[:n] = self._held[:n]
        self._held = self._held[n:]
        return n


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or ""), parts.port


@contextmanager
def _get(http: httpx.Client, url: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
    """GET ``url``, following up to 5 redirects by hand: the configured headers (secrets)
    are dropped when a redirect leaves the origin, and only http(s) targets are followed."""
    current, sent = url, headers
    for _ in range(_REDIRECTS + 1):
        response = http.send(http.build_request("GET", current, headers=sent), stream=True)
        if not response.has_redirect_location:
            try:
                yield response
            finally:
                response.close()
            return
        target = urljoin(current, response.headers["location"])
        response.close()
        if urlsplit(target).scheme not in ("http", "https"):
            raise FeedError("the feed redirected to a non-HTTP address", code="feed_http_error")
        if _origin(target) != _origin(current):
            sent = {k: v for k, v in sent.items() if k.lower() in _CONDITIONAL}
        current = target
    raise FeedError(
        f"the feed redirected more than {_REDIRECTS} times",
        code="feed_http_error",
        hint="set the feed's URL to the final address",
    )


def _sync_url(
    repo: FeedRepository, feed: FeedInfo, report: SyncReport, allow_private: bool
) -> tuple[dict[str, Any], str | None]:
    """Mirror a URL feed into its bank; returns the new cursor and the run's note."""
    cfg = _settings(feed)
    store = repo.store
    headers = dict(cfg["headers"])
    etag = feed.cursor.get("etag")
    modified = feed.cursor.get("last_modified")
    if isinstance(etag, str):
        headers["If-None-Match"] = etag
    if isinstance(modified, str):
        headers["If-Modified-Since"] = modified
    tag = feed.source
    desired: set[tuple[str, str]] = set()
    to_add: list[NewEntry] = []
    try:
        with (
            http_client(
                allow_private=allow_private, timeout=httpx.Timeout(cfg["timeout_s"])
            ) as http,
            _get(http, feed.url, headers) as response,
        ):
            if response.status_code == 304 and (etag or modified):
                report.not_modified = True
                previous = feed.cursor.get("note")
                return dict(feed.cursor), previous if isinstance(previous, str) else None
            if response.status_code != 200:
                raise FeedError(
                    f"{redact_url(feed.url)} answered HTTP {response.status_code}",
                    code="feed_http_error",
                    hint="check the URL and the credentials in config.headers"
                    if response.status_code in (401, 403)
                    else "the next run retries",
                )
            new_cursor: dict[str, Any] = {}
            for name, header in (("etag", "etag"), ("last_modified", "last-modified")):
                if response.headers.get(header):
                    new_cursor[name] = response.headers[header]
            owned = repo.owned_entries(feed)
            deadline = time.monotonic() + cfg["max_duration_s"]
            body = io.BufferedReader(
                _Body(response.iter_bytes(), cfg["max_bytes"], deadline), 1 << 16
            )
            for record in _READERS[feed.kind](_Lines(body)):
                report.read += 1
                if record.error is not None:
                    report.error(record.error)
                    continue
                try:
                    entries = [_owned(e, tag) for e in record.entries]
                except HashFormatError as exc:
                    report.error(RowError(record.line, exc.code, exc.message))
                    continue
                for entry in entries:
                    key = (entry.signal, entry.value)
                    if key in desired:
                        report.duplicates += 1
                    elif key not in owned:
                        to_add.append(entry)
                    desired.add(key)
    except httpx.HTTPError as exc:
        if is_refusal(exc):
            raise FeedError(
                f"cannot fetch {redact_url(feed.url)}: {exc}",
                code="feed_unreachable",
                hint="the service only fetches public addresses unless "
                "service.egress_allow_private is set",
            ) from None
        raise FeedError(
            f"cannot fetch {redact_url(feed.url)}: {type(exc).__name__}",
            code="feed_unreachable",
            hint="check the URL and the network; the next run retries",
        ) from None

    good = report.read - report.error_count
    if report.error_count > good:
        raise FeedError(
            f"{report.error_count} of {report.read} records are bad; nothing was changed "
            f"(first: {report.errors[0]})",
            code="feed_mostly_bad",
            hint="the list's format may have changed; check the feed kind",
        )
    if not desired and owned and not cfg["allow_empty"]:
        raise FeedError(
            f"the feed lists no valid hash; refusing to remove its {len(owned)} entries",
            code="feed_empty",
            hint="if the list really is empty now, set config.allow_empty to true",
        )
    stale = [entry_id for key, entry_id in owned.items() if key not in desired]
    # Removals first: if the run were cut off between the two, a hash that left the list
    # is already gone (the additions come again with the next run).
    if stale:
        report.removed = store.remove_entries(feed.bank_id, stale).count
    if to_add:
        added = store.add_entries(feed.bank_id, to_add, return_ids=False)
        report.added = added.added
        report.duplicates += added.duplicates
    note = report.problem()
    if note:
        new_cursor["note"] = note
    return new_cursor, note


def _owned(entry: NewEntry, tag: str) -> NewEntry:
    """``entry`` tagged as the feed's; a source the list gave moves to metadata."""
    if entry.source and entry.source != tag and "source" not in entry.meta:
        return dataclasses.replace(entry, source=tag, meta={**entry.meta, "source": entry.source})
    return dataclasses.replace(entry, source=tag)


# -- StopNCII -------------------------------------------------------------------------------


def _sync_stopncii(
    repo: FeedRepository,
    feed: FeedInfo,
    owner: str,
    lease_s: float,
    report: SyncReport,
    allow_private: bool,
) -> None:
    """Read the StopNCII stream from the feed's checkpoint, applying it batch by batch."""
    cfg = _settings(feed)
    start = _int(feed.cursor.get("start_timestamp"), cfg["start_timestamp"])
    saved_token = feed.cursor.get("page_token")
    token = saved_token if isinstance(saved_token, str) and saved_token else None
    #: (signal, value) -> the entry to add, or None to remove; a later record replaces an
    #: earlier one for the same hash, as the stream's records are current states.
    pending: dict[tuple[str, str], NewEntry | None] = {}
    newest: int | None = None
    pages = 0
    token_retried = False
    with stopncii_client(feed, allow_private=allow_private) as client:
        while True:
            try:
                page = client.fetch_hashes(
                    start_timestamp=start, page_token=token, page_size=cfg["page_size"]
                )
            except StopNCIIError as exc:
                # Page tokens expire; the stream can always be re-read from the timestamp.
                if token and not token_retried and exc.http_status in (400, 404, 410):
                    log.info("feed %s: page token refused; re-reading from %d", feed.name, start)
                    token, token_retried = None, True
                    continue
                raise
            pages += 1
            for bad in page.bad_records:
                report.read += 1
                report.error(RowError(bad.index, "bad_record", f"page {pages}: {bad.message}"))
            for record in page.records:
                report.read += 1
                if record.last_modified is not None:
                    newest = max(newest or 0, record.last_modified)
                _take(record, feed.source, pending, report, pages)
            done = not page.has_more
            if not done and (page.next_page_token is None or page.next_page_token == token):
                raise StopNCIIError(
                    "FetchHashes says more records follow but gives no new page token",
                    hint="the next run resumes from the last checkpoint",
                )
            if done:
                cursor: dict[str, Any] = {
                    "start_timestamp": page.next_set_timestamp
                    if page.next_set_timestamp is not None
                    else (newest if newest is not None else start),
                    "page_token": None,
                }
            else:
                cursor = {"start_timestamp": start, "page_token": page.next_page_token}
            last = done or pages >= cfg["max_pages"]
            if last or len(pending) >= cfg["batch_records"]:
                _apply(repo, feed, pending, report)
                pending.clear()
                repo.checkpoint(feed.id, owner, cursor, lease_s=lease_s)
            if last:
                break
            start, token = cursor["start_timestamp"], cursor["page_token"]
    if report.read == 0:
        report.not_modified = True


def _take(
    record: HashRecord,
    tag: str,
    pending: dict[tuple[str, str], NewEntry | None],
    report: SyncReport,
    page: int,
) -> None:
    signal = SIGNALS.get(record.signal_type)
    if signal is None:
        report.skipped += 1  # text, URL, TMK...: not signals Rempart stores
        return
    try:
        value = get_signal(signal).validate(record.hash_value)
    except HashFormatError as exc:
        report.error(RowError(report.read, exc.code, f"page {page}: {exc.message}"))
        return
    key = (signal, value)
    # The status decides, never the hash value: Meta's HMA adapter compares the *hash* with
    # the withdrawn states (always false), so withdrawn hashes stay matchable there.
    if record.removed:
        pending[key] = None
    elif record.live:
        meta: dict[str, Any] = {"stopncii_status": record.status}
        if record.last_modified is not None:
            meta["stopncii_modified"] = record.last_modified
        pending[key] = NewEntry(signal, value, source=tag, meta=meta)
    else:
        report.error(
            RowError(
                report.read,
                "unknown_status",
                f"page {page}: hash {value[:16]}... has status {record.status[:40]!r}; "
                "left as it was",
            )
        )


def _apply(
    repo: FeedRepository,
    feed: FeedInfo,
    pending: Mapping[tuple[str, str], NewEntry | None],
    report: SyncReport,
) -> None:
    store = repo.store
    gone = [key for key, entry in pending.items() if entry is None]
    if gone:
        ids = repo.owned_ids(feed, gone)
        if ids:
            report.removed += store.remove_entries(feed.bank_id, ids).count
    new = [entry for entry in pending.values() if entry is not None]
    if new:
        result = store.add_entries(feed.bank_id, new, return_ids=False)
        report.added += result.added
        report.duplicates += result.duplicates


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# -- the scheduler --------------------------------------------------------------------------


class FeedScheduler:
    """A background thread that runs every enabled feed when it is due.

    Due means ``last_run_at + interval_s`` has passed (after a failure, ``retry_s`` if
    shorter). Feeds run one after another; one failing is logged, recorded in its
    ``last_error`` and never stops the others. Several processes may each run a scheduler
    on the same store: a feed is claimed before it runs, so it never runs twice at once.

    ``on_report(report)`` (optional) is called after each successful run, in this thread.
    """

    def __init__(
        self,
        store: Store,
        *,
        tick_s: float = 1.0,
        retry_s: float = DEFAULT_RETRY_S,
        lease_s: float = DEFAULT_LEASE_S,
        worker_id: str | None = None,
        on_report: Callable[[SyncReport], None] | None = None,
        allow_private: bool = True,
    ) -> None:
        self._repo = FeedRepository(store)
        self.allow_private = allow_private
        self.tick_s = tick_s
        self.retry_s = retry_s
        self.lease_s = lease_s
        self.worker_id = worker_id or _owner_id()
        self._on_report = on_report
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (no-op if it runs already)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="rempart-feeds", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to stop and wait for it (a run in progress finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_pending(self, now: datetime | None = None) -> list[SyncReport]:
        """Run every feed due at ``now`` once, in this thread; returns the good runs' reports."""
        reports: list[SyncReport] = []
        for feed in self._repo.list(enabled=True):
            if self._stop.is_set():
                break
            # A fresh clock per feed: runs before this one may have taken a while.
            at = now or datetime.now(UTC)
            if not feed.is_due(at, retry_s=self.retry_s):
                continue
            claimed = self._repo.claim(
                feed.id, self.worker_id, lease_s=self.lease_s, retry_s=self.retry_s, now=at
            )
            if claimed is None:
                continue  # another worker got there first
            try:
                report = _run(self._repo, claimed, self.worker_id, self.lease_s, self.allow_private)
            except NotFoundError:
                continue  # deleted while we looked
            except Exception:
                # Already logged and recorded in last_error by _run; on to the next feed.
                continue
            reports.append(report)
            if self._on_report is not None:
                try:
                    self._on_report(report)
                except Exception:
                    log.exception("feed report callback failed")
        return reports

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_pending()
            except Exception:  # the store is unreachable, say: try again next tick
                log.exception("feed scheduler tick failed")
            self._stop.wait(self.tick_s)
