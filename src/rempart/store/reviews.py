"""The review queue: scans whose verdict is ``review``, and moderators' decisions on them.

A decision (``confirm``, ``reject``, ``escalate``) is one row per scan, replaced when an
escalated item is decided later. Confirmed and rejected items leave the queue; escalated
items wait in their own list for an admin. The decision row names the actor and the bank
used, never the content.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    and_,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from rempart.errors import ConflictError, RempartError
from rempart.store import db
from rempart.store.models import Base, Scan, UTCDateTime

if TYPE_CHECKING:
    from rempart.store.repository import Store

Decision = Literal["confirm", "reject", "escalate"]
DECISIONS: Final = ("confirm", "reject", "escalate")
#: Queue order: high before normal before low (then oldest first).
PRIORITY_RANK: Final = {"high": 0, "normal": 1, "low": 2}
#: Most items one read of the queue returns (a page; the queue is worked from the top).
MAX_QUEUE: Final = 500


class ReviewDecision(Base):
    """A moderator's decision on a scan in the review queue."""

    __tablename__ = "review_decisions"
    __table_args__ = (
        CheckConstraint("decision IN ('confirm', 'reject', 'escalate')", name="decision"),
        Index(None, "tenant", "decision"),
    )

    scan_id: Mapped[str] = mapped_column(
        ForeignKey("scans.id", ondelete="CASCADE"), primary_key=True
    )
    tenant: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    #: The bank the hashes went to (confirm: a block bank; reject: an allow bank, if any).
    bank: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime())


decisions_table = cast(Table, ReviewDecision.__table__)
D = decisions_table.c
_scans = cast(Table, Scan.__table__)
S = _scans.c


@dataclass(frozen=True, slots=True)
class QueueItem:
    """A scan waiting for a moderator."""

    scan_id: str
    created_at: datetime
    priority: str
    kind: str
    result: dict[str, Any]
    decision: str | None = None

    def age(self, now: datetime | None = None) -> timedelta:
        """How long the item has waited."""
        return (now or datetime.now(UTC)) - self.created_at


@dataclass(frozen=True, slots=True)
class DecisionInfo:
    """A recorded decision."""

    scan_id: str
    decision: str
    actor: str
    bank: str | None
    note: str
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class QueuePosition:
    """Where one item stands in its list (see :meth:`ReviewQueue.position`)."""

    #: 1-based; None when the item is not (or no longer) in the list.
    position: int | None
    prev: str | None
    next: str | None
    total: int


def _priority_of(result: Any) -> str:
    p = result.get("priority") if isinstance(result, dict) else None
    return p if p in PRIORITY_RANK else "normal"


#: The priority's rank, computed by the database from the JSON result (``high`` 0, ``low``
#: 2, anything else 1), so ordering, paging and counting all happen in SQL: a new
#: high-priority item is first however many older ones wait.
_PRIORITY = S.result["priority"].as_string()
priority_rank = case((_PRIORITY == "high", 0), (_PRIORITY == "low", 2), else_=1)


class AlreadyDecided(ConflictError):
    """Someone else decided this item first (or it was decided before)."""

    def __init__(self, earlier: DecisionInfo | None) -> None:
        who = f" ({earlier.decision}, by {earlier.actor})" if earlier else ""
        super().__init__(
            f"this item was already decided{who}",
            code="already_decided",
            hint="reload the queue: the item has left it",
        )
        self.earlier = earlier


