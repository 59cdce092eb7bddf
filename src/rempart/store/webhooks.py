"""Webhook subscriptions and their delivery outbox.

A tenant subscribes a URL to events (``match``, ``verdict.block``, ``verdict.review``). The
scan path calls :meth:`WebhookRepository.enqueue`, which writes one ``pending`` row per
matching subscription in a single ``INSERT ... SELECT`` and returns: the scan never waits
for a receiver. Workers (:class:`rempart.service.webhooks.WebhookDispatcher`) claim due rows,
send them, and record the outcome; failures are retried with exponential backoff until the
row is ``dead`` (a dead letter a person can :meth:`~WebhookRepository.redeliver`).

Delivery is *at least once*: a claim leases a row for ``lease_s`` seconds (its
``next_attempt_at`` moves past the lease), so a worker that dies mid-send releases it when
the lease runs out, and another worker sends it again. Receivers deduplicate on the
delivery id.

Bookkeeping never takes the store's write lock (:func:`rempart.store.db.write_transaction`):
on PostgreSQL it would queue webhook rows behind a bulk import. Transactions here are plain
and tiny; concurrent workers are kept apart by ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and
by SQLite's single writer (``BEGIN IMMEDIATE``) on SQLite.
"""

from __future__ import annotations

import builtins
import json
import random
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, cast, get_args
from urllib.parse import urlsplit

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Table,
    column,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from rempart.errors import ConflictError, NotFoundError, RempartError
from rempart.store import db
from rempart.store.models import JsonType, UTCDateTime, Webhook, WebhookDelivery
from rempart.store.records import validate_name
from rempart.store.repository import Store

WebhookEvent = Literal["match", "verdict.block", "verdict.review"]
#: Every event a webhook can subscribe to.
EVENTS: Final[tuple[str, ...]] = get_args(WebhookEvent)

DeliveryStatus = Literal["pending", "delivered", "dead"]
DELIVERY_STATUSES: Final[tuple[str, ...]] = get_args(DeliveryStatus)

#: Attempts before a delivery is dead: 5 s, 10 s, ... 320 s apart, about 10 minutes in all.
DEFAULT_MAX_ATTEMPTS: Final = 8
DEFAULT_BACKOFF_BASE_S: Final = 5.0
DEFAULT_BACKOFF_CAP_S: Final = 3600.0
#: How long a claimed delivery is reserved for the worker that claimed it. It must outlast
#: one send (the HTTP timeout) with room to spare, or a second worker would send it too.
DEFAULT_LEASE_S: Final = 60.0

#: Every scan fans out one row per subscriber, so a tenant's subscriptions are bounded.
MAX_WEBHOOKS_PER_TENANT: Final = 50
MAX_URL_LEN: Final = 2048
MAX_ID: Final = 2**63 - 1
MAX_DESCRIPTION_LEN: Final = 1000
#: Stored errors are for a person reading the delivery log, not a full response dump.
MAX_ERROR_LEN: Final = 1000

W = cast(Table, Webhook.__table__).c
D = cast(Table, WebhookDelivery.__table__).c
webhooks_table = cast(Table, Webhook.__table__)
deliveries_table = cast(Table, WebhookDelivery.__table__)


class WebhookError(RempartError):
    """A webhook request that cannot be accepted (``bad_url``, ``unknown_event``, ...)."""

    code = "bad_webhook"
    status = 422


# -- records --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookInfo:
    """A subscription, as the API shows it (never with its secret)."""

    id: int
    tenant: str
    url: str
    events: tuple[str, ...]
    description: str
    enabled: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one webhook, and where its delivery stands."""

    id: int
    webhook_id: int
    tenant: str
    event: str
    payload: dict[str, Any]
    status: str
    #: Attempts made so far (a claim counts as one, whether or not the send finishes).
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class ClaimedDelivery(Delivery):
    """A delivery leased to one worker, with what it needs to send it."""

    url: str = ""
    #: Signing secret; kept out of ``repr`` so it never lands in a log line.
    secret: str = field(default="", repr=False)


# -- pure helpers ---------------------------------------------------------------------------


def new_secret() -> str:
    """A signing secret: ``whsec_`` and 32 random bytes, URL-safe base64."""
    return "whsec_" + secrets.token_urlsafe(32)


def retry_delay(
    attempts: int,
    *,
    base_s: float = DEFAULT_BACKOFF_BASE_S,
    cap_s: float = DEFAULT_BACKOFF_CAP_S,
    jitter: float = 0.2,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt.

    ``base_s * 2 ** (attempts - 1)``, capped at ``cap_s``, then spread by +-``jitter``
    (20 %) so that deliveries that failed together (a receiver outage) do not all come back
    in the same instant.
    """
    exponent = min(max(attempts - 1, 0), 40)
    delay = min(cap_s, base_s * 2.0**exponent)
    return max(0.0, min(cap_s, delay * (1.0 - jitter + 2.0 * jitter * rand())))


