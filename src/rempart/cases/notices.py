"""Takedown notices in English and French, and their tracking until the content is removed.

Four kinds (templates in ``cases/data/notice_<kind>.<lang>.txt.j2``):

- ``takeitdown`` -- a removal request under the US TAKE IT DOWN Act (2025): the signature of
  the person depicted or of someone authorised to act for her, an identification of the
  content sufficient to locate it, a statement of her good-faith belief that it was published
  without her consent, and her contact details. A covered platform must remove it **within
  48 hours** of a valid request, and make reasonable efforts to remove known identical copies.
- ``dsa`` -- a notice under Article 16 of the EU Digital Services Act, with the four elements
  of Art. 16(2): (a) the reasons why the content is illegal, (b) its exact electronic
  location (URLs), (c) the sender's name and e-mail address, (d) a statement of good faith.
  The DSA sets no fixed deadline ("timely, diligent, non-arbitrary and objective").
- ``pharos`` -- the fields the French government's reporting form (Pharos,
  internet-signalement.gouv.fr) asks for, filled in, for her to copy into the form.
- ``generic`` -- a plain notice for a platform's own reporting channel.

Every notice says that the items were found by hash matching, which gives a lead for human
review, not an identification, and says of each item whether a moderator confirmed it or it
is an automatic match still pending human review: a notice never claims a review that did
not happen. The good-faith statement rests on what is known: the match to images she
submitted.

Tracking (:mod:`rempart.store.notices`) records what really happened to each message: e-mailed
(``sent``), to be sent by hand (``to_send``: a form URL, no SMTP, ``send=False``; listed as
due until an operator marks it sent) or failed (``send_failed``: retried with backoff). A
delivered notice is reminded every ``evidence.renotice_hours`` until the content is marked
removed; :class:`NoticeScheduler` does it in the service, and every function here takes
``now`` so tests drive the clock.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jinja2

from rempart.cases.evidence import LEAD_LABEL, EvidenceError, item_for_scan
from rempart.cases.help import check_lang, load_help
from rempart.errors import NotFoundError, RempartError
from rempart.store.notices import KINDS, MAILABLE, NoticeInfo, NoticeRepository

if TYPE_CHECKING:
    from rempart.settings import Settings
    from rempart.store import Store
    from rempart.store.scans import ScanRecord

log = logging.getLogger("rempart.notices")

#: The TAKE IT DOWN Act's removal deadline for a valid request.
TAKE_IT_DOWN_HOURS: Final = 48
#: Where a Pharos report is made (the notice is a sheet to fill that form with).
PHAROS_URL: Final = "https://www.internet-signalement.gouv.fr"
_EMAIL: Final = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
#: A failed e-mail is retried after 5 minutes, then 10, 20... (never more often than the
#: scheduler's tick, never later than the next reminder would be).
RETRY_FIRST: Final = timedelta(minutes=5)
#: How long a worker holds a message it is e-mailing before another may retry it.
SEND_LEASE: Final = timedelta(minutes=10)
#: What an item's ``review`` says: a moderator confirmed the match, or nobody has looked yet.
REVIEW_STATES: Final = ("confirmed", "unreviewed")


class NoticeError(RempartError):
    """A notice cannot be made (``bad_sender``, ``bad_recipient``, ``no_items``,
    ``bad_notice_kind``, ``bad_case_number``, ``rejected_item``)."""

    code = "bad_notice"
    status = 422


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sends the notice: the person depicted, or someone authorised to act for her.

    ``on_behalf_of`` is set when a representative (a lawyer, an NGO, a parent) sends it; it
    names her as the notice should (often initials only).
    """

    name: str
    email: str
    phone: str | None = None
    address: str | None = None
    on_behalf_of: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sender:
        """A checked sender from JSON; ``bad_sender`` when name or e-mail are unusable."""
        name = str(data.get("name") or "").strip()
        email = str(data.get("email") or "").strip()
        if not name or len(name) > 200 or "\n" in name:
            raise NoticeError(
                "the sender's name is required (one line, at most 200 characters)",
                code="bad_sender",
                hint="a notice must be signed: give the name of the person depicted or of "
                "her authorised representative",
            )
        if not _EMAIL.match(email) or len(email) > 254:
            raise NoticeError(
                f"{email[:80]!r} is not an e-mail address",
                code="bad_sender",
                hint="platforms must be able to contact the sender (DSA Art. 16(2)(c), "
                "TAKE IT DOWN Act)",
            )

        def opt(key: str, limit: int) -> str | None:
            value = str(data.get(key) or "").strip()
            return value[:limit] or None

        return cls(name, email, opt("phone", 64), opt("address", 500), opt("on_behalf_of", 200))

    def to_dict(self) -> dict[str, Any]:
        """JSON shape (stored with the notice)."""
        out: dict[str, Any] = {"name": self.name, "email": self.email}
        for key in ("phone", "address", "on_behalf_of"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True, slots=True)
