"""Takedown notices: the legally required elements in English and French, and tracking on a
real store (48-hour deadline, a reminder every 24 hours until removal, e-mail through a real
SMTP server). The clock is passed in: nothing sleeps."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rempart.cases.notices import (
    NoticeError,
    Notices,
    NoticeScheduler,
    Sender,
    item_from_scan,
    render_notice,
    render_reminder,
)
from rempart.errors import NotFoundError
from rempart.examples import jpeg_bytes, synthetic_photo
from rempart.scan import Scanner
from rempart.settings import Settings, SmtpSettings, load_settings
from rempart.store import Store
from rempart.store.notices import NoticeRepository
from rempart.store.scans import ScanRecord, ScanRepository

T0 = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
SENDER = Sender.from_dict(
    {"name": "Camille Durand", "email": "camille@example.org", "phone": "+33 6 00 00 00 00"}
)
REP = Sender.from_dict(
    {"name": "Maître Alix Roy", "email": "alix@avocats.example", "on_behalf_of": "C. D."}
)
ITEMS = [
    {
        "url": "https://pics.example/p/1",
        "content_id": "post-1",
        "platform": "pics",
        "scan_id": "9b0e6c1e-4a8b-4d7e-9f51-1b2c3d4e5f60",
        "sha256": "ab" * 32,
        "first_seen": "2026-11-20T10:00:00Z",
    },
    {
        "url": "https://pics.example/p/2",
        "content_id": None,
        "platform": "pics",
        "scan_id": None,
        "sha256": None,
        "first_seen": "2026-11-21T08:00:00Z",
    },
]


def _render(kind: str, lang: str, sender: Sender = SENDER) -> Any:
    return render_notice(
        kind,
        lang,
        items=ITEMS,
        sender=sender,
        platform="pics",
        sent_at=T0,
        case_number="RMP-ABCD-2345",
        reference=12,
    )


def _lead(text: str, lang: str) -> None:
    assert ("not an identification" if lang == "en" else "pas une identification") in text


# -- the legally required elements ------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_take_it_down_request_has_every_required_element(lang: str) -> None:
    notice = _render("takeitdown", lang)
    text = notice.text
    assert "TAKE IT DOWN" in notice.subject and "TAKE IT DOWN" in text
    # (A) a physical or electronic signature
    assert "/s/ Camille Durand" in text
    assert ("Electronic signature" if lang == "en" else "Signature électronique") in text
    # (B) identification of the depiction and information to locate it
    for item in ITEMS:
        assert item["url"] in text
    assert "post-1" in text and "ab" * 32 in text
    # (C) good-faith statement that it is not consensual
    if lang == "en":
        assert "good faith belief" in text and "not consensual" in text
    else:
        assert "bonne foi" in text and "non consentie" in text
    # (D) contact information
    assert "camille@example.org" in text and "+33 6 00 00 00 00" in text
    # the platform's 48-hour deadline, with the date
    assert "48" in text
    assert notice.deadline == T0 + timedelta(hours=48)
    assert ("2026-11-24 09:30 UTC" if lang == "en" else "24/11/2026 à 09:30 UTC") in text
    _lead(text, lang)


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_take_it_down_by_a_representative(lang: str) -> None:
    text = _render("takeitdown", lang, REP).text
    assert "/s/ Maître Alix Roy" in text and "C. D." in text
    assert ("authorised to act on behalf" if lang == "en" else "autorisée à agir") in text


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_dsa_notice_has_the_four_elements_of_article_16_2(lang: str) -> None:
    notice = _render("dsa", lang)
    text = notice.text
    assert "2022/2065" in notice.subject and ("Article 16" in text or "article 16" in text)
    headings = (
        [
            "(a) EXPLANATION OF THE REASONS",
            "(b) EXACT ELECTRONIC LOCATION",
            "(c) NAME AND E-MAIL ADDRESS",
            "(d) STATEMENT OF GOOD FAITH",
        ]
        if lang == "en"
        else [
            "a) EXPLICATION DES RAISONS",
            "b) EMPLACEMENT ÉLECTRONIQUE EXACT",
            "c) NOM ET ADRESSE ÉLECTRONIQUE",
            "d) DÉCLARATION DE BONNE FOI",
        ]
    )
    positions = [text.index(h) for h in headings]
    assert positions == sorted(positions)
    # (a) reasons: the law broken
    assert "226-8-1" in text and "2024/1385" in text
    # (b) exact URLs, in (b)
    section_b = text[positions[1] : positions[2]]
    assert all(item["url"] in section_b for item in ITEMS)
    # (c) name and e-mail
    section_c = text[positions[2] : positions[3]]
    assert "Camille Durand" in section_c and "camille@example.org" in section_c
    # (d) good faith
    assert ("bona fide belief" if lang == "en" else "de bonne foi") in text[positions[3] :]
    assert ("accurate and complete" if lang == "en" else "exactes et complètes") in text
    assert notice.deadline is None  # the DSA sets no fixed deadline
    _lead(text, lang)


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_pharos_sheet_has_the_form_fields(lang: str) -> None:
    text = _render("pharos", lang).text
    assert "internet-signalement.gouv.fr" in text
    fields = (
        [
            "Type de contenu",
            "Où se trouve le contenu",
            "Date et heure de constatation",
            "Description des faits",
            "Vous êtes",
            "Vos coordonnées",
        ]
        if lang == "fr"
        else [
            "type de contenu",
            "adresse du contenu",
            "date et heure de constatation",
            "description des faits",
            "vous êtes",
            "vos coordonnées",
        ]
    )
    for field in fields:
        assert field in text
    assert all(item["url"] in text for item in ITEMS)
    assert "226-8-1" in text and "camille@example.org" in text
    assert ("not a complaint" if lang == "en" else "n'est pas une plainte") in text
    _lead(text, lang)


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_generic_notice(lang: str) -> None:
    text = _render("generic", lang).text
    assert all(item["url"] in text for item in ITEMS)
    assert "/s/ Camille Durand" in text and "camille@example.org" in text
    assert ("good faith" if lang == "en" else "bonne foi") in text
    _lead(text, lang)


def test_bad_notices_are_explained() -> None:
    with pytest.raises(NoticeError) as info:
        Sender.from_dict({"name": "", "email": "a@b.example"})
    assert info.value.code == "bad_sender"
    with pytest.raises(NoticeError) as info:
        Sender.from_dict({"name": "A", "email": "not-an-address"})
    assert info.value.code == "bad_sender"
    with pytest.raises(NoticeError) as info:
        render_notice("dmca", "en", items=ITEMS, sender=SENDER, platform="p", sent_at=T0)
    assert info.value.code == "bad_notice_kind"
    with pytest.raises(NoticeError) as info:
        render_notice("dsa", "en", items=[], sender=SENDER, platform="p", sent_at=T0)
    assert info.value.code == "no_items"
    with pytest.raises(Exception) as lang_error:
        render_notice("dsa", "de", items=ITEMS, sender=SENDER, platform="p", sent_at=T0)
    assert getattr(lang_error.value, "code", None) == "unsupported_language"


# -- tracking ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mailbox:
    """A real SMTP server (aiosmtpd) on a free loopback port."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[tuple[list[str], Any]] = []
        self.port = _free_port()
        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                outer.messages.append(
                    (envelope.rcpt_tos, message_from_bytes(envelope.original_content))
                )
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def close(self) -> None:
        self._controller.stop()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    yield box
    box.close()


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings(database_url=db_url)