def validate_url(url: object) -> str:
    """``url`` if it is an absolute ``http``/``https`` URL a server can POST to."""
    if not isinstance(url, str) or not url.strip():
        raise WebhookError(
            "the webhook URL is missing",
            code="bad_url",
            hint="give the absolute URL of your receiver, e.g. https://example.org/rempart",
        )
    url = url.strip()
    if len(url) > MAX_URL_LEN:
        raise WebhookError(
            f"the webhook URL is {len(url)} characters long (at most {MAX_URL_LEN})",
            code="bad_url",
            hint="use a shorter URL; put identifiers in the path, not a long query",
        )
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise WebhookError(
            "the webhook URL contains spaces or control characters",
            code="bad_url",
            hint="percent-encode them",
        )
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise WebhookError(
            f"cannot parse the webhook URL {url!r}: {exc}", code="bad_url", hint=None
        ) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise WebhookError(
            f"the webhook URL must use http or https, not {parts.scheme or 'nothing'!r}",
            code="bad_url",
            hint="give an absolute URL such as https://example.org/rempart (https in production)",
        )
    if not parts.hostname:
        raise WebhookError(
            f"the webhook URL {url!r} has no host",
            code="bad_url",
            hint="give an absolute URL such as https://example.org/rempart",
        )
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and in the API's listings.
        raise WebhookError(
            "the webhook URL must not contain a user name or password",
            code="bad_url",
            hint="authenticate deliveries with the signature (Rempart-Signature header)",
        )
    if parts.fragment:
        raise WebhookError(
            "the webhook URL must not have a #fragment (it is never sent to the server)",
            code="bad_url",
            hint="remove the part after '#'",
        )
    return url


def validate_event(event: object) -> str:
    """``event`` if it is one of :data:`EVENTS`, else ``unknown_event``."""
    if not isinstance(event, str) or event not in EVENTS:
        raise WebhookError(
            f"unknown webhook event {event!r}",
            code="unknown_event",
            hint=f"use one of: {', '.join(EVENTS)}",
        )
    return event


def validate_events(events: object) -> tuple[str, ...]:
    """A non-empty list of known events, deduplicated, in :data:`EVENTS` order."""
    if isinstance(events, str) or not isinstance(events, Iterable):
        raise WebhookError(
            f"events must be a list of event names, got {type(events).__name__}",
            code="bad_events",
            hint=f'e.g. ["match"]; events: {", ".join(EVENTS)}',
        )
    chosen = {validate_event(e) for e in events}
    if not chosen:
        raise WebhookError(
            "a webhook needs at least one event",
            code="bad_events",
            hint=f"subscribe to one or more of: {', '.join(EVENTS)}",
        )
    return tuple(e for e in EVENTS if e in chosen)


def _validate_description(description: object) -> str:
    if description is None:
        return ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LEN:
        raise WebhookError(
            f"the description must be text of at most {MAX_DESCRIPTION_LEN} characters",
            code="bad_description",
            hint="keep it to a short note on what the receiver is",
        )
    if "\x00" in description:
        raise WebhookError("the description contains a NUL character", code="bad_description")
    return description


def _validate_payload(payload: object) -> dict[str, Any]:
    if not isinstance(payload, Mapping):
        raise WebhookError(
            f"a webhook payload is a JSON object, got {type(payload).__name__}",
            code="bad_payload",
        )
    try:
        # NaN/Infinity are not JSON; PostgreSQL's JSONB refuses them and receivers choke.
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise WebhookError(
            f"the webhook payload is not JSON-serialisable: {exc}", code="bad_payload"
        ) from None
    return dict(payload)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the webhook store; use datetime.now(UTC)")
    return value


@contextmanager
def _bookkeeping(engine: Engine) -> Iterator[Connection]:
    """A short write transaction *without* the store's global write lock.

    On SQLite, ``BEGIN IMMEDIATE`` (the store's write option) takes the one write lock up
    front, which avoids "database is locked" when two threads upgrade read locks at once. On
    PostgreSQL it is a plain transaction: row locks are enough here, and webhook rows must
    not wait behind a bulk import holding the store's advisory lock.
    """
    with engine.connect() as conn:
        conn = conn.execution_options(**{db.WRITE_OPTION: True})
        with conn.begin():
            yield conn