class RenderedNotice:
    """A notice's text, ready to send."""

    kind: str
    lang: str
    subject: str
    text: str
    deadline: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "kind": self.kind,
            "lang": self.lang,
            "subject": self.subject,
            "text": self.text,
            "deadline": self.deadline.isoformat() if self.deadline else None,
        }


@dataclass
class CreatedNotice:
    """A tracked notice, its text, and whether it was e-mailed."""

    notice: NoticeInfo
    rendered: RenderedNotice
    emailed: bool = False
    mail_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON shape for the CLI and API."""
        out = self.notice.to_dict()
        out["subject"] = self.rendered.subject
        out["text"] = self.rendered.text
        out["emailed"] = self.emailed
        if self.mail_error:
            out["mail_error"] = self.mail_error
        return out


@dataclass
class Reminder:
    """A reminder that was recorded (and e-mailed when possible)."""

    notice: NoticeInfo
    rendered: RenderedNotice
    emailed: bool = False
    mail_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "notice": self.notice.id,
            "status": self.notice.status,
            "reminders": self.notice.reminders,
            "subject": self.rendered.subject,
            "text": self.rendered.text,
            "emailed": self.emailed,
            **({"mail_error": self.mail_error} if self.mail_error else {}),
        }


# -- items ------------------------------------------------------------------------------------


def check_case_number(text: str) -> str:
    """The canonical case number for ``text`` (case, spaces and O/I/L mix-ups forgiven, as
    everywhere else); ``bad_case_number`` when it cannot be one. A notice stored under
    another spelling would be missed by her withdrawal and by the case page."""
    from rempart.cases.registry import normalise_case_number

    number = normalise_case_number(text)
    if number is None:
        raise NoticeError(
            f"{str(text)[:80]!r} is not a case number",
            code="bad_case_number",
            hint="a case number looks like RMP-XXXX-XXXX-XXXX (as `rempart cases submit` "
            "printed it)",
        )
    return number


def item_from_scan(scan: ScanRecord, review: str = "unreviewed") -> dict[str, Any]:
    """Where a scanned item is: ``{url, content_id, platform, scan_id, sha256, first_seen,
    review}``; ``review`` is ``confirmed`` (a moderator confirmed the match) or
    ``unreviewed`` (an automatic match, pending human review)."""
    if review not in REVIEW_STATES:
        raise ValueError(f"review must be one of {REVIEW_STATES}, not {review!r}")
    entry = item_for_scan(scan)
    return {
        "url": entry["found"]["url"],
        "content_id": entry["found"]["content_id"],
        "platform": entry["found"]["platform"],
        "scan_id": scan.id,
        "sha256": scan.sha256 or None,
        "first_seen": entry["first_seen"],
        "review": review,
    }


def items_for_scans(store: Store, tenant: str, scan_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The located items of scans of ``tenant``, each with its review state;
    ``rejected_item`` when a moderator judged one a false positive (no notice for it)."""
    from rempart.store.scans import ScanRepository

    repo = ScanRepository(store)
    ids = list(dict.fromkeys(scan_ids))
    scans = [repo.get(tenant, s) for s in ids]
    states = NoticeRepository(store).review_states(tenant, ids)
    rejected = [s for s in ids if states.get(s) == "rejected"]
    if rejected:
        raise NoticeError(
            f"a moderator judged scan {rejected[0]} a false positive",
            code="rejected_item",
            hint="leave it out: a notice is never sent for a rejected match",
        )
    return [item_from_scan(s, _review(states.get(s.id))) for s in scans]