def _create(notices: Notices, kind: str = "takeitdown", **kw: Any) -> Any:
    args: dict[str, Any] = {
        "tenant": "ngo",
        "kind": kind,
        "lang": "en",
        "sender": SENDER,
        "recipient": "https://pics.example/report",
        "items": ITEMS,
        "now": T0,
    }
    args.update(kw)
    [created] = notices.create(**args)
    return created


def test_deadline_and_reminders_every_24_hours_until_removed(
    store: Store, settings: Settings
) -> None:
    notices = Notices(store, settings)
    created = _create(notices, case_number="RMP-ABCD-2345")
    notice = created.notice
    assert notice.deadline == T0 + timedelta(hours=48)
    assert notice.status == "sent" and notice.sent_at == T0 and notice.reminders == 0
    assert "TAKE IT DOWN" in created.rendered.subject and not created.emailed

    assert notices.due(T0 + timedelta(hours=23, minutes=59)) == []
    assert notices.remind(notice.id, now=T0 + timedelta(hours=12)) is None  # not due yet
    assert [n.id for n in notices.due(T0 + timedelta(hours=24))] == [notice.id]

    [first] = notices.remind_due(T0 + timedelta(hours=24, minutes=1))
    assert first.notice.reminders == 1
    assert first.notice.last_reminder_at == T0 + timedelta(hours=24, minutes=1)
    assert "Reminder 1" in first.rendered.subject
    assert "is 2026-11-24 09:30 UTC" in first.rendered.text  # deadline not yet passed
    assert "https://pics.example/p/1" in first.rendered.text  # the original follows
    assert notices.due(T0 + timedelta(hours=30)) == []
    assert notices.remind_due(T0 + timedelta(hours=30)) == []

    [second] = notices.remind_due(T0 + timedelta(hours=49))
    assert second.notice.reminders == 2
    assert "expired on 2026-11-24 09:30 UTC" in second.rendered.text
    assert second.notice.overdue(T0 + timedelta(hours=49))

    removed = notices.mark(notice.id, "removed", now=T0 + timedelta(hours=50))
    assert removed.status == "removed" and removed.next_reminder_at is None
    assert notices.due(T0 + timedelta(days=30)) == []
    assert notices.remind(notice.id, now=T0 + timedelta(days=30), force=True) is None
    assert not removed.overdue(T0 + timedelta(days=30))
    assert [n.id for n in NoticeRepository(store).list(case_number="RMP-ABCD-2345")] == [notice.id]


