"""Alerts: made from scan records, held for review when the tenant asks, delivered by a
real SMTP server (aiosmtpd) and a real local webhook receiver, signatures checked."""

from __future__ import annotations

import io
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from rempart.cases import build_submission, load_submission, seal_template
from rempart.cases.alerts import AlertDispatcher, confirm_scan, dismiss_scan, record_alerts
from rempart.cases.mail import MailError, send_mail
from rempart.cases.registry import CaseRepository
from rempart.cases.service_key import write_keypair
from rempart.examples import jpeg_bytes, synthetic_photo
from rempart.scan import Scanner
from rempart.service.webhooks import SIGNATURE_HEADER, verify_signature
from rempart.settings import MediaLimits, Settings, SmtpSettings, load_settings
from rempart.store import Store
from rempart.store.cases import case_alerts_table
from rempart.store.faces import FaceTemplates, parse_key
from rempart.store.scans import ScanRecord

FACE_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mailbox:
    """A real SMTP server (aiosmtpd) on a free loopback port, keeping what it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
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


class Receiver:
    """A local HTTP server that records POSTs (answering ``status``)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.received.append((dict(self.headers), body))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def settings(db_url: str, tmp_path: Path, mailbox: Mailbox) -> Settings:
    write_keypair(tmp_path / "svc.key", tmp_path / "svc.pub")
    s = load_settings(database_url=db_url, face_template_key=FACE_KEY)
    s.cases = s.cases.model_copy(
        update={"service_key_file": tmp_path / "svc.key", "public_url": "https://rempart.test"}
    )
    s.smtp = SmtpSettings(host="127.0.0.1", port=mailbox.port, sender="alerts@rempart.test")
    s.service = s.service.model_copy(update={"egress_allow_private": True})
    return s


def _submission(tmp_path: Path, seed: int = 21) -> Any:
    d = tmp_path / f"p{seed}"
    d.mkdir()
    (d / "x.jpg").write_bytes(jpeg_bytes(synthetic_photo(seed)))
    return load_submission(build_submission([d], limits=MediaLimits()).to_json())


def _copy(seed: int = 21) -> bytes:
    img = synthetic_photo(seed).resize((300, 200))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=60)
    return buf.getvalue()


def _record(tenant: str, result: dict[str, Any]) -> ScanRecord:
    return ScanRecord(
        str(uuid.uuid4()), tenant, datetime.now(UTC), "image", "review", None, None, None, result
    )


def _scan_record(store: Store, settings: Settings, tenant: str, data: bytes) -> ScanRecord:
    """A scan record as the service writes it (matches with bank ids)."""
    match = Scanner(store, settings).scan_bytes(data, tenant=tenant).match
    result = {"matches": [{**m.to_dict(), "bank_id": m.bank_id} for m in match.matches]}
    return _record(tenant, result)


def test_hash_match_alert_is_emailed_and_posted(
    store: Store, settings: Settings, tmp_path: Path, mailbox: Mailbox, receiver: Receiver
) -> None:
    cases = CaseRepository(store, settings)
    new = cases.submit(_submission(tmp_path), email="her@example.org", webhook_url=receiver.url)
    assert new.webhook_secret
    scan = _scan_record(store, settings, "acme", _copy())
    assert record_alerts(store, settings, [scan]) == 1
    assert record_alerts(store, settings, [scan]) == 0  # idempotent
    [alert] = cases.alerts(new.number)
    assert (alert.tenant, alert.scan_id, alert.kind, alert.status) == (
        "acme",
        scan.id,
        "hash_match",
        "active",
    )
    assert alert.details["signals"][0]["signal"] in ("pdq", "md5", "sha256")
    status = cases.status(new.number, new.pin)
    assert status.matches == 1 and status.alerts[0]["platform"] == "acme"

    assert AlertDispatcher(store, settings).run_once() == 1
    [(to, message)] = mailbox.messages
    assert to == ["her@example.org"]
    text = message.get_payload(decode=True).decode()
    assert new.number in text and "https://rempart.test/case" in text
    for value in (scan.id, *(i.get("pdq", "") for i in _submission(tmp_path, 22).items)):
        assert value not in text
    [(headers, body)] = receiver.received
    verify_signature(new.webhook_secret, headers[SIGNATURE_HEADER], body)
    assert b'"case.alert"' in body and new.number.encode() in body
    [alert] = cases.alerts(new.number)
    assert (alert.email_state, alert.webhook_state) == ("sent", "sent")
    assert AlertDispatcher(store, settings).run_once() == 0  # nothing left to send


