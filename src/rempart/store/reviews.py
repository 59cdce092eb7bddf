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
    case,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column

from rempart.errors import RempartError
from rempart.store import db
from rempart.store.models import Base, Scan, UTCDateTime

if TYPE_CHECKING:
    from rempart.store.repository import Store

Decision = Literal["confirm", "reject", "escalate"]
DECISIONS: Final = ("confirm", "reject", "escalate")
#: Queue order: high before normal before low (then oldest first).
PRIORITY_RANK: Final = {"high": 0, "normal": 1, "low": 2}
#: Most items one queue page lists (the queue is worked from the top).
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


def _priority_of(result: Any) -> str:
    p = result.get("priority") if isinstance(result, dict) else None
    return p if p in PRIORITY_RANK else "normal"


class ReviewQueue:
    """Read the queue and record decisions."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    def pending(
        self, tenant: str, *, escalated: bool = False, limit: int = MAX_QUEUE
    ) -> list[QueueItem]:
        """Undecided (or, with ``escalated``, escalated) review scans of ``tenant``, by
        priority (high first) and then age (oldest first)."""
        query = (
            select(S.id, S.created_at, S.kind, S.result, D.decision)
            .outerjoin(decisions_table, D.scan_id == S.id)
            .where(S.tenant == tenant, S.verdict == "review")
        )
        if escalated:
            query = query.where(D.decision == "escalate")
        else:
            query = query.where(D.scan_id.is_(None))
        # The priority lives in the JSON result; ordering in Python keeps one query shape
        # for SQLite and PostgreSQL. Oldest first from the database, then a stable sort.
        query = query.order_by(S.created_at, S.id).limit(max(1, min(limit, 10 * MAX_QUEUE)))
        with db.read_transaction(self._engine) as conn:
            rows = conn.execute(query).all()
        items = [
            QueueItem(
                r.id, r.created_at, _priority_of(r.result), r.kind, dict(r.result), r.decision
            )
            for r in rows
        ]
        items.sort(key=lambda i: PRIORITY_RANK[i.priority])
        return items[:limit]

    def item(self, tenant: str, scan_id: str) -> QueueItem | None:
        """One review scan of ``tenant`` with its decision (if any), or None."""
        query = (
            select(S.id, S.created_at, S.kind, S.result, D.decision)
            .outerjoin(decisions_table, D.scan_id == S.id)
            .where(S.tenant == tenant, S.id == scan_id, S.verdict == "review")
        )
        with db.read_transaction(self._engine) as conn:
            r = conn.execute(query).one_or_none()
        if r is None:
            return None
        return QueueItem(
            r.id, r.created_at, _priority_of(r.result), r.kind, dict(r.result), r.decision
        )

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
        """Record (or replace) the decision on a scan."""
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
        with db.write_transaction(self._engine) as conn:
            conn.execute(delete(decisions_table).where(D.scan_id == scan_id))
            conn.execute(insert(decisions_table), row)
        return DecisionInfo(scan_id, decision, actor, bank, note, now)

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