def test_not_removed_keeps_reminding_and_withdrawal_stops(store: Store, settings: Settings) -> None:
    notices = Notices(store, settings)
    notice = _create(notices, kind="dsa", case_number="RMP-WXYZ-2345").notice
    assert notice.deadline is None
    notices.mark(notice.id, "not_removed", now=T0 + timedelta(hours=2))
    assert [n.id for n in notices.due(T0 + timedelta(hours=24))] == [notice.id]
    assert NoticeRepository(store).withdraw_case("RMP-WXYZ-2345", now=T0) == 1
    assert notices.due(T0 + timedelta(days=3)) == []


def test_pharos_sheets_are_never_reminded(store: Store, settings: Settings) -> None:
    notices = Notices(store, settings)
    notice = _create(notices, kind="pharos", lang="fr").notice
    assert notice.next_reminder_at is None and notice.deadline is None
    notices.mark(notice.id, "not_removed", now=T0)
    assert notices.due(T0 + timedelta(days=3)) == []


def test_renotice_interval_comes_from_settings(store: Store, settings: Settings) -> None:
    settings.evidence = settings.evidence.model_copy(update={"renotice_hours": 6})
    notices = Notices(store, settings)
    _create(notices)
    assert notices.due(T0 + timedelta(hours=5)) == []
    assert len(notices.due(T0 + timedelta(hours=6))) == 1


def test_one_notice_per_platform_and_tenant_isolation(store: Store, settings: Settings) -> None:
    notices = Notices(store, settings)
    items = [*ITEMS, {**ITEMS[0], "url": "https://other.example/x", "platform": "other"}]
    created = notices.create(
        tenant="ngo",
        kind="generic",
        lang="fr",
        sender=SENDER,
        recipient="abuse@pics.example",
        items=items,
        now=T0,
    )
    assert sorted(c.notice.platform for c in created) == ["other", "pics"]
    assert len(NoticeRepository(store).list("ngo")) == 2
    assert NoticeRepository(store).list("someone-else") == []
    with pytest.raises(NotFoundError):
        notices.mark(created[0].notice.id, "removed", tenant="someone-else")