class ReviewQueue:
    """Read the queue and record decisions."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    def _open(self, tenant: str, escalated: bool) -> Any:
        query = (
            select(S.id, S.created_at, S.kind, S.result, D.decision, priority_rank.label("rank"))
            .outerjoin(decisions_table, D.scan_id == S.id)
            .where(S.tenant == tenant, S.verdict == "review")
        )
        if escalated:
            return query.where(D.decision == "escalate")
        return query.where(D.scan_id.is_(None))

    @staticmethod
    def _item(r: Any) -> QueueItem:
        return QueueItem(
            r.id, r.created_at, _priority_of(r.result), r.kind, dict(r.result), r.decision
        )

    def pending(
        self,
        tenant: str,
        *,
        escalated: bool = False,
        limit: int = MAX_QUEUE,
        offset: int = 0,
    ) -> list[QueueItem]:
        """Undecided (or, with ``escalated``, escalated) review scans of ``tenant``, by
        priority (high first) and then age (oldest first): ``limit`` of them from
        ``offset``."""
        query = (
            self._open(tenant, escalated)
            .order_by(priority_rank, S.created_at, S.id)
            .limit(max(1, min(limit, MAX_QUEUE)))
            .offset(max(0, offset))
        )
        with db.read_transaction(self._engine) as conn:
            return [self._item(r) for r in conn.execute(query)]

    def count(self, tenant: str, *, escalated: bool = False) -> int:
        """How many items wait (all of them, not a page)."""
        query = select(func.count()).select_from(self._open(tenant, escalated).subquery())
        with db.read_transaction(self._engine) as conn:
            return int(conn.execute(query).scalar_one())

    def ages(self, tenant: str, bounds: list[timedelta], now: datetime) -> list[int]:
        """Pending items per age bucket: ``[< bounds[0], < bounds[1], ..., the rest]``."""
        open_items = self._open(tenant, False).subquery()
        created = open_items.c.created_at
        bucket = case(
            *((created > now - b, i) for i, b in enumerate(bounds)), else_=len(bounds)
        ).label("bucket")
        query = select(bucket, func.count()).group_by(bucket)
        out = [0] * (len(bounds) + 1)
        with db.read_transaction(self._engine) as conn:
            for i, n in conn.execute(query):
                out[int(i)] = int(n)
        return out

    def oldest(self, tenant: str) -> datetime | None:
        """When the oldest pending item arrived (None when the queue is empty)."""
        created = self._open(tenant, False).subquery().c.created_at
        query = select(func.min(created, type_=UTCDateTime()))
        with db.read_transaction(self._engine) as conn:
            value: datetime | None = conn.execute(query).scalar_one()
        return value

    def position(self, tenant: str, scan_id: str, *, escalated: bool = False) -> QueuePosition:
        """Where an item stands in its list: its 1-based position, the items just before and
        after it, and the list's size (all in SQL, so nothing is capped)."""
        total = self.count(tenant, escalated=escalated)
        with db.read_transaction(self._engine) as conn:
            me = conn.execute(self._open(tenant, escalated).where(S.id == scan_id)).one_or_none()
            if me is None:
                first = conn.execute(
                    self._open(tenant, escalated)
                    .order_by(priority_rank, S.created_at, S.id)
                    .limit(1)
                ).one_or_none()
                return QueuePosition(None, None, first.id if first else None, total)
            rank, at = me.rank, me.created_at
            same_rank, same_age = priority_rank == rank, S.created_at == at
            before = or_(
                priority_rank < rank,
                and_(same_rank, or_(S.created_at < at, and_(same_age, S.id < scan_id))),
            )
            after = or_(
                priority_rank > rank,
                and_(same_rank, or_(S.created_at > at, and_(same_age, S.id > scan_id))),
            )
            ahead = conn.execute(
                select(func.count()).select_from(
                    self._open(tenant, escalated).where(before).subquery()
                )
            ).scalar_one()
            prev = conn.execute(
                self._open(tenant, escalated)
                .where(before)
                .order_by(priority_rank.desc(), S.created_at.desc(), S.id.desc())
                .limit(1)
            ).one_or_none()
            nxt = conn.execute(
                self._open(tenant, escalated)
                .where(after)
                .order_by(priority_rank, S.created_at, S.id)
                .limit(1)
            ).one_or_none()
        return QueuePosition(
            int(ahead) + 1, prev.id if prev else None, nxt.id if nxt else None, total
        )

    def item(self, tenant: str, scan_id: str) -> QueueItem | None:
        """One review scan of ``tenant`` with its decision (if any), or None."""
        query = (
            select(S.id, S.created_at, S.kind, S.result, D.decision)
            .outerjoin(decisions_table, D.scan_id == S.id)
            .where(S.tenant == tenant, S.id == scan_id, S.verdict == "review")
        )
        with db.read_transaction(self._engine) as conn:
            r = conn.execute(query).one_or_none()
        return None if r is None else self._item(r)

    def decide(
        self,
        tenant: str,
        scan_id: str,
        decision: str,
        *,
        actor: str,
        bank: str | None = None,
        note: str = "",
    ) -> DecisionInfo:
        """Record a decision on an open item, atomically: exactly one of two concurrent
        deciders wins; the other gets :class:`AlreadyDecided` and must change nothing.

        An item is open while it has no decision or is escalated. The claim is one
        conditional write -- ``UPDATE ... WHERE decision = 'escalate'`` for an escalated
        item, else an ``INSERT`` that the primary key refuses to a second decider -- so the
        check and the write cannot be split by another worker.
        """
        if decision not in DECISIONS:
            raise RempartError(
                f"unknown decision {decision!r}",
                code="bad_decision",
                hint="decide confirm, reject or escalate",
            )
        now = datetime.now(UTC)
        row = {
            "scan_id": scan_id,
            "tenant": tenant,
            "decision": decision,
            "actor": actor[:128],
            "bank": bank,
            "note": note[:2000],
            "decided_at": now,
        }
        try:
            with db.write_transaction(self._engine) as conn:
                reopened = conn.execute(
                    update(decisions_table)
                    .where(D.scan_id == scan_id, D.tenant == tenant, D.decision == "escalate")
                    .values(**row)
                ).rowcount
                if reopened != 1:
                    conn.execute(insert(decisions_table), row)
        except IntegrityError:  # the primary key: someone decided it first
            raise AlreadyDecided(self.decision(tenant, scan_id)) from None
        return DecisionInfo(scan_id, decision, actor, bank, note, now)

    def undo(self, tenant: str, claimed: DecisionInfo, earlier: DecisionInfo | None) -> None:
        """Take back a decision :meth:`decide` recorded (when what had to follow it failed):
        the item is open again, escalated as before if it was."""
        with db.write_transaction(self._engine) as conn:
            conn.execute(
                delete(decisions_table).where(
                    D.scan_id == claimed.scan_id,
                    D.tenant == tenant,
                    D.decided_at == claimed.decided_at,
                )
            )
            if earlier is not None and earlier.decision == "escalate":
                conn.execute(
                    insert(decisions_table),
                    {
                        "scan_id": earlier.scan_id,
                        "tenant": tenant,
                        "decision": earlier.decision,
                        "actor": earlier.actor,
                        "bank": earlier.bank,
                        "note": earlier.note,
                        "decided_at": earlier.decided_at,
                    },
                )

    def decision(self, tenant: str, scan_id: str) -> DecisionInfo | None:
        """The decision recorded on a scan, if any."""
        with db.read_transaction(self._engine) as conn:
            r = conn.execute(
                select(decisions_table).where(D.scan_id == scan_id, D.tenant == tenant)
            ).one_or_none()
        if r is None:
            return None
        return DecisionInfo(r.scan_id, r.decision, r.actor, r.bank, r.note, r.decided_at)

    # -- figures for the dashboard -------------------------------------------------------------

    def verdict_mix(self, tenant: str, since: datetime) -> dict[str, int]:
        """Scans per verdict since ``since``."""
        query = (
            select(S.verdict, func.count())
            .where(S.tenant == tenant, S.created_at >= since)
            .group_by(S.verdict)
        )
        with db.read_transaction(self._engine) as conn:
            return {str(v): int(n) for v, n in conn.execute(query)}

    def decision_counts(self, tenant: str, since: datetime) -> dict[str, int]:
        """Decisions per kind since ``since``."""
        query = (
            select(D.decision, func.count())
            .where(D.tenant == tenant, D.decided_at >= since)
            .group_by(D.decision)
        )
        with db.read_transaction(self._engine) as conn:
            return {str(v): int(n) for v, n in conn.execute(query)}

    def matches_per_day(
        self, tenant: str, since: datetime, *, max_scans: int = 50_000
    ) -> dict[str, Counter[str]]:
        """``{"YYYY-MM-DD": Counter(bank -> matches)}`` from the scan records since ``since``
        (the newest ``max_scans`` scans with a verdict other than allow: those are the ones
        with matches under the shipped policy, and this keeps the read bounded)."""
        has_matches = case((S.verdict == "allow", 0), else_=1)
        query = (
            select(S.created_at, S.result)
            .where(S.tenant == tenant, S.created_at >= since, has_matches == 1)
            .order_by(S.created_at.desc())
            .limit(max_scans)
        )
        out: dict[str, Counter[str]] = defaultdict(Counter)
        with db.read_transaction(self._engine) as conn:
            for at, result in conn.execute(query):
                for m in (result or {}).get("matches", []):
                    out[at.date().isoformat()][str(m.get("bank", "?"))] += 1
        return dict(out)