def _review(state: str | None) -> str:
    return "confirmed" if state == "confirmed" else "unreviewed"


def items_for_case(store: Store, number: str) -> list[dict[str, Any]]:
    """The located items of a case: one per scan that raised an active alert, each with
    its review state.

    Alerts still waiting for a moderator (``pending_review``: the platform's policy holds
    them until reviewed) are left out, and so are scans a moderator judged false positives.
    An active alert no moderator looked at (the platform's policy does not hold alerts) is
    kept, labelled ``unreviewed``: the notice says it is an automatic match.
    """
    from rempart.store.cases import CaseRepository
    from rempart.store.scans import ScanRepository

    repo = ScanRepository(store)
    notices = NoticeRepository(store)
    items: dict[str, dict[str, Any]] = {}
    pending = 0
    for alert in CaseRepository(store).alerts(number):
        if alert.status == "pending_review":
            pending += 1
            continue
        if not alert.scan_id or alert.scan_id in items:
            continue
        state = notices.review_states(alert.tenant, [alert.scan_id]).get(alert.scan_id)
        if state == "rejected":
            continue
        try:
            scan = repo.get(alert.tenant, alert.scan_id)
        except NotFoundError:
            continue
        items[alert.scan_id] = item_from_scan(scan, _review(state))
    if not items:
        hint = "a notice needs the scans of the case's alerts"
        if pending:
            hint = f"{pending} alert(s) wait for a moderator to confirm them first"
        raise EvidenceError(f"case {number} has no located item yet", code="no_items", hint=hint)
    return list(items.values())


# -- rendering ----------------------------------------------------------------------------------


@cache
def _environment() -> jinja2.Environment:
    folder = Path(str(resources.files("rempart.cases").joinpath("data")))
    # Plain text: nothing to escape, and the sender's own words must stay as she wrote them.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def check_kind(kind: str) -> str:
    """``kind`` if known; ``bad_notice_kind`` otherwise."""
    if kind not in KINDS:
        raise NoticeError(
            f"unknown notice kind {kind!r}",
            code="bad_notice_kind",
            hint=f"use one of {', '.join(KINDS)}",
        )
    return kind


def deadline_for(kind: str, sent_at: datetime) -> datetime | None:
    """The legal removal deadline of a notice sent at ``sent_at`` (TAKE IT DOWN: 48 h)."""
    if kind == "takeitdown":
        return sent_at + timedelta(hours=TAKE_IT_DOWN_HOURS)
    return None


def every(hours: float, lang: str) -> str:
    """How often a notice is repeated, in words: ``every 24 hours``, ``toutes les 24
    heures`` (from ``evidence.renotice_hours``, never a hard-coded "every day")."""
    count = f"{hours:g}"
    if lang == "fr":
        return "toutes les heures" if hours == 1 else f"toutes les {count} heures"
    return "every hour" if hours == 1 else f"every {count} hours"


def _when(at: datetime | None, lang: str) -> str:
    if at is None:
        return "-"
    at = at.astimezone(UTC)
    if lang == "fr":
        return at.strftime("%d/%m/%Y à %H:%M UTC")
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _context(
    kind: str,
    lang: str,
    *,
    items: Sequence[Mapping[str, Any]],
    sender: Sender,
    platform: str,
    sent_at: datetime,
    case_number: str | None,
    reference: int | None,
    renotice_hours: float,
) -> dict[str, Any]:
    deadline = deadline_for(kind, sent_at)
    # An item without a known review state (stored before they were kept) is unreviewed:
    # a notice never claims more review than happened.
    listed = [{**i, "review": _review(i.get("review"))} for i in items]
    return {
        "kind": kind,
        "lang": lang,
        "items": listed,
        "confirmed": sum(1 for i in listed if i["review"] == "confirmed"),
        "every": every(renotice_hours, lang),
        "sender": sender,
        "platform": platform,
        "date": _when(sent_at, lang),
        "day": sent_at.astimezone(UTC).strftime("%d/%m/%Y" if lang == "fr" else "%Y-%m-%d"),
        "deadline": _when(deadline, lang) if deadline else None,
        "case_number": case_number,
        "reference": reference,
        "lead_label": LEAD_LABEL,
        "help": [h for h in load_help(lang) if h.country in ("FR", "INT", "GB", "US")],
        "pharos_url": PHAROS_URL,
        "when": lambda at: _when(at, lang),
    }


