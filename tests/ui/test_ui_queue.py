"""The review queue: ordering, previews (blurred, sealed, expiring, or off), reveal, and
the three decisions."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import select, update
from ui_helpers import UI, checkerboard, csrf_of, make_image

from rempart.store.previews import PreviewStore, previews_table
from rempart.store.scans import ScanRecord


def _record(ui: UI, scan_id: str, priority: str, age_h: float, verdict: str = "review") -> None:
    result: dict[str, Any] = {
        "matches": [],
        "verdict": verdict,
        "priority": priority,
        "reasons": [{"rule": f"rule-{scan_id}", "action": verdict}],
    }
    at = datetime.now(UTC) - timedelta(hours=age_h)
    ui.ctx.scans.record_many(
        [ScanRecord(scan_id, "default", at, "image", verdict, None, None, None, result)]
    )


def _queue_ids(html: str) -> list[str]:
    return re.findall(r'href="/ui/queue/([0-9a-z-]+)" data-open', html)


def test_queue_is_ordered_by_priority_then_age(ui: UI) -> None:
    _record(ui, "n-new", "normal", 1)
    _record(ui, "n-old", "normal", 30)
    _record(ui, "h-new", "high", 0.5)
    _record(ui, "l-old", "low", 100)
    _record(ui, "h-old", "high", 5)
    _record(ui, "blocked", "normal", 2, verdict="block")
    _record(ui, "other-tenant", "high", 9)
    ui.ctx.scans.record_many(
        [
            ScanRecord(
                "x-tenant",
                "acme",
                datetime.now(UTC),
                "image",
                "review",
                None,
                None,
                None,
                {"priority": "high"},
            )
        ]
    )
    ui.user("mod")
    ui.login("mod")
    ids = _queue_ids(ui.client.get("/ui/queue").text)
    assert ids == ["other-tenant", "h-old", "h-new", "n-old", "n-new", "l-old"]


def test_a_new_high_priority_item_comes_first_however_long_the_queue(ui: UI) -> None:
    # 520 older normal-priority items: more than one read of the queue (500) returns.
    base = datetime.now(UTC) - timedelta(days=2)
    ui.ctx.scans.record_many(
        [
            ScanRecord(
                f"n-{i:04d}",
                "default",
                base + timedelta(seconds=i),
                "image",
                "review",
                None,
                None,
                None,
                {"verdict": "review", "priority": "normal", "matches": [], "reasons": []},
            )
            for i in range(520)
        ]
    )
    _record(ui, "h-newest", "high", 0.01)
    ui.user("mod")
    ui.login("mod")
    html = ui.client.get("/ui/queue").text
    ids = _queue_ids(html)
    assert ids[0] == "h-newest" and ids[1] == "n-0000" and len(ids) == 100  # one page
    assert "1–100 of 521 item(s)" in html and "Page 1 of 6" in html
    last = _queue_ids(ui.client.get("/ui/queue?page=6").text)
    assert last == [f"n-{i:04d}" for i in range(499, 520)]
    # the item pages count and link the whole queue, not the first 500
    item = ui.client.get("/ui/queue/n-0519").text
    assert "<span>521 of 521</span>" in item
    assert 'href="/ui/queue/n-0518" rel="prev"' in item and 'rel="next"' not in item
    assert "<span>1 of 521</span>" in ui.client.get("/ui/queue/h-newest").text
    assert re.search(r"<dd>521</dd>", ui.client.get("/ui/dashboard").text)


def _laplacian_variance(gray: np.ndarray) -> float:
    g = gray.astype(np.float64)
    lap = -4 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(lap.var())


def test_a_review_scan_keeps_a_blurred_greyscale_sealed_preview(ui: UI) -> None:
    data = checkerboard()
    body = ui.reviewed(data=data)
    with ui.store.engine.connect() as conn:
        row = conn.execute(select(previews_table)).one()
    assert row.scan_id == body["id"] and row.tenant == "default"
    sealed = bytes(row.sealed)
    assert b"\xff\xd8\xff" not in sealed[:64] and b"JFIF" not in sealed  # not a plain JPEG
    assert (row.width, row.height) == (256, 256)
    opened = ui.client.app.state.ui.previews.get("default", body["id"])  # type: ignore[attr-defined]
    image = Image.open(io.BytesIO(opened.jpeg))
    assert image.mode == "L" and max(image.size) <= 320
    # Blurred before it was stored: the checkerboard's sharp edges are gone.
    stored = np.asarray(image)
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("L").resize(image.size))
    assert _laplacian_variance(stored) < 0.1 * _laplacian_variance(reference)
    # the key matters: another key opens nothing
    other = PreviewStore(ui.store, b"k" * 32)
    assert other.get("default", body["id"]) is None
    # and the tenant is bound in: another tenant gets nothing
    assert ui.client.app.state.ui.previews.get("acme", body["id"]) is None  # type: ignore[attr-defined]


def test_previews_expire_and_are_purged(ui: UI) -> None:
    body = ui.reviewed(seed=2)
    previews = ui.client.app.state.ui.previews  # type: ignore[attr-defined]
    assert previews.count() == 1
    assert previews.purge(datetime.now(UTC) + timedelta(days=6)) == 0
    # Expired rows go on access too (the background loop runs hourly).
    with ui.store.engine.begin() as conn:
        conn.execute(
            update(previews_table).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    ui.user("mod")
    ui.login("mod")
    assert ui.client.get(f"/ui/queue/{body['id']}/preview").status_code == 404
    assert previews.count() == 0


def test_retention_comes_from_settings(make_ui: Callable[..., UI]) -> None:
    ui = make_ui(preview_retention_days=2)
    ui.reviewed(seed=3)
    previews = ui.client.app.state.ui.previews  # type: ignore[attr-defined]
    assert previews.purge(datetime.now(UTC) + timedelta(days=1.9)) == 0
    assert previews.purge(datetime.now(UTC) + timedelta(days=2.1)) == 1


def test_no_preview_at_all_when_previews_are_off(make_ui: Callable[..., UI]) -> None:
    ui = make_ui(previews=False)
    body = ui.reviewed(seed=4)
    with ui.store.engine.connect() as conn:
        assert conn.execute(select(previews_table)).all() == []
    ui.user("mod")
    ui.login("mod")
    page = ui.client.get(f"/ui/queue/{body['id']}")
    assert page.status_code == 200 and "Previews are turned off" in page.text
    assert 'id="preview-img"' not in page.text


def test_no_preview_for_allowed_scans(ui: UI) -> None:
    ui.scan(make_image(50))
    with ui.store.engine.connect() as conn:
        assert conn.execute(select(previews_table)).all() == []


def test_item_page_shows_the_evidence_and_reveal_is_audited(ui: UI) -> None:
    body = ui.reviewed(seed=5)
    ui.user("mod")
    ui.login("mod")
    page = ui.client.get(f"/ui/queue/{body['id']}")
    assert page.status_code == 200
    html = page.text
    assert "review-bank-match" in html and "reported" in html  # reason and bank
    assert f"/ui/queue/{body['id']}/preview" in html and 'aria-pressed="false"' in html
    img = ui.client.get(f"/ui/queue/{body['id']}/preview")
    assert (
        img.headers["content-type"] == "image/jpeg" and img.headers["cache-control"] == "no-store"
    )
    token = csrf_of(html)
    assert ui.client.post(f"/ui/queue/{body['id']}/reveal").status_code == 403
    r = ui.client.post(f"/ui/queue/{body['id']}/reveal", headers={"X-CSRF-Token": token})
    assert r.json() == {"ok": True}
    reveals = ui.ctx.audit.list("default", action="ui.preview.reveal")
    assert [(e.actor, e.target) for e in reveals] == [("ui:mod", body["id"])]


def test_nudity_and_face_regions_are_drawn_as_boxes(ui: UI) -> None:
    body = ui.reviewed(seed=6)
    # Evidence as a scan with nudity and faces signals records it (no model needed here).
    from sqlalchemy import select as sel

    from rempart.store.models import Scan

    table = Scan.__table__
    with ui.store.engine.begin() as conn:
        result = dict(
            conn.execute(sel(table.c.result).where(table.c.id == body["id"])).scalar_one()
        )
        result["evidence"] = {
            "nudity": {
                "regions": [
                    {"class": "X", "score": 0.9, "box": [10, 20, 110, 140], "exposure": "exposed"}
                ],
                "threshold": 0.5,
            },
            "faces": [
                {
                    "box": [5, 5, 50, 60],
                    "score": 0.99,
                    "matches": [{"person": "p-1", "distance": 0.41, "threshold": 0.6}],
                }
            ],
            "provenance": {
                "findings": [
                    {"source": "c2pa", "strength": "strong", "summary": "made by a generator"}
                ]
            },
        }
        conn.execute(update(table).where(table.c.id == body["id"]).values(result=result))
    ui.user("mod")
    ui.login("mod")
    html = ui.client.get(f"/ui/queue/{body['id']}").text
    assert 'viewBox="0 0 256 256"' in html
    assert 'class="box box-nudity" x="10" y="20" width="100" height="120"' in html
    assert 'class="box box-face"' in html
    assert "p-1" in html and "not an identification" in html
    assert "made by a generator" in html


def _decide(ui: UI, scan_id: str, **data: str) -> Any:
    token = csrf_of(ui.client.get(f"/ui/queue/{scan_id}").text)
    return ui.client.post(
        f"/ui/queue/{scan_id}/decide", data={"csrf": token, **data}, follow_redirects=False
    )


def test_confirm_adds_the_hashes_to_a_block_bank_and_leaves_the_queue(ui: UI) -> None:
    first = ui.reviewed(seed=7)
    second = ui.reviewed(seed=8)
    ui.store.create_bank("confirmed")
    ui.user("mod")
    ui.login("mod")
    r = _decide(ui, first["id"], decision="confirm", block_bank="confirmed")
    assert r.status_code == 303 and r.headers["location"].startswith(f"/ui/queue/{second['id']}")
    scan = ui.ctx.scans.get("default", first["id"])
    entries = list(ui.store.iter_entries("confirmed", tenant="default"))
    assert {(e.signal, e.value) for e in entries} == {("pdq", scan.pdq), ("md5", scan.md5)}
    assert ui.ctx.scans.precision()[ui.store.get_bank("reported").id].true_positives == 1
    assert first["id"] not in ui.client.get("/ui/queue").text
    assert [e.target for e in ui.ctx.audit.list("default", action="ui.review.confirm")] == [
        first["id"]
    ]
    # the preview has done its job
    assert ui.client.app.state.ui.previews.get("default", first["id"]) is None  # type: ignore[attr-defined]
    page = ui.client.get(f"/ui/queue/{first['id']}").text
    assert "The preview was deleted when this item was decided" in page


def test_confirm_needs_a_block_bank(ui: UI) -> None:
    body = ui.reviewed(seed=9)
    ui.store.create_bank("fine", kind="allow")
    ui.user("mod")
    ui.login("mod")
    r = _decide(ui, body["id"], decision="confirm", block_bank="fine")
    assert r.status_code == 303 and "error=" in r.headers["location"]
    assert body["id"] in ui.client.get("/ui/queue").text


def test_reject_labels_a_false_positive_and_can_allow_list(ui: UI) -> None:
    body = ui.reviewed(seed=10)
    ui.store.create_bank("known-fp", kind="allow")
    ui.user("mod")
    ui.login("mod")
    r = _decide(ui, body["id"], decision="reject", allow_bank="known-fp")
    assert r.status_code == 303
    assert ui.ctx.scans.precision()[ui.store.get_bank("reported").id].false_positives == 1
    assert ui.store.get_bank("known-fp").entry_count == 2
    assert body["id"] not in ui.client.get("/ui/queue").text
    # a decided item is done: deciding again is refused, the labels are not doubled
    again = _decide(ui, body["id"], decision="confirm", block_bank="reported")
    assert again.headers["location"] == f"/ui/queue/{body['id']}?error=already_decided"
    shown = ui.client.get(again.headers["location"]).text
    assert "This item was already decided" in shown
    assert ui.ctx.scans.precision()[ui.store.get_bank("reported").id].false_positives == 1


def test_escalate_moves_the_item_to_the_escalated_list(ui: UI) -> None:
    body = ui.reviewed(seed=11)
    ui.user("mod")
    ui.login("mod")
    assert _decide(ui, body["id"], decision="escalate").status_code == 303
    assert body["id"] not in ui.client.get("/ui/queue").text
    assert body["id"] in ui.client.get("/ui/queue?view=escalated").text
    # an escalated item keeps its preview until someone decides
    assert ui.client.get(f"/ui/queue/{body['id']}/preview").status_code == 200


def test_a_note_goes_with_the_decision_taken_and_into_the_audit_log(ui: UI) -> None:
    body = ui.reviewed(seed=12)
    ui.store.create_bank("confirmed")
    ui.store.create_bank("known-fp", kind="allow")
    ui.user("mod")
    ui.login("mod")
    # one form sends both bank choices; escalating adds nothing to either bank
    note = "Same <b>series</b> as last week's reports."
    r = _decide(
        ui,
        body["id"],
        decision="escalate",
        block_bank="confirmed",
        allow_bank="known-fp",
        note=note,
    )
    assert r.status_code == 303
    assert ui.store.get_bank("confirmed").entry_count == 0
    assert ui.store.get_bank("known-fp").entry_count == 0
    page = ui.client.get(f"/ui/queue/{body['id']}").text
    assert 'id="decided-note"' in page and "Same &lt;b&gt;series&lt;/b&gt;" in page  # escaped
    assert "escalated by ui:mod" in page
    [entry] = ui.ctx.audit.list("default", action="ui.review.escalate")
    assert entry.details["note"] == note
    # rejecting uses the allow bank only, with its own note
    r = _decide(
        ui,
        body["id"],
        decision="reject",
        block_bank="confirmed",
        allow_bank="known-fp",
        note="a holiday photo",
    )
    assert r.status_code == 303 and "error" not in r.headers["location"]
    assert ui.store.get_bank("confirmed").entry_count == 0
    assert ui.store.get_bank("known-fp").entry_count == 2
    decided = ui.client.get(f"/ui/queue/{body['id']}").text
    assert "rejected by ui:mod" in decided and "a holiday photo" in decided
    assert 'id="decide-form"' not in decided  # done: no more buttons
    # a note longer than the form allows is refused, not cut
    other = ui.reviewed(seed=13)
    r = _decide(ui, other["id"], decision="escalate", note="x" * 2001)
    assert r.status_code == 422
    assert ui.ctx.audit.list("default", action="ui.review.escalate")[0].target == body["id"]