def test_notices_and_reminders_are_emailed(
    store: Store, settings: Settings, mailbox: Mailbox
) -> None:
    settings.smtp = SmtpSettings(host="127.0.0.1", port=mailbox.port, sender="notices@rempart.test")
    notices = Notices(store, settings)
    created = _create(notices, recipient="abuse@pics.example", lang="fr")
    assert created.emailed
    [(to, message)] = mailbox.messages
    assert to == ["abuse@pics.example"]
    assert "TAKE IT DOWN" in message["Subject"]
    body = message.get_payload(decode=True).decode()
    assert "/s/ Camille Durand" in body and "48 heures" in body

    scheduler = NoticeScheduler(store, settings, tick_s=3600)
    [reminder] = scheduler.run_pending(T0 + timedelta(hours=25))
    assert reminder.emailed and len(mailbox.messages) == 2
    assert mailbox.messages[1][1]["Subject"].startswith("Relance 1")
    assert scheduler.run_pending(T0 + timedelta(hours=26)) == []

    # A form URL is not an e-mail address: nothing is sent, the notice is still tracked.
    web = _create(notices, recipient="https://pics.example/report")
    assert not web.emailed and len(mailbox.messages) == 2


def test_scheduler_thread_starts_and_stops(store: Store, settings: Settings) -> None:
    scheduler = NoticeScheduler(store, settings, tick_s=0.05)
    scheduler.start()
    scheduler.start()  # idempotent
    scheduler.stop()


def test_reminder_text_of_a_stored_notice(store: Store, settings: Settings) -> None:
    notice = _create(Notices(store, settings), kind="dsa", lang="fr").notice
    text = render_reminder(notice, now=T0 + timedelta(hours=24)).text
    assert text.startswith("Date : 23/11/2026") and "relance n° 0" in text
    assert "2022/2065" in text and "camille@example.org" in text


# -- from scans, and the command line ---------------------------------------------------------


def _scan(store: Store, settings: Settings, url: str) -> ScanRecord:
    data = jpeg_bytes(synthetic_photo(3).resize((200, 150)), quality=50)
    result = Scanner(store, settings).scan_bytes(data, tenant="ngo")
    h = result.hashes
    record = ScanRecord(
        str(uuid.uuid4()),
        "ngo",
        T0,
        h.kind,
        "review",
        h.pdq,
        h.md5,
        h.sha256,
        {"matches": [], "source": {"url": url, "content_id": "c-9"}},
    )
    ScanRepository(store).record_many([record])
    return record


def test_items_from_a_scan(store: Store, settings: Settings) -> None:
    record = _scan(store, settings, "https://pics.example/c/9")
    item = item_from_scan(record)
    assert item == {
        "url": "https://pics.example/c/9",
        "content_id": "c-9",
        "platform": "ngo",
        "scan_id": record.id,
        "sha256": record.sha256,
        "first_seen": "2026-11-22T09:30:00Z",
    }


def test_cli_create_list_remind_removed(
    store: Store, settings: Settings, db_url: str, tmp_path: Path
) -> None:
    import json

    from rempart.cli import app

    record = _scan(store, settings, "https://pics.example/c/9")
    runner = CliRunner()
    made = runner.invoke(
        app,
        [
            "notices",
            "create",
            "--kind",
            "takeitdown",
            "--scan",
            record.id,
            "--name",
            "Camille D",
            "--email",
            "camille@example.org",
            "--recipient",
            "https://pics.example/report",
            "--tenant",
            "ngo",
            "--database-url",
            db_url,
        ],
    )
    assert made.exit_code == 0, made.output
    notice = json.loads(made.stdout.splitlines()[0])
    assert notice["status"] == "sent" and notice["deadline"]
    assert "https://pics.example/c/9" in notice["text"]

    listed = runner.invoke(app, ["notices", "list", "--tenant", "ngo", "--database-url", db_url])
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [notice["id"]]
    due = runner.invoke(
        app, ["notices", "list", "--due", "--tenant", "ngo", "--database-url", db_url]
    )
    assert due.stdout.strip() == ""  # just sent: not due for 24 hours

    forced = runner.invoke(
        app, ["notices", "remind", str(notice["id"]), "--force", "--database-url", db_url]
    )
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout.splitlines()[0])["reminders"] == 1

    removed = runner.invoke(
        app, ["notices", "removed", str(notice["id"]), "--database-url", db_url]
    )
    assert removed.exit_code == 0 and json.loads(removed.stdout)["status"] == "removed"

    bad = runner.invoke(
        app,
        [
            "notices",
            "create",
            "--kind",
            "dsa",
            "--name",
            "A",
            "--email",
            "a@b.example",
            "--recipient",
            "x",
            "--database-url",
            db_url,
        ],
    )
    assert bad.exit_code == 2 and "--case or --scan" in bad.output
