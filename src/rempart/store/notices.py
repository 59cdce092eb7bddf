"""Takedown notices and their tracking: sent, deadline, removed or not, reminders.

A notice is re-sent every ``evidence.renotice_hours`` (24 by default) until the content is
marked removed or the notice withdrawn -- Project Arachnid's practice: platforms that ignore
a first notice often act on the second or third. ``next_reminder_at`` holds when the next
one is due, so :meth:`NoticeRepository.due` is one indexed query, and claiming a reminder is
one conditional ``UPDATE``: two service workers never send the same reminder twice.

What is kept is what a follow-up needs: the kind and language of the notice, the platform
and recipient, the items (URLs and ids, never content) and the sender's contact details
(the person or her representative, who must be reachable by the platform). The rendered
text is not stored; it is rendered again from these fields.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from sqlalchemy import (
    CheckConstraint,
    Connection,
    Index,
    Integer,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from rempart.errors import NotFoundError, RempartError
from rempart.store import db
from rempart.store.models import Base, JsonType, UTCDateTime

if TYPE_CHECKING:
    from rempart.store.repository import Store

NoticeKind = Literal["takeitdown", "dsa", "pharos", "generic"]
NoticeStatus = Literal["sent", "removed", "not_removed", "withdrawn"]
KINDS: Final[tuple[str, ...]] = ("takeitdown", "dsa", "pharos", "generic")
STATUSES: Final[tuple[str, ...]] = ("sent", "removed", "not_removed", "withdrawn")
#: Notices in these states are re-sent until they leave them.
ACTIVE: Final[tuple[str, ...]] = ("sent", "not_removed")
#: URLs in one notice (a notice is for one platform; a platform takes a list, not a crawl).
MAX_ITEMS: Final = 500


class Notice(Base):
    """One notice sent to one platform, and what became of it."""

    __tablename__ = "notices"
    __table_args__ = (
        CheckConstraint("kind IN ('takeitdown', 'dsa', 'pharos', 'generic')", name="kind"),
        CheckConstraint("status IN ('sent', 'removed', 'not_removed', 'withdrawn')", name="status"),
        Index(None, "status", "next_reminder_at"),
        Index(None, "tenant", "id"),
        Index(None, "case_number"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: The tenant whose key or operator created the notice (who may see and update it).
    tenant: Mapped[str] = mapped_column(String(64))
    case_number: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    lang: Mapped[str] = mapped_column(String(8))
    #: The platform the notice is addressed to (a tenant name or the platform's own name).
    platform: Mapped[str] = mapped_column(String(128))
    #: An e-mail address (reminders are e-mailed) or where the notice was filed (a form URL).
    recipient: Mapped[str] = mapped_column(Text)
    #: ``{name, email, phone?, address?, on_behalf_of?}`` of who sends the notice.
    sender: Mapped[dict[str, Any]] = mapped_column(JsonType)
    #: ``[{url, content_id, scan_id, sha256, first_seen}]``: where the content is, no content.
    items: Mapped[list[dict[str, Any]]] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: When the platform must have removed the content (48 h for TAKE IT DOWN), if the law
    #: sets a deadline.
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))
    status_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reminders: Mapped[int] = mapped_column(Integer, default=0)
    last_reminder_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: When the next reminder is due; NULL once the notice is closed.
    next_reminder_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


notices_table = cast(Table, Notice.__table__)
N = notices_table.c


@dataclass(frozen=True, slots=True)
class NoticeInfo:
    """A stored notice."""

    id: int
    tenant: str
    case_number: str | None
    kind: str
    lang: str
    platform: str
    recipient: str
    sender: dict[str, Any]
    items: list[dict[str, Any]]
    created_at: datetime
    sent_at: datetime
    deadline: datetime | None
    status: str
    status_at: datetime
    reminders: int
    last_reminder_at: datetime | None
    next_reminder_at: datetime | None

    @property
    def active(self) -> bool:
        """Still waiting for removal (reminders go on)."""
        return self.status in ACTIVE

    def overdue(self, now: datetime) -> bool:
        """Past its legal deadline and not removed."""
        return self.active and self.deadline is not None and now >= self.deadline

    def to_dict(self) -> dict[str, Any]:
        """JSON shape for the CLI and API (the sender's contact details included: the
        operator needs them to follow up; the API only shows them to the notice's tenant)."""

        def iso(at: datetime | None) -> str | None:
            return at.isoformat() if at else None

        return {
            "id": self.id,
            "case": self.case_number,
            "kind": self.kind,
            "lang": self.lang,
            "platform": self.platform,
            "recipient": self.recipient,
            "sender": dict(self.sender),
            "items": [dict(i) for i in self.items],
            "created_at": iso(self.created_at),
            "sent_at": iso(self.sent_at),
            "deadline": iso(self.deadline),
            "status": self.status,
            "status_at": iso(self.status_at),
            "reminders": {
                "count": self.reminders,
                "last_at": iso(self.last_reminder_at),
                "next_at": iso(self.next_reminder_at),
            },
        }


def _info(row: Any) -> NoticeInfo:
    return NoticeInfo(
        id=int(row.id),
        tenant=row.tenant,
        case_number=row.case_number,
        kind=row.kind,
        lang=row.lang,
        platform=row.platform,
        recipient=row.recipient,
        sender=dict(row.sender or {}),
        items=list(row.items or []),
        created_at=row.created_at,
        sent_at=row.sent_at,
        deadline=row.deadline,
        status=row.status,
        status_at=row.status_at,
        reminders=int(row.reminders),
        last_reminder_at=row.last_reminder_at,
        next_reminder_at=row.next_reminder_at,
    )


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("naive datetime; use datetime.now(UTC)")
    return at.astimezone(UTC)


class NoticeRepository:
    """Create, list and update tracked notices."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    def create(
        self,
        *,
        tenant: str,
        kind: str,
        lang: str,
        platform: str,
        recipient: str,
        sender: dict[str, Any],
        items: list[dict[str, Any]],
        sent_at: datetime,
        deadline: datetime | None,
        renotice_hours: float,
        case_number: str | None = None,
        remind: bool = True,
    ) -> NoticeInfo:
        """Record a notice as sent at ``sent_at``; its first reminder is due
        ``renotice_hours`` later (never, with ``remind=False``)."""
        if kind not in KINDS:
            raise RempartError(
                f"unknown notice kind {kind!r}",
                code="bad_notice_kind",
                hint=f"use one of {', '.join(KINDS)}",
            )
        if not items:
            raise RempartError("a notice needs at least one item", code="no_items")
        if len(items) > MAX_ITEMS:
            raise RempartError(
                f"{len(items)} items; a notice holds at most {MAX_ITEMS}",
                code="too_many_items",
                hint="send several notices",
            )
        sent_at = _aware(sent_at)
        now = datetime.now(UTC)
        row = {
            "tenant": tenant,
            "case_number": case_number,
            "kind": kind,
            "lang": lang,
            "platform": platform[:128],
            "recipient": recipient,
            "sender": sender,
            "items": items,
            "created_at": now,
            "sent_at": sent_at,
            "deadline": deadline,
            "status": "sent",
            "status_at": sent_at,
            "reminders": 0,
            "last_reminder_at": None,
            "next_reminder_at": sent_at + timedelta(hours=renotice_hours) if remind else None,
        }
        with db.write_transaction(self._engine) as conn:
            new_id = conn.execute(insert(notices_table).returning(N.id), row).scalar_one()
        return self.get(int(new_id))

    def get(self, notice_id: int, tenant: str | None = None) -> NoticeInfo:
        """The notice ``notice_id`` (of ``tenant`` when given); ``notice_not_found``."""
        query = select(notices_table).where(N.id == notice_id)
        if tenant is not None:
            query = query.where(N.tenant == tenant)
        with db.read_transaction(self._engine) as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            raise NotFoundError(f"no notice {notice_id}", code="notice_not_found")
        return _info(row)

    def list(
        self,
        tenant: str | None = None,
        *,
        case_number: str | None = None,
        status: str | None = None,
        limit: int = 1000,
    ) -> list[NoticeInfo]:
        """Notices, newest first, filtered by tenant, case and status."""
        query = select(notices_table).order_by(N.id.desc()).limit(limit)
        if tenant is not None:
            query = query.where(N.tenant == tenant)
        if case_number is not None:
            query = query.where(N.case_number == case_number)
        if status is not None:
            query = query.where(N.status == status)
        with db.read_transaction(self._engine) as conn:
            return [_info(r) for r in conn.execute(query)]

    def due(
        self, now: datetime, tenant: str | None = None, limit: int = 1000
    ) -> builtins.list[NoticeInfo]:
        """Active notices whose next reminder is due at ``now``, oldest due first."""
        query = (
            select(notices_table)
            .where(N.status.in_(ACTIVE), N.next_reminder_at <= _aware(now))
            .order_by(N.next_reminder_at, N.id)
            .limit(limit)
        )
        if tenant is not None:
            query = query.where(N.tenant == tenant)
        with db.read_transaction(self._engine) as conn:
            return [_info(r) for r in conn.execute(query)]

    def claim_reminder(
        self,
        notice_id: int,
        *,
        now: datetime,
        renotice_hours: float,
        force: bool = False,
        tenant: str | None = None,
    ) -> NoticeInfo | None:
        """Record a reminder of ``notice_id`` at ``now`` if it is due (or ``force``), and
        schedule the next one; ``None`` when it was not due or another worker took it.

        Closed notices (removed, withdrawn) are never reminded, forced or not.
        """
        now = _aware(now)
        condition = [N.id == notice_id, N.status.in_(ACTIVE)]
        if tenant is not None:
            condition.append(N.tenant == tenant)
        if not force:
            condition.append(N.next_reminder_at <= now)
        stmt = (
            update(notices_table)
            .where(*condition)
            .values(
                reminders=N.reminders + 1,
                last_reminder_at=now,
                next_reminder_at=now + timedelta(hours=renotice_hours),
            )
        )
        with db.write_transaction(self._engine) as conn:
            changed = conn.execute(stmt).rowcount
        return self.get(notice_id) if changed else None

    def set_status(
        self, notice_id: int, status: str, *, now: datetime, tenant: str | None = None
    ) -> NoticeInfo:
        """Mark a notice ``removed``, ``not_removed`` (reminders go on), ``withdrawn`` or back
        to ``sent``."""
        if status not in STATUSES:
            raise RempartError(
                f"unknown notice status {status!r}",
                code="bad_notice_status",
                hint=f"use one of {', '.join(STATUSES)}",
            )
        current = self.get(notice_id, tenant)
        now = _aware(now)
        values: dict[str, Any] = {"status": status, "status_at": now}
        if status in ACTIVE and current.kind != "pharos":  # Pharos sheets: never reminded
            values["next_reminder_at"] = current.next_reminder_at or now
        else:
            values["next_reminder_at"] = None
        with db.write_transaction(self._engine) as conn:
            conn.execute(update(notices_table).where(N.id == notice_id).values(**values))
        return self.get(notice_id)

    def withdraw_case(
        self, case_number: str, *, now: datetime, conn: Connection | None = None
    ) -> int:
        """Withdraw every active notice of a case (she withdrew it): no more reminders.
        Returns how many. ``conn`` joins the caller's transaction (the case's withdrawal)."""
        stmt = (
            update(notices_table)
            .where(N.case_number == case_number, N.status.in_(ACTIVE))
            .values(status="withdrawn", status_at=_aware(now), next_reminder_at=None)
        )
        if conn is not None:
            return int(conn.execute(stmt).rowcount)
        with db.write_transaction(self._engine) as own:
            return int(own.execute(stmt).rowcount)