def _split(rendered: str) -> tuple[str, str]:
    """Templates start with ``Subject: ...`` then a blank line."""
    first, _, body = rendered.partition("\n")
    subject = first.removeprefix("Subject:").removeprefix("Objet :").strip()
    return subject, body.lstrip("\n")


def render_notice(
    kind: str,
    lang: str,
    *,
    items: Sequence[Mapping[str, Any]],
    sender: Sender,
    platform: str,
    sent_at: datetime,
    case_number: str | None = None,
    reference: int | None = None,
    renotice_hours: float = 24.0,
) -> RenderedNotice:
    """The text of a notice (pure: no store, no clock); ``renotice_hours`` is how often it
    says it will be repeated."""
    check_kind(kind)
    chosen = check_lang(lang)
    if not items:
        raise NoticeError("a notice needs at least one item", code="no_items")
    template = _environment().get_template(f"notice_{kind}.{chosen}.txt.j2")
    ctx = _context(
        kind,
        chosen,
        items=items,
        sender=sender,
        platform=platform,
        sent_at=sent_at,
        case_number=case_number,
        reference=reference,
        renotice_hours=renotice_hours,
    )
    subject, text = _split(template.render(**ctx))
    return RenderedNotice(kind, chosen, subject, text, deadline_for(kind, sent_at))


def render_reminder(
    notice: NoticeInfo, *, now: datetime, count: int | None = None, renotice_hours: float = 24.0
) -> RenderedNotice:
    """The text of reminder ``count`` (default ``notice.reminders``) of a tracked notice."""
    sender = Sender.from_dict(notice.sender)
    original = render_notice(
        notice.kind,
        notice.lang,
        items=notice.items,
        sender=sender,
        platform=notice.platform,
        sent_at=notice.sent_at,
        case_number=notice.case_number,
        reference=notice.id,
        renotice_hours=renotice_hours,
    )
    template = _environment().get_template(f"notice_reminder.{notice.lang}.txt.j2")
    ctx = _context(
        notice.kind,
        notice.lang,
        items=notice.items,
        sender=sender,
        platform=notice.platform,
        sent_at=notice.sent_at,
        case_number=notice.case_number,
        reference=notice.id,
        renotice_hours=renotice_hours,
    )
    overdue = notice.deadline is not None and now >= notice.deadline
    subject, text = _split(
        template.render(
            **ctx,
            now=_when(now, notice.lang),
            count=notice.reminders if count is None else count,
            overdue=overdue,
            original_subject=original.subject,
            original=original.text,
        )
    )
    return RenderedNotice(notice.kind, notice.lang, subject, text, notice.deadline)


# -- tracking -----------------------------------------------------------------------------------


def _is_email(recipient: str) -> bool:
    return bool(_EMAIL.match(recipient.strip()))


def can_email(settings: Settings, recipient: str) -> bool:
    """Whether a message to ``recipient`` can go by e-mail: an address, and SMTP set up.
    Anything else (a platform's web form) is sent by hand."""
    return _is_email(recipient) and bool(settings.smtp.host)


def _mail(settings: Settings, recipient: str, rendered: RenderedNotice) -> str | None:
    """E-mail ``rendered``; the error code when it failed, ``None`` when it went out."""
    try:
        from rempart.cases.mail import send_mail

        send_mail(settings.smtp, recipient.strip(), rendered.subject, rendered.text)
    except RempartError as e:
        log.warning("e-mailing a notice to the platform failed: %s", e.code)
        return e.code
    except ImportError:  # pragma: no cover - mail module absent
        return "mail_unavailable"
    return None


