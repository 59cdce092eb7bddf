"""Review previews over the service's life: purged at start-up and periodically without any
UI request, never served once turned off, readable by every worker and after restarts
without a configured secret, and reported "unavailable" when sealed under another key."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from ui_helpers import UI, make_image

from rempart.store import Store
from rempart.store.instance_secrets import instance_secret, secrets_table
from rempart.store.previews import previews_table


def _kept(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(previews_table)).scalar_one())


def _expire_all(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            update(previews_table).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )


def test_expired_previews_are_purged_at_start_up_without_a_ui_request(
    make_ui: Callable[..., UI],
) -> None:
    first = make_ui()
    first.reviewed(seed=20)
    _expire_all(first.store)
    assert _kept(first.store) == 1
    # A restart (a new app on the same store) that no moderator opens the UI of.
    second = make_ui()
    assert second.client.get("/status").status_code == 200
    assert _kept(second.store) == 0


def test_expired_previews_are_purged_periodically(make_ui: Callable[..., UI]) -> None:
    # Retention of about 2 s: the purge loop runs every retention/4 (capped at an hour).
    ui = make_ui(preview_retention_days=2 / 86400)
    ui.reviewed(seed=21)
    assert _kept(ui.store) == 1
    deadline = time.monotonic() + 15
    while _kept(ui.store) and time.monotonic() < deadline:  # no UI request meanwhile
        time.sleep(0.1)
    assert _kept(ui.store) == 0


def test_turning_previews_off_purges_them_and_never_serves_them(
    make_ui: Callable[..., UI],
) -> None:
    on = make_ui()
    body = on.reviewed(seed=22)
    assert _kept(on.store) == 1
    off = make_ui(previews=False)
    assert _kept(off.store) == 0  # deleted when the service started with previews off
    # One sealed after that start (by a worker still running with previews on) is not
    # served by the one that has them off, and the page says previews are off.
    on.client.app.state.ui.previews.put("default", body["id"], b"\xff\xd8jpeg", 256, 256)  # type: ignore[attr-defined]
    off.user("mod")
    off.login("mod")
    assert off.client.get(f"/ui/queue/{body['id']}/preview").status_code == 404
    page = off.client.get(f"/ui/queue/{body['id']}").text
    assert "Previews are turned off" in page and 'id="preview-img"' not in page


def test_previews_and_sessions_work_across_workers_without_a_session_secret(
    make_ui: Callable[..., UI],
) -> None:
    # Two workers (apps) on one store, neither with ui.session_secret or ui.preview_key.
    a = make_ui(session_secret=None)
    b = make_ui(session_secret=None)
    body = a.reviewed(seed=23)  # sealed by worker a
    a.user("mod")
    assert a.login("mod").status_code == 303
    b.client.cookies.update(a.client.cookies)  # the load balancer sends her to worker b
    page = b.client.get(f"/ui/queue/{body['id']}", follow_redirects=False)
    assert page.status_code == 200 and 'id="preview-img"' in page.text
    img = b.client.get(f"/ui/queue/{body['id']}/preview")
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    # and after a restart of both, with nothing configured, the same still holds
    c = make_ui(session_secret=None)
    c.client.cookies.update(a.client.cookies)
    assert c.client.get(f"/ui/queue/{body['id']}/preview").status_code == 200
    with c.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(secrets_table)).scalar_one() == 1


def test_concurrent_first_use_agrees_on_one_secret(db_url: str) -> None:
    stores = [Store.open(db_url) for _ in range(4)]
    got: list[bytes] = []
    start = threading.Barrier(len(stores))

    def worker(store: Store) -> None:
        start.wait()
        got.append(instance_secret(store))

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert len(got) == 4 and len(set(got)) == 1 and len(got[0]) == 32


def test_a_preview_sealed_under_another_key_is_unavailable_not_broken(
    make_ui: Callable[..., UI],
) -> None:
    first = make_ui()
    body = first.reviewed(seed=24)
    rekeyed = make_ui(preview_key="ab" * 32)  # the operator set a new preview key
    rekeyed.user("mod")
    rekeyed.login("mod")
    page = rekeyed.client.get(f"/ui/queue/{body['id']}").text
    assert "Preview unavailable" in page and 'id="preview-img"' not in page
    assert rekeyed.client.get(f"/ui/queue/{body['id']}/preview").status_code == 404
    # the decision buttons are still there: she decides from the matches
    assert 'id="decide-confirm"' in page


def test_the_hma_upload_lookup_keeps_a_preview_of_a_review_item(ui: UI) -> None:
    data = make_image(25)
    body = ui.reviewed(seed=25, data=data)  # banks the file (and scans it once via /v1)
    assert _kept(ui.store) == 1
    r = ui.client.post("/m/lookup", content=data, headers=ui.api_key())
    assert r.status_code == 200, r.text
    ui.ctx.flush()
    scan_id = r.headers["Rempart-Scan-Id"]
    assert scan_id != body["id"] and _kept(ui.store) == 2
    assert ui.client.app.state.ui.previews.get("default", scan_id) is not None  # type: ignore[attr-defined]
