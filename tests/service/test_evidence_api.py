"""Evidence packages and notices over HTTP, on scans made through the real service: a
platform downloads its own scans' package; the operator (scope ``cases``) packages a case and
sends notices; notices are tracked until removed. Images are drawn by Rempart."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rempart.cases import build_submission
from rempart.cases.evidence import LEAD_LABEL, verify
from rempart.cases.service_key import write_keypair
from rempart.cases.signing import generate_key, parse_public_key, write_key
from rempart.entries import entries_for_values
from rempart.examples import jpeg_bytes, synthetic_photo
from rempart.hashing import hash_media
from rempart.settings import MediaLimits

SENDER = {"name": "Camille Durand", "email": "camille@example.org"}


def _copy(seed: int) -> bytes:
    img = synthetic_photo(seed)
    return jpeg_bytes(img.resize((img.width // 2, img.height // 2)), quality=50)


@pytest.fixture
def pub(tmp_path: Path) -> Path:
    return write_key(generate_key(), tmp_path / "sign.pem")


@pytest.fixture
def svc(make_service: Callable[..., Any], tmp_path: Path, pub: Path) -> Any:
    write_keypair(tmp_path / "svc.key", tmp_path / "svc.pub")
    return make_service(
        evidence={"signing_key_file": str(tmp_path / "sign.pem")},
        cases={"service_key_file": str(tmp_path / "svc.key"), "alert_after_review": ["held"]},
    )


def _problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["code"] == code, body
    return body


def _reported_scan(svc: Any, key: dict[str, str], seed: int, url: str) -> dict[str, Any]:
    """A platform's scan of a resized, recompressed copy of a reported picture."""
    original = jpeg_bytes(synthetic_photo(seed))
    pdq = hash_media(original, limits=MediaLimits()).pdq or ""
    banks = {b.name for b in svc.store.list_banks(tenant="acme")}
    if "reported" not in banks:
        svc.store.create_bank("reported", tenant="acme")
    svc.store.add_entries("reported", entries_for_values({"pdq": [pdq]}), tenant="acme")
    deadline = time.monotonic() + 2
    while True:
        resp = svc.client.post(
            "/v1/scan",
            headers=key,
            params={"url": url, "content_id": f"post-{seed}"},
            content=_copy(seed),
        )
        body: dict[str, Any] = resp.json()
        if body["matches"] or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def _manifest(data: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        manifest: dict[str, Any] = json.loads(z.read("manifest.json"))
    return manifest


def test_a_platform_downloads_a_package_for_its_scan(svc: Any, pub: Path) -> None:
    key = svc.key("scan", tenant="acme")
    body = _reported_scan(svc, key, 41, "https://pics.example/p/41")
    assert body["matches"]

    resp = svc.client.get(f"/v1/scans/{body['id']}/evidence", headers=key)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/zip"
    assert "attachment" in resp.headers["content-disposition"]
    assert resp.headers["cache-control"] == "no-store"
    result = verify(resp.content, parse_public_key(pub.read_bytes()))
    assert result.ok, result.problems
    [item] = _manifest(resp.content)["items"]
    assert item["found"] == {
        "url": "https://pics.example/p/41",
        "platform": "acme",
        "content_id": "post-41",
    }
    assert item["hashes"]["pdq"] == body["hashes"]["pdq"]
    assert item["matches"][0]["bank"] == "reported"
    assert item["method"]["label"] == LEAD_LABEL

    fr = svc.client.get(f"/v1/scans/{body['id']}/evidence", headers=key, params={"lang": "fr"})
    assert _manifest(fr.content)["lang"] == "fr"

    second = _reported_scan(svc, key, 42, "https://pics.example/p/42")
    both = svc.client.post(
        "/v1/evidence", headers=key, json={"scan_ids": [body["id"], second["id"]]}
    )
    assert both.status_code == 200 and verify(both.content).ok
    assert len(_manifest(both.content)["items"]) == 2


def test_scan_evidence_is_per_tenant_and_checked(svc: Any) -> None:
    key = svc.key("scan", tenant="acme")
    body = _reported_scan(svc, key, 43, "https://pics.example/p/43")
    other = svc.key("scan", tenant="other")
    _problem(
        svc.client.get(f"/v1/scans/{body['id']}/evidence", headers=other), 404, "scan_not_found"
    )
    _problem(svc.client.get("/v1/scans/not-a-uuid/evidence", headers=key), 422, "bad_scan_id")
    assert svc.client.get(f"/v1/scans/{body['id']}/evidence").status_code == 401
    banks_only = svc.key("banks:read", tenant="acme")
    _problem(
        svc.client.get(f"/v1/scans/{body['id']}/evidence", headers=banks_only), 403, "forbidden"
    )
    resp = svc.client.post("/v1/evidence", headers=key, json={"scan_ids": []})
    assert resp.status_code == 422


def test_without_a_signing_key_the_error_says_what_to_do(
    make_service: Callable[..., Any], tmp_path: Path
) -> None:
    svc = make_service(evidence={"signing_key_file": str(tmp_path / "absent.pem")})
    key = svc.key("scan", tenant="acme")
    body = _reported_scan(svc, key, 44, "https://pics.example/p/44")
    problem = _problem(
        svc.client.get(f"/v1/scans/{body['id']}/evidence", headers=key), 500, "no_signing_key"
    )
    assert "rempart evidence keygen" in problem.get("hint", "")


def test_notices_from_scans_are_tracked_until_removed(svc: Any) -> None:
    scan_key = svc.key("scan", tenant="acme")
    body = _reported_scan(svc, scan_key, 45, "https://pics.example/p/45")
    key = svc.key("cases", tenant="acme")  # an operator key
    made = svc.client.post(
        "/v1/notices",
        headers=key,
        json={
            "kind": "takeitdown",
            "lang": "fr",
            "sender": SENDER,
            "recipient": "https://pics.example/report",
            "scan_ids": [body["id"]],
        },
    )
    assert made.status_code == 200, made.text
    [notice] = made.json()["notices"]
    # A form URL: recorded as to be sent by hand, and listed as due until it is.
    assert notice["platform"] == "acme" and notice["status"] == "to_send"
    assert notice["deadline"] and "48 heures" in notice["text"]
    assert "https://pics.example/p/45" in notice["text"] and not notice["emailed"]
    assert "correspondance automatique, en attente de vérification humaine" in notice["text"]
    assert notice["items"][0]["review"] == "unreviewed"

    def due() -> list[dict[str, Any]]:
        notices: list[dict[str, Any]] = svc.client.get(
            "/v1/notices", headers=key, params={"due": True}
        ).json()["notices"]
        return notices

    assert [(n["id"], n["status"]) for n in due()] == [(notice["id"], "to_send")]
    one = svc.client.get(f"/v1/notices/{notice['id']}", headers=key).json()
    assert (
        "TAKE IT DOWN" in one["message"]["subject"]
        and "pics.example/p/45" in one["message"]["text"]
    )
    sent = svc.client.post(f"/v1/notices/{notice['id']}/sent", headers=key)
    assert sent.status_code == 200 and sent.json()["status"] == "sent"
    assert due() == []
    listed = svc.client.get("/v1/notices", headers=key).json()["notices"]
    assert [n["id"] for n in listed] == [notice["id"]]
    failed = svc.client.post(
        f"/v1/notices/{notice['id']}/status", headers=key, json={"status": "send_failed"}
    )
    assert failed.status_code == 422
    done = svc.client.post(f"/v1/notices/{notice['id']}/removed", headers=key)
    assert done.status_code == 200 and done.json()["status"] == "removed"
    assert done.json()["reminders"]["next_at"] is None
    again = svc.client.post(
        f"/v1/notices/{notice['id']}/status", headers=key, json={"status": "not_removed"}
    )
    assert again.json()["status"] == "not_removed"

    # A tenant's admin sees its own notices only.
    other_admin = svc.key("admin", tenant="other")
    assert svc.client.get("/v1/notices", headers=other_admin).json() == {"notices": []}
    _problem(
        svc.client.post(f"/v1/notices/{notice['id']}/removed", headers=other_admin),
        404,
        "notice_not_found",
    )
    bad = svc.client.post(
        "/v1/notices",
        headers=key,
        json={
            "kind": "takeitdown",
            "sender": {"name": "A", "email": "nope"},
            "recipient": "x",
            "scan_ids": [body["id"]],
        },
    )
    _problem(bad, 422, "bad_sender")


def test_case_end_to_end_evidence_notice_withdrawal(svc: Any, tmp_path: Path, pub: Path) -> None:
    """protect (her photo) -> submit -> a platform scans a resized, recompressed copy -> the
    case has an alert -> the evidence package verifies -> a notice is made -> she withdraws
    -> the copy no longer matches."""
    d = tmp_path / "mine"
    d.mkdir()
    (d / "a.jpg").write_bytes(jpeg_bytes(synthetic_photo(46)))
    opened = svc.client.post(
        "/v1/cases", content=build_submission([d], limits=MediaLimits()).to_json()
    )
    assert opened.status_code == 201, opened.text
    number = opened.json()["case"]

    platform = svc.key("scan", tenant="acme")
    deadline = time.monotonic() + 2
    while True:
        body = svc.client.post(
            "/v1/scan",
            headers=platform,
            content=_copy(46),
            params={"url": "https://pics.example/p/46"},
        ).json()
        if body["matches"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [m["bank"] for m in body["matches"]] == ["cases"]
    # A second platform whose alerts wait for its moderators.
    held = svc.client.post(
        "/v1/scan",
        headers=svc.key("scan", tenant="held"),
        content=_copy(46),
        params={"url": "https://held.example/9"},
    ).json()
    assert held["matches"]
    assert svc.ctx.flush()

    operator = svc.key("cases", tenant="operator")
    resp = svc.client.get(f"/v1/cases/{number}/evidence", headers=operator)
    assert resp.status_code == 200, resp.text
    assert verify(resp.content, parse_public_key(pub.read_bytes())).ok
    manifest = _manifest(resp.content)
    assert manifest["case"]["number"] == number
    item, pending = manifest["items"]
    assert item["scan_id"] == body["id"]
    assert item["found"]["url"] == "https://pics.example/p/46"
    assert item["alerts"][0]["kind"] == "hash_match"
    assert item["alerts"][0]["status"] == "active"
    assert pending["found"]["platform"] == "held"
    assert pending["alerts"][0]["status"] == "pending_review"
    posted = svc.client.post(f"/v1/cases/{number}/evidence", headers=operator, json={"lang": "fr"})
    assert posted.status_code == 200 and _manifest(posted.content)["lang"] == "fr"

    # A platform's admin key is not the operator: a case spans every platform.
    admin = svc.key("admin", tenant="acme")
    _problem(svc.client.get(f"/v1/cases/{number}/evidence", headers=admin), 403, "forbidden")
    _problem(
        svc.client.get("/v1/cases/RMP-NOPE-0000/evidence", headers=operator), 404, "case_not_found"
    )

    made = svc.client.post(
        f"/v1/cases/{number}/notices",
        headers=operator,
        json={
            "kind": "dsa",
            "lang": "en",
            "sender": {**SENDER, "on_behalf_of": "C. D."},
            "recipient": "abuse@pics.example",
        },
    )
    assert made.status_code == 200, made.text
    [notice] = made.json()["notices"]  # not for the alert still waiting for review
    assert notice["case"] == number and notice["platform"] == "acme"
    assert notice["status"] == "to_send"  # the service has no SMTP here: not sent
    # No moderator of "acme" confirmed the match: the notice says so.
    assert notice["items"][0]["review"] == "unreviewed"
    assert "automatic match, pending human review" in notice["text"]
    assert "held.example" not in notice["text"]
    assert "https://pics.example/p/46" in notice["text"] and "Article 16" in notice["text"]
    listed = svc.client.get(f"/v1/cases/{number}/notices", headers=operator).json()["notices"]
    assert [n["id"] for n in listed] == [notice["id"]]
    # Typed in lower case with spaces, the number finds the same case and notices.
    typed = number.lower().replace("-", " ")
    again = svc.client.get(f"/v1/cases/{typed}/notices", headers=operator).json()["notices"]
    assert [n["id"] for n in again] == [notice["id"]]
    typed_made = svc.client.post(
        f"/v1/cases/{typed}/notices",
        headers=operator,
        json={"kind": "generic", "sender": SENDER, "recipient": "https://pics.example/form"},
    )
    assert typed_made.status_code == 200, typed_made.text
    assert [n["case"] for n in typed_made.json()["notices"]] == [number]
    bad = svc.client.post(
        "/v1/cases/RMP-ABCD-2345/notices",
        headers=operator,
        json={"kind": "dsa", "sender": SENDER, "recipient": "abuse@pics.example"},
    )
    _problem(bad, 422, "bad_case_number")

    # She withdraws: the same copy stops matching within a second.
    pin = opened.json()["pin"]
    done = svc.client.post(f"/v1/cases/{number}/withdraw", json={"pin": pin})
    assert done.status_code == 200, done.text
    # Her notices held her name, contact details and the URLs: nothing of them is left.
    assert svc.client.get(f"/v1/cases/{number}/notices", headers=operator).json() == {"notices": []}
    assert svc.client.get("/v1/notices", headers=operator).json() == {"notices": []}
    gone = time.monotonic()
    while svc.client.post("/v1/scan", headers=platform, content=_copy(46)).json()["matches"]:
        assert time.monotonic() - gone < 1.0
        time.sleep(0.05)
