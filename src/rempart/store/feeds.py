"""Feed definitions and their run bookkeeping: which remote list fills which bank, and where
the last pull stopped.

A *feed* pulls a remote hash list into one bank on a schedule (the sync logic lives in
:mod:`rempart.exchanges.feeds`). This module only keeps the rows:

* the definition (tenant, bank, name, kind, URL, interval, kind-specific ``config``);
* the ``cursor`` where the next pull resumes (an ETag, or StopNCII's timestamp and page
  token);
* ``last_run_at`` and ``last_error``;
* a **lease**, so one feed is never synced by two workers at once.

Leases
------
:meth:`FeedRepository.claim` sets ``last_run_at`` to now (an ``UPDATE`` guarded by its old
value) and reserves the feed for its caller for ``lease_s`` seconds. The lease is kept in
the ``cursor`` column under the reserved key ``_lease`` (the table has no column for it;
:attr:`FeedInfo.cursor` never shows it). Every checkpoint during a run renews the lease and
fails with :class:`LeaseLostError` if another worker has taken the feed over (which it only
can once the lease ran out, e.g. after a crash), so a stale worker stops instead of writing
an old cursor over a newer one. :meth:`FeedRepository.finish` releases it.

Like the webhook outbox, this bookkeeping does not take the store's global write lock (a
feed's claim must not queue behind a bulk import): the feed row is locked with ``FOR
UPDATE`` on PostgreSQL, and SQLite has one writer anyway.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, cast, get_args
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Connection, Engine, Row, Table, delete, insert, select, update

from rempart.errors import ConflictError, NotFoundError, RempartError
from rempart.store import db
from rempart.store.models import Feed, banks_table, entries_table
from rempart.store.records import validate_name
from rempart.store.repository import BankRef, Store

FeedKind = Literal["jsonl", "csv", "hma", "stopncii"]
#: Every kind of feed: hash lists at a URL in one of the exchange formats, or StopNCII's API.
FEED_KINDS: Final[tuple[str, ...]] = get_args(FeedKind)

#: Shortest schedule accepted: feeds are polled, and a tighter loop only loads the remote end.
MIN_INTERVAL_S: Final = 1
MAX_INTERVAL_S: Final = 31 * 24 * 3600
MAX_URL_LEN: Final = 2048
#: ``config`` is settings, not data: a few headers and numbers.
MAX_CONFIG_BYTES: Final = 16 * 1024
#: Stored errors are for a person reading the feed list, not a full response dump.
MAX_ERROR_LEN: Final = 2000
#: The key under which the lease lives in the ``cursor`` column.
LEASE_KEY: Final = "_lease"
#: Entries a feed adds carry this ``source``, followed by the feed's name.
SOURCE_PREFIX: Final = "feed:"

feeds_table = cast(Table, Feed.__table__)
F = feeds_table.c
B = banks_table.c
E = entries_table.c

_ID_CHUNK: Final = 500


class LeaseLostError(RempartError):
    """This worker no longer holds the feed's lease (it ran out and another worker took it,
    or the feed was deleted): stop the run without writing anything more."""

    code = "feed_lease_lost"
    status = 409


def source_tag(name: str) -> str:
    """The ``source`` of every entry feed ``name`` adds: how the feed knows what it owns."""
    return SOURCE_PREFIX + name


def redact_url(url: str) -> str:
    """``url`` without user info, query or fragment (where tokens hide), for logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    shown = urlunsplit((parts.scheme, host, parts.path, "", ""))
    return shown + ("?..." if parts.query else "")


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as safe to show: header values and anything named like a secret masked."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        lowered = key.lower()
        if lowered == "headers" and isinstance(value, Mapping):
            out[key] = {h: "***" for h in value}
        elif any(word in lowered for word in ("key", "secret", "token", "password", "auth")):
            out[key] = "***" if value else value
        else:
            out[key] = value
    return out


