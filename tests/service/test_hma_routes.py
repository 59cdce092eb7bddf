"""HMA 2.0 compatibility routes (/m, /c): HMA's shapes on Rempart's banks, with generated
hashes and images only."""

from __future__ import annotations

import random

from rempart.examples import jpeg_bytes, synthetic_photo


def _problem(resp, status: int, code: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """A Rempart problem that also carries HMA's ``message``."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status and body["code"] == code
    assert body["title"] and body["detail"] and body["type"].endswith(code)
    assert body["message"] == body["detail"]
    return body  # type: ignore[no-any-return]


def _pdq(seed: int) -> str:
    return f"{random.Random(seed).getrandbits(256):064x}"


def _flip(hex_hash: str, bits: int) -> str:
    """The hash with its first ``bits`` bits flipped (Hamming distance ``bits``)."""
    value = int(hex_hash, 16) ^ ((1 << bits) - 1) << (256 - bits)
    return f"{value:064x}"


def test_banks_list_create_get_update_delete(service) -> None:  # type: ignore[no-untyped-def]
    c, h = service.client, service.key("admin")
    assert c.get("/c/banks", headers=h).json() == []
    r = c.post("/c/banks", json={"name": "MY_TEST_BANK_01"}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json() == {"name": "MY_TEST_BANK_01", "matching_enabled_ratio": 1.0}
    assert c.get("/c/banks", headers=h).json() == [r.json()]
    assert c.get("/c/bank/MY_TEST_BANK_01", headers=h).json() == r.json()
    # the same bank through /v1: a block bank with the default threshold
    v1 = c.get("/v1/banks/MY_TEST_BANK_01", headers=h).json()
    assert v1["kind"] == "block" and v1["threshold"] == 31 and v1["enabled"] is True

    _problem(c.post("/c/banks", json={"name": "MY_TEST_BANK_01"}, headers=h), 409, "bank_exists")
    _problem(c.post("/c/banks", json={"name": "no spaces"}, headers=h), 400, "bad_name")
    _problem(c.post("/c/banks", json={}, headers=h), 422, "invalid_request")
    _problem(c.get("/c/bank/NOPE", headers=h), 404, "bank_not_found")

    r = c.put("/c/bank/MY_TEST_BANK_01", json={"enabled": False}, headers=h)
    assert r.json() == {"name": "MY_TEST_BANK_01", "matching_enabled_ratio": 0.0}
    assert c.get("/v1/banks/MY_TEST_BANK_01", headers=h).json()["enabled"] is False
    r = c.put("/c/bank/MY_TEST_BANK_01", json={"enabled_ratio": 1.0}, headers=h)
    assert r.json()["matching_enabled_ratio"] == 1.0
    # unchanged name is fine; a rename or a sampled ratio is refused, with a reason
    r = c.put("/c/bank/MY_TEST_BANK_01", json={"name": "MY_TEST_BANK_01"}, headers=h)
    assert r.status_code == 200
    _problem(
        c.put("/c/bank/MY_TEST_BANK_01", json={"name": "RENAMED"}, headers=h),
        400,
        "rename_unsupported",
    )
    _problem(
        c.put("/c/bank/MY_TEST_BANK_01", json={"enabled_ratio": 0.5}, headers=h),
        400,
        "unsupported_enabled_ratio",
    )
    _problem(
        c.put("/c/bank/MY_TEST_BANK_01", json={"enabled_ratio": 2}, headers=h),
        422,
        "invalid_request",
    )
    _problem(c.put("/c/bank/NOPE", json={"enabled": True}, headers=h), 404, "bank_not_found")
    r = c.post("/c/banks", json={"name": "OFF", "enabled": False}, headers=h)
    assert r.json() == {"name": "OFF", "matching_enabled_ratio": 0.0}

    # deleting is idempotent, as in HMA
    assert c.delete("/c/bank/MY_TEST_BANK_01", headers=h).json() == {"message": "Done"}
    assert c.delete("/c/bank/MY_TEST_BANK_01", headers=h).json() == {"message": "Done"}
    assert [b["name"] for b in c.get("/c/banks", headers=h).json()] == ["OFF"]
    actions = [e.action for e in service.ctx.audit.list("default")]
    assert {"bank.create", "bank.update", "bank.delete"} <= set(actions)


def test_auth_scopes_and_tenants(service) -> None:  # type: ignore[no-untyped-def]
    c = service.client
    body = _problem(c.get("/c/banks"), 401, "unauthorized")
    assert "Bearer" in body["hint"]
    assert c.get("/c/banks").headers["WWW-Authenticate"].startswith("Bearer")
    _problem(c.get("/m/raw_lookup?signal_type=pdq&signal=" + _pdq(1)), 401, "unauthorized")
    reader = service.key("banks:read")
    _problem(c.post("/c/banks", json={"name": "X"}, headers=reader), 403, "forbidden")
    _problem(c.get("/m/lookup?signal_type=pdq&signal=" + _pdq(1), headers=reader), 403, "forbidden")
    _problem(c.get("/c/banks", headers=service.key("scan")), 403, "forbidden")
    # another tenant neither sees nor changes this tenant's banks
    h = service.key("admin")
    c.post("/c/banks", json={"name": "MINE"}, headers=h)
    other = service.key("admin", tenant="other")
    assert c.get("/c/banks", headers=other).json() == []
    _problem(c.get("/c/bank/MINE", headers=other), 404, "bank_not_found")
    c.delete("/c/bank/MINE", headers=other)
    assert c.get("/c/bank/MINE", headers=h).status_code == 200


def test_add_signals_and_hash_lookups(service) -> None:  # type: ignore[no-untyped-def]
    c, h = service.client, service.key("admin")
    for name in ("BANK_A", "BANK_B"):
        c.post("/c/banks", json={"name": name}, headers=h)
    pdq, md5 = _pdq(7), "0123456789abcdef0123456789abcdef"
    r = c.post("/c/bank/BANK_A/signal", json={"pdq": pdq, "note": "from a report"}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["signals"] == {"pdq": pdq} and body["entry_ids"] == {"pdq": body["id"]}
    a_id = body["id"]
    # the same hash again keeps its id
    assert c.post("/c/bank/BANK_A/signal", json={"pdq": pdq}, headers=h).json()["id"] == a_id
    r = c.post("/c/bank/BANK_B/signal", json={"pdq": pdq, "video_md5": md5}, headers=h)
    b_ids = r.json()["entry_ids"]
    assert r.json()["signals"] == {"pdq": pdq, "video_md5": md5}
    assert set(b_ids) == {"pdq", "video_md5"} and r.json()["id"] == b_ids["pdq"]
    _problem(
        c.post("/c/bank/BANK_A/signal", json={"tmk": "00"}, headers=h), 400, "unknown_signal_type"
    )
    _problem(c.post("/c/bank/BANK_A/signal", json={"pdq": "zz"}, headers=h), 422, "malformed_hash")
    _problem(c.post("/c/bank/BANK_A/signal", json={}, headers=h), 400, "no_signals")
    _problem(c.post("/c/bank/NOPE/signal", json={"pdq": pdq}, headers=h), 404, "bank_not_found")
    _problem(
        c.post("/c/bank/BANK_A/signal", json={"pdq": _pdq(8), "note": "x" * 256}, headers=h),
        400,
        "bad_note",
    )
    service.ctx.scanner.matcher.refresh()

    near = _flip(pdq, 3)
    raw = c.get(f"/m/raw_lookup?signal_type=pdq&signal={near}", headers=h)
    assert raw.status_code == 200, raw.text
    assert sorted(raw.json()["matches"]) == sorted([a_id, b_ids["pdq"]])
    raw = c.get(
        f"/m/raw_lookup?signal_type=pdq&signal={near}&banks=BANK_A,NOPE&include_distance=true",
        headers=h,
    )
    assert raw.json() == {"matches": [{"bank_content_id": a_id, "distance": "3"}]}
    raw = c.get(f"/m/raw_lookup?signal_type=pdq&signal={near}&banks=NOPE", headers=h)
    assert raw.json() == {"matches": []}
    raw = c.get(f"/m/raw_lookup?signal_type=video_md5&signal={md5}", headers=h)
    assert raw.json() == {"matches": [b_ids["video_md5"]]}
    assert c.get(f"/m/raw_lookup?signal_type=pdq&signal={_flip(pdq, 40)}", headers=h).json() == {
        "matches": []
    }

    r = c.get(f"/m/lookup?signal_type=pdq&signal={near}", headers=h)
    assert r.json() == {
        "BANK_A": [{"bank_content_id": a_id, "distance": "3"}],
        "BANK_B": [{"bank_content_id": b_ids["pdq"], "distance": "3"}],
    }
    r = c.get(f"/m/lookup?signal_type=pdq&signal={near}&banks=BANK_B&seed=x", headers=h)
    assert list(r.json()) == ["BANK_B"]
    r = c.get(f"/m/lookup?signal_type=md5&signal={md5}", headers=h)
    assert r.json() == {"BANK_B": [{"bank_content_id": b_ids["video_md5"], "distance": "0"}]}
    # a disabled bank does not match in /m/lookup
    c.put("/c/bank/BANK_B", json={"enabled": False}, headers=h)
    service.ctx.scanner.matcher.refresh()
    assert list(c.get(f"/m/lookup?signal_type=pdq&signal={pdq}", headers=h).json()) == ["BANK_A"]
    r = c.get(f"/m/lookup?signal_type=pdq&signal={pdq}&banks=BANK_B", headers=h)
    assert r.json() == {}
    # ... while a raw lookup searches a disabled bank when it is named (as HMA's does)
    r = c.get(f"/m/raw_lookup?signal_type=pdq&signal={pdq}&banks=BANK_B", headers=h)
    assert r.json() == {"matches": [b_ids["pdq"]]}

    _problem(
        c.get(f"/m/lookup?signal_type=tmk&signal={pdq}", headers=h), 400, "unknown_signal_type"
    )
    _problem(c.get("/m/lookup?signal_type=pdq&signal=abc", headers=h), 422, "malformed_hash")
    _problem(c.get("/m/lookup?signal_type=pdq", headers=h), 400, "no_hash")
    _problem(c.get("/m/lookup?url=http://127.0.0.1/x.jpg", headers=h), 400, "url_fetch_unsupported")
    _problem(c.get("/m/raw_lookup?signal_type=pdq", headers=h), 422, "invalid_request")


def test_compare(service) -> None:  # type: ignore[no-untyped-def]
    c, h = service.client, service.key("scan")
    a = _pdq(11)
    r = c.post("/m/compare", json={"pdq": [a, _flip(a, 9)]}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == {"pdq": [True, {"distance": 9}]}
    r = c.post(
        "/m/compare", json={"pdq": [a, _flip(a, 32)], "md5": ["0" * 32, "0" * 32]}, headers=h
    )
    assert r.json() == {"pdq": [False, {"distance": 32}], "md5": [True, {}]}
    _problem(c.post("/m/compare", json=["banana"], headers=h), 422, "invalid_request")
    _problem(c.post("/m/compare", json={"pdq": "banana"}, headers=h), 422, "invalid_request")
    _problem(c.post("/m/compare", json={"pdq": []}, headers=h), 400, "bad_compare")
    _problem(c.post("/m/compare", json={"pdq": [a, a, a]}, headers=h), 400, "bad_compare")
    _problem(
        c.post("/m/compare", json={"pdq": ["banana", "banana"]}, headers=h), 422, "malformed_hash"
    )
    _problem(c.post("/m/compare", json={"tmk": [a, a]}, headers=h), 400, "unknown_signal_type")


def test_upload_content_lookup_and_remove(service) -> None:  # type: ignore[no-untyped-def]
    c, h = service.client, service.key("admin")
    c.post("/c/banks", json={"name": "REPORTED"}, headers=h)
    photo = jpeg_bytes(synthetic_photo(21))
    r = c.post(
        "/c/bank/REPORTED/content", files={"photo": ("p.jpg", photo, "image/jpeg")}, headers=h
    )
    assert r.status_code == 200, r.text
    added = r.json()
    assert set(added["signals"]) == {"pdq", "md5"} and added["id"] == added["entry_ids"]["pdq"]
    _problem(
        c.post("/c/bank/REPORTED/content?url=http://127.0.0.1/p.jpg", headers=h),
        400,
        "url_fetch_unsupported",
    )
    _problem(
        c.post("/c/bank/REPORTED/content", content=b"not media", headers=h),
        422,
        "unsupported_format",
    )
    service.ctx.scanner.matcher.refresh()

    # the same photo, re-encoded, found through HMA's upload form
    copy = jpeg_bytes(synthetic_photo(21), quality=70)
    r = c.post("/m/lookup", files={"photo": ("c.jpg", copy, "image/jpeg")}, headers=h)
    assert r.status_code == 200, r.text
    (match,) = r.json()["pdq"]["REPORTED"]
    assert match["bank_content_id"] == added["id"] and int(match["distance"]) <= 31
    assert len(r.headers["Rempart-Scan-Id"]) == 36
    # the exact bytes also match by MD5
    r = c.post("/m/lookup", files={"photo": ("p.jpg", photo, "image/jpeg")}, headers=h)
    assert set(r.json()) == {"pdq", "md5"}
    assert r.json()["md5"]["REPORTED"][0]["bank_content_id"] == added["entry_ids"]["md5"]
    unrelated = jpeg_bytes(synthetic_photo(22))
    assert c.post("/m/lookup", content=unrelated, headers=h).json() == {"pdq": {}}
    _problem(c.post("/m/lookup", content=b"", headers=h), 422, "empty_file")

    # content: get, then remove (it stops matching)
    r = c.get(f"/c/bank/REPORTED/content/{added['id']}?include_signals=true", headers=h)
    assert r.json() == {
        "id": added["id"],
        "disable_until_ts": 1,
        "original_media_uri": None,
        "bank": {"name": "REPORTED", "matching_enabled_ratio": 1.0},
        "signals": {"pdq": added["signals"]["pdq"]},
    }
    c.post("/c/banks", json={"name": "OTHER"}, headers=h)
    _problem(c.get(f"/c/bank/OTHER/content/{added['id']}", headers=h), 404, "entry_not_found")
    _problem(c.get("/c/bank/REPORTED/content/999999", headers=h), 404, "entry_not_found")
    # an id past 64 bits is a bad request, not a database error (found by schemathesis)
    _problem(c.get(f"/c/bank/REPORTED/content/{2**63}", headers=h), 422, "invalid_request")
    _problem(c.delete(f"/c/bank/REPORTED/content/{2**63}", headers=h), 422, "invalid_request")
    path = f"/c/bank/REPORTED/content/{added['id']}"
    assert c.delete(path, headers=h).json() == {"deleted": 1}
    assert c.delete(path, headers=h).json() == {"deleted": 0}
    service.ctx.scanner.matcher.refresh()
    r = c.post("/m/lookup", files={"photo": ("c.jpg", copy, "image/jpeg")}, headers=h)
    assert r.json() == {"pdq": {}}


def test_note_is_kept(service) -> None:  # type: ignore[no-untyped-def]
    c, h = service.client, service.key("admin")
    c.post("/c/banks", json={"name": "NOTES"}, headers=h)
    r = c.post("/c/bank/NOTES/signal", json={"pdq": _pdq(31), "note": "ticket 42"}, headers=h)
    body = c.get(f"/c/bank/NOTES/content/{r.json()['id']}", headers=h).json()
    assert body["note"] == "ticket 42" and "signals" not in body and "metadata" not in body


def test_openapi_lists_the_hma_routes(service) -> None:  # type: ignore[no-untyped-def]
    paths = service.client.get("/openapi.json").json()["paths"]
    for path in ("/m/lookup", "/m/raw_lookup", "/m/compare", "/c/banks", "/c/bank/{bank_name}"):
        assert path in paths
    assert "post" in paths["/m/lookup"] and "put" in paths["/c/bank/{bank_name}"]
