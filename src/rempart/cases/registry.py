"""Victims' cases: submit a submission, follow it with number + PIN, withdraw it.

A case is opened from a checked :class:`~rempart.cases.Submission`:

- its hashes go into **one** global block bank, ``cases``, owned by the reserved tenant
  :data:`~rempart.store.cases.CASES_TENANT`, which every tenant's scans and lookups match.
  A platform sees ``bank: "cases"`` and an entry id, nothing that names the case;
- a face template, if she sent one, is opened with the service's private key and stored
  encrypted (AES-GCM, :class:`~rempart.store.faces.FaceTemplates`) under an opaque person id;
- her contact details (e-mail, webhook URL and its signing secret) are sealed to the service
  key before they are stored;
- she gets a random **case number** (60 bits) and **PIN** (8 digits); only an Argon2id hash
  of the PIN is kept. Wrong PINs are counted in the database (so every worker sees them),
  per (number, client address) and per number (**Wrong PINs** below).

Everything is written in one transaction: an error at any step stores nothing.

**Withdrawal** hard-deletes her entries, logging ``remove`` changes so every worker drops
them from its index within a refresh (0.25 s by default), scrubs the hash values from the
change log rows of those entries, deletes her face templates, alerts and notices, and keeps a
tombstone (number, ``withdrawn``, when). The audit log records ``case.withdraw`` with the
case number (already in the tombstone) and nothing about what was withdrawn.

**Wrong PINs.** The case number appears in the notices sent to platforms, so a lock on the
case alone would let anyone who read a notice keep her out by sending wrong PINs. So:

- one client address gets ``pin_attempts`` (5) wrong PINs for one number, then is locked
  out of that number for ``lockout_s`` (15 minutes), doubled at each further lockout within
  ``pin_window_s`` (a day): from one address, about 35 guesses a day;
- the number itself locks, for everyone, only when all addresses together reach
  ``case_pin_attempts`` (100) within the window, and until the window ends.

Guessing stays hopeless -- at most 100 guesses a day against 10^8 PINs is more than a
thousand years on average, and the 60-bit number must be known first -- while locking her
out takes many addresses (IPv6 addresses count per /64), and only for the rest of a day.
Counts are kept by the number typed, whether or not a case has it, so a locked answer says
nothing about which numbers exist.

:meth:`CaseRepository.get` and :meth:`CaseRepository.alerts` are the operator's view (CLI,
moderator UI): they need no PIN and must never be exposed to the public.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
from sqlalchemy import (
    Connection,
    Row,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)

from rempart.cases.service_key import load_private_key, public_key_of, seal_json
from rempart.cases.submission import Submission, SubmissionError, unseal_template
from rempart.errors import ConfigError, ConflictError, NotFoundError, RempartError
from rempart.settings import Settings
from rempart.store import NewEntry, Store, db
from rempart.store.audit import record as audit_record
from rempart.store.cases import (
    CASES_BANK,
    CASES_TENANT,
    case_alerts_table,
    case_entries_table,
    case_pin_failures_table,
    cases_table,
)
from rempart.store.faces import (
    FaceTemplates,
    face_templates_table,
    parse_key,
    parse_previous_keys,
)
from rempart.store.models import banks_table, changes_table, entries_table
from rempart.store.notices import erase_for_case as erase_notices_for_case
from rempart.store.repository import delete_entries

K = cases_table.c
CE = case_entries_table.c
AL = case_alerts_table.c
PF = case_pin_failures_table.c
E = entries_table.c
C = changes_table.c
B = banks_table.c

#: Crockford's base32 (no I, L, O, U): read aloud and typed by hand without confusion.
_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_NUMBER: Final = re.compile(
    r"RMP-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}"
)
#: 8 digits: with the lockout (at most 100 wrong PINs a day per number) guessing one case's
#: PIN takes over a thousand years on average, and the number (60 random bits) must be
#: known first.
PIN_DIGITS: Final = 8
#: The ``client`` of the per-number count of wrong PINs (every address together).
EVERYONE: Final = "*"
#: Items accepted in one submission (a person's own photos and videos, not an archive).
MAX_ITEMS: Final = 2000
_EMAIL: Final = re.compile(r"[^@\s<>,;\"]{1,64}@[^@\s<>,;\"]{1,190}\.[^@\s<>,;\"]{2,63}")
_ID_CHUNK: Final = 500


class CaseError(RempartError):
    """A case cannot be opened, read or withdrawn.

    Codes: ``case_access_denied`` (403: unknown case, wrong PIN or withdrawn case -- the
    same answer for all three, so the number cannot be probed), ``case_locked`` (429: too
    many wrong PINs for that number, whether or not it exists). Bad input is a
    :class:`CaseInputError` (422).
    """

    code = "case_access_denied"
    status = 403


class CaseInputError(RempartError):
    """A submission or contact that cannot open a case (``empty_submission``,
    ``too_many_items``, ``bad_contact``)."""

    code = "bad_contact"
    status = 422


class CaseLockedError(CaseError):
    """Too many wrong PINs for this number: from this address, or from all of them
    (``case_locked``, 429 with ``Retry-After`` from :attr:`retry_after_s`)."""

    code = "case_locked"
    status = 429

    def __init__(self, until: datetime, *, everyone: bool = False) -> None:
        wait = max(1, int((until - datetime.now(UTC)).total_seconds() + 0.999))
        minutes = (wait + 59) // 60
        super().__init__(
            "this case number is locked after too many wrong PINs"
            if everyone
            else "too many wrong PINs for this case number from your address",
            hint=f"try again in {minutes} minute{'s' if minutes > 1 else ''}",
        )
        self.retry_after_s = wait


def _denied() -> CaseError:
    return CaseError(
        "unknown case number, or wrong PIN",
        hint="check both; after several wrong PINs the case locks for a while",
    )


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewCase:
    """What submitting gives back once: the number, the PIN and the webhook secret."""

    number: str
    pin: str
    entries: int
    face_templates: int
    #: The HMAC secret that signs alert webhooks; only when a webhook URL was given.
    webhook_secret: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"case", "pin", ...}`` as the CLI and the API print it."""
        out: dict[str, Any] = {
            "case": self.number,
            "pin": self.pin,
            "entries": self.entries,
            "face_templates": self.face_templates,
        }
        if self.webhook_secret:
            out["webhook_secret"] = self.webhook_secret
        return out