# -- records --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """A feed as stored. ``url`` and ``config`` stay out of ``repr`` (they can hold secrets:
    a token in the query string, an ``Authorization`` header, a subscription key)."""

    id: int
    tenant: str
    bank_id: int
    bank: str
    name: str
    kind: FeedKind
    url: str = field(repr=False)
    interval_s: int
    config: Mapping[str, Any] = field(repr=False)
    #: Where the next pull resumes; kind-specific (``etag`` ..., ``start_timestamp`` ...).
    cursor: Mapping[str, Any]
    enabled: bool
    created_at: datetime
    last_run_at: datetime | None
    last_error: str | None
    #: While a worker holds the feed: until when, and who (``None`` when nobody does).
    lease_until: datetime | None = None
    lease_owner: str | None = None

    @property
    def source(self) -> str:
        """The ``source`` of the entries this feed adds (``feed:<name>``)."""
        return source_tag(self.name)

    def next_run_at(self, *, retry_s: float | None = None) -> datetime | None:
        """When the feed is due: ``last_run_at + interval_s`` (``None``: never run, due now).

        After a failed run, ``retry_s`` (when given and shorter) replaces the interval, so a
        transient failure does not hold back withdrawals for a whole interval.
        """
        if self.last_run_at is None:
            return None
        wait = float(self.interval_s)
        if self.last_error is not None and retry_s is not None:
            wait = min(wait, retry_s)
        return self.last_run_at + timedelta(seconds=wait)

    def is_due(self, now: datetime, *, retry_s: float | None = None) -> bool:
        """Whether an enabled, unleased feed should run at ``now``."""
        if not self.enabled or self.running(now):
            return False
        at = self.next_run_at(retry_s=retry_s)
        return at is None or at <= now

    def running(self, now: datetime) -> bool:
        """Whether some worker holds the feed's lease at ``now``."""
        return self.lease_until is not None and self.lease_until > now

    def to_dict(self, *, secrets: bool = False) -> dict[str, Any]:
        """A JSON-ready view for the API and CLI; secrets masked unless ``secrets=True``."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "bank": self.bank,
            "bank_id": self.bank_id,
            "name": self.name,
            "kind": self.kind,
            "url": self.url if secrets else redact_url(self.url),
            "interval_s": self.interval_s,
            "config": dict(self.config) if secrets else redact_config(self.config),
            "cursor": dict(self.cursor),
            "enabled": self.enabled,
            "created_at": self.created_at.isoformat(),
            "last_run_at": self.last_run_at.isoformat() if self.last_run_at else None,
            "last_error": self.last_error,
            "running_until": self.lease_until.isoformat() if self.lease_until else None,
        }


# -- validation -----------------------------------------------------------------------------


class FeedConfigError(RempartError):
    """A feed definition that cannot be accepted (``bad_feed``)."""

    code = "bad_feed"
    status = 422


def validate_kind(kind: object) -> FeedKind:
    """``kind`` if it is a feed kind, else ``bad_feed_kind``."""
    if kind not in FEED_KINDS:
        raise FeedConfigError(
            f"unknown feed kind {kind!r}",
            code="bad_feed_kind",
            hint=f"use one of: {', '.join(FEED_KINDS)}",
        )
    return cast(FeedKind, kind)


def validate_url(url: object) -> str:
    """An absolute ``http``/``https`` URL with a host, at most 2 KiB."""
    if not isinstance(url, str) or not url.strip() or len(url) > MAX_URL_LEN:
        raise FeedConfigError(
            "a feed needs a URL (at most 2048 characters)",
            code="bad_feed_url",
            hint="give the full address, e.g. https://example.org/hashes.jsonl",
        )
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise FeedConfigError(
            f"feed URL {redact_url(url)!r} is not an http(s) address",
            code="bad_feed_url",
            hint="give the full address, starting with https://",
        )
    return url


def validate_interval(value: object) -> int:
    """Seconds between runs: an int from 1 s to 31 days."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not MIN_INTERVAL_S <= value <= MAX_INTERVAL_S
    ):
        raise FeedConfigError(
            f"invalid feed interval {value!r}",
            code="bad_feed_interval",
            hint=f"give whole seconds from {MIN_INTERVAL_S} to {MAX_INTERVAL_S} (31 days)",
        )
    return value


