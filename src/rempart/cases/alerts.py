"""Alerts: a platform's scan matched a victim's case, and she is told.

An alert is made from a **scan record** (what the service keeps of a scan) when

- it has matches in the global ``cases`` bank (``hash_match``), or
- a face in it is a lead for a case's enrolled face (``list: cases`` in the face evidence)
  **and** the scan found exposed nudity or evidence of generation (``face``): her face on
  an ordinary photo is not an alert.

The alert holds where (the platform's tenant, the scan id), when, and how (signals,
distances, thresholds, variants) -- never content and never a hash. A tenant whose policy
says ``[alerts] after_review = true`` (or, when its policy does not say, a tenant named in
``settings.cases.alert_after_review``) has its alerts wait (``pending_review``) until a
moderator confirms the scan (true-positive feedback, :func:`confirm_scan`); a false positive
removes them (:func:`dismiss_scan`).

Active alerts are delivered by the :class:`AlertDispatcher` to her contact: an e-mail with
the case number and a link to the case page, and a signed webhook (``Rempart-Signature``,
the scheme of :mod:`rempart.service.webhooks`, with the case's own secret). Failed
deliveries are retried with backoff, up to ``settings.cases.alert_attempts``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, delete, insert, select, update

from rempart.errors import RempartError
from rempart.policy import Policy
from rempart.settings import Settings
from rempart.store import Store, db
from rempart.store.cases import (
    CASES_BANK,
    CASES_TENANT,
    case_alerts_table,
    case_entries_table,
    cases_table,
)
from rempart.store.models import banks_table
from rempart.store.scans import ScanRecord

log = logging.getLogger("rempart.cases")

AL = case_alerts_table.c
CE = case_entries_table.c
K = cases_table.c
B = banks_table.c

_GENERATION_STRENGTHS: Final = {"strong", "moderate"}
_WATERMARK_BANDS: Final = {"likely", "very likely"}
#: How long a claimed alert is held by one dispatcher before another may retry it.
LEASE_S: Final = 120.0
#: First retry delay; doubles per attempt, capped at an hour.
BACKOFF_BASE_S: Final = 30.0
BACKOFF_CAP_S: Final = 3600.0
_CLAIM: Final = 20


# -- reading scan records (pure) ----------------------------------------------------------------


def _dicts(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _evidence(result: Mapping[str, Any]) -> dict[str, Any]:
    ev = result.get("evidence")
    return ev if isinstance(ev, dict) else {}


def has_nudity(evidence: Mapping[str, Any]) -> bool:
    """Whether the evidence parts of a scan hold an exposed nudity region over threshold."""
    nudity = evidence.get("nudity")
    if not isinstance(nudity, dict):
        return False
    threshold = nudity.get("threshold", 0)
    return any(
        r.get("exposure") == "exposed" and float(r.get("score", 0)) >= float(threshold or 0)
        for r in _dicts(nudity.get("regions"))
    )


def has_generation(evidence: Mapping[str, Any]) -> bool:
    """Whether the evidence parts hold evidence of generation (provenance, watermark,
    detector), as the policy's ``generation`` fact counts it."""
    prov = evidence.get("provenance")
    findings = _dicts(prov.get("findings")) if isinstance(prov, dict) else []
    return (
        any(f.get("strength") in _GENERATION_STRENGTHS for f in findings)
        or any(w.get("band") in _WATERMARK_BANDS for w in _dicts(evidence.get("watermarks")))
        or any(d.get("over_threshold") is True for d in _dicts(evidence.get("detectors")))
    )


