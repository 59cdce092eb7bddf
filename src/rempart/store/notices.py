"""Takedown notices and their tracking: sent, deadline, removed or not, reminders.

A notice is re-sent every ``evidence.renotice_hours`` (24 by default) until the content is
marked removed or the notice withdrawn -- Project Arachnid's practice: platforms that ignore
a first notice often act on the second or third. ``next_reminder_at`` holds when the next
one is due, so :meth:`NoticeRepository.due` is one indexed query, and claiming a message is
one conditional ``UPDATE``: two service workers never send the same reminder twice.

The status says what really happened to the latest message (the notice, or reminder
``reminders``), never more:

- ``to_send`` -- it must be sent by hand (the recipient is a form URL, there is no SMTP, or
  it was made with ``send=False``); it stays due until an operator marks it ``sent``;
- ``send_failed`` -- e-mailing it failed; it is retried with backoff (``send_attempts``);
- ``sent`` -- it was delivered (by e-mail, or by hand); the next reminder is due
  ``renotice_hours`` later; ``not_removed`` is the same, after the platform said no;
- ``removed`` and ``withdrawn`` close the notice.

What is kept is what a follow-up needs: the kind and language of the notice, the platform
and recipient, the items (URLs and ids, never content) and the sender's contact details
(the person or her representative, who must be reachable by the platform). The rendered
text is not stored; it is rendered again from these fields. When her case is withdrawn,
:func:`erase_for_case` deletes its notices outright: the tombstone keeps only the case
number and the date of withdrawal.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
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
    case,
    delete,
    func,
    insert,
    or_,
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
NoticeStatus = Literal["to_send", "sent", "send_failed", "not_removed", "removed", "withdrawn"]
KINDS: Final[tuple[str, ...]] = ("takeitdown", "dsa", "pharos", "generic")
STATUSES: Final[tuple[str, ...]] = (
    "to_send",
    "sent",
    "send_failed",
    "not_removed",
    "removed",
    "withdrawn",
)
#: Notices in these states are followed up (listed as due, re-sent) until they leave them.
ACTIVE: Final[tuple[str, ...]] = ("to_send", "sent", "send_failed", "not_removed")
#: What a scheduler may take and e-mail when due; ``to_send`` waits for a person.
MAILABLE: Final[tuple[str, ...]] = ("sent", "send_failed", "not_removed")
#: What an operator may set (``send_failed`` is only ever recorded by a failed send).
MARKABLE: Final[tuple[str, ...]] = ("to_send", "sent", "not_removed", "removed", "withdrawn")
_STATUS_CHECK: Final = (
    "status IN ('to_send', 'sent', 'send_failed', 'not_removed', 'removed', 'withdrawn')"
)
#: URLs in one notice (a notice is for one platform; a platform takes a list, not a crawl).
MAX_ITEMS: Final = 500


class Notice(Base):
    """One notice sent to one platform, and what became of it."""

    __tablename__ = "notices"
    __table_args__ = (
        CheckConstraint("kind IN ('takeitdown', 'dsa', 'pharos', 'generic')", name="kind"),
        CheckConstraint(_STATUS_CHECK, name="status"),
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
    #: When the next message is due (a reminder, a retry, or now for one to send by hand);
    #: NULL once the notice is closed.
    next_reminder_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Failed e-mail attempts of the current message in a row (reset when one is sent).
    send_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The error code of the last failed attempt.
    send_error: Mapped[str | None] = mapped_column(String(64))


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
    send_attempts: int = 0
    send_error: str | None = None

    @property
    def active(self) -> bool:
        """Still waiting for removal (reminders go on)."""
        return self.status in ACTIVE

    @property
    def by_hand(self) -> bool:
        """Its latest message waits for a person to send it (``to_send``)."""
        return self.status == "to_send"

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
            "send": {"attempts": self.send_attempts, "error": self.send_error},
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
        send_attempts=int(row.send_attempts or 0),
        send_error=row.send_error,
    )


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("naive datetime; use datetime.now(UTC)")
    return at.astimezone(UTC)


def reminds(kind: str) -> bool:
    """Whether notices of ``kind`` are re-sent: a Pharos sheet is a form she files, with no
    platform to re-notice."""
    return kind != "pharos"


def _compact(number: str) -> str:
    return number.upper().replace(" ", "").replace("-", "")


def erase_for_case(conn: Connection, case_number: str) -> int:
    """Delete every notice of case ``case_number`` inside ``conn``'s transaction (her case's
    withdrawal); returns how many.

    A notice holds her name, contact details and signature, the URLs and hashes of the
    items: a withdrawal that kept them would break the tombstone's promise (only the case
    number and the date of withdrawal are kept). Rows written before case numbers were
    normalised (lower case, spaces) are matched too.
    """
    stmt = delete(notices_table).where(
        or_(
            N.case_number == case_number,
            func.upper(func.replace(func.replace(N.case_number, " ", ""), "-", ""))
            == _compact(case_number),
        )
    )
    return int(conn.execute(stmt).rowcount or 0)


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
        case_number: str | None = None,
    ) -> NoticeInfo:
        """Record a notice dated ``sent_at`` as ``to_send``, due at once: nothing says it
        reached the platform until :meth:`record_sent` (an e-mail went out, or a person
        marked it sent)."""
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
            "status": "to_send",
            "status_at": sent_at,
            "reminders": 0,
            "last_reminder_at": None,
            "next_reminder_at": sent_at,
            "send_attempts": 0,
            "send_error": None,
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
    ) -> builtins.list[NoticeInfo]:
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
        self,
        now: datetime,
        tenant: str | None = None,
        limit: int = 1000,
        *,
        statuses: tuple[str, ...] = ACTIVE,
    ) -> builtins.list[NoticeInfo]:
        """Notices with a message due at ``now`` (a reminder, a retry, one to send by
        hand), oldest due first; ``statuses=MAILABLE`` for what a scheduler can send."""
        query = (
            select(notices_table)
            .where(N.status.in_(statuses), N.next_reminder_at <= _aware(now))
            .order_by(N.next_reminder_at, N.id)
            .limit(limit)
        )
        if tenant is not None:
            query = query.where(N.tenant == tenant)
        with db.read_transaction(self._engine) as conn:
            return [_info(r) for r in conn.execute(query)]

    def claim(
        self,
        notice_id: int,
        *,
        now: datetime,
        lease: timedelta,
        force: bool = False,
        tenant: str | None = None,
    ) -> NoticeInfo | None:
        """Take ``notice_id`` for e-mailing if its next message is due at ``now`` (or
        ``force``): it is pushed ``lease`` ahead, so no other worker takes it meanwhile, and
        returned unchanged otherwise; ``None`` when it was not due, waits for a person
        (``to_send``), is closed, or another worker took it. The sender then records what
        happened (:meth:`record_sent`, :meth:`record_failure`, :meth:`record_to_send`)."""
        now = _aware(now)
        condition = [N.id == notice_id, N.status.in_(MAILABLE)]
        if tenant is not None:
            condition.append(N.tenant == tenant)
        if not force:
            condition.append(N.next_reminder_at <= now)
        stmt = update(notices_table).where(*condition).values(next_reminder_at=now + lease)
        with db.write_transaction(self._engine) as conn:
            changed = conn.execute(stmt).rowcount
        return self.get(notice_id) if changed else None

    def _record(self, notice_id: int, values: dict[str, Any]) -> NoticeInfo | None:
        # Only while the notice is open: a notice marked removed (or erased with its case)
        # while a message was out is never reopened by the outcome of that message.
        stmt = update(notices_table).where(N.id == notice_id, N.status.in_(ACTIVE)).values(**values)
        with db.write_transaction(self._engine) as conn:
            changed = conn.execute(stmt).rowcount
        return self.get(notice_id) if changed else None

    def record_sent(
        self, notice_id: int, *, message: int, now: datetime, renotice_hours: float
    ) -> NoticeInfo | None:
        """Message ``message`` (0: the notice itself, n: reminder n) reached the platform at
        ``now``: the next reminder is due ``renotice_hours`` later. A notice first sent
        now (after a failure, or by hand) is dated now, and its deadline runs from now."""
        now = _aware(now)
        current = self.get(notice_id)
        values: dict[str, Any] = {
            # "not_removed" is what the platform said; a reminder sent does not change it.
            "status": case((N.status == "not_removed", "not_removed"), else_="sent"),
            "status_at": now,
            "reminders": message,
            "send_attempts": 0,
            "send_error": None,
            "next_reminder_at": (
                now + timedelta(hours=renotice_hours) if reminds(current.kind) else None
            ),
        }
        if message > 0:
            values["last_reminder_at"] = now
        elif current.status in ("to_send", "send_failed"):
            values["sent_at"] = now
            if current.deadline is not None:
                values["deadline"] = current.deadline + (now - current.sent_at)
        return self._record(notice_id, values)

    def record_failure(
        self, notice_id: int, *, message: int, now: datetime, error: str, retry_at: datetime
    ) -> NoticeInfo | None:
        """E-mailing message ``message`` failed with ``error``: ``send_failed``, retried at
        ``retry_at``."""
        return self._record(
            notice_id,
            {
                "status": "send_failed",
                "status_at": _aware(now),
                "reminders": message,
                "send_attempts": N.send_attempts + 1,
                "send_error": error[:64],
                "next_reminder_at": _aware(retry_at),
            },
        )

    def record_to_send(self, notice_id: int, *, message: int, now: datetime) -> NoticeInfo | None:
        """Message ``message`` cannot be e-mailed: ``to_send``, due until a person marks it
        sent."""
        now = _aware(now)
        return self._record(
            notice_id,
            {
                "status": "to_send",
                "status_at": now,
                "reminders": message,
                "send_attempts": 0,
                "send_error": None,
                "next_reminder_at": now,
            },
        )

    def set_status(
        self,
        notice_id: int,
        status: str,
        *,
        now: datetime,
        tenant: str | None = None,
        renotice_hours: float = 24.0,
    ) -> NoticeInfo:
        """An operator's update: ``sent`` (she sent the pending message by hand; the next
        reminder is due ``renotice_hours`` later), ``to_send``, ``removed`` (stops the
        reminders), ``not_removed`` (they go on) or ``withdrawn``."""
        if status not in MARKABLE:
            raise RempartError(
                f"notice status {status!r} cannot be set",
                code="bad_notice_status",
                hint=f"use one of {', '.join(MARKABLE)} (send_failed is recorded by a failed "
                "e-mail)",
            )
        current = self.get(notice_id, tenant)
        now = _aware(now)
        if status == "sent" and current.status in ("to_send", "send_failed"):
            done = self.record_sent(
                notice_id, message=current.reminders, now=now, renotice_hours=renotice_hours
            )
            return done or self.get(notice_id)
        values: dict[str, Any] = {"status": status, "status_at": now}
        if status == "to_send":
            values["next_reminder_at"] = now
        elif status in ACTIVE and reminds(current.kind):
            values["next_reminder_at"] = current.next_reminder_at or now
        else:
            values["next_reminder_at"] = None
        with db.write_transaction(self._engine) as conn:
            conn.execute(update(notices_table).where(N.id == notice_id).values(**values))
        return self.get(notice_id)

    def review_states(self, tenant: str, scan_ids: Sequence[str]) -> dict[str, str]:
        """What a moderator of ``tenant`` last said about each scan: ``confirmed`` or
        ``rejected`` (true/false-positive feedback, or a decision in the review queue);
        scans nobody reviewed are absent."""
        from rempart.store.models import Feedback
        from rempart.store.reviews import decisions_table

        F = cast(Table, Feedback.__table__).c
        D = decisions_table.c
        ids = list(dict.fromkeys(scan_ids))
        said: dict[str, tuple[datetime, str]] = {}

        def keep(scan_id: str, at: datetime, state: str) -> None:
            if scan_id not in said or at >= said[scan_id][0]:
                said[scan_id] = (at, state)

        with db.read_transaction(self._engine) as conn:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                for scan_id, label, at in conn.execute(
                    select(F.scan_id, F.label, F.created_at).where(
                        F.tenant == tenant, F.scan_id.in_(chunk)
                    )
                ):
                    keep(scan_id, at, "confirmed" if label == "true_positive" else "rejected")
                for scan_id, decision, at in conn.execute(
                    select(D.scan_id, D.decision, D.decided_at).where(
                        D.tenant == tenant, D.scan_id.in_(chunk), D.decision != "escalate"
                    )
                ):
                    keep(scan_id, at, "confirmed" if decision == "confirm" else "rejected")
        return {k: v[1] for k, v in said.items()}
