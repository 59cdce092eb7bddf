"""The HTTP API end to end, on SQLite and PostgreSQL, with generated images."""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest

from rempart.examples import EDITS, jpeg_bytes, synthetic_photo
from rempart.hashing import hash_media


def _problem(resp, status: int, code: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status and body["code"] == code
    assert body["title"] and body["detail"] and body["type"].endswith(code)
    return body  # type: ignore[no-any-return]


def _bomb_png(side: int = 30000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )


def test_auth_scopes_and_problem_json(service) -> None:  # type: ignore[no-untyped-def]
    c = service.client
    _problem(c.get("/v1/banks"), 401, "unauthorized")
    _problem(
        c.get("/v1/banks", headers={"Authorization": "Bearer rk_nope_nope"}), 401, "unauthorized"
    )
    scan_only = service.key("scan")
    _problem(c.get("/v1/banks", headers=scan_only), 403, "forbidden")
    _problem(
        c.post("/v1/banks", json={"name": "x"}, headers=service.key("banks:read")), 403, "forbidden"
    )
    admin = service.key("admin")
    assert c.get("/v1/banks", headers=admin).json() == {"banks": []}
    # a revoked key stops working (cache: at most 2 s)
    key_id = admin["Authorization"].split("_")[1]
    from rempart.store.keys import KeyRepository

    KeyRepository(service.store).revoke(key_id)
    service.ctx._key_cache.clear()
    _problem(c.get("/v1/banks", headers=admin), 401, "unauthorized")


def test_scan_match_verdict_and_timings(service) -> None:  # type: ignore[no-untyped-def]
    c, h = service.client, service.key("admin")
    original = synthetic_photo(3)
    assert c.post("/v1/banks", json={"name": "reported"}, headers=h).status_code == 201
    r = c.post("/v1/banks/reported/entries/file", content=jpeg_bytes(original), headers=h)
    assert r.status_code == 201 and r.json()["added"] == 2
    time.sleep(0.6)  # the refresher applies the change log every 0.25 s
    copy = jpeg_bytes(EDITS["letterboxed"](original), quality=70)
    r = c.post("/v1/scan", content=copy, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verdict"] == "block"
    (m,) = body["matches"]
    assert m["bank"] == "reported" and m["signal"] == "pdq" and m["threshold"] == 31
    assert m["distance"] <= 31 and m["variant"].startswith("trimmed+")
    assert body["reasons"][0]["rule"] == "block-bank-match"
    assert body["hashes"]["pdq"] and body["hashes"]["md5"] and len(body["id"]) == 36
    assert set(body["timings_ms"]) >= {"read", "hash", "match"}
    # the same as multipart
    r = c.post("/v1/scan", files={"file": ("x.jpg", copy, "image/jpeg")}, headers=h)
    assert r.json()["verdict"] == "block"
    # an unrelated image
    r = c.post("/v1/scan", content=jpeg_bytes(synthetic_photo(4)), headers=h)
    assert r.json()["verdict"] == "allow" and r.json()["matches"] == []
    _problem(c.post("/v1/scan?bank=nope", content=copy, headers=h), 404, "bank_not_found")


def test_bad_uploads_are_clear_errors(make_service) -> None:  # type: ignore[no-untyped-def]
    service = make_service(limits={"max_bytes": 200_000})
    c, h = service.client, service.key("scan")
    _problem(c.post("/v1/scan", content=b"", headers=h), 422, "empty_file")
    _problem(
        c.post("/v1/scan", content=b"hello, not an image", headers=h), 422, "unsupported_format"
    )
    _problem(c.post("/v1/scan", content=_bomb_png(), headers=h), 422, "too_many_pixels")
    _problem(
        c.post("/v1/scan", content=jpeg_bytes(synthetic_photo(1))[:5000], headers=h),
        422,
        "truncated",
    )
    _problem(c.post("/v1/scan", content=b"\xff" * 300_000, headers=h), 413, "too_large")
    form = b'--XyZ\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--XyZ--\r\n'
    _problem(
        c.post(
            "/v1/scan",
            content=form,
            headers={**h, "Content-Type": "multipart/form-data; boundary=XyZ"},
        ),
        400,
        "bad_multipart",
    )
    assert c.get("/status/live").status_code == 200


def test_lookup(service) -> None:  # type: ignore[no-untyped-def]
    c, h = service.client, service.key("admin")
    data = jpeg_bytes(synthetic_photo(5))
    hashes = hash_media(data, limits=service.settings.limits)
    c.post("/v1/banks", json={"name": "reported", "threshold": 20}, headers=h)
    c.post(
        "/v1/banks/reported/entries",
        headers=h,
        json={
            "entries": [
                {"signal": "pdq", "value": hashes.pdq},
                {"signal": "md5", "value": hashes.md5},
            ]
        },
    )
    service.ctx.scanner.matcher.refresh()
    r = c.get(f"/v1/lookup?pdq={hashes.pdq}&md5={hashes.md5.upper()}", headers=h)
    body = r.json()
    assert r.status_code == 200 and body["verdict"] == "block"
    assert sorted(m["signal"] for m in body["matches"]) == ["md5", "pdq"]
    _problem(c.get("/v1/lookup?pdq=abc", headers=h), 422, "malformed_hash")
    _problem(c.get("/v1/lookup", headers=h), 400, "no_hash")
    _problem(c.get(f"/v1/lookup?pdq={'0' * 64}", headers=h), 422, "malformed_hash")


def test_banks_crud_entries_and_tenants(service) -> None:  # type: ignore[no-untyped-def]
    c = service.client
    a, b = service.key("admin", tenant="alpha"), service.key("admin", tenant="beta")
    r = c.post("/v1/banks", json={"name": "reported", "threshold": 25, "kind": "block"}, headers=a)
    assert r.status_code == 201 and r.json()["tenant"] == "alpha"
    _problem(c.post("/v1/banks", json={"name": "reported"}, headers=a), 409, "bank_exists")
    _problem(c.post("/v1/banks", json={"name": "bad name!"}, headers=a), 400, "bad_name")
    _problem(
        c.post("/v1/banks", json={"name": "x", "threshold": 99}, headers=a), 422, "invalid_request"
    )
    r = c.patch("/v1/banks/reported", json={"threshold": 10, "enabled": False}, headers=a)
    assert r.json()["threshold"] == 10 and r.json()["enabled"] is False
    r = c.post(
        "/v1/banks/reported/entries",
        headers=a,
        json={
            "entries": [
                {"signal": "md5", "value": "d41d8cd98f00b204e9800998ecf8427e", "tags": ["t"]}
            ]
        },
    )
    (entry_id,) = r.json()["ids"]
    got = c.get(f"/v1/banks/reported/entries/{entry_id}", headers=a).json()
    assert got["value"] == "d41d8cd98f00b204e9800998ecf8427e" and got["tags"] == ["t"]
    _problem(
        c.post(
            "/v1/banks/reported/entries",
            headers=a,
            json={"entries": [{"signal": "md5", "value": "xyz"}]},
        ),
        422,
        "malformed_hash",
    )
    # another tenant sees nothing of alpha's
    assert c.get("/v1/banks", headers=b).json() == {"banks": []}
    _problem(c.get("/v1/banks/reported", headers=b), 404, "bank_not_found")
    _problem(c.get(f"/v1/banks/reported/entries/{entry_id}", headers=b), 404, "bank_not_found")
    c.post("/v1/banks", json={"name": "mine"}, headers=b)
    _problem(c.get(f"/v1/banks/mine/entries/{entry_id}", headers=b), 404, "entry_not_found")
    assert c.delete(f"/v1/banks/reported/entries/{entry_id}", headers=a).status_code == 200
    _problem(c.delete(f"/v1/banks/reported/entries/{entry_id}", headers=a), 404, "entry_not_found")
    assert c.delete("/v1/banks/reported", headers=a).json() == {"deleted": "reported"}
    # every change is in the audit log, without content
    events = service.ctx.audit.list("alpha")
    actions = [e.action for e in events]
    assert {"bank.create", "bank.update", "entries.add", "entries.remove", "bank.delete"} <= set(
        actions
    )
    assert all("d41d8cd98f" not in str(e.details) for e in events)


def test_shared_bank_is_matched_but_not_readable(service) -> None:  # type: ignore[no-untyped-def]
    c = service.client
    a, b = service.key("admin", tenant="alpha"), service.key("admin", tenant="beta")
    data = jpeg_bytes(synthetic_photo(6))
    c.post("/v1/banks", json={"name": "ncii"}, headers=a)
    c.post("/v1/banks/ncii/entries/file", content=data, headers=a)
    service.ctx.scanner.matcher.refresh()
    assert c.post("/v1/scan", content=data, headers=b).json()["matches"] == []
    r = c.post("/v1/banks/ncii/shares", json={"tenant": "beta"}, headers=a)
    assert r.json()["shared_with"] == ["beta"]
    service.ctx._shared.clear()
    assert {m["bank"] for m in c.post("/v1/scan", content=data, headers=b).json()["matches"]} == {
        "ncii"
    }
    _problem(c.get("/v1/banks/ncii", headers=b), 404, "bank_not_found")
    _problem(c.get("/v1/banks/ncii/export", headers=b), 404, "bank_not_found")


def test_feedback_allow_bank_and_precision(service) -> None:  # type: ignore[no-untyped-def]
    c, h = service.client, service.key("admin")
    data = jpeg_bytes(synthetic_photo(7))
    c.post("/v1/banks", json={"name": "reported"}, headers=h)
    c.post("/v1/banks", json={"name": "known-fp", "kind": "allow"}, headers=h)
    c.post("/v1/banks/reported/entries/file", content=data, headers=h)
    service.ctx.scanner.matcher.refresh()
    first = c.post("/v1/scan", content=data, headers=h).json()
    assert first["verdict"] == "block"
    r = c.post(
        f"/v1/scans/{first['id']}/feedback",
        headers=h,
        json={"label": "false_positive", "note": "a meme", "allow_bank": "known-fp"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["matches_labelled"] == 2 and r.json()["allow_bank"]["added"] == 2
    service.ctx.scanner.matcher.refresh()
    again = c.post("/v1/scan", content=data, headers=h).json()
    assert again["verdict"] == "allow" and again["matches"] == []
    assert {m["bank"] for m in again["suppressed"]} == {"reported"}
    second = c.post(
        "/v1/scan", content=jpeg_bytes(synthetic_photo(7), quality=60), headers=h
    ).json()
    del second
    bank = c.get("/v1/banks/reported", headers=h).json()
    assert bank["feedback"] == {"true_positives": 0, "false_positives": 2, "precision": 0.0}
    _problem(
        c.post(
            "/v1/scans/00000000-0000-0000-0000-000000000000/feedback",
            headers=h,
            json={"label": "true_positive"},
        ),
        404,
        "scan_not_found",
    )
    _problem(
        c.post(f"/v1/scans/{first['id']}/feedback", headers=h, json={"label": "maybe"}),
        422,
        "invalid_request",
    )


def test_import_export_streamed(service) -> None:  # type: ignore[no-untyped-def]
    c, h = service.client, service.key("admin")
    c.post("/v1/banks", json={"name": "list"}, headers=h)
    good = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
    csv_body = f"signal,value\npdq,{good}\nmd5,nothex\nmd5,d41d8cd98f00b204e9800998ecf8427e\n"
    body = _problem(
        c.post("/v1/banks/list/import?format=csv", content=csv_body, headers=h),
        422,
        "import_rejected",
    )
    assert [e["line"] for e in body["errors"]] == [3]
    assert c.get("/v1/banks/list", headers=h).json()["entries"] == {}
    r = c.post("/v1/banks/list/import?format=csv&mode=partial", content=csv_body, headers=h)
    assert r.json()["added"] == 2 and len(r.json()["errors"]) == 1
    # streamed progress
    lines = "\n".join(f'{{"md5": "{i:032x}"}}' for i in range(1, 25_001))
    r = c.post(
        "/v1/banks/list/import?format=hma",
        content=lines,
        headers={**h, "Accept": "application/x-ndjson"},
    )
    events = [__import__("json").loads(x) for x in r.text.splitlines()]
    assert any("progress" in e for e in events) and events[-1]["report"]["added"] == 25_000
    exported = c.get("/v1/banks/list/export?format=csv", headers=h)
    assert exported.status_code == 200 and exported.text.count("\n") == 25_003


def test_two_workers_see_changes_within_a_second(make_service) -> None:  # type: ignore[no-untyped-def]
    one, two = make_service(), make_service()
    h = one.key("admin")
    data = jpeg_bytes(synthetic_photo(8))
    one.client.post("/v1/banks", json={"name": "reported"}, headers=h)
    assert two.client.post("/v1/scan", content=data, headers=h).json()["matches"] == []
    entry_ids = one.client.post("/v1/banks/reported/entries/file", content=data, headers=h).json()[
        "ids"
    ]
    t0 = time.monotonic()
    while not two.client.post("/v1/scan", content=data, headers=h).json()["matches"]:
        assert time.monotonic() - t0 < 1.0, "worker two did not see the add within 1 s"
        time.sleep(0.05)
    for entry_id in entry_ids:
        one.client.delete(f"/v1/banks/reported/entries/{entry_id}", headers=h)
    t0 = time.monotonic()
    while two.client.post("/v1/scan", content=data, headers=h).json()["matches"]:
        assert time.monotonic() - t0 < 1.0, "worker two did not see the removal within 1 s"
        time.sleep(0.05)


def test_rate_limit(make_service) -> None:  # type: ignore[no-untyped-def]
    service = make_service(service={"rate_limit_per_s": 1.0, "rate_limit_burst": 3})
    c, h = service.client, service.key("admin")
    codes = [c.get("/v1/banks", headers=h).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429
    r = c.get("/v1/banks", headers=h)
    _problem(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) >= 1
    # another key is not limited by this one
    assert c.get("/v1/banks", headers=service.key("admin")).status_code == 200


def test_health_and_metrics(service) -> None:  # type: ignore[no-untyped-def]
    c, h = service.client, service.key("admin")
    assert c.get("/status/live").json() == {"status": "alive"}
    ready = c.get("/status")
    assert ready.status_code == 200 and ready.json()["store"] == "ok"
    c.post("/v1/banks", json={"name": "m"}, headers=h)
    c.post("/v1/banks/m/entries/file", content=jpeg_bytes(synthetic_photo(9)), headers=h)
    service.ctx.scanner.matcher.refresh()
    c.post("/v1/scan", content=jpeg_bytes(synthetic_photo(9)), headers=h)
    text = c.get("/metrics").text
    assert 'rempart_requests_total{method="POST",route="/v1/scan",status="200"}' in text
    assert 'rempart_matches_total{bank="m",signal="pdq"}' in text
    assert "rempart_request_seconds_bucket" in text
    assert c.get("/openapi.json").json()["paths"]["/v1/scan"]["post"]
    assert c.get("/docs").status_code == 200


def test_memory_stays_bounded_under_bad_requests(service) -> None:  # type: ignore[no-untyped-def]
    import resource

    c, h = service.client, service.key("scan")
    bomb = _bomb_png()
    garbage = b"\x89PNG\r\n\x1a\n" + b"\x00" * 50_000

    def burst() -> None:
        for i in range(60):
            payload = bomb if i % 2 else garbage
            assert c.post("/v1/scan", content=payload, headers=h).status_code == 422

    burst()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    burst()
    burst()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 50, f"peak memory grew by {grown_mb:.0f} MB over 120 bad requests"
    assert c.get("/status").status_code == 200


@pytest.mark.parametrize("n", [1])
def test_image_formats_scan(service, n: int) -> None:  # type: ignore[no-untyped-def]
    c, h = service.client, service.key("scan")
    for fmt in ("PNG", "WEBP", "GIF", "BMP", "TIFF"):
        buf = io.BytesIO()
        synthetic_photo(10).save(buf, fmt)
        r = c.post("/v1/scan", content=buf.getvalue(), headers=h)
        assert r.status_code == 200, (fmt, r.text)
        assert r.json()["hashes"]["format"] == fmt.lower()


def test_scan_with_evidence_signals(service) -> None:  # type: ignore[no-untyped-def]
    from PIL import PngImagePlugin

    c, h = service.client, service.key("scan")
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a hill\nSteps: 20, Sampler: Euler a, Seed: 1, Model: sd15")
    buf = io.BytesIO()
    synthetic_photo(11).save(buf, "PNG", pnginfo=info)
    r = c.post("/v1/scan?signals=provenance", content=buf.getvalue(), headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["provenance"]["findings"][0]["source"] == "a1111"
    assert body["verdict"] == "allow" and "provenance" in body["timings_ms"]
    _problem(
        c.post("/v1/scan?signals=bogus", content=buf.getvalue(), headers=h), 400, "unknown_signal"
    )


def test_policy_per_tenant(make_service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    strict = tmp_path / "strict.toml"
    strict.write_text(
        '[[rules]]\nname = "any-generation"\nwhen = ["generation"]\naction = "review"\n'
        'priority = "low"\n'
    )
    service = make_service(policies={"strict-tenant": str(strict)})
    c = service.client
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a hill\nSteps: 20, Sampler: Euler a, Seed: 1, Model: sd15")
    buf = io.BytesIO()
    synthetic_photo(12).save(buf, "PNG", pnginfo=info)
    strict_key, default_key = service.key("scan", "strict-tenant"), service.key("scan")
    r = c.post("/v1/scan?signals=provenance", content=buf.getvalue(), headers=strict_key)
    assert (r.json()["verdict"], r.json()["priority"]) == ("review", "low")
    assert r.json()["reasons"][0]["rule"] == "any-generation"
    r = c.post("/v1/scan?signals=provenance", content=buf.getvalue(), headers=default_key)
    assert r.json()["verdict"] == "allow"