@dataclass(frozen=True, slots=True)
class CaseInfo:
    """A case as the operator sees it (no PIN, no contact details, no hashes)."""

    id: int
    number: str
    status: str
    created_at: datetime
    withdrawn_at: datetime | None
    entries: int
    face_enrolled: bool
    has_contact: bool
    locked_until: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """JSON shape for the CLI."""
        return {
            "id": self.id,
            "case": self.number,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "withdrawn_at": self.withdrawn_at.isoformat() if self.withdrawn_at else None,
            "entries": self.entries,
            "face_enrolled": self.face_enrolled,
            "has_contact": self.has_contact,
            "locked_until": self.locked_until.isoformat() if self.locked_until else None,
        }


@dataclass(frozen=True, slots=True)
class AlertInfo:
    """One alert: which platform (tenant), which scan, when, how -- never the content."""

    id: int
    case_number: str
    tenant: str
    scan_id: str
    at: datetime
    kind: str
    status: str
    details: dict[str, Any]
    email_state: str = "none"
    webhook_state: str = "none"

    def to_dict(self) -> dict[str, Any]:
        """JSON shape for the operator's CLI and UI."""
        return {
            "id": self.id,
            "case": self.case_number,
            "tenant": self.tenant,
            "scan_id": self.scan_id,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "status": self.status,
            "details": self.details,
            "email": self.email_state,
            "webhook": self.webhook_state,
        }


@dataclass(frozen=True, slots=True)
class CaseStatus:
    """What she sees with number + PIN: counts, platforms, dates; never content."""

    number: str
    status: str
    created_at: datetime
    entries: int
    face_enrolled: bool
    #: Confirmed alerts only (one waiting for a platform's moderator is not shown yet).
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def matches(self) -> int:
        """How many alerts she has."""
        return len(self.alerts)

    def to_dict(self) -> dict[str, Any]:
        """JSON shape of POST /v1/cases/{number}/status."""
        return {
            "case": self.number,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "entries": self.entries,
            "face_enrolled": self.face_enrolled,
            "matches": self.matches,
            "alerts": self.alerts,
        }


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """The tombstone left by a withdrawal, with what was deleted (counts only)."""

    number: str
    withdrawn_at: datetime
    entries_removed: int
    templates_removed: int

    def to_dict(self) -> dict[str, Any]:
        """JSON shape of POST /v1/cases/{number}/withdraw."""
        return {
            "case": self.number,
            "status": "withdrawn",
            "withdrawn_at": self.withdrawn_at.isoformat(),
            "entries_removed": self.entries_removed,
            "face_templates_removed": self.templates_removed,
        }