def test_failed_webhook_is_retried_then_given_up(
    store: Store, settings: Settings, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.status = 500
    settings.cases = settings.cases.model_copy(update={"alert_attempts": 2})
    cases = CaseRepository(store, settings)
    new = cases.submit(_submission(tmp_path), webhook_url=receiver.url)
    record_alerts(store, settings, [_scan_record(store, settings, "acme", _copy())])
    dispatcher = AlertDispatcher(store, settings)
    assert dispatcher.run_once() == 1
    [alert] = cases.alerts(new.number)
    assert (alert.email_state, alert.webhook_state) == ("none", "pending")
    assert dispatcher.run_once() == 0  # backing off
    assert dispatcher.run_once(datetime.now(UTC) + timedelta(hours=2)) == 1
    [alert] = cases.alerts(new.number)
    assert alert.webhook_state == "failed" and len(receiver.received) == 2


def test_review_first_tenants_wait_for_a_moderator(
    store: Store, settings: Settings, tmp_path: Path, mailbox: Mailbox
) -> None:
    settings.cases = settings.cases.model_copy(update={"alert_after_review": ["careful"]})
    cases = CaseRepository(store, settings)
    new = cases.submit(_submission(tmp_path), email="her@example.org")
    first = _scan_record(store, settings, "careful", _copy())
    second = _scan_record(store, settings, "careful", _copy())
    record_alerts(store, settings, [first, second])
    assert [a.status for a in cases.alerts(new.number)] == ["pending_review"] * 2
    assert cases.status(new.number, new.pin).matches == 0
    assert AlertDispatcher(store, settings).run_once() == 0 and not mailbox.messages

    assert confirm_scan(store, settings, "someone-else", first.id) == 0
    assert confirm_scan(store, settings, "careful", first.id) == 1
    assert dismiss_scan(store, "careful", second.id) == 1
    assert [a.status for a in cases.alerts(new.number)] == ["active"]
    assert cases.status(new.number, new.pin).matches == 1
    assert AlertDispatcher(store, settings).run_once() == 1 and len(mailbox.messages) == 1


def test_a_tenant_policy_overrides_the_review_setting(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    from rempart.cases.alerts import alerts_wait_for_review
    from rempart.policy import DEFAULT_POLICY_TOML, load_policy

    settings.cases = settings.cases.model_copy(update={"alert_after_review": ["b", "c"]})
    policies = {
        "a": load_policy(DEFAULT_POLICY_TOML + "[alerts]\nafter_review = true\n"),
        "b": load_policy(DEFAULT_POLICY_TOML + "[alerts]\nafter_review = false\n"),
        "c": load_policy(DEFAULT_POLICY_TOML),  # says nothing: the setting decides
    }
    assert [alerts_wait_for_review(t, settings, policies) for t in "abcd"] == [
        True,
        False,
        True,
        False,
    ]
    cases = CaseRepository(store, settings)
    new = cases.submit(_submission(tmp_path))
    scans = [_scan_record(store, settings, t, _copy()) for t in "ab"]
    assert record_alerts(store, settings, scans, policies) == 2
    assert {a.tenant: a.status for a in cases.alerts(new.number)} == {
        "a": "pending_review",
        "b": "active",
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[alerts]\nafter_review = "yes"\n', "must be true or false"),
        ("[alerts]\nafterreview = true\n", "unknown keys: afterreview"),
        ('alerts = "review"\n', "alerts must be a table"),
    ],
)
def test_a_bad_alerts_table_is_explained(extra: str, message: str) -> None:
    from rempart.policy import DEFAULT_POLICY_TOML, load_policy
    from rempart.policy.rules import PolicyError

    text = (
        extra + DEFAULT_POLICY_TOML if extra.startswith("alerts =") else DEFAULT_POLICY_TOML + extra
    )
    with pytest.raises(PolicyError) as e:
        load_policy(text)
    assert message in e.value.message and e.value.code == "bad_policy"


def test_face_lead_alerts_only_with_nudity_or_generation(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    import numpy as np

    from rempart.cases.service_key import public_key_of

    assert settings.cases.service_key_file is not None
    public = public_key_of(bytes.fromhex(settings.cases.service_key_file.read_text().strip()))
    sub = build_submission([], limits=MediaLimits())
    sub.face_templates.append(seal_template(np.ones(128, dtype=np.float32), public))
    cases = CaseRepository(store, settings)
    new = cases.submit(load_submission(sub.to_json()))
    [person], _ = FaceTemplates(store, parse_key(FACE_KEY)).load_all("_cases")
    face = {"matches": [{"person": person, "list": "cases", "distance": 0.3, "threshold": 0.6}]}
    plain = _record("acme", {"matches": [], "evidence": {"faces": [face]}})
    nude = _record(
        "acme",
        {
            "matches": [],
            "evidence": {
                "faces": [face],
                "nudity": {
                    "threshold": 0.5,
                    "regions": [{"class": "x", "score": 0.9, "box": [], "exposure": "exposed"}],
                },
            },
        },
    )
    generated = _record(
        "acme",
        {"matches": [], "evidence": {"faces": [face], "watermarks": [{"band": "very likely"}]}},
    )
    assert record_alerts(store, settings, [plain]) == 0
    assert record_alerts(store, settings, [nude, generated]) == 2
    alerts = cases.alerts(new.number)
    assert [a.kind for a in alerts] == ["face", "face"]
    assert alerts[0].details["with"] == ["nudity_exposed"]
    assert alerts[1].details["with"] == ["generation"]
    assert person not in str([a.details for a in alerts])

    cases.withdraw(new.number, new.pin)
    with store.engine.connect() as conn:
        assert conn.execute(select(case_alerts_table)).all() == []


def test_send_mail_errors_are_explained(mailbox: Mailbox) -> None:
    with pytest.raises(MailError) as e:
        send_mail(SmtpSettings(), "a@b.org", "s", "t")
    assert e.value.code == "smtp_not_configured"
    down = SmtpSettings(host="127.0.0.1", port=_free_port(), timeout_s=2)
    with pytest.raises(MailError) as e:
        send_mail(down, "a@b.org", "s", "t")
    assert e.value.code == "smtp_unreachable"
    up = SmtpSettings(host="127.0.0.1", port=mailbox.port)
    with pytest.raises(MailError) as e:
        send_mail(up, "a@b.org\r\nBcc: x@y.org", "s", "t")
    assert e.value.code == "bad_address"
    send_mail(up, "a@b.org", "Bonjour", "texte", html="<p>texte</p>")
    deadline = time.monotonic() + 5
    while not mailbox.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    [(to, message)] = mailbox.messages
    assert to == ["a@b.org"] and message["Subject"] == "Bonjour" and message.is_multipart()
