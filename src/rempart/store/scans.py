"""Scan records and reviewers' feedback on them.

A scan record keeps the hashes, matches and verdict of an upload -- never its bytes. Feedback
labels a scan's matches as true or false positives, which gives each bank its precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import case, func, insert, select

from rempart.errors import NotFoundError, RempartError
from rempart.store import db
from rempart.store.models import Feedback, Scan
from rempart.store.repository import Store

_scans = Scan.__table__
_feedback = Feedback.__table__
S = _scans.c
F = _feedback.c

Label = Literal["true_positive", "false_positive"]
LABELS: tuple[str, ...] = ("true_positive", "false_positive")


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """A stored scan outcome."""

    id: str
    tenant: str
    created_at: datetime
    kind: str
    verdict: str
    pdq: str | None
    md5: str | None
    sha256: str | None
    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Precision:
    """A bank's precision from feedback: true positives over all labelled matches."""

    bank_id: int
    true_positives: int
    false_positives: int

    @property
    def precision(self) -> float | None:
        """``None`` until some match has been labelled."""
        total = self.true_positives + self.false_positives
        return self.true_positives / total if total else None


class ScanRepository:
    """Write and read scan records and feedback."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    def record_many(self, scans: Sequence[ScanRecord]) -> None:
        """Insert scan records in one short transaction (the service batches them)."""
        if not scans:
            return
        with self._engine.begin() as conn:
            conn.execute(
                insert(_scans),
                [
                    {
                        "id": s.id,
                        "tenant": s.tenant,
                        "created_at": s.created_at,
                        "kind": s.kind,
                        "verdict": s.verdict,
                        "pdq": s.pdq,
                        "md5": s.md5,
                        "sha256": s.sha256,
                        "result": s.result,
                    }
                    for s in scans
                ],
            )

    def get(self, tenant: str, scan_id: str) -> ScanRecord:
        """The scan ``scan_id`` of ``tenant``; NotFoundError ``scan_not_found`` otherwise."""
        with db.read_transaction(self._engine) as conn:
            row = conn.execute(
                select(_scans).where(S.id == scan_id, S.tenant == tenant)
            ).one_or_none()
        if row is None:
            raise NotFoundError(
                f"no scan {scan_id!r}",
                code="scan_not_found",
                hint="scan ids come from POST /v1/scan; scan records may have been pruned",
            )
        return ScanRecord(
            row.id,
            row.tenant,
            row.created_at,
            row.kind,
            row.verdict,
            row.pdq,
            row.md5,
            row.sha256,
            dict(row.result),
        )

    def add_feedback(self, tenant: str, scan_id: str, label: str, note: str = "") -> int:
        """Label every match of a scan; returns how many matches were labelled."""
        if label not in LABELS:
            raise RempartError(
                f"unknown feedback {label!r}",
                code="bad_feedback",
                hint="use true_positive or false_positive",
            )
        scan = self.get(tenant, scan_id)
        matches = scan.result.get("matches", []) + scan.result.get("suppressed", [])
        now = datetime.now(UTC)
        rows = [
            {
                "scan_id": scan_id,
                "tenant": tenant,
                "bank_id": m.get("bank_id"),
                "entry_id": m.get("entry_id"),
                "label": label,
                "note": note[:2000],
                "created_at": now,
            }
            for m in matches
        ] or [
            {
                "scan_id": scan_id,
                "tenant": tenant,
                "bank_id": None,
                "entry_id": None,
                "label": label,
                "note": note[:2000],
                "created_at": now,
            }
        ]
        with self._engine.begin() as conn:
            conn.execute(insert(_feedback), rows)
        return len(matches)

    def precision(self, bank_ids: Sequence[int] | None = None) -> dict[int, Precision]:
        """Precision per bank from feedback."""
        tp = func.sum(case((F.label == "true_positive", 1), else_=0))
        fp = func.sum(case((F.label == "false_positive", 1), else_=0))
        query = select(F.bank_id, tp, fp).where(F.bank_id.is_not(None)).group_by(F.bank_id)
        if bank_ids is not None:
            query = query.where(F.bank_id.in_(list(bank_ids)))
        with db.read_transaction(self._engine) as conn:
            return {
                int(b): Precision(int(b), int(t or 0), int(f or 0))
                for b, t, f in conn.execute(query)
            }