def retry_delay(attempts: int, renotice_hours: float) -> timedelta:
    """When to retry after ``attempts`` failed e-mails in a row: 5 minutes, doubling, at
    most ``renotice_hours`` (a platform's mail server that is down for an hour must not
    cost her a day, nor be hammered every tick)."""
    cap = timedelta(hours=renotice_hours)
    delay: timedelta = RETRY_FIRST * (2 ** max(0, min(attempts, 30) - 1))
    return min(delay, cap)


class Notices:
    """Create, list, remind and close notices: the library door the CLI and API share."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.repo = NoticeRepository(store)

    @property
    def _hours(self) -> float:
        return float(self.settings.evidence.renotice_hours)

    def create(
        self,
        *,
        tenant: str,
        kind: str,
        lang: str,
        sender: Sender,
        recipient: str,
        items: Sequence[Mapping[str, Any]],
        platform: str | None = None,
        case_number: str | None = None,
        now: datetime | None = None,
        send: bool = True,
    ) -> list[CreatedNotice]:
        """Record notices (one per platform among ``items``, or one for ``platform``) and
        render them. Each is e-mailed when ``send``, the recipient is an address and SMTP is
        configured (``sent``, or ``send_failed`` to be retried); otherwise it is ``to_send``
        and listed as due until an operator marks it sent. Pharos sheets are for her to
        file: always ``to_send``, never reminded once sent. ``case_number`` is normalised
        (``bad_case_number`` when it cannot be one)."""
        check_kind(kind)
        chosen = check_lang(lang)
        number = check_case_number(case_number) if case_number is not None else None
        recipient = recipient.strip()
        if not recipient or len(recipient) > 2048 or "\n" in recipient:
            raise NoticeError(
                "the recipient is required: the platform's notice e-mail address, or where "
                "the notice is filed (a form URL)",
                code="bad_recipient",
            )
        if not items:
            raise NoticeError("a notice needs at least one item", code="no_items")
        groups: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            target = platform or str(item.get("platform") or "unknown")
            groups.setdefault(target, []).append(dict(item))
        at = (now or datetime.now(UTC)).astimezone(UTC)
        out: list[CreatedNotice] = []
        for target, group in groups.items():
            info = self.repo.create(
                tenant=tenant,
                kind=kind,
                lang=chosen,
                platform=target,
                recipient=recipient,
                sender=sender.to_dict(),
                items=group,
                sent_at=at,
                deadline=deadline_for(kind, at),
                case_number=number,
            )
            rendered = render_notice(
                kind,
                chosen,
                items=group,
                sender=sender,
                platform=target,
                sent_at=at,
                case_number=number,
                reference=info.id,
                renotice_hours=self._hours,
            )
            emailed, error = False, None
            if send and kind != "pharos" and can_email(self.settings, recipient):
                info, emailed, error = self._deliver(info, 0, rendered, at)
            out.append(CreatedNotice(info, rendered, emailed, error))
        return out

    def _deliver(
        self, info: NoticeInfo, message: int, rendered: RenderedNotice, at: datetime
    ) -> tuple[NoticeInfo, bool, str | None]:
        """E-mail message ``message`` of ``info`` and record what happened."""
        error = _mail(self.settings, info.recipient, rendered)
        if error is None:
            done = self.repo.record_sent(
                info.id, message=message, now=at, renotice_hours=self._hours
            )
        else:
            retry = at + retry_delay(info.send_attempts + 1, self._hours)
            done = self.repo.record_failure(
                info.id, message=message, now=at, error=error, retry_at=retry
            )
        return done or self.repo.get(info.id), error is None, error

    def due(self, now: datetime, tenant: str | None = None) -> list[NoticeInfo]:
        """Notices with a message due at ``now``: a reminder or a retry to e-mail, or one
        waiting to be sent by hand (``to_send``)."""
        return self.repo.due(now, tenant)

    def message(
        self, notice_id: int, *, now: datetime | None = None, tenant: str | None = None
    ) -> RenderedNotice:
        """The text of a notice's latest message (the notice itself, or its latest
        reminder): what an operator sends by hand for a ``to_send`` notice."""
        info = self.repo.get(notice_id, tenant)
        at = (now or datetime.now(UTC)).astimezone(UTC)
        return self._render(info, info.reminders, at)

    def _render(self, info: NoticeInfo, message: int, at: datetime) -> RenderedNotice:
        if message == 0:
            return render_notice(
                info.kind,
                info.lang,
                items=info.items,
                sender=Sender.from_dict(info.sender),
                platform=info.platform,
                sent_at=info.sent_at,
                case_number=info.case_number,
                reference=info.id,
                renotice_hours=self._hours,
            )
        return render_reminder(info, now=at, count=message, renotice_hours=self._hours)

    def remind(
        self,
        notice_id: int,
        *,
        now: datetime | None = None,
        force: bool = False,
        tenant: str | None = None,
        send: bool = True,
    ) -> Reminder | None:
        """Send a notice's due message: the next reminder, or a retry of a failed e-mail.
        ``None`` when nothing was due (or ``force``), the notice is closed, it waits for
        a person (``to_send``), or another worker took it.

        When the message cannot be e-mailed (a form URL, no SMTP, ``send=False``) it is
        recorded ``to_send`` and stays due until an operator marks it sent.
        """
        at = (now or datetime.now(UTC)).astimezone(UTC)
        self.repo.get(notice_id, tenant)  # notice_not_found before anything else
        info = self.repo.claim(notice_id, now=at, lease=SEND_LEASE, force=force, tenant=tenant)
        if info is None:
            return None
        # A failed message is retried as it was; otherwise this is the next reminder.
        message = info.reminders if info.status == "send_failed" else info.reminders + 1
        rendered = self._render(info, message, at)
        if not send or not can_email(self.settings, info.recipient):
            done = self.repo.record_to_send(notice_id, message=message, now=at)
            return Reminder(done or self.repo.get(notice_id), rendered, False, None)
        done_info, emailed, error = self._deliver(info, message, rendered, at)
        return Reminder(done_info, rendered, emailed, error)

    def remind_due(self, now: datetime | None = None, tenant: str | None = None) -> list[Reminder]:
        """Send every message due at ``now`` that can be e-mailed (reminders, retries);
        those that cannot become ``to_send``. Notices already waiting for a person are left
        alone."""
        at = (now or datetime.now(UTC)).astimezone(UTC)
        out: list[Reminder] = []
        for notice in self.repo.due(at, tenant, statuses=MAILABLE):
            try:
                reminder = self.remind(notice.id, now=at)
            except RempartError as e:  # one bad notice never stops the others
                log.warning("reminder of notice %d failed: %s", notice.id, e.code)
                continue
            if reminder is not None:
                out.append(reminder)
        return out

    def mark(
        self, notice_id: int, status: str, *, now: datetime | None = None, tenant: str | None = None
    ) -> NoticeInfo:
        """Set a notice's status: ``sent`` (its pending message was sent by hand; the next
        reminder is due ``renotice_hours`` later), ``removed`` (stops the reminders),
        ``not_removed``, ``to_send`` or ``withdrawn``."""
        at = (now or datetime.now(UTC)).astimezone(UTC)
        return self.repo.set_status(
            notice_id, status, now=at, tenant=tenant, renotice_hours=self._hours
        )


@dataclass
class NoticeScheduler:
    """A background thread that sends due reminders every ``tick_s`` seconds.

    Several workers may each run one on the same store: a reminder is claimed with a
    conditional update before it is sent, so it goes out once.
    """

    store: Store
    settings: Settings
    tick_s: float = 60.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (no-op if running)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="rempart-notices", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_pending(self, now: datetime | None = None) -> list[Reminder]:
        """Send what is due at ``now`` (in this thread)."""
        return Notices(self.store, self.settings).remind_due(now)

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.run_pending()
            except Exception:  # keep the scheduler alive; retry next tick
                log.exception("sending notice reminders failed")
