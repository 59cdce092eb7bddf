"""The service refuses tenants' webhook and feed URLs that point at private addresses."""

from __future__ import annotations

from typing import Any


def test_service_refuses_private_webhook_and_feed_urls(make_service: Any) -> None:
    service = make_service()
    c, h = service.client, service.key("admin")
    r = c.post("/v1/webhooks", headers=h, json={"url": "http://127.0.0.1:9/x", "events": ["match"]})
    assert r.status_code == 422 and r.json()["code"] == "forbidden_destination"
    c.post("/v1/banks", headers=h, json={"name": "b"})
    r = c.post(
        "/v1/feeds",
        headers=h,
        json={"bank": "b", "name": "f", "kind": "jsonl", "url": "http://169.254.169.254/x"},
    )
    assert r.status_code == 422 and r.json()["code"] == "forbidden_destination"
    assert c.get("/v1/webhooks", headers=h).json()["webhooks"] == []
    # Public names are accepted when registered (and checked again when connecting).
    r = c.post(
        "/v1/webhooks", headers=h, json={"url": "https://hooks.example.org/r", "events": ["match"]}
    )
    assert r.status_code == 201


def test_operator_can_allow_private_destinations(make_service: Any) -> None:
    service = make_service(service={"egress_allow_private": True})
    c, h = service.client, service.key("admin")
    r = c.post("/v1/webhooks", headers=h, json={"url": "http://10.0.0.5/x", "events": ["match"]})
    assert r.status_code == 201
