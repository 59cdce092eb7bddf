"""Victims' cases in the store: the case, which bank entries are hers, and alerts.

The tables hold as little as the job needs:

- ``cases``: the case number, an Argon2id hash of the PIN (never the PIN), the failed-PIN
  counter and lock (in the database, so every worker process sees the same count), the
  opaque person id of her face templates, and her contact details **sealed** to the
  service's X25519 key (``contact_sealed``; see :mod:`rempart.cases.registry`). After a
  withdrawal only a tombstone stays: number, status ``withdrawn``, when.
- ``case_entries``: case -> entry ids in the reserved tenant's ``cases`` bank. Entries carry
  no case number; this table is the only link, and it never leaves the operator's database.
- ``case_alerts``: a scan of some platform matched her hashes or her face. Details are
  signals, distances and thresholds -- never content, never hashes.

The reserved tenant :data:`CASES_TENANT` owns the global ``cases`` bank and the case face
templates; no API key or bank can be created for it by hand.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from rempart.store.models import Base, BigId, JsonType, UTCDateTime

#: The tenant that owns the victims' bank and face templates. The leading underscore is
#: allowed in tenant names, so it is refused explicitly where keys and banks are made.
CASES_TENANT: Final = "_cases"
#: The one global block bank of every open case's hashes; every tenant matches it.
CASES_BANK: Final = "cases"

CASE_STATUSES: Final = ("open", "withdrawn")
ALERT_KINDS: Final = ("hash_match", "face")
ALERT_STATUSES: Final = ("pending_review", "active")
#: Delivery state of one channel of an alert: ``none`` (no such contact), ``pending``
#: (to send, or retrying), ``sent``, ``failed`` (gave up after the last attempt).
DELIVERY_STATES: Final = ("none", "pending", "sent", "failed")


class Case(Base):
    """One victim's case. ``pin_hash`` is Argon2id; NULL once withdrawn (a tombstone)."""

    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'withdrawn')", name="status"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    pin_hash: Mapped[str | None] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: No longer used (wrong PINs are counted in ``case_pin_failures`` since revision 0009);
    #: kept so that migrating does not rewrite a table other tables point to.
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Opaque id of her face templates (tenant :data:`CASES_TENANT`); NULL without a face.
    person_id: Mapped[str | None] = mapped_column(String(64))
    #: ``{email, webhook_url, webhook_secret}`` as JSON, sealed (X25519 SealedBox) to the
    #: service key; NULL when she gave no contact.
    contact_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)


class CaseEntry(Base):
    """An entry of the ``cases`` bank that belongs to a case (an entry can be in several)."""

    __tablename__ = "case_entries"
    __table_args__ = (Index(None, "entry_id"),)

    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    entry_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class CaseAlert(Base):
    """A scan that matched a case: where (tenant, scan id), when, how -- never what."""

    __tablename__ = "case_alerts"
    __table_args__ = (
        CheckConstraint("kind IN ('hash_match', 'face')", name="kind"),
        CheckConstraint("status IN ('pending_review', 'active')", name="status"),
        UniqueConstraint("case_id", "scan_id", "kind"),
        Index(None, "tenant", "scan_id"),
        Index(None, "status", "next_attempt_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    tenant: Mapped[str] = mapped_column(String(64))
    scan_id: Mapped[str] = mapped_column(String(36))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    #: ``{"signals": [{signal, distance, threshold, variant}], ...}``: no content, no hash.
    details: Mapped[dict[str, Any]] = mapped_column(JsonType)
    email_state: Mapped[str] = mapped_column(String(16), default="none")
    webhook_state: Mapped[str] = mapped_column(String(16), default="none")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)


class CasePinFailure(Base):
    """Wrong PINs for one case **number** (known or not) from one client, or from every
    client (``client == "*"``), in a window that starts at ``first_at``.

    Keyed by the number typed, not by a case row: an unknown number counts and locks exactly
    like a real one, so the answers never tell which numbers exist. ``client`` is a hash of
    the address (pseudonymous, not anonymous); rows are deleted once their window and lock
    have passed. Replaces ``cases.failed_attempts`` and ``cases.locked_until`` (no longer
    used; see :mod:`rempart.cases.registry` for the counting rules).
    """

    __tablename__ = "case_pin_failures"
    __table_args__ = (Index(None, "first_at"),)

    number: Mapped[str] = mapped_column(String(32), primary_key=True)
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


cases_table = cast(Table, Case.__table__)
case_entries_table = cast(Table, CaseEntry.__table__)
case_alerts_table = cast(Table, CaseAlert.__table__)
case_pin_failures_table = cast(Table, CasePinFailure.__table__)


def __getattr__(name: str) -> Any:
    # The repository lives with the rest of the cases code (rempart.cases.registry); it is
    # reachable from here too, lazily, so the store package never imports it at load time.
    if name in ("CaseRepository", "CaseInfo", "AlertInfo"):
        from rempart.cases import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