# -- numbers, PINs ---------------------------------------------------------------------------


def new_case_number() -> str:
    """``RMP-XXXX-XXXX-XXXX``: 60 random bits in Crockford base32."""
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(12))
    return f"RMP-{chars[:4]}-{chars[4:8]}-{chars[8:]}"


def normalise_case_number(text: object) -> str | None:
    """The canonical form of a typed case number (case, spaces, O/I/L mix-ups forgiven),
    or ``None`` when it cannot be one."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    raw = re.sub(r"[\s\-]", "", text.upper()).translate(str.maketrans("OIL", "011"))
    raw = raw.removeprefix("RMP")
    if len(raw) != 12:
        return None
    number = f"RMP-{raw[:4]}-{raw[4:8]}-{raw[8:]}"
    return number if _NUMBER.fullmatch(number) else None


def new_pin() -> str:
    """A random PIN of :data:`PIN_DIGITS` digits."""
    return f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"


def _hasher() -> Any:
    from argon2 import PasswordHasher

    # OWASP's Argon2id minimum (19 MiB, 2 passes): tens of milliseconds per check, which
    # with the lockout makes guessing hopeless, without making the service easy to tire.
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


_HASHER: Any = None
_DUMMY: str | None = None


def hash_pin(pin: str) -> str:
    """The Argon2id hash stored for a PIN."""
    global _HASHER
    if _HASHER is None:
        _HASHER = _hasher()
    return str(_HASHER.hash(pin))


def verify_pin(pin_hash: str | None, pin: object) -> bool:
    """Whether ``pin`` matches ``pin_hash``. With no hash (unknown case) a dummy hash is
    checked anyway, so an unknown case takes as long to refuse as a wrong PIN."""
    global _HASHER, _DUMMY
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    if _HASHER is None:
        _HASHER = _hasher()
    if _DUMMY is None:
        _DUMMY = str(_HASHER.hash(new_pin()))
    text = pin.strip() if isinstance(pin, str) and len(pin) <= 64 else ""
    try:
        ok = bool(_HASHER.verify(pin_hash or _DUMMY, text or "-"))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    return ok and pin_hash is not None and bool(text)


# -- contact -------------------------------------------------------------------------------


def _contact(email: str | None, webhook_url: str | None, settings: Settings) -> dict[str, str]:
    out: dict[str, str] = {}
    if email:
        email = email.strip()
        if len(email) > 254 or not _EMAIL.fullmatch(email):
            raise CaseInputError(
                "the e-mail address does not look right",
                code="bad_contact",
                hint="give one address such as name@example.org",
            )
        out["email"] = email
    if webhook_url:
        from rempart.egress import check_url
        from rempart.store.webhooks import WebhookError, validate_url

        try:
            url = validate_url(webhook_url)
        except WebhookError as e:
            raise CaseInputError(e.message, code="bad_contact", hint=e.hint) from None
        check_url(url, allow_private=settings.service.egress_allow_private)
        out["webhook_url"] = url
        out["webhook_secret"] = "whsec_" + secrets.token_urlsafe(32)
    return out


# -- entries ---------------------------------------------------------------------------------


def entries_for_submission(submission: Submission) -> list[NewEntry]:
    """Bank entries for a submission: per photo its PDQ (with quality), MD5 and SHA-256;
    per video its frame hashes (``vpdq``), MD5 and SHA-256. No source, tags or metadata:
    nothing in an entry may point back to the case.

    Rotated and flipped variants are not stored: the scan side hashes the 8 variants of
    every upload, which finds the same copies.
    """
    out: list[NewEntry] = []
    for item in submission.items:
        out.append(NewEntry(signal="md5", value=item["md5"]))
        out.append(NewEntry(signal="sha256", value=item["sha256"]))
        if item["kind"] == "image":
            out.append(NewEntry(signal="pdq", value=item["pdq"], quality=item["pdq_quality"]))
        else:
            frames = [f["pdq"] for f in item["frames"]]
            if frames:
                out.append(NewEntry(signal="vpdq", value=item["md5"], frames=tuple(frames)))
    return out


def _chunks(items: Sequence[int]) -> Iterable[list[int]]:
    for i in range(0, len(items), _ID_CHUNK):
        yield list(items[i : i + _ID_CHUNK])


class CaseRepository:
    """Victims' cases on a :class:`~rempart.store.Store`, under ``settings``."""

    def __init__(self, store: Store, settings: Settings | None = None) -> None:
        self._store = store
        self._engine = store.engine
        # The operator's read-only view (get, alerts) needs no settings; submitting and
        # checking PINs use the limits and keys of the settings passed in.
        self._settings = settings if settings is not None else Settings()

    # -- the cases bank ----------------------------------------------------------------------

    def cases_bank(self) -> int:
        """Id of the global ``cases`` bank of the reserved tenant (created on first use)."""
        with db.read_transaction(self._engine) as conn:
            found = conn.execute(
                select(B.id).where(B.tenant == CASES_TENANT, B.name == CASES_BANK)
            ).scalar()
        if found is not None:
            return int(found)
        try:
            bank = self._store.create_bank(
                CASES_BANK,
                tenant=CASES_TENANT,
                threshold=self._settings.pdq_threshold,
                description="Victims' cases: every tenant matches it; entries are opaque",
            )
        except ConflictError:  # another worker made it first
            return self._store.get_bank(CASES_BANK, tenant=CASES_TENANT).id
        return bank.id

    # -- submitting --------------------------------------------------------------------------

    def submit(
        self,
        submission: Submission,
        *,
        email: str | None = None,
        webhook_url: str | None = None,
        actor: str = "victim",
    ) -> NewCase:
        """Open a case from a checked submission; returns number, PIN (shown once) and,
        with a webhook, its signing secret.

        Everything that can fail is checked before anything is written: hashes, contact,
        face templates (``wrong_service_key`` when sealed to another key), configuration
        (``no_service_key``, ``no_face_key``). Then one transaction writes it all.
        """
        if not submission.items and not submission.face_templates:
            raise CaseInputError(
                "this submission holds no hash and no face template",
                code="empty_submission",
                hint="run `rempart protect` on your photos or videos",
            )
        if len(submission.items) > MAX_ITEMS:
            raise CaseInputError(
                f"{len(submission.items)} files in one submission; at most {MAX_ITEMS}",
                code="too_many_items",
                hint="split your files into several submissions",
            )
        contact = _contact(email, webhook_url, self._settings)
        entries = entries_for_submission(submission)
        private: bytes | None = None
        if submission.face_templates or contact:
            private = load_private_key(
                self._settings,
                purpose="a face template" if submission.face_templates else "contact details",
            )
        vectors = [
            unseal_template(t.sealed, private)
            for t in submission.face_templates
            if private is not None
        ]
        faces: FaceTemplates | None = None
        if vectors:
            key = self._settings.face_template_key
            if key is None:
                raise ConfigError(
                    "storing a face template needs the face template key, and none is set",
                    code="no_face_key",
                    hint="set REMPART_FACE_TEMPLATE_KEY (32 random bytes, base64)",
                )
            faces = FaceTemplates(
                self._store,
                parse_key(key.get_secret_value()),
                parse_previous_keys(self._settings.face_template_previous_keys),
            )
        sealed_contact = seal_json(contact, public_key_of(private)) if contact and private else None
        pin = new_pin()
        pin_hash = hash_pin(pin)
        person_id = f"p_{secrets.token_hex(12)}" if vectors else None
        bank_id = self.cases_bank()
        now = datetime.now(UTC)
        with db.write_transaction(self._engine) as conn:
            number = new_case_number()
            while conn.execute(select(K.id).where(K.number == number)).first() is not None:
                number = new_case_number()  # pragma: no cover - 60 random bits
            case_id = conn.execute(
                insert(cases_table).returning(K.id),
                {
                    "number": number,
                    "pin_hash": pin_hash,
                    "status": "open",
                    "created_at": now,
                    "failed_attempts": 0,
                    "person_id": person_id,
                    "contact_sealed": sealed_contact,
                },
            ).scalar_one()
            entry_ids = _add_entries(conn, bank_id, entries, now)
            if entry_ids:
                conn.execute(
                    insert(case_entries_table),
                    [{"case_id": case_id, "entry_id": i} for i in entry_ids],
                )
            if faces is not None and person_id is not None:
                faces.enrol(person_id, CASES_TENANT, np.stack(vectors), conn=conn)
            audit_record(
                conn, tenant=CASES_TENANT, actor=actor, action="case.submit", target=number
            )
        return NewCase(
            number=number,
            pin=pin,
            entries=len(entry_ids),
            face_templates=len(vectors),
            webhook_secret=contact.get("webhook_secret"),
        )

    # -- the PIN -------------------------------------------------------------------------------

    def _authenticate(self, number: str, pin: str, client: str) -> Row[Any]:
        """The open case ``number`` if ``pin`` is its PIN. A wrong PIN is counted for
        (number, ``client``) and for the number, and may lock either (module docstring).

        Unknown, withdrawn and real numbers take the same path and the same time, so no
        answer -- denied or locked -- tells whether a number exists.
        """
        canonical = normalise_case_number(number)
        if canonical is None:
            # Not even the shape of a number (the shape is public): nothing to count.
            verify_pin(None, pin)
            raise _denied()
        who = client_key(client)
        now = datetime.now(UTC)
        with db.read_transaction(self._engine) as conn:
            _raise_if_locked(conn, canonical, who, now)
            row = conn.execute(select(cases_table).where(K.number == canonical)).first()
        if row is None or row.status != "open" or row.pin_hash is None:
            row = None
        ok = verify_pin(row.pin_hash if row is not None else None, pin)
        with db.write_transaction(self._engine) as conn:
            # Re-read under the write lock: another worker may have locked the number while
            # the PIN was being checked; counting here is what makes the limits global.
            _raise_if_locked(conn, canonical, who, now)
            if ok and row is not None:
                current = conn.execute(select(cases_table).where(K.id == row.id)).one()
                if current.status == "open":
                    conn.execute(
                        delete(case_pin_failures_table).where(
                            PF.number == canonical, PF.client == who
                        )
                    )
                    return current
            self._count_failure(conn, canonical, who, now)
        raise _denied()

    def _count_failure(self, conn: Connection, number: str, who: str, now: datetime) -> None:
        cfg = self._settings.cases
        window = timedelta(seconds=cfg.pin_window_s)
        # Forget windows and locks that are over (every worker does a little of this).
        conn.execute(
            delete(case_pin_failures_table).where(
                PF.first_at < now - window,
                (PF.locked_until.is_(None)) | (PF.locked_until < now),
            )
        )
        for client in (who, EVERYONE):
            failures, first_at = _bump(conn, number, client, now, window)
            until: datetime | None = None
            if client == EVERYONE:
                if failures >= cfg.case_pin_attempts:
                    until = max(first_at + window, now + timedelta(seconds=cfg.lockout_s))
            elif failures % cfg.pin_attempts == 0:
                lockouts = failures // cfg.pin_attempts
                wait = min(cfg.lockout_s * 2 ** min(lockouts - 1, 30), cfg.pin_window_s)
                until = now + timedelta(seconds=wait)
            if until is not None:
                conn.execute(
                    update(case_pin_failures_table)
                    .where(PF.number == number, PF.client == client)
                    .values(locked_until=until)
                )

    def lock_status(self, number: str) -> datetime | None:
        """Until when ``number`` is locked for everyone (too many wrong PINs), or ``None``."""
        canonical = normalise_case_number(number)
        if canonical is None:
            return None
        with db.read_transaction(self._engine) as conn:
            until = conn.execute(
                select(PF.locked_until).where(PF.number == canonical, PF.client == EVERYONE)
            ).scalar()
        return until if until is not None and until > datetime.now(UTC) else None

    # -- following -----------------------------------------------------------------------------

    def status(self, number: str, pin: str, *, client: str = "local") -> CaseStatus:
        """Her view of her case (number + PIN): counts, platforms and dates of confirmed
        alerts. ``client`` is who asks (the HTTP client's address), for the lockout.
        Raises ``case_access_denied`` or ``case_locked``."""
        row = self._authenticate(number, pin, client)
        with db.read_transaction(self._engine) as conn:
            entries = self._entry_count(conn, row.id)
            alerts = conn.execute(
                select(AL.tenant, AL.at, AL.kind)
                .where(AL.case_id == row.id, AL.status == "active")
                .order_by(AL.at, AL.id)
            ).all()
        return CaseStatus(
            number=row.number,
            status=row.status,
            created_at=row.created_at,
            entries=entries,
            face_enrolled=row.person_id is not None,
            alerts=[{"platform": a.tenant, "at": a.at.isoformat(), "kind": a.kind} for a in alerts],
        )

    @staticmethod
    def _entry_count(conn: Connection, case_id: int) -> int:
        return int(
            conn.execute(
                select(func.count()).select_from(case_entries_table).where(CE.case_id == case_id)
            ).scalar_one()
        )

    # -- withdrawing ---------------------------------------------------------------------------

    def withdraw(
        self, number: str, pin: str, *, actor: str = "victim", client: str = "local"
    ) -> Withdrawal:
        """Delete everything of the case for good, keeping a tombstone (see the module
        docstring). Raises ``case_access_denied`` or ``case_locked``; atomic."""
        row = self._authenticate(number, pin, client)
        now = datetime.now(UTC)
        with db.write_transaction(self._engine) as conn:
            current = conn.execute(select(cases_table).where(K.id == row.id)).one()
            if current.status != "open":
                raise _denied()
            removed, templates = _erase(conn, current, now)
            conn.execute(
                update(cases_table)
                .where(K.id == row.id)
                .values(
                    status="withdrawn",
                    withdrawn_at=now,
                    pin_hash=None,
                    person_id=None,
                    contact_sealed=None,
                )
            )
            # Her notices hold her name, contact details, signature and the items' URLs and
            # hashes: they go too (the tombstone keeps only the number and the date).
            erase_notices_for_case(conn, row.number)
            # That it happened and to which case number (already in the tombstone): never
            # what was withdrawn.
            audit_record(
                conn, tenant=CASES_TENANT, actor=actor, action="case.withdraw", target=row.number
            )
        return Withdrawal(row.number, now, removed, templates)

    # -- the operator's view -------------------------------------------------------------------

    def _row(self, conn: Connection, number: str) -> Row[Any]:
        canonical = normalise_case_number(number)
        row = None
        if canonical is not None:
            row = conn.execute(select(cases_table).where(K.number == canonical)).first()
        if row is None:
            raise NotFoundError(f"no case {number!r}", code="case_not_found")
        return row

    def get(self, number: str) -> CaseInfo:
        """A case by number, for the operator (no PIN). NotFoundError ``case_not_found``."""
        with db.read_transaction(self._engine) as conn:
            row = self._row(conn, number)
            entries = self._entry_count(conn, row.id)
        return CaseInfo(
            id=row.id,
            number=row.number,
            status=row.status,
            created_at=row.created_at,
            withdrawn_at=row.withdrawn_at,
            entries=entries,
            face_enrolled=row.person_id is not None,
            has_contact=row.contact_sealed is not None,
            locked_until=self.lock_status(row.number),
        )

    def alerts(self, number: str) -> list[AlertInfo]:
        """Every alert of a case (pending review ones too), oldest first, for the operator."""
        with db.read_transaction(self._engine) as conn:
            row = self._row(conn, number)
            rows = conn.execute(
                select(case_alerts_table).where(AL.case_id == row.id).order_by(AL.at, AL.id)
            ).all()
        return [
            AlertInfo(
                id=r.id,
                case_number=row.number,
                tenant=r.tenant,
                scan_id=r.scan_id,
                at=r.at,
                kind=r.kind,
                status=r.status,
                details=dict(r.details or {}),
                email_state=r.email_state,
                webhook_state=r.webhook_state,
            )
            for r in rows
        ]

    def list(self, status: str | None = None) -> list[CaseInfo]:
        """Every case (or those of ``status``), newest first, for the operator."""
        query = select(K.number).order_by(K.id.desc())
        if status is not None:
            query = query.where(K.status == status)
        with db.read_transaction(self._engine) as conn:
            numbers = list(conn.execute(query).scalars())
        return [self.get(n) for n in numbers]


