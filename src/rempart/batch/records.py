"""What a batch run leaves in the store: a scan record for each flagged item, and the case
each entry of the global ``cases`` bank belongs to (for the report).

A flagged item (a bank match, a verdict other than allow, evidence of generation) becomes a
scan record of the run's tenant, as an upload scanned by the service does: hashes, matches,
verdict and evidence, never the bytes. Its ``source`` says where the item was found (the file,
the archive and member, or the Telegram chat, message, sender and date), so that
``rempart evidence SCAN_ID`` packages it with that provenance; a match in the ``cases`` bank
raises the case's alert, as a scan by the service would, so the case's own evidence package
includes it. The scan id goes into the item's row.

Scan ids are derived from the results folder's run id and the item's key: a record written
just before an interruption is found again, not doubled, when the run is resumed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from rempart.settings import Settings
from rempart.store import Store
from rempart.store.scans import ScanRecord, ScanRepository

#: Parts of a row that are evidence (kept in the record, as the service keeps them).
EVIDENCE_PARTS = ("provenance", "watermarks", "faces", "detectors", "nudity")
#: The namespace of batch scan ids (uuid5 of the run id and the item key).
_NAMESPACE = uuid.UUID("5b0f3c1e-7a43-4c8e-9d2c-0e6a1b7d4f21")


def content_id(row: Mapping[str, Any]) -> str:
    """What the evidence calls the item's content id: ``CHAT_ID/MESSAGE_ID`` for a Telegram
    message, the path (``archive!member`` in an archive) otherwise."""
    source = row.get("source") or {}
    if source.get("kind") == "telegram" and source.get("message_id") is not None:
        return f"{source.get('chat_id')}/{source.get('message_id')}"
    return str(row.get("path", ""))


def scan_record(row: Mapping[str, Any], scan_id: str, tenant: str, at: datetime) -> ScanRecord:
    """The scan record of a scanned row (pure: values in, values out)."""
    hashes = row.get("hashes") or {}
    result: dict[str, Any] = {
        "matches": list(row.get("matches", [])),
        "suppressed": list(row.get("suppressed", [])),
        "verdict": row.get("verdict", "allow"),
        "priority": row.get("priority"),
        "reasons": list(row.get("reasons", [])),
        "source": {
            **(row.get("source") or {}),
            "path": row.get("path"),
            "content_id": content_id(row),
        },
    }
    evidence = {k: row[k] for k in EVIDENCE_PARTS if k in row}
    if evidence:
        result["evidence"] = evidence
    return ScanRecord(
        scan_id,
        tenant,
        at,
        str(hashes.get("kind", "image")),
        str(result["verdict"]),
        hashes.get("pdq"),
        hashes.get("md5"),
        hashes.get("sha256"),
        result,
    )


class Recorder:
    """Records flagged rows as scans of ``tenant`` and raises the alerts of case matches."""

    def __init__(self, store: Store, settings: Settings, tenant: str, run_id: str) -> None:
        self._store = store
        self._settings = settings
        self._scans = ScanRepository(store)
        self._tenant = tenant
        self._run_id = run_id
        self.recorded = 0

    def scan_id(self, key: str) -> str:
        """The scan id of the item ``key`` in this results folder."""
        return str(uuid.uuid5(_NAMESPACE, f"{self._run_id}\n{key}"))

    def record(self, row: Mapping[str, Any]) -> str:
        """Record ``row`` (once: a second call for the same key finds the first record);
        its scan id."""
        from rempart.cases.alerts import record_alerts

        scan_id = self.scan_id(str(row["key"]))
        record = scan_record(row, scan_id, self._tenant, datetime.now(UTC))
        try:
            self._scans.record_many([record])
        except IntegrityError:  # recorded by an interrupted run: the alerts were made then
            return scan_id
        self.recorded += 1
        record_alerts(self._store, self._settings, [record])
        return scan_id


def case_numbers(store: Store, entry_ids: Iterable[int]) -> tuple[int | None, dict[int, list[str]]]:
    """The id of the global ``cases`` bank, and the case numbers of each of ``entry_ids``
    in it. Read from the operator's own store: the number is all the report shows of a case."""
    from rempart.store import db
    from rempart.store.cases import CASES_BANK, CASES_TENANT, case_entries_table, cases_table
    from rempart.store.models import Bank

    banks = Bank.__table__.c
    ce, k = case_entries_table.c, cases_table.c
    wanted = sorted(set(entry_ids))
    found: dict[int, list[str]] = {}
    with db.read_transaction(store.engine) as conn:
        bank_id = conn.execute(
            select(banks.id).where(banks.tenant == CASES_TENANT, banks.name == CASES_BANK)
        ).scalar()
        for start in range(0, len(wanted), 500):
            rows = conn.execute(
                select(ce.entry_id, k.number)
                .join(cases_table, k.id == ce.case_id)
                .where(ce.entry_id.in_(wanted[start : start + 500]))
                .order_by(k.number)
            )
            for entry_id, number in rows:
                found.setdefault(int(entry_id), []).append(str(number))
    return (None if bank_id is None else int(bank_id)), found