# -- the repository -------------------------------------------------------------------------


class WebhookRepository:
    """Webhook subscriptions (per tenant) and the delivery outbox, on the store's database.

    Thread-safe; share one per process. A tenant only ever sees its own webhooks and
    deliveries: every tenant-facing method takes the tenant and filters on it.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_base_s: float = DEFAULT_BACKOFF_BASE_S,
        backoff_cap_s: float = DEFAULT_BACKOFF_CAP_S,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if backoff_base_s < 0 or backoff_cap_s < 0 or lease_s <= 0:
            raise ValueError("backoff and lease durations must be positive")
        self._store = store
        self._engine = store.engine
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.lease_s = lease_s

    # -- subscriptions ----------------------------------------------------------------------

    def create(
        self, tenant: str, url: str, events: Iterable[str], description: str = ""
    ) -> tuple[WebhookInfo, str]:
        """Subscribe ``url`` to ``events``; returns the webhook and its signing secret.

        The secret is returned here and never again (the API shows it once); receivers need
        it to check ``Rempart-Signature``. Raises :class:`WebhookError` (422) for a bad URL,
        an unknown event or an over-long description, and ConflictError
        ``too_many_webhooks`` past :data:`MAX_WEBHOOKS_PER_TENANT`.
        """
        validate_name(tenant, "tenant name")
        url = validate_url(url)
        chosen = validate_events(events)
        description = _validate_description(description)
        secret = new_secret()
        with _bookkeeping(self._engine) as conn:
            count = conn.execute(
                select(func.count()).select_from(webhooks_table).where(W.tenant == tenant)
            ).scalar_one()
            if count >= MAX_WEBHOOKS_PER_TENANT:
                raise ConflictError(
                    f"a tenant has at most {MAX_WEBHOOKS_PER_TENANT} webhooks",
                    code="too_many_webhooks",
                    hint="delete unused webhooks, or subscribe one receiver to several events",
                )
            row = conn.execute(
                insert(webhooks_table).returning(*webhooks_table.c),
                {
                    "tenant": tenant,
                    "url": url,
                    "secret": secret,
                    "events": list(chosen),
                    "description": description,
                    "enabled": True,
                    "created_at": _now(),
                },
            ).one()
        return _to_webhook(row), secret

    def list(self, tenant: str) -> list[WebhookInfo]:
        """The tenant's webhooks, oldest first."""
        with db.read_transaction(self._engine) as conn:
            rows = conn.execute(
                select(webhooks_table).where(W.tenant == tenant).order_by(W.id)
            ).all()
        return [_to_webhook(r) for r in rows]

    def get(self, tenant: str, webhook_id: int) -> WebhookInfo:
        """One of the tenant's webhooks; NotFoundError ``webhook_not_found`` otherwise."""
        with db.read_transaction(self._engine) as conn:
            return _to_webhook(self._webhook_row(conn, tenant, webhook_id))

    def delete(self, tenant: str, webhook_id: int) -> WebhookInfo:
        """Remove a webhook and its delivery log; returns what was removed."""
        with _bookkeeping(self._engine) as conn:
            info = _to_webhook(self._webhook_row(conn, tenant, webhook_id))
            conn.execute(delete(webhooks_table).where(W.id == info.id))
        return info

    # -- the outbox -------------------------------------------------------------------------

    def enqueue(self, tenant: str, event: str, payload: Mapping[str, Any]) -> int:
        """Queue ``event`` for every enabled webhook of ``tenant`` subscribed to it.

        One ``INSERT ... SELECT`` in one short transaction (this runs in the scan path);
        returns how many deliveries were queued (0 when nobody listens).
        """
        validate_event(event)
        data = _validate_payload(payload)
        now = _now()
        subscribers = select(
            W.id,
            literal(event),
            literal(data, JsonType),
            literal("pending"),
            literal(0),
            literal(now, UTCDateTime()),
            literal(now, UTCDateTime()),
        ).where(W.tenant == tenant, W.enabled.is_(True), self._subscribed(event))
        stmt = (
            insert(deliveries_table)
            .from_select(
                [
                    "webhook_id",
                    "event",
                    "payload",
                    "status",
                    "attempts",
                    "next_attempt_at",
                    "created_at",
                ],
                subscribers,
            )
            .returning(D.id)
        )  # rowcount is not reliable for INSERT ... SELECT on every driver
        with _bookkeeping(self._engine) as conn:
            return len(conn.execute(stmt).all())

    def claim_due(self, now: datetime, limit: int) -> builtins.list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries to the caller, oldest due first.

        Each claimed row counts one attempt and is hidden from other workers for
        :attr:`lease_s` seconds. Safe from several threads and processes at once: on
        PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets concurrent claims pass each other
        without waiting; on SQLite the single writer does the same job.
        """
        now = _aware(now)
        if limit <= 0:
            return []
        lease_until = now + timedelta(seconds=self.lease_s)
        is_due = (
            D.status == "pending",
            D.next_attempt_at <= now,
            D.webhook_id.in_(select(W.id).where(W.enabled.is_(True))),
        )
        # Workers poll often and are mostly idle: look first in a read transaction, which
        # takes no lock, so an idle poll never contends with writers (on SQLite, the one
        # write lock that scans' enqueues and imports need).
        with db.read_transaction(self._engine) as conn:
            if conn.execute(select(D.id).where(*is_due).limit(1)).first() is None:
                return []
        due = (
            select(D.id)
            .where(*is_due)
            .order_by(D.next_attempt_at, D.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(deliveries_table)
            .where(D.id.in_(due.scalar_subquery()), D.status == "pending")
            .values(next_attempt_at=lease_until, attempts=D.attempts + 1)
            # SQLite's RETURNING may not name other tables, so the webhook is a second query.
            .returning(*deliveries_table.c)
        )
        with _bookkeeping(self._engine) as conn:
            rows = conn.execute(stmt).all()
            if not rows:
                return []
            hooks = {
                h.id: h
                for h in conn.execute(
                    select(W.id, W.tenant, W.url, W.secret).where(
                        W.id.in_({r.webhook_id for r in rows})
                    )
                )
            }
        claimed = [
            ClaimedDelivery(
                **_delivery_fields(r, hooks[r.webhook_id].tenant),
                url=hooks[r.webhook_id].url,
                secret=hooks[r.webhook_id].secret,
            )
            for r in rows
        ]
        claimed.sort(key=lambda d: (d.next_attempt_at, d.id))
        return claimed

    def mark_delivered(self, delivery_id: int, status_code: int) -> None:
        """Record a 2xx answer: the delivery is done."""
        with _bookkeeping(self._engine) as conn:
            conn.execute(
                update(deliveries_table)
                .where(D.id == delivery_id)
                .values(
                    status="delivered",
                    last_status_code=status_code,
                    last_error=None,
                    delivered_at=_now(),
                )
            )

    def mark_failed(
        self, delivery_id: int, status_code: int | None, error: str, now: datetime
    ) -> Delivery | None:
        """Record a failed attempt; schedule a retry with backoff, or mark it ``dead``.

        ``status_code`` is the receiver's answer, or ``None`` when there was none (timeout,
        refused connection). Returns the delivery as it now stands (``None`` if it is gone,
        e.g. its webhook was deleted meanwhile). A delivery another worker has already
        delivered stays delivered.
        """
        now = _aware(now)
        with _bookkeeping(self._engine) as conn:
            row = conn.execute(
                select(D.attempts, D.status).where(D.id == delivery_id).with_for_update()
            ).first()
            if row is None:
                return None
            if row.status == "pending":
                values: dict[str, Any] = {
                    "last_status_code": status_code,
                    "last_error": (error or "failed")[:MAX_ERROR_LEN],
                }
                if row.attempts >= self.max_attempts:
                    values["status"] = "dead"
                else:
                    delay = retry_delay(
                        row.attempts, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s
                    )
                    values["next_attempt_at"] = now + timedelta(seconds=delay)
                conn.execute(update(deliveries_table).where(D.id == delivery_id).values(values))
            return self._delivery(conn, delivery_id)

    def deliveries(
        self,
        tenant: str,
        webhook_id: int,
        status: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Delivery]:
        """The delivery log of one of the tenant's webhooks, newest first."""
        if status is not None and status not in DELIVERY_STATUSES:
            raise WebhookError(
                f"unknown delivery status {status!r}",
                code="bad_status",
                hint=f"use one of: {', '.join(DELIVERY_STATUSES)}",
            )
        limit = max(1, min(int(limit), 1000))
        with db.read_transaction(self._engine) as conn:
            hook = self._webhook_row(conn, tenant, webhook_id)
            query = select(deliveries_table).where(D.webhook_id == hook.id)
            if status is not None:
                query = query.where(D.status == status)
            rows = conn.execute(query.order_by(D.id.desc()).limit(limit)).all()
        return [Delivery(**_delivery_fields(r, hook.tenant)) for r in rows]

    def get_delivery(self, tenant: str, delivery_id: int) -> Delivery:
        """One delivery of the tenant's; NotFoundError ``delivery_not_found`` otherwise."""
        with db.read_transaction(self._engine) as conn:
            row = self._tenant_delivery_row(conn, tenant, delivery_id)
        return Delivery(**_delivery_fields(row, tenant))

    def redeliver(self, tenant: str, delivery_id: int) -> Delivery:
        """Send a dead (or delivered) delivery again, with a fresh retry schedule.

        A pending delivery is already on its way: ConflictError ``delivery_pending``.
        """
        with _bookkeeping(self._engine) as conn:
            row = self._tenant_delivery_row(conn, tenant, delivery_id, lock=True)
            if row.status == "pending":
                raise ConflictError(
                    f"delivery {delivery_id} is still pending",
                    code="delivery_pending",
                    hint="it will be retried on schedule; redeliver dead deliveries only",
                )
            conn.execute(
                update(deliveries_table)
                .where(D.id == row.id)
                .values(status="pending", attempts=0, next_attempt_at=_now(), delivered_at=None)
            )
            return self._delivery(conn, row.id, tenant)

    # -- internals --------------------------------------------------------------------------

    def _subscribed(self, event: str) -> ColumnElement[bool]:
        """``webhooks.events`` contains ``event`` (JSONB ``@>`` / SQLite ``json_each``)."""
        if self._store.dialect == "postgresql":
            return type_coerce(W.events, JSONB).contains([event])
        members = (
            select(literal(1)).select_from(_json_each(W.events)).where(column("value") == event)
        )
        return exists(members)

    @staticmethod
    def _webhook_row(conn: Connection, tenant: str, webhook_id: int) -> Row[Any]:
        row = None
        if _storable_id(webhook_id):
            row = conn.execute(
                select(webhooks_table).where(W.id == webhook_id, W.tenant == tenant)
            ).first()
        if row is None:
            # The same answer whether the id does not exist or belongs to another tenant.
            raise NotFoundError(
                f"no webhook with id {webhook_id}",
                code="webhook_not_found",
                hint="list your webhooks to see their ids",
            )
        return row

    @staticmethod
    def _tenant_delivery_row(
        conn: Connection, tenant: str, delivery_id: int, *, lock: bool = False
    ) -> Row[Any]:
        query = (
            select(deliveries_table)
            .join(webhooks_table, W.id == D.webhook_id)
            .where(D.id == delivery_id, W.tenant == tenant)
        )
        if lock:
            query = query.with_for_update(of=deliveries_table)
        row = conn.execute(query).first() if _storable_id(delivery_id) else None
        if row is None:
            raise NotFoundError(
                f"no webhook delivery with id {delivery_id}",
                code="delivery_not_found",
                hint="list a webhook's deliveries to see their ids",
            )
        return row

    @staticmethod
    def _delivery(conn: Connection, delivery_id: int, tenant: str | None = None) -> Delivery:
        row = conn.execute(
            select(deliveries_table, W.tenant.label("hook_tenant"))
            .join(webhooks_table, W.id == D.webhook_id)
            .where(D.id == delivery_id)
        ).one()
        return Delivery(**_delivery_fields(row, tenant or row.hook_tenant))


def _storable_id(value: int) -> bool:
    """Whether ``value`` can be an id at all (ids from URLs can be any size; the drivers
    refuse integers past 64 bits rather than finding nothing)."""
    return isinstance(value, int) and 1 <= value <= MAX_ID


def _json_each(value: Any) -> Any:
    return func.json_each(value).table_valued("value")


def _to_webhook(row: Row[Any]) -> WebhookInfo:
    return WebhookInfo(
        id=row.id,
        tenant=row.tenant,
        url=row.url,
        events=tuple(row.events or ()),
        description=row.description,
        enabled=bool(row.enabled),
        created_at=row.created_at,
    )


def _delivery_fields(row: Row[Any], tenant: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "webhook_id": row.webhook_id,
        "tenant": tenant,
        "event": row.event,
        "payload": row.payload,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "delivered_at": row.delivered_at,
    }


__all__ = [
    "DELIVERY_STATUSES",
    "EVENTS",
    "MAX_WEBHOOKS_PER_TENANT",
    "ClaimedDelivery",
    "Delivery",
    "DeliveryStatus",
    "WebhookError",
    "WebhookEvent",
    "WebhookInfo",
    "WebhookRepository",
    "new_secret",
    "retry_delay",
    "validate_events",
    "validate_url",
]