def client_key(address: str) -> str:
    """What the wrong-PIN counts keep of a client address: a hash (32 hex digits), never
    the address. IPv6 addresses count per /64, the block one subscriber usually holds."""
    import hashlib
    import ipaddress

    text = address.strip()[:128]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        if ip.version == 6 and ip.ipv4_mapped is None:
            text = str(ipaddress.ip_network(f"{ip}/64", strict=False))
        elif ip.version == 6 and ip.ipv4_mapped is not None:
            text = str(ip.ipv4_mapped)
    return hashlib.sha256(f"rempart-pin-client:{text}".encode()).hexdigest()[:32]


def _raise_if_locked(conn: Connection, number: str, who: str, now: datetime) -> None:
    rows = conn.execute(
        select(PF.client, PF.locked_until).where(
            PF.number == number, PF.client.in_([who, EVERYONE]), PF.locked_until > now
        )
    ).all()
    if rows:
        client, until = max(rows, key=lambda r: r.locked_until)
        raise CaseLockedError(until, everyone=client == EVERYONE)


def _bump(
    conn: Connection, number: str, client: str, now: datetime, window: timedelta
) -> tuple[int, datetime]:
    """Count one wrong PIN for (number, client) in its window; returns (failures in the
    window, when the window started). Safe against a worker counting at the same time:
    the row is created if missing, then locked (PostgreSQL) or written under SQLite's
    write lock."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(case_pin_failures_table)
        .values(number=number, client=client, failures=0, first_at=now, locked_until=None)
        .on_conflict_do_nothing()
    )
    row = conn.execute(
        select(PF.failures, PF.first_at)
        .where(PF.number == number, PF.client == client)
        .with_for_update()
    ).one()
    failures, first_at = int(row.failures) + 1, row.first_at
    if first_at < now - window:  # a new window
        failures, first_at = 1, now
    conn.execute(
        update(case_pin_failures_table)
        .where(PF.number == number, PF.client == client)
        .values(failures=failures, first_at=first_at, locked_until=None)
    )
    return failures, first_at


def _add_entries(
    conn: Connection, bank_id: int, entries: Sequence[NewEntry], now: datetime
) -> list[int]:
    """Add ``entries`` to the cases bank inside ``conn``'s write transaction, logging an
    ``add`` change for each new one (the protocol of :meth:`Store.add_entries`); returns
    the ids of all of them, new or already there (two cases can hold the same hash)."""
    ids: list[int] = []
    for e in entries:
        found = conn.execute(
            select(E.id).where(E.bank_id == bank_id, E.signal == e.signal, E.value == e.value)
        ).scalar()
        if found is None:
            found = conn.execute(
                insert(entries_table).returning(E.id),
                {
                    "bank_id": bank_id,
                    "signal": e.signal,
                    "value": e.value,
                    "quality": e.quality,
                    "source": None,
                    "tags": [],
                    "metadata": {},
                    "frames": list(e.frames) if e.frames else None,
                    "added_at": now,
                },
            ).scalar_one()
            conn.execute(
                insert(changes_table),
                {
                    "op": "add",
                    "bank_id": bank_id,
                    "entry_id": found,
                    "signal": e.signal,
                    "value": e.value,
                    "at": now,
                },
            )
        if found not in ids:
            ids.append(int(found))
    return ids


def _erase(conn: Connection, case: Row[Any], now: datetime) -> tuple[int, int]:
    """Delete a case's entries (those no other open case holds), scrub their hash values
    from the change log, delete its face templates, alerts and links. Returns
    ``(entries removed, templates removed)``."""
    mine = list(conn.execute(select(CE.entry_id).where(CE.case_id == case.id)).scalars())
    shared: set[int] = set()
    for chunk in _chunks(mine):
        shared |= set(
            conn.execute(
                select(CE.entry_id).where(CE.entry_id.in_(chunk), CE.case_id != case.id)
            ).scalars()
        )
    own = [i for i in mine if i not in shared]
    for chunk in _chunks(own):
        # Workers drop the entries from their index by id; no copy of the hashes stays in
        # the change log.
        delete_entries(conn, E.id.in_(chunk), now, erase=True)
    conn.execute(delete(case_entries_table).where(CE.case_id == case.id))
    templates = 0
    if case.person_id is not None:
        T = face_templates_table.c
        templates = int(
            conn.execute(
                delete(face_templates_table).where(
                    and_(T.tenant == CASES_TENANT, T.person_id == case.person_id)
                )
            ).rowcount
            or 0
        )
    conn.execute(delete(case_alerts_table).where(AL.case_id == case.id))
    return len(own), templates


def load_submission_json(doc: Any) -> Submission:
    """A submission from a parsed JSON document (the API's body) or its text."""
    from rempart.cases.submission import load_submission

    if isinstance(doc, str):
        return load_submission(doc)
    if not isinstance(doc, dict):
        raise SubmissionError("not a valid Rempart submission: it is not a JSON object")
    return load_submission(json.dumps(doc))