def _json_object(value: object, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or any(not isinstance(k, str) for k in value):
        raise FeedConfigError(f"feed {what} must be a JSON object with string keys")
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise FeedConfigError(f"feed {what} is not JSON-serialisable: {exc}") from None
    if len(text) > MAX_CONFIG_BYTES:
        raise FeedConfigError(f"feed {what} is larger than {MAX_CONFIG_BYTES} bytes")
    out: dict[str, Any] = json.loads(text)
    return out


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the feed repository; use datetime.now(UTC)")
    return value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= MAX_ERROR_LEN else text[: MAX_ERROR_LEN - 3] + "..."


@contextmanager
def _bookkeeping(engine: Engine) -> Iterator[Connection]:
    """A short write transaction without the store's global write lock (see module doc)."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{db.WRITE_OPTION: True})
        with conn.begin():
            yield conn


# -- the repository -------------------------------------------------------------------------


class FeedRepository:
    """Feed rows on the store's database. Thread-safe; share one per process.

    Tenant-facing methods take an optional ``tenant``: given, a feed of another tenant is
    reported as not found (isolation); ``None`` is for the service's own jobs.
    ``create`` checks the definition's shape; kind-specific ``config`` keys are checked by
    :func:`rempart.exchanges.feeds.add_feed`, which is what the API and CLI should call.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._engine = store.engine

    @property
    def store(self) -> Store:
        """The store the feeds (and their banks) live in."""
        return self._store

    # -- definitions ---------------------------------------------------------------------------

    def create(
        self,
        tenant: str,
        bank: BankRef,
        name: str,
        kind: str,
        url: str,
        interval_s: int = 3600,
        config: Mapping[str, Any] | None = None,
        *,
        enabled: bool = True,
    ) -> FeedInfo:
        """Add a feed filling ``bank`` (a name in ``tenant``, or an id of one of its banks).

        Feed names are unique per tenant (they tag the entries a feed adds, see
        :func:`source_tag`). Raises ``bad_feed*`` (422), ``bank_not_found`` or ``feed_exists``.
        """
        validate_name(tenant, "tenant name")
        validate_name(name, "feed name")
        kind = validate_kind(kind)
        url = validate_url(url)
        interval_s = validate_interval(interval_s)
        cfg = _json_object(config, "config")
        bank_info = (
            self._store.get_bank(bank, tenant)
            if isinstance(bank, str)
            else self._store.get_bank_by_id(bank if isinstance(bank, int) else bank.id)
        )
        if bank_info.tenant != tenant:
            # Not "forbidden": to this tenant, another tenant's bank does not exist.
            raise NotFoundError(
                f"no bank with id {bank_info.id}",
                code="bank_not_found",
                hint="a feed fills a bank of its own tenant",
            )
        now = _now()
        with _bookkeeping(self._engine) as conn:
            taken = conn.execute(select(F.id).where(F.tenant == tenant, F.name == name)).first()
            if taken is not None:
                raise ConflictError(
                    f"a feed named {name!r} already exists"
                    + ("" if tenant == "default" else f" for tenant {tenant!r}"),
                    code="feed_exists",
                    hint="choose another name, or update the existing feed",
                )
            feed_id = conn.execute(
                insert(feeds_table).returning(F.id),
                {
                    "tenant": tenant,
                    "bank_id": bank_info.id,
                    "name": name,
                    "kind": kind,
                    "url": url,
                    "interval_s": interval_s,
                    "config": cfg,
                    "cursor": {},
                    "enabled": bool(enabled),
                    "created_at": now,
                    "last_run_at": None,
                    "last_error": None,
                },
            ).scalar_one()
            return self._get(conn, feed_id, None)

    def list(
        self, tenant: str | None = None, *, enabled: bool | None = None
    ) -> builtins.list[FeedInfo]:
        """Feeds (of ``tenant``, or all), by tenant and name."""
        query = self._query().order_by(F.tenant, F.name)
        if tenant is not None:
            query = query.where(F.tenant == tenant)
        if enabled is not None:
            query = query.where(F.enabled.is_(enabled))
        with db.read_transaction(self._engine) as conn:
            return [self._to_info(r) for r in conn.execute(query)]

    def get(self, feed_id: int, tenant: str | None = None) -> FeedInfo:
        """One feed; NotFoundError ``feed_not_found`` (also for another tenant's feed)."""
        with db.read_transaction(self._engine) as conn:
            return self._get(conn, feed_id, tenant)

    def get_by_name(self, name: str, tenant: str = "default") -> FeedInfo:
        """The feed ``name`` of ``tenant``; NotFoundError ``feed_not_found``."""
        with db.read_transaction(self._engine) as conn:
            row = conn.execute(self._query().where(F.tenant == tenant, F.name == name)).first()
        if row is None:
            raise self._not_found(f"no feed named {name!r}")
        return self._to_info(row)

    def update(
        self,
        feed_id: int,
        *,
        tenant: str | None = None,
        url: str | None = None,
        interval_s: int | None = None,
        config: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
        reset_cursor: bool = False,
    ) -> FeedInfo:
        """Change the fields given (``None`` leaves one alone); returns the new state.

        The name and bank cannot change: the name tags the entries the feed owns. Changing
        the URL or ``reset_cursor=True`` forgets the cursor, so the next run pulls the whole
        list again (StopNCII: from ``start_timestamp``).
        """
        values: dict[str, Any] = {}
        if url is not None:
            values["url"] = validate_url(url)
        if interval_s is not None:
            values["interval_s"] = validate_interval(interval_s)
        if config is not None:
            values["config"] = _json_object(config, "config")
        if enabled is not None:
            values["enabled"] = bool(enabled)
        with _bookkeeping(self._engine) as conn:
            current = self._locked_row(conn, feed_id, tenant)
            if reset_cursor or ("url" in values and values["url"] != current.url):
                lease = (current.cursor or {}).get(LEASE_KEY)
                values["cursor"] = {LEASE_KEY: lease} if lease else {}
            if values:
                conn.execute(update(feeds_table).where(F.id == feed_id).values(**values))
            return self._get(conn, feed_id, None)

    def delete(self, feed_id: int, tenant: str | None = None) -> FeedInfo:
        """Delete the feed row; returns it as it was. Its entries stay in the bank (see
        :func:`rempart.exchanges.feeds.delete_feed` to remove them too)."""
        with _bookkeeping(self._engine) as conn:
            info = self._get(conn, feed_id, tenant)
            conn.execute(delete(feeds_table).where(F.id == feed_id))
            return info

    # -- runs ----------------------------------------------------------------------------------

    def claim(
        self,
        feed_id: int,
        owner: str,
        *,
        lease_s: float,
        force: bool = False,
        retry_s: float | None = None,
        now: datetime | None = None,
    ) -> FeedInfo | None:
        """Reserve the feed for a run by ``owner``; ``None`` if it is not for this caller.

        Without ``force`` the feed must be enabled and due (see :meth:`FeedInfo.is_due`);
        with it (a run asked for by a person) only another worker's lease stops it. On
        success ``last_run_at`` becomes ``now`` and the lease runs ``lease_s`` seconds.
        Safe between threads and processes: the row is locked (PostgreSQL) or the database
        is (SQLite), and the UPDATE is guarded by the ``last_run_at`` that was read.
        """
        now = _aware(now or _now())
        with _bookkeeping(self._engine) as conn:
            row = conn.execute(
                self._query().where(F.id == feed_id).with_for_update(of=feeds_table)
            ).first()
            if row is None:
                return None
            info = self._to_info(row)
            if info.running(now) and info.lease_owner != owner:
                return None
            if not force and not info.is_due(now, retry_s=retry_s):
                return None
            cursor = dict(row.cursor or {})
            cursor[LEASE_KEY] = self._lease(owner, now, lease_s)
            old = row.last_run_at
            guard = F.last_run_at.is_(None) if old is None else F.last_run_at == old
            done = conn.execute(
                update(feeds_table)
                .where(F.id == feed_id, guard)
                .values(last_run_at=now, cursor=cursor)
            )
            if done.rowcount != 1:  # pragma: no cover - the lock above makes this a no-op
                return None
            return self._get(conn, feed_id, None)

    def checkpoint(
        self, feed_id: int, owner: str, cursor: Mapping[str, Any], *, lease_s: float
    ) -> None:
        """Save where the run has got to (and renew ``owner``'s lease).

        Raises :class:`LeaseLostError` if ``owner`` no longer holds the feed: the caller must
        stop, since another worker is now responsible for it.
        """
        new = _json_object(cursor, "cursor")
        with _bookkeeping(self._engine) as conn:
            self._held(conn, feed_id, owner)
            new[LEASE_KEY] = self._lease(owner, _now(), lease_s)
            conn.execute(update(feeds_table).where(F.id == feed_id).values(cursor=new))

    def finish(
        self,
        feed_id: int,
        owner: str,
        *,
        error: str | None,
        cursor: Mapping[str, Any] | None = None,
    ) -> None:
        """End ``owner``'s run: record ``error`` (``None`` clears it), optionally a last
        ``cursor``, and release the lease. Raises LeaseLostError if the lease was lost
        (then nothing is written: the new holder's record stands)."""
        with _bookkeeping(self._engine) as conn:
            row = self._held(conn, feed_id, owner)
            new = dict(row.cursor or {}) if cursor is None else _json_object(cursor, "cursor")
            new.pop(LEASE_KEY, None)
            conn.execute(
                update(feeds_table)
                .where(F.id == feed_id)
                .values(cursor=new, last_error=_clip(error))
            )

    # -- the entries a feed owns ---------------------------------------------------------------

    def owned_entries(self, feed: FeedInfo) -> dict[tuple[str, str], int]:
        """``(signal, value) -> entry id`` for every entry the feed added to its bank."""
        query = select(E.id, E.signal, E.value).where(
            E.bank_id == feed.bank_id, E.source == feed.source
        )
        with db.read_transaction(self._engine, snapshot=True) as conn:
            result = conn.execution_options(stream_results=True, yield_per=10_000).execute(query)
            return {(r.signal, r.value): r.id for r in result}

    def owned_ids(self, feed: FeedInfo, keys: Collection[tuple[str, str]]) -> builtins.list[int]:
        """Ids of the feed's own entries among ``keys`` (``(signal, value)`` pairs)."""
        wanted = set(keys)
        by_value = sorted({value for _, value in wanted})
        ids: builtins.list[int] = []
        with db.read_transaction(self._engine) as conn:
            for i in range(0, len(by_value), _ID_CHUNK):
                chunk = by_value[i : i + _ID_CHUNK]
                rows = conn.execute(
                    select(E.id, E.signal, E.value).where(
                        E.bank_id == feed.bank_id, E.source == feed.source, E.value.in_(chunk)
                    )
                )
                ids.extend(r.id for r in rows if (r.signal, r.value) in wanted)
        return sorted(ids)

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _lease(owner: str, now: datetime, lease_s: float) -> dict[str, str]:
        return {"owner": owner, "until": (now + timedelta(seconds=lease_s)).isoformat()}

    def _held(self, conn: Connection, feed_id: int, owner: str) -> Any:
        row = conn.execute(select(F.id, F.cursor).where(F.id == feed_id).with_for_update()).first()
        lease = (row.cursor or {}).get(LEASE_KEY) if row is not None else None
        if row is None or not isinstance(lease, dict) or lease.get("owner") != owner:
            raise LeaseLostError(
                f"feed {feed_id} is no longer held by this worker",
                hint="its lease ran out (or the feed was deleted); the next run starts afresh",
            )
        return row

    def _locked_row(self, conn: Connection, feed_id: int, tenant: str | None) -> Any:
        query = select(F.id, F.url, F.cursor).where(F.id == feed_id)
        if tenant is not None:
            query = query.where(F.tenant == tenant)
        row: Any = conn.execute(query.with_for_update()).first()
        if row is None:
            raise self._not_found(f"no feed with id {feed_id}")
        return row

    @staticmethod
    def _query() -> Any:
        return select(*feeds_table.c, B.name.label("bank_name")).select_from(
            feeds_table.join(banks_table, B.id == F.bank_id)
        )

    def _get(self, conn: Connection, feed_id: int, tenant: str | None) -> FeedInfo:
        query = self._query().where(F.id == feed_id)
        if tenant is not None:
            query = query.where(F.tenant == tenant)
        row = conn.execute(query).first()
        if row is None:
            raise self._not_found(f"no feed with id {feed_id}")
        return self._to_info(row)

    @staticmethod
    def _not_found(message: str) -> NotFoundError:
        return NotFoundError(
            message, code="feed_not_found", hint="list the feeds to see their names and ids"
        )

    @staticmethod
    def _to_info(row: Row[Any]) -> FeedInfo:
        cursor = dict(row.cursor or {})
        lease = cursor.pop(LEASE_KEY, None)
        until: datetime | None = None
        owner: str | None = None
        if isinstance(lease, dict):
            try:
                until = datetime.fromisoformat(str(lease.get("until"))).astimezone(UTC)
                owner = str(lease.get("owner"))
            except ValueError:
                until = owner = None
        return FeedInfo(
            id=row.id,
            tenant=row.tenant,
            bank_id=row.bank_id,
            bank=row.bank_name,
            name=row.name,
            kind=row.kind,
            url=row.url,
            interval_s=row.interval_s,
            config=dict(row.config or {}),
            cursor=cursor,
            enabled=bool(row.enabled),
            created_at=row.created_at,
            last_run_at=row.last_run_at,
            last_error=row.last_error,
            lease_until=until,
            lease_owner=owner,
        )
