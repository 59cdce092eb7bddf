"""The store's tables, as SQLAlchemy 2 typed declarative models.

The migration in ``migrations/versions`` creates exactly these tables; a test compares the
two, so change both together (``alembic revision --autogenerate`` from
``src/rempart/store/alembic.ini`` gives a starting point).

Ids are never reused (``AUTOINCREMENT`` on SQLite, sequences on PostgreSQL): in-memory indexes
and change-log readers refer to entries and banks by id, and a recycled id could make a
stale index report a match against the wrong hash.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: Big on PostgreSQL; on SQLite only ``INTEGER PRIMARY KEY`` is the auto-incrementing rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")
#: Hex hashes and signal names compare bytewise on PostgreSQL: the "C" collation halves the
#: cost of every index insert and lookup on random hash keys compared with a locale collation
#: (and hex sorts the same either way). SQLite compares bytes already.
HexText = String(128).with_variant(String(128, collation="C"), "postgresql")
SignalName = String(16).with_variant(String(16, collation="C"), "postgresql")
#: JSONB on PostgreSQL (compact, indexable later), JSON text on SQLite.
JsonType = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases.

    SQLite has no timezone type and gives back naive values; this stores UTC and hands back
    aware datetimes everywhere, so comparisons never mix naive and aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so constraint names are stable."""

    metadata = MetaData(naming_convention=NAMING)


class Bank(Base):
    """A named list of hashes, owned by a tenant."""

    __tablename__ = "banks"
    __table_args__ = (
        UniqueConstraint("tenant", "name"),
        CheckConstraint("kind IN ('block', 'allow')", name="kind"),
        CheckConstraint("threshold >= 0 AND threshold <= 64", name="threshold"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), default="default")
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    threshold: Mapped[int] = mapped_column(Integer, default=31)
    kind: Mapped[str] = mapped_column(String(16), default="block")
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Entry(Base):
    """One hash in one bank. ``(signal, value, bank_id)`` is unique; removal deletes the row."""

    __tablename__ = "entries"
    __table_args__ = (
        # One index for both jobs: uniqueness of (bank, signal, value) and exact lookups by
        # (signal, value) across banks (its prefix). A second random-key index would double
        # the cost of bulk imports, which is dominated by B-tree inserts of random hashes.
        UniqueConstraint("signal", "value", "bank_id"),
        # Per-bank work (counts, export in id order, cascade delete) goes through this one;
        # imports append to it, so it is cheap to maintain.
        Index(None, "bank_id", "signal", "id"),
        CheckConstraint("quality IS NULL OR (quality >= 0 AND quality <= 100)", name="quality"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"))
    signal: Mapped[str] = mapped_column(SignalName)
    #: Canonical lowercase hex, as ``rempart.signals`` gives it.
    value: Mapped[str] = mapped_column(HexText)
    quality: Mapped[int | None] = mapped_column(SmallInteger)
    source: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JsonType)
    # ``metadata`` is taken by SQLAlchemy's declarative base; the column keeps the name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType)
    #: A ``vpdq`` (video) entry's frame PDQ hashes, in order; NULL for other signals.
    frames: Mapped[list[str] | None] = mapped_column(JsonType)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EntryChange(Base):
    """The change log: every add, remove and bank change, in commit order.

    Written in the same transaction as the change itself, and writes are serialised (SQLite's
    write lock; an advisory lock on PostgreSQL), so ``seq`` grows in commit order and a reader
    polling ``seq > last_seen`` never skips a change. ``bank_id`` is deliberately not a
    foreign key: the ``bank_deleted`` row must outlive its bank.
    """

    __tablename__ = "entry_changes"
    __table_args__ = (
        CheckConstraint(
            "op IN ('add', 'remove', 'bank_created', 'bank_updated', 'bank_deleted')", name="op"
        ),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    op: Mapped[str] = mapped_column(String(16))
    bank_id: Mapped[int] = mapped_column(Integer)
    entry_id: Mapped[int | None] = mapped_column(BigInteger)
    signal: Mapped[str | None] = mapped_column(String(16))
    value: Mapped[str | None] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


entries_table = cast(Table, Entry.__table__)
banks_table = cast(Table, Bank.__table__)
changes_table = cast(Table, EntryChange.__table__)


# -- the service's tables (migration 0002) ------------------------------------------------------


class ApiKey(Base):
    """An API key: only a SHA-256 of its secret is kept (keys are random, 256 bits).

    The key itself is shown once, at creation. ``key_id`` is the public part of the key that
    finds the row; the secret is compared in constant time.
    """

    __tablename__ = "api_keys"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(Text, default="")
    scopes: Mapped[list[str]] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BankShare(Base):
    """A bank shared read-only with another tenant (who may match against it)."""

    __tablename__ = "bank_shares"

    bank_id: Mapped[int] = mapped_column(
        ForeignKey("banks.id", ondelete="CASCADE"), primary_key=True
    )
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEvent(Base):
    """Append-only audit log: who did what, to what, when -- never content or hashes of it."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "tenant", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    tenant: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JsonType)


class Scan(Base):
    """A scan's outcome: hashes, matches and verdict. The scanned bytes are never stored."""

    __tablename__ = "scans"
    __table_args__ = (Index(None, "tenant", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(16))
    verdict: Mapped[str] = mapped_column(String(16))
    pdq: Mapped[str | None] = mapped_column(String(64))
    md5: Mapped[str | None] = mapped_column(String(32))
    sha256: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[dict[str, Any]] = mapped_column(JsonType)


class Feedback(Base):
    """A reviewer's label on one match of a scan; gives each bank its precision."""

    __tablename__ = "feedback"
    __table_args__ = (
        CheckConstraint("label IN ('true_positive', 'false_positive')", name="label"),
        Index(None, "bank_id", "label"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"), index=True)
    tenant: Mapped[str] = mapped_column(String(64))
    bank_id: Mapped[int | None] = mapped_column(ForeignKey("banks.id", ondelete="SET NULL"))
    entry_id: Mapped[int | None] = mapped_column(BigInteger)
    label: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Webhook(Base):
    """A tenant's subscription to events (``match``, ``verdict.block``, ``verdict.review``)."""

    __tablename__ = "webhooks"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(Text)
    #: The HMAC-SHA256 signing secret; kept as is because signing needs it.
    secret: Mapped[str] = mapped_column(String(128))
    events: Mapped[list[str]] = mapped_column(JsonType)
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """One event to deliver to one webhook: the outbox, retried with backoff until ``dead``."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'dead')", name="status"),
        Index(None, "status", "next_attempt_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Feed(Base):
    """A remote hash list pulled into a bank on a schedule (JSONL/CSV URL or StopNCII API)."""

    __tablename__ = "feeds"
    __table_args__ = (
        CheckConstraint("kind IN ('jsonl', 'csv', 'hma', 'stopncii')", name="kind"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    interval_s: Mapped[int] = mapped_column(Integer, default=3600)
    #: Kind-specific settings (e.g. the StopNCII subscription key header); never logged.
    config: Mapped[dict[str, Any]] = mapped_column(JsonType)
    #: Where the next pull resumes (e.g. StopNCII's last timestamp and page token).
    cursor: Mapped[dict[str, Any]] = mapped_column(JsonType)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
