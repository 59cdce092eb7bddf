"""The append-only audit log: who did what, to what, when.

It records actions and their targets (a bank name, an entry id, a key id), never content:
no image, no hash of a victim's image, no note text. There is no update or delete here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from rempart.store import db
from rempart.store.models import AuditEvent
from rempart.store.repository import Store

_audit = AuditEvent.__table__
A = _audit.c


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit event."""

    id: int
    at: datetime
    tenant: str
    actor: str
    action: str
    target: str
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON shape for the API and UI."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "tenant": self.tenant,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "details": self.details,
        }


def record(
    conn: Connection,
    *,
    tenant: str,
    actor: str,
    action: str,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """Append one event inside the caller's transaction (so it commits with the change)."""
    conn.execute(
        insert(_audit),
        {
            "at": datetime.now(UTC),
            "tenant": tenant,
            "actor": actor[:128],
            "action": action[:64],
            "target": target[:256],
            "details": details or {},
        },
    )


class AuditLog:
    """Append to and read the audit log."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    def append(
        self,
        *,
        tenant: str,
        actor: str,
        action: str,
        target: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append one event in its own transaction."""
        with self._engine.begin() as conn:
            record(conn, tenant=tenant, actor=actor, action=action, target=target, details=details)

    def list(
        self,
        tenant: str | None = None,
        *,
        action: str | None = None,
        actor: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditRecord]:
        """Newest first, filtered (``since`` inclusive, ``until`` exclusive); page with
        ``before_id``."""
        query = select(_audit).order_by(A.id.desc()).limit(max(1, min(limit, 1000)))
        if tenant is not None:
            query = query.where(A.tenant == tenant)
        if action:
            query = query.where(A.action == action)
        if actor:
            query = query.where(A.actor == actor)
        if before_id is not None:
            query = query.where(A.id < before_id)
        if since is not None:
            query = query.where(A.at >= since)
        if until is not None:
            query = query.where(A.at < until)
        with db.read_transaction(self._engine) as conn:
            return [
                AuditRecord(r.id, r.at, r.tenant, r.actor, r.action, r.target, dict(r.details))
                for r in conn.execute(query)
            ]