def case_face_leads(evidence: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Face matches against case persons: ``[{person, distance, threshold}]``."""
    out = []
    for face in _dicts(evidence.get("faces")):
        for m in _dicts(face.get("matches")):
            if m.get("list") == "cases" and isinstance(m.get("person"), str):
                out.append(
                    {
                        "person": m["person"],
                        "distance": m.get("distance"),
                        "threshold": m.get("threshold"),
                    }
                )
    return out


def _signal(m: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "signal": m.get("signal"),
        "distance": m.get("distance"),
        "threshold": m.get("threshold"),
        "variant": m.get("variant"),
    }


# -- making alerts -------------------------------------------------------------------------


def _cases_bank_id(conn: Connection) -> int | None:
    found = conn.execute(
        select(B.id).where(B.tenant == CASES_TENANT, B.name == CASES_BANK)
    ).scalar()
    return None if found is None else int(found)


def alerts_wait_for_review(
    tenant: str, settings: Settings, policies: Mapping[str, Policy] | None = None
) -> bool:
    """Whether alerts raised by ``tenant``'s scans wait for its moderator: its policy's
    ``[alerts] after_review`` when the policy says, else ``settings.cases.alert_after_review``.
    """
    policy = (policies or {}).get(tenant)
    if policy is not None and policy.alert_after_review is not None:
        return policy.alert_after_review
    return tenant in settings.cases.alert_after_review


def record_alerts(
    store: Store,
    settings: Settings,
    scans: Sequence[ScanRecord],
    policies: Mapping[str, Policy] | None = None,
) -> int:
    """Make the alerts that ``scans`` (just recorded) raise; returns how many were new.
    ``policies`` are the tenants' policies (the service's), for ``[alerts] after_review``.

    Cheap when nothing concerns a case: the records are read in memory, and the database
    is asked only when a match names the ``cases`` bank or a face is a case lead.
    """
    candidates = []
    for scan in scans:
        if scan.tenant == CASES_TENANT:
            continue
        matches = [m for m in _dicts(scan.result.get("matches")) if m.get("bank") == CASES_BANK]
        faces = case_face_leads(_evidence(scan.result))
        if matches or faces:
            candidates.append((scan, matches, faces))
    if not candidates:
        return 0
    now = datetime.now(UTC)
    made = 0
    with db.write_transaction(store.engine) as conn:
        bank_id = _cases_bank_id(conn)
        for scan, matches, faces in candidates:
            waits = alerts_wait_for_review(scan.tenant, settings, policies)
            status = "pending_review" if waits else "active"
            found: list[tuple[int, str, dict[str, Any]]] = []
            by_entry: dict[int, list[dict[str, Any]]] = {}
            for m in matches:
                if bank_id is not None and m.get("bank_id") == bank_id:
                    by_entry.setdefault(int(m["entry_id"]), []).append(m)
            if by_entry:
                rows = conn.execute(
                    select(CE.case_id, CE.entry_id)
                    .join(cases_table, K.id == CE.case_id)
                    .where(CE.entry_id.in_(list(by_entry)), K.status == "open")
                ).all()
                per_case: dict[int, list[dict[str, Any]]] = {}
                for case_id, entry_id in rows:
                    per_case.setdefault(case_id, []).extend(by_entry[entry_id])
                for case_id, ms in per_case.items():
                    found.append((case_id, "hash_match", {"signals": [_signal(m) for m in ms]}))
            ev = _evidence(scan.result)
            with_facts = [
                name
                for name, holds in (
                    ("nudity_exposed", has_nudity(ev)),
                    ("generation", has_generation(ev)),
                )
                if holds
            ]
            if faces and with_facts:
                people = {f["person"]: f for f in faces}
                rows = conn.execute(
                    select(K.id, K.person_id).where(
                        K.person_id.in_(list(people)), K.status == "open"
                    )
                ).all()
                for case_id, person in rows:
                    lead = people[person]
                    details = {
                        "signals": [
                            {
                                "signal": "face",
                                "distance": lead["distance"],
                                "threshold": lead["threshold"],
                                "variant": None,
                            }
                        ],
                        "with": with_facts,
                    }
                    found.append((case_id, "face", details))
            for case_id, kind, details in found:
                made += _insert_alert(conn, case_id, scan, kind, status, details, now)
    return made


def _insert_alert(
    conn: Connection,
    case_id: int,
    scan: ScanRecord,
    kind: str,
    status: str,
    details: dict[str, Any],
    now: datetime,
) -> int:
    exists = conn.execute(
        select(AL.id).where(AL.case_id == case_id, AL.scan_id == scan.id, AL.kind == kind)
    ).first()
    if exists is not None:
        return 0
    contact = conn.execute(select(K.contact_sealed.is_not(None)).where(K.id == case_id)).scalar()
    deliver = status == "active" and bool(contact)
    conn.execute(
        insert(case_alerts_table),
        {
            "case_id": case_id,
            "tenant": scan.tenant,
            "scan_id": scan.id,
            "at": scan.created_at,
            "kind": kind,
            "status": status,
            "details": details,
            "email_state": "pending" if deliver else "none",
            "webhook_state": "pending" if deliver else "none",
            "attempts": 0,
            "next_attempt_at": now if deliver else None,
        },
    )
    return 1


def confirm_scan(store: Store, settings: Settings, tenant: str, scan_id: str) -> int:
    """A moderator of ``tenant`` confirmed scan ``scan_id`` (true positive): its alerts
    waiting for review become active and are scheduled for delivery. Returns how many.

    Called by POST /v1/scans/{id}/feedback and by the moderator UI.
    """
    now = datetime.now(UTC)
    with db.write_transaction(store.engine) as conn:
        rows = conn.execute(
            select(AL.id, K.contact_sealed.is_not(None).label("contact"))
            .join(cases_table, K.id == AL.case_id)
            .where(AL.tenant == tenant, AL.scan_id == scan_id, AL.status == "pending_review")
        ).all()
        for alert_id, contact in rows:
            state = "pending" if contact else "none"
            conn.execute(
                update(case_alerts_table)
                .where(AL.id == alert_id)
                .values(
                    status="active",
                    email_state=state,
                    webhook_state=state,
                    next_attempt_at=now if contact else None,
                )
            )
    return len(rows)


def dismiss_scan(store: Store, tenant: str, scan_id: str) -> int:
    """A moderator of ``tenant`` said scan ``scan_id`` is a false positive: alerts still
    waiting for review are deleted (she is never told of them). Returns how many."""
    with db.write_transaction(store.engine) as conn:
        result = conn.execute(
            delete(case_alerts_table).where(
                AL.tenant == tenant, AL.scan_id == scan_id, AL.status == "pending_review"
            )
        )
    return int(result.rowcount or 0)


# -- delivery --------------------------------------------------------------------------------


def alert_email(number: str, public_url: str) -> tuple[str, str]:
    """Subject and text of an alert e-mail: the case number and a link, nothing else."""
    base = public_url.rstrip("/")
    subject = "Rempart: new alert on your case / nouvelle alerte sur votre dossier"
    text = (
        f"A platform that uses Rempart found a copy that matches what you submitted "
        f"(case {number}).\n"
        f"See the details and what you can do: {base}/case?lang=en\n"
        "You will need your case number and PIN. This message holds no image and no hash.\n"
        "\n"
        f"Une plateforme qui utilise Rempart a trouvé une copie correspondant à ce que vous "
        f"avez déposé (dossier {number}).\n"
        f"Détails et démarches : {base}/case?lang=fr\n"
        "Il vous faudra votre numéro de dossier et votre code PIN. Ce message ne contient "
        "ni image ni empreinte.\n"
    )
    return subject, text


def alert_webhook_body(alert: Mapping[str, Any], number: str, public_url: str) -> bytes:
    """The JSON body POSTed to her webhook for one alert (compact, UTF-8)."""
    body = {
        "event": "case.alert",
        "case": number,
        "alert": {
            "id": alert["id"],
            "kind": alert["kind"],
            "platform": alert["tenant"],
            "at": alert["at"].astimezone(UTC).isoformat().replace("+00:00", "Z"),
        },
        "case_page": public_url.rstrip("/") + "/case",
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _backoff(attempts: int) -> float:
    return float(min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1)))


class AlertDispatcher:
    """Delivers active alerts by e-mail and webhook, from a background thread.

    Several dispatchers (workers, machines) may share a store: each claims due alerts under
    a lease, so an alert is sent by one of them at a time. :meth:`run_once` does one round
    (tests and the CLI call it directly).
    """

    def __init__(self, store: Store, settings: Settings, *, interval_s: float = 2.0) -> None:
        self._store = store
        self._settings = settings
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run :meth:`run_once` every ``interval_s`` until :meth:`stop`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="rempart-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (a round in progress finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.run_once()
            except Exception:  # keep going; the next round retries
                log.exception("delivering case alerts failed")

    def _claim(self, now: datetime) -> list[Any]:
        with db.write_transaction(self._store.engine) as conn:
            rows = conn.execute(
                select(case_alerts_table, K.number, K.contact_sealed)
                .join(cases_table, K.id == AL.case_id)
                .where(
                    AL.status == "active",
                    AL.next_attempt_at.is_not(None),
                    AL.next_attempt_at <= now,
                )
                .order_by(AL.next_attempt_at, AL.id)
                .limit(_CLAIM)
            ).all()
            if rows:
                conn.execute(
                    update(case_alerts_table)
                    .where(AL.id.in_([r.id for r in rows]))
                    .values(next_attempt_at=now + timedelta(seconds=LEASE_S))
                )
        return list(rows)

    def run_once(self, now: datetime | None = None) -> int:
        """Deliver every due alert once; returns how many alerts were worked on."""
        now = now or datetime.now(UTC)
        rows = self._claim(now)
        if not rows:
            return 0
        from rempart.cases.service_key import load_private_key

        private: bytes | None = None
        key_error: str | None = None
        try:
            private = load_private_key(self._settings, purpose="delivering alerts")
        except RempartError as e:
            key_error = e.message
        for row in rows:
            self._deliver(row, private, key_error, now)
        return len(rows)

    def _deliver(
        self, row: Any, private: bytes | None, key_error: str | None, now: datetime
    ) -> None:
        from rempart.cases.service_key import unseal_json

        states = {"email": row.email_state, "webhook": row.webhook_state}
        errors: list[str] = []
        contact: dict[str, Any] = {}
        if row.contact_sealed is None:
            states = {k: ("none" if v == "pending" else v) for k, v in states.items()}
        elif private is None:
            errors.append(key_error or "no service key")
        else:
            try:
                contact = unseal_json(row.contact_sealed, private)
            except RempartError as e:
                errors.append(e.message)
        if contact:
            alert = {"id": row.id, "kind": row.kind, "tenant": row.tenant, "at": row.at}
            if states["email"] == "pending":
                if not contact.get("email"):
                    states["email"] = "none"
                else:
                    try:
                        self._email(contact["email"], row.number)
                        states["email"] = "sent"
                    except RempartError as e:
                        errors.append(f"e-mail: {e.message}")
            if states["webhook"] == "pending":
                if not contact.get("webhook_url"):
                    states["webhook"] = "none"
                else:
                    try:
                        self._webhook(contact, alert, row.number)
                        states["webhook"] = "sent"
                    except RempartError as e:
                        errors.append(f"webhook: {e.message}")
        attempts = int(row.attempts) + 1
        pending = [k for k, v in states.items() if v == "pending"]
        next_at: datetime | None = None
        if pending:
            if attempts >= self._settings.cases.alert_attempts:
                for k in pending:
                    states[k] = "failed"
            else:
                next_at = now + timedelta(seconds=_backoff(attempts))
        with db.write_transaction(self._store.engine) as conn:
            conn.execute(
                update(case_alerts_table)
                .where(AL.id == row.id)
                .values(
                    email_state=states["email"],
                    webhook_state=states["webhook"],
                    attempts=attempts,
                    next_attempt_at=next_at,
                    last_error="; ".join(errors)[:1000] or None,
                )
            )

    def _email(self, to: str, number: str) -> None:
        from rempart.cases.mail import send_mail

        subject, text = alert_email(number, self._settings.cases.public_url)
        send_mail(self._settings.smtp, to, subject, text)

    def _webhook(self, contact: Mapping[str, Any], alert: Mapping[str, Any], number: str) -> None:
        import httpx

        from rempart.egress import http_client
        from rempart.service.webhooks import EVENT_HEADER, SIGNATURE_HEADER, sign

        body = alert_webhook_body(alert, number, self._settings.cases.public_url)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Rempart-Alerts/1",
            EVENT_HEADER: "case.alert",
            SIGNATURE_HEADER: sign(str(contact["webhook_secret"]), body, int(time.time())),
        }
        try:
            with http_client(
                allow_private=self._settings.service.egress_allow_private, timeout=10.0
            ) as http:
                response = http.post(str(contact["webhook_url"]), content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise RempartError(f"cannot reach the webhook: {exc}", code="webhook_failed") from None
        if not 200 <= response.status_code < 300:
            raise RempartError(
                f"the webhook answered {response.status_code}", code="webhook_failed"
            )
