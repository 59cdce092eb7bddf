"""Victims' cases over HTTP: submit -> a platform scans a copy -> alert -> withdraw, and
the copy stops matching in another worker within a second. Plus bad input, and the page."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from rempart.cases import build_submission, seal_template
from rempart.cases.registry import CaseRepository
from rempart.cases.service_key import write_keypair
from rempart.examples import jpeg_bytes, synthetic_photo
from rempart.settings import MediaLimits
from rempart.store.cases import cases_table
from rempart.store.models import changes_table, entries_table

FACE_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


def _submission_json(tmp_path: Path, seed: int = 31, template_key: bytes | None = None) -> str:
    d = tmp_path / f"mine-{seed}"
    d.mkdir(exist_ok=True)
    (d / "a.jpg").write_bytes(jpeg_bytes(synthetic_photo(seed)))
    sub = build_submission([d], limits=MediaLimits())
    if template_key is not None:
        sub.face_templates.append(seal_template(np.ones(128, dtype=np.float32), template_key))
    return sub.to_json()


def _copy(seed: int = 31) -> bytes:
    img = synthetic_photo(seed)
    img = img.resize((img.width // 2, img.height // 2))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=50)
    return buf.getvalue()


def _keys(tmp_path: Path) -> tuple[Path, bytes]:
    write_keypair(tmp_path / "svc.key", tmp_path / "svc.pub")
    return tmp_path / "svc.key", bytes.fromhex((tmp_path / "svc.pub").read_text().strip())


def _case_settings(tmp_path: Path, **cases: Any) -> dict[str, Any]:
    key, _ = _keys(tmp_path)
    return {"face_template_key": FACE_KEY, "cases": {"service_key_file": str(key), **cases}}


def _count(store: Any, table: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _scan_until_match(svc: Any, key: dict[str, str]) -> dict[str, Any]:
    """Scan the copy until this worker's index has the case's entries (it refreshes from
    the change log every 0.25 s)."""
    deadline = time.monotonic() + 2
    while True:
        body: dict[str, Any] = svc.client.post("/v1/scan", headers=key, content=_copy()).json()
        if body["matches"] or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def _problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    assert body["code"] == code, body
    return body


def test_end_to_end_with_two_workers(make_service: Callable[..., Any], tmp_path: Path) -> None:
    overrides = _case_settings(tmp_path)
    first = make_service(**overrides)
    second = make_service(**overrides)
    submission = _submission_json(tmp_path)

    opened = first.client.post("/v1/cases", content=submission)
    assert opened.status_code == 201, opened.text
    number, pin = opened.json()["case"], opened.json()["pin"]
    assert opened.headers["cache-control"] == "no-store"

    status = first.client.post(f"/v1/cases/{number}/status", json={"pin": pin})
    assert status.status_code == 200 and status.json()["matches"] == 0

    key = second.key("scan", tenant="acme")
    body = _scan_until_match(second, key)  # the second worker learns from the change log
    assert [m["bank"] for m in body["matches"]] == ["cases"]
    assert number not in json.dumps(body) and "_cases" not in json.dumps(body)
    assert second.client.get(
        "/v1/lookup", headers=key, params={"pdq": body["hashes"]["pdq"]}
    ).json()["matches"]
    assert second.ctx.flush()

    status = first.client.post(f"/v1/cases/{number}/status", json={"pin": pin}).json()
    assert status["matches"] == 1 and status["alerts"][0]["platform"] == "acme"
    assert "pdq" not in json.dumps(status["alerts"])
    [alert] = CaseRepository(first.store).alerts(number)
    assert alert.scan_id == body["id"] and alert.kind == "hash_match"

    values = [e.value for e in first.store.iter_entries("cases", tenant="_cases")]
    done = first.client.post(f"/v1/cases/{number}/withdraw", json={"pin": pin})
    assert done.status_code == 200 and done.json()["status"] == "withdrawn"
    gone_at = time.monotonic()
    first_key = first.key("scan")
    for worker, k in ((second, key), (first, first_key)):  # each refreshes every 0.25 s
        while worker.client.post("/v1/scan", headers=k, content=_copy()).json()["matches"]:
            assert time.monotonic() - gone_at < 1.0, "a worker still matches after 1 s"
            time.sleep(0.05)
    with first.store.engine.connect() as conn:
        logged = set(conn.execute(select(changes_table.c.value)).scalars())
    assert not logged & set(values)
    _problem(
        first.client.post(f"/v1/cases/{number}/status", json={"pin": pin}),
        403,
        "case_access_denied",
    )


def test_review_first_tenant_alerts_after_feedback(
    make_service: Callable[..., Any], tmp_path: Path
) -> None:
    svc = make_service(**_case_settings(tmp_path, alert_after_review=["careful"]))
    opened = svc.client.post("/v1/cases", content=_submission_json(tmp_path)).json()
    key = svc.key("scan", tenant="careful")
    scan = _scan_until_match(svc, key)
    assert scan["matches"]
    svc.ctx.flush()
    pin = {"pin": opened["pin"]}
    assert svc.client.post(f"/v1/cases/{opened['case']}/status", json=pin).json()["matches"] == 0
    fb = svc.client.post(
        f"/v1/scans/{scan['id']}/feedback", headers=key, json={"label": "true_positive"}
    )
    assert fb.status_code == 200, fb.text
    assert svc.client.post(f"/v1/cases/{opened['case']}/status", json=pin).json()["matches"] == 1


def test_each_tenant_policy_says_whether_its_alerts_wait_for_review(
    make_service: Callable[..., Any], tmp_path: Path
) -> None:
    from rempart.policy import DEFAULT_POLICY_TOML

    policies = {}
    for tenant, wait in (("careful", "true"), ("quick", "false")):
        policies[tenant] = tmp_path / f"{tenant}.toml"
        policies[tenant].write_text(f"{DEFAULT_POLICY_TOML}\n[alerts]\nafter_review = {wait}\n")
    # The setting names "quick" too: its own policy says otherwise, and wins. "plain" has no
    # policy file, so the setting decides for it.
    svc = make_service(
        **_case_settings(tmp_path, alert_after_review=["quick", "plain"]),
        policies={k: str(v) for k, v in policies.items()},
    )
    opened = svc.client.post("/v1/cases", content=_submission_json(tmp_path)).json()
    scans = {}
    for tenant in ("careful", "quick", "plain"):
        key = svc.key("scan", tenant=tenant)
        scans[tenant] = (key, _scan_until_match(svc, key))
        assert scans[tenant][1]["matches"], tenant
    assert svc.ctx.flush()
    alerts = {a.tenant: a.status for a in CaseRepository(svc.store).alerts(opened["case"])}
    assert alerts == {"careful": "pending_review", "quick": "active", "plain": "pending_review"}
    pin = {"pin": opened["pin"]}
    status = svc.client.post(f"/v1/cases/{opened['case']}/status", json=pin).json()
    assert [a["platform"] for a in status["alerts"]] == ["quick"]
    # A moderator of "careful" confirms its scan: her case shows it.
    key, scan = scans["careful"]
    fb = svc.client.post(
        f"/v1/scans/{scan['id']}/feedback", headers=key, json={"label": "true_positive"}
    )
    assert fb.status_code == 200, fb.text
    status = svc.client.post(f"/v1/cases/{opened['case']}/status", json=pin).json()
    assert sorted(a["platform"] for a in status["alerts"]) == ["careful", "quick"]


def test_bad_input_stores_nothing(make_service: Callable[..., Any], tmp_path: Path) -> None:
    svc = make_service(**_case_settings(tmp_path))
    good = _submission_json(tmp_path)

    doc = json.loads(good)
    doc["items"][0]["md5"] = "0" * 32
    _problem(svc.client.post("/v1/cases", json=doc), 422, "tampered_submission")
    doc = json.loads(good)
    doc["items"][0]["pdq"] = "not a hash"
    _problem(svc.client.post("/v1/cases", json=doc), 422, "malformed_hash")
    _problem(svc.client.post("/v1/cases", content=b"{nope"), 422, "malformed_submission")
    import nacl.public

    other = bytes(nacl.public.PrivateKey.generate().public_key)
    sealed_elsewhere = _submission_json(tmp_path, template_key=other)
    _problem(svc.client.post("/v1/cases", content=sealed_elsewhere), 422, "wrong_service_key")
    _problem(
        svc.client.post(
            "/v1/cases",
            json={"submission": json.loads(good), "contact": {"email": "nobody"}},
        ),
        422,
        "bad_contact",
    )
    _problem(
        svc.client.post(
            "/v1/cases",
            json={"submission": json.loads(good), "contact": {"webhook_url": "http://127.0.0.1/x"}},
        ),
        422,
        "forbidden_destination",
    )
    _problem(svc.client.post("/v1/cases", content=b"x" * (5 * 1024 * 1024)), 413, "too_large")
    assert _count(svc.store, cases_table) == 0 and _count(svc.store, entries_table) == 0

    _problem(
        svc.client.post("/v1/cases/RMP-0000-0000-0000/status", json={"pin": "12345678"}),
        403,
        "case_access_denied",
    )
    # The PIN is never taken from the URL.
    assert svc.client.post("/v1/cases/RMP-0000-0000-0000/status?pin=1").status_code == 422


def test_many_wrong_pins_lock_and_addresses_are_rate_limited(
    make_service: Callable[..., Any], tmp_path: Path
) -> None:
    svc = make_service(**_case_settings(tmp_path, pin_attempts=3, pin_checks_per_minute=9))
    opened = svc.client.post("/v1/cases", content=_submission_json(tmp_path)).json()
    url = f"/v1/cases/{opened['case']}/status"
    wrong = "99999999" if opened["pin"] != "99999999" else "88888888"
    unknown = "/v1/cases/RMP-ZZZZ-ZZZZ-ZZZ0/status"
    for _ in range(3):
        _problem(svc.client.post(url, json={"pin": wrong}), 403, "case_access_denied")
        _problem(svc.client.post(unknown, json={"pin": wrong}), 403, "case_access_denied")
    locked = svc.client.post(url, json={"pin": opened["pin"]})
    body = _problem(locked, 429, "case_locked")
    assert "minute" in body["hint"] and 840 < int(locked.headers["Retry-After"]) <= 900
    # An unknown number answers exactly alike: a lock does not tell that a number exists.
    same = svc.client.post(unknown, json={"pin": wrong})
    assert _problem(same, 429, "case_locked") == body
    assert same.headers["Retry-After"] == locked.headers["Retry-After"]
    # The page says it too, with Retry-After.
    page = svc.client.post("/case?lang=en", data={"number": opened["case"], "pin": "1"})
    assert page.status_code == 429 and 840 < int(page.headers["Retry-After"]) <= 900
    # 9 checks a minute from one address: the 10th is refused before any PIN is checked.
    refused = svc.client.post(url, json={"pin": opened["pin"]})
    _problem(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) >= 1


def test_the_address_limiter_forgets_old_addresses() -> None:
    from rempart.service.ratelimit import RateLimiter

    limiter = RateLimiter(1.0, 2, max_keys=100)
    for i in range(1000):  # a flood of addresses, one request each, a second apart
        assert limiter.take(f"192.0.2.{i}", now=float(i)) == 0.0
    assert len(limiter) <= 3  # buckets that refilled are gone
    for i in range(1000):  # all at once: none refills, the cap holds
        limiter.take(f"198.51.100.{i}", now=2000.0)
    assert len(limiter) == 100
    # The limit itself still holds for an address that keeps asking.
    assert [limiter.take("203.0.113.1", now=2000.0) > 0 for _ in range(3)] == [
        False,
        False,
        True,
    ]


def test_submissions_are_rate_limited_per_address(
    make_service: Callable[..., Any], tmp_path: Path
) -> None:
    svc = make_service(**_case_settings(tmp_path, submissions_per_hour=2))
    text = _submission_json(tmp_path)
    assert svc.client.post("/v1/cases", content=text).status_code == 201
    assert svc.client.post("/v1/cases", content=text).status_code == 201
    _problem(svc.client.post("/v1/cases", content=text), 429, "rate_limited")


@pytest.mark.parametrize(
    ("lang", "header", "expected"),
    [
        ("fr", None, "Numéro de dossier"),
        (None, "fr-FR,fr;q=0.9", "Numéro de dossier"),
        (None, "en-GB", "Case number"),
        ("en", "fr", "Case number"),
    ],
)
def test_case_page_languages(
    service: Any, lang: str | None, header: str | None, expected: str
) -> None:
    headers = {"Accept-Language": header} if header else {}
    page = service.client.get("/case", params={"lang": lang} if lang else {}, headers=headers)
    assert page.status_code == 200 and expected in page.text
    assert 'label for="number"' in page.text and 'label for="pin"' in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "http" not in page.text.split("<main>")[0].replace("http-equiv", "")


def test_case_page_status_and_withdraw(make_service: Callable[..., Any], tmp_path: Path) -> None:
    svc = make_service(**_case_settings(tmp_path))
    opened = svc.client.post("/v1/cases", content=_submission_json(tmp_path)).json()
    form = {"number": opened["case"].lower(), "pin": opened["pin"]}

    bad = svc.client.post("/case?lang=en", data={**form, "pin": "0"})
    assert bad.status_code == 403 and "wrong PIN" in bad.text

    page = svc.client.post("/case?lang=fr", data={**form, "action": "status"})
    assert page.status_code == 200 and opened["case"] in page.text
    assert "Aucune plateforme" in page.text and "Retirer mon dossier" in page.text
    # Where to get help, from the data file: each service named, with its link.
    help_section = page.text.split('id="help"', 1)[1].split("</section>", 1)[0]
    for name in ("3018", "Pharos", "Revenge Porn Helpline", "Take It Down", "StopNCII"):
        assert name in help_section, name
    assert "gendarmerie" in help_section and help_section.count("<a href=") >= 6
    assert "Aucune demande envoyée" in page.text

    # The operator sent a takedown notice for her case: her page shows it and its deadline.
    from datetime import UTC, datetime, timedelta

    from rempart.store.notices import NoticeRepository

    sent = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    notice = NoticeRepository(svc.store).create(
        tenant="pics",
        kind="takeitdown",
        lang="en",
        platform="pics",
        recipient="abuse@pics.example",
        sender={"name": "C. D.", "email": "c@example.org"},
        items=[{"url": "https://pics.example/p/1"}],
        sent_at=sent,
        deadline=sent + timedelta(hours=48),
        case_number=opened["case"],
    )
    page = svc.client.post("/case?lang=en", data={**form, "action": "status"})
    assert "not sent yet" in page.text  # recorded, but nobody has sent it
    NoticeRepository(svc.store).set_status(notice.id, "sent", now=sent)
    page = svc.client.post("/case?lang=en", data={**form, "action": "status"})
    assert "TAKE IT DOWN Act request" in page.text and "2026-11-22 09:30 UTC" in page.text
    assert "waiting for removal" in page.text
    assert "abuse@pics.example" not in page.text  # what she needs, not the operator's log

    confirm = svc.client.post("/case?lang=en", data={**form, "action": "confirm"})
    assert "cannot be undone" in confirm.text and 'value="withdraw"' in confirm.text
    assert _count(svc.store, entries_table) == 3  # nothing deleted yet

    done = svc.client.post("/case?lang=en", data={**form, "action": "withdraw"})
    assert done.status_code == 200 and "withdrawn" in done.text
    assert _count(svc.store, entries_table) == 0


def test_case_page_without_help_data_still_shows_and_logs(
    service: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from rempart.cases import help as help_data
    from rempart.errors import ConfigError

    page = service.client.get("/case?lang=en")
    assert "Revenge Porn Helpline" in page.text

    def broken(lang: str = "en") -> list[Any]:
        raise ConfigError("help.toml: entry 3 has no url", code="bad_help_data")

    monkeypatch.setattr(help_data, "load_help", broken)
    with caplog.at_level("ERROR", logger="rempart.cases"):
        page = service.client.get("/case?lang=en")
    assert page.status_code == 200 and 'label for="pin"' in page.text
    assert "Revenge Porn Helpline" not in page.text
    assert any("help entries" in r.getMessage() and r.exc_info for r in caplog.records)


def test_running_service_emails_the_alert(make_service: Callable[..., Any], tmp_path: Path) -> None:
    """The service's own background job delivers the alert to a real SMTP server."""
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.original_content)
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        svc = make_service(
            **_case_settings(tmp_path, public_url="https://help.example.org"),
            smtp={"host": "127.0.0.1", "port": port, "sender": "alerts@example.org"},
            service={"background_jobs": True},
        )
        opened = svc.client.post(
            "/v1/cases",
            json={
                "submission": json.loads(_submission_json(tmp_path)),
                "contact": {"email": "her@example.org"},
            },
        ).json()
        assert "webhook_secret" not in opened
        assert _scan_until_match(svc, svc.key("scan", tenant="acme"))["matches"]
        svc.ctx.flush()
        deadline = time.monotonic() + 15
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
        [raw] = received
        assert opened["case"].encode() in raw and b"https://help.example.org/case" in raw
        while time.monotonic() < deadline:  # the state is written once send_mail returns
            [alert] = CaseRepository(svc.store).alerts(opened["case"])
            if alert.email_state == "sent":
                break
            time.sleep(0.1)
        assert alert.email_state == "sent" and alert.webhook_state == "none"
    finally:
        controller.stop()
