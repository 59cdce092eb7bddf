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
