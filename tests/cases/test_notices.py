"""Takedown notices: the legally required elements in English and French, and tracking on a
real store (48-hour deadline, a reminder every 24 hours until removal, e-mail through a real
SMTP server, messages to send by hand, failed e-mails retried, erasure on withdrawal). The
clock is passed in: nothing sleeps."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from rempart.cases import build_submission
from rempart.cases.notices import (
    NoticeError,
    Notices,
    NoticeScheduler,
    Sender,
    item_from_scan,
    items_for_scans,
    render_notice,
    render_reminder,
)
from rempart.cases.registry import CaseRepository, new_case_number
from rempart.errors import NotFoundError
from rempart.examples import jpeg_bytes, synthetic_photo
from rempart.scan import Scanner
from rempart.settings import MediaLimits, Settings, SmtpSettings, load_settings
from rempart.store import Store
from rempart.store.notices import NoticeRepository, notices_table
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
        "review": "confirmed",
    },
    {
        "url": "https://pics.example/p/2",
        "content_id": None,
        "platform": "pics",
        "scan_id": None,
        "sha256": None,
        "first_seen": "2026-11-21T08:00:00Z",
        "review": "unreviewed",
    },
]
#: A well-formed case number (render tests need no case in a store).
NUMBER = "RMP-ABCD-2345-6789"


def _render(kind: str, lang: str, sender: Sender = SENDER) -> Any:
    return render_notice(
        kind,
        lang,
        items=ITEMS,
        sender=sender,
        platform="pics",
        sent_at=T0,
        case_number=NUMBER,
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


KINDS = ["takeitdown", "dsa", "pharos", "generic"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lang", ["en", "fr"])
def test_notices_claim_no_review_that_did_not_happen(kind: str, lang: str) -> None:
    """Each item says whether a moderator confirmed it; nothing says every item was
    reviewed when one was not."""
    text = _render(kind, lang).text
    for false in ("was reviewed", "I have reviewed", "a été examiné", "J'ai examiné"):
        assert false not in text
    pending = (
        "automatic match, pending human review"
        if lang == "en"
        else "correspondance automatique, en attente de vérification humaine"
    )
    assert pending in text
    if kind != "pharos":
        assert ("confirmed by a moderator" if lang == "en" else "confirmé par un modérateur") in (
            text
        )
        assert (
            "A moderator confirmed 1 of the 2 items"
            if lang == "en"
            else "Un modérateur a confirmé 1 des 2 éléments"
        ) in text
    all_confirmed = render_notice(
        kind,
        lang,
        items=[{**i, "review": "confirmed"} for i in ITEMS],
        sender=SENDER,
        platform="pics",
        sent_at=T0,
    ).text
    assert pending not in all_confirmed
    # Items stored before review states existed are never presented as reviewed.
    legacy = render_notice(
        kind,
        lang,
        items=[{k: v for k, v in i.items() if k != "review"} for i in ITEMS],
        sender=SENDER,
        platform="pics",
        sent_at=T0,
    ).text
    assert pending in legacy
    assert ("confirmed by a moderator" if lang == "en" else "confirmé par un modérateur") not in (
        legacy
    )


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_good_faith_rests_on_the_match_to_what_she_submitted(lang: str) -> None:
    text = _render("takeitdown", lang).text
    if lang == "en":
        assert "is of me, the identifiable individual, and is not consensual" in text
        assert f"images I submitted to Rempart (case {NUMBER})" in text
    else:
        assert "représente ma personne, la personne identifiable, et est non consentie" in text
        assert f"images que j'ai déposées sur Rempart (dossier {NUMBER})" in text
    rep = _render("takeitdown", lang, REP).text
    assert ("she submitted" if lang == "en" else "qu'elle a déposées") in rep


@pytest.mark.parametrize("kind", ["takeitdown", "dsa", "generic"])
@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_renotice_rhythm_comes_from_the_setting(kind: str, lang: str) -> None:
    notice = render_notice(
        kind, lang, items=ITEMS, sender=SENDER, platform="pics", sent_at=T0, renotice_hours=12
    )
    assert ("every 12 hours" if lang == "en" else "toutes les 12 heures") in notice.text
    assert "every day" not in notice.text and "chaque jour" not in notice.text
    default = render_notice(kind, lang, items=ITEMS, sender=SENDER, platform="pics", sent_at=T0)
    assert ("every 24 hours" if lang == "en" else "toutes les 24 heures") in default.text


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


def _smtp(settings: Settings, port: int) -> None:
    settings.smtp = SmtpSettings(host="127.0.0.1", port=port, sender="notices@rempart.test")


def test_deadline_and_reminders_every_24_hours_until_removed(
    store: Store, settings: Settings, mailbox: Mailbox
) -> None:
    _smtp(settings, mailbox.port)
    notices = Notices(store, settings)
    number = new_case_number()
    created = _create(notices, case_number=number, recipient="abuse@pics.example")
    notice = created.notice
    assert created.emailed and len(mailbox.messages) == 1
    assert notice.deadline == T0 + timedelta(hours=48)
    assert notice.status == "sent" and notice.sent_at == T0 and notice.reminders == 0
    assert "TAKE IT DOWN" in created.rendered.subject

    assert notices.due(T0 + timedelta(hours=23, minutes=59)) == []
    assert notices.remind(notice.id, now=T0 + timedelta(hours=12)) is None  # not due yet
    assert [n.id for n in notices.due(T0 + timedelta(hours=24))] == [notice.id]

    [first] = notices.remind_due(T0 + timedelta(hours=24, minutes=1))
    assert first.emailed and first.notice.status == "sent" and first.notice.reminders == 1
    assert first.notice.last_reminder_at == T0 + timedelta(hours=24, minutes=1)
    assert "Reminder 1" in first.rendered.subject
    assert "is 2026-11-24 09:30 UTC" in first.rendered.text  # deadline not yet passed
    assert "https://pics.example/p/1" in first.rendered.text  # the original follows
    assert notices.due(T0 + timedelta(hours=30)) == []
    assert notices.remind_due(T0 + timedelta(hours=30)) == []

    [second] = notices.remind_due(T0 + timedelta(hours=49))
    assert second.notice.reminders == 2 and len(mailbox.messages) == 3
    assert "expired on 2026-11-24 09:30 UTC" in second.rendered.text
    assert second.notice.overdue(T0 + timedelta(hours=49))

    removed = notices.mark(notice.id, "removed", now=T0 + timedelta(hours=50))
    assert removed.status == "removed" and removed.next_reminder_at is None
    assert notices.due(T0 + timedelta(days=30)) == []
    assert notices.remind(notice.id, now=T0 + timedelta(days=30), force=True) is None
    assert not removed.overdue(T0 + timedelta(days=30))
    assert [n.id for n in NoticeRepository(store).list(case_number=number)] == [notice.id]


def test_a_form_url_notice_is_to_send_until_marked_sent(store: Store, settings: Settings) -> None:
    """Nothing can e-mail a web form: the notice, then each reminder, waits for a person,
    listed as due, and is never reported as sent before she says so."""
    notices = Notices(store, settings)
    created = _create(notices, recipient="https://pics.example/report")
    notice = created.notice
    assert not created.emailed and notice.status == "to_send" and notice.by_hand
    assert [n.id for n in notices.due(T0)] == [notice.id]
    scheduler = NoticeScheduler(store, settings, tick_s=3600)
    assert scheduler.run_pending(T0 + timedelta(hours=1)) == []  # nothing it can send
    assert [n.id for n in notices.due(T0 + timedelta(days=5))] == [notice.id]  # still due

    # She files it through the form two hours later: the deadline runs from then.
    sent = notices.mark(notice.id, "sent", now=T0 + timedelta(hours=2))
    assert sent.status == "sent" and sent.sent_at == T0 + timedelta(hours=2)
    assert sent.deadline == T0 + timedelta(hours=50)
    assert sent.next_reminder_at == T0 + timedelta(hours=26)
    assert notices.due(T0 + timedelta(hours=25)) == []

    # The first reminder falls due: it cannot be e-mailed either, so it waits for her.
    [reminder] = scheduler.run_pending(T0 + timedelta(hours=26))
    assert not reminder.emailed and reminder.notice.status == "to_send"
    assert reminder.notice.reminders == 1 and "Reminder 1" in reminder.rendered.subject
    assert scheduler.run_pending(T0 + timedelta(hours=60)) == []  # not claimed again
    [due] = notices.due(T0 + timedelta(hours=60))
    assert due.id == notice.id and due.reminders == 1 and due.status == "to_send"
    assert "Reminder 1" in notices.message(notice.id, now=T0 + timedelta(hours=60)).subject

    again = notices.mark(notice.id, "sent", now=T0 + timedelta(hours=61))
    assert again.status == "sent" and again.reminders == 1
    assert again.last_reminder_at == T0 + timedelta(hours=61)
    assert again.sent_at == T0 + timedelta(hours=2)  # the notice's own date does not move
    assert notices.due(T0 + timedelta(hours=84)) == []
    assert [n.id for n in notices.due(T0 + timedelta(hours=85))] == [notice.id]


def test_no_send_is_to_send_even_to_an_address(
    store: Store, settings: Settings, mailbox: Mailbox
) -> None:
    _smtp(settings, mailbox.port)
    created = _create(Notices(store, settings), recipient="abuse@pics.example", send=False)
    assert created.notice.status == "to_send" and not created.emailed
    assert mailbox.messages == []


def test_without_smtp_an_address_is_to_send(store: Store, settings: Settings) -> None:
    assert not settings.smtp.host
    created = _create(Notices(store, settings), recipient="abuse@pics.example")
    assert created.notice.status == "to_send" and not created.emailed


def test_a_failed_email_is_recorded_and_retried_with_backoff(
    store: Store, settings: Settings
) -> None:
    _smtp(settings, _free_port())  # nothing listens there
    notices = Notices(store, settings)
    created = _create(notices, recipient="abuse@pics.example")
    notice = created.notice
    assert not created.emailed and created.mail_error
    assert notice.status == "send_failed" and notice.send_attempts == 1
    assert notice.send_error == created.mail_error
    assert notice.next_reminder_at == T0 + timedelta(minutes=5)
    assert [n.id for n in notices.due(T0 + timedelta(minutes=5))] == [notice.id]

    scheduler = NoticeScheduler(store, settings, tick_s=60)
    assert scheduler.run_pending(T0 + timedelta(minutes=1)) == []  # not every tick
    [retry] = scheduler.run_pending(T0 + timedelta(minutes=5))
    assert not retry.emailed and retry.notice.send_attempts == 2
    assert retry.notice.reminders == 0  # the notice itself is retried, not a reminder
    assert retry.notice.next_reminder_at == T0 + timedelta(minutes=15)  # 10 minutes later
    assert scheduler.run_pending(T0 + timedelta(minutes=14)) == []

    box = Mailbox()
    try:
        _smtp(settings, box.port)
        [delivered] = scheduler.run_pending(T0 + timedelta(minutes=15))
        assert delivered.emailed and len(box.messages) == 1
        assert "TAKE IT DOWN" in box.messages[0][1]["Subject"]  # the notice, not a reminder
    finally:
        box.close()
    info = delivered.notice
    assert info.status == "sent" and info.send_attempts == 0 and info.send_error is None
    assert info.sent_at == T0 + timedelta(minutes=15)  # it reached the platform then
    assert info.deadline == T0 + timedelta(minutes=15, hours=48)
    assert info.next_reminder_at == T0 + timedelta(minutes=15, hours=24)


def test_not_removed_keeps_reminding(store: Store, settings: Settings) -> None:
    notices = Notices(store, settings)
    notice = _create(notices, kind="dsa", case_number=new_case_number()).notice
    assert notice.deadline is None
    notices.mark(notice.id, "sent", now=T0)
    notices.mark(notice.id, "not_removed", now=T0 + timedelta(hours=2))
    assert [n.id for n in notices.due(T0 + timedelta(hours=24))] == [notice.id]
    with pytest.raises(Exception) as info:
        notices.mark(notice.id, "send_failed")
    assert getattr(info.value, "code", None) == "bad_notice_status"


def test_pharos_sheets_are_filed_by_hand_and_never_reminded(
    store: Store, settings: Settings
) -> None:
    notices = Notices(store, settings)
    notice = _create(notices, kind="pharos", lang="fr", recipient="abuse@pics.example").notice
    assert notice.status == "to_send" and notice.deadline is None  # never e-mailed
    assert [n.id for n in notices.due(T0)] == [notice.id]  # she must file it
    filed = notices.mark(notice.id, "sent", now=T0 + timedelta(hours=1))
    assert filed.status == "sent" and filed.next_reminder_at is None
    notices.mark(notice.id, "not_removed", now=T0 + timedelta(hours=2))
    assert notices.due(T0 + timedelta(days=3)) == []


def test_renotice_interval_comes_from_settings(store: Store, settings: Settings) -> None:
    settings.evidence = settings.evidence.model_copy(update={"renotice_hours": 6})
    notices = Notices(store, settings)
    created = _create(notices)
    assert "repeated every 6 hours" in created.rendered.text
    notices.mark(created.notice.id, "sent", now=T0)
    assert notices.due(T0 + timedelta(hours=5)) == []
    assert len(notices.due(T0 + timedelta(hours=6))) == 1
    [reminder] = notices.remind_due(T0 + timedelta(hours=6))
    assert "repeated every 6 hours" in reminder.rendered.text


# -- case numbers and withdrawal ----------------------------------------------------------------


def _open_case(store: Store, settings: Settings, tmp_path: Path, seed: int) -> Any:
    folder = tmp_path / f"mine-{seed}"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg_bytes(synthetic_photo(seed)))
    submission = build_submission([folder], limits=MediaLimits())
    return CaseRepository(store, settings).submit(submission)


def test_case_numbers_are_normalised_and_checked(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    case = _open_case(store, settings, tmp_path, 61)
    notices = Notices(store, settings)
    typed = " " + case.number.lower().replace("-", " ") + " "
    notice = _create(notices, case_number=typed).notice
    assert notice.case_number == case.number
    assert [n.id for n in NoticeRepository(store).list(case_number=case.number)] == [notice.id]
    for bad in ("RMP-ABCD-2345", "CASE-1", "RMP-ABCD-2345-678U"):
        with pytest.raises(NoticeError) as info:
            _create(notices, case_number=bad)
        assert info.value.code == "bad_case_number"
        assert "RMP-XXXX-XXXX-XXXX" in (info.value.hint or "")


def _rows(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(notices_table))]


def test_withdrawal_leaves_no_personal_data_in_notices(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    mine = _open_case(store, settings, tmp_path, 62)
    other = _open_case(store, settings, tmp_path, 63)
    notices = Notices(store, settings)
    her_items = [{**ITEMS[0], "url": "https://pics.example/her/1", "sha256": "cd" * 32}]
    _create(notices, case_number=mine.number, items=her_items)
    # Written under another spelling, as before case numbers were normalised.
    legacy = _create(notices, kind="dsa", case_number=mine.number, items=her_items).notice
    with store.engine.begin() as conn:
        conn.execute(
            notices_table.update()
            .where(notices_table.c.id == legacy.id)
            .values(case_number=mine.number.lower())
        )
    kept = _create(
        notices,
        case_number=other.number,
        sender=REP,
        items=[{**ITEMS[1], "url": "https://pics.example/other/1"}],
    ).notice
    assert len(_rows(store)) == 3

    CaseRepository(store, settings).withdraw(mine.number, mine.pin)

    rows = _rows(store)
    assert [r["id"] for r in rows] == [kept.id]
    dump = repr(rows)
    for personal in ("Camille", "camille@example.org", "+33 6", "pics.example/her", "cd" * 32):
        assert personal not in dump
    assert mine.number not in dump and mine.number.lower() not in dump


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

    # A form URL is not an e-mail address: nothing is sent, and the notice says so.
    web = _create(notices, recipient="https://pics.example/report")
    assert not web.emailed and len(mailbox.messages) == 2
    assert web.notice.status == "to_send"


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
        "review": "unreviewed",
    }


def test_items_carry_what_a_moderator_said(store: Store, settings: Settings) -> None:
    confirmed = _scan(store, settings, "https://pics.example/c/1")
    waiting = _scan(store, settings, "https://pics.example/c/2")
    rejected = _scan(store, settings, "https://pics.example/c/3")
    scans = ScanRepository(store)
    scans.add_feedback("ngo", confirmed.id, "true_positive")
    scans.add_feedback("ngo", rejected.id, "false_positive")
    items = items_for_scans(store, "ngo", [confirmed.id, waiting.id])
    assert [i["review"] for i in items] == ["confirmed", "unreviewed"]
    with pytest.raises(NoticeError) as info:
        items_for_scans(store, "ngo", [confirmed.id, rejected.id])
    assert info.value.code == "rejected_item"
    text = render_notice(
        "takeitdown", "en", items=items, sender=SENDER, platform="ngo", sent_at=T0
    ).text
    assert "Review: confirmed by a moderator" in text
    assert "Review: automatic match, pending human review" in text
    assert "A moderator confirmed 1 of the 2 items" in text


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
    # A form URL: nobody sent it yet, and it says so.
    assert notice["status"] == "to_send" and notice["deadline"]
    assert "https://pics.example/c/9" in notice["text"]
    assert "to_send" in made.stderr and "rempart notices sent" in made.stderr

    listed = runner.invoke(app, ["notices", "list", "--tenant", "ngo", "--database-url", db_url])
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [notice["id"]]

    def due() -> list[dict[str, Any]]:
        out = runner.invoke(
            app, ["notices", "list", "--due", "--tenant", "ngo", "--database-url", db_url]
        )
        return [json.loads(line) for line in out.stdout.splitlines()]

    assert [(n["id"], n["status"]) for n in due()] == [(notice["id"], "to_send")]
    shown = runner.invoke(app, ["notices", "show", str(notice["id"]), "--database-url", db_url])
    assert "TAKE IT DOWN" in json.loads(shown.stdout)["subject"]

    sent = runner.invoke(app, ["notices", "sent", str(notice["id"]), "--database-url", db_url])
    assert sent.exit_code == 0 and json.loads(sent.stdout)["status"] == "sent"
    assert due() == []  # sent by hand: not due for 24 hours

    forced = runner.invoke(
        app, ["notices", "remind", str(notice["id"]), "--force", "--database-url", db_url]
    )
    assert forced.exit_code == 0, forced.output
    reminder = json.loads(forced.stdout.splitlines()[0])
    assert reminder["reminders"] == 1 and reminder["status"] == "to_send"
    assert [(n["id"], n["reminders"]["count"]) for n in due()] == [(notice["id"], 1)]

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

    lower = runner.invoke(
        app,
        ["notices", "list", "--case", "rmp-abcd-2345", "--database-url", db_url],
    )
    assert lower.exit_code == 2 and "RMP-XXXX-XXXX-XXXX" in lower.output
