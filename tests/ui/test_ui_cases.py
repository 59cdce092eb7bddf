"""The operator's cases pages: status, alerts, notices and deadlines, evidence package."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

from ui_helpers import UI, make_image

from rempart.cases import build_submission, load_submission
from rempart.cases.signing import generate_key, write_key
from rempart.settings import MediaLimits
from rempart.store.cases import CaseRepository
from rempart.store.notices import NoticeRepository


def _case_with_alert(ui: UI, tmp_path: Path) -> tuple[str, str]:
    folder = tmp_path / "mine"
    folder.mkdir()
    image = make_image(77)
    (folder / "x.png").write_bytes(image)
    submission = load_submission(build_submission([folder], limits=MediaLimits()).to_json())
    number = CaseRepository(ui.store, ui.settings).submit(submission).number
    ui.ctx.scanner.matcher.refresh()
    scan = ui.scan(image)  # matches the global cases bank: an alert for her case
    ui.ctx.flush()
    return number, scan["id"]


def test_only_case_operators_see_cases(make_ui: Callable[..., UI], tmp_path: Path) -> None:
    ui = make_ui(case_operators=["op"])
    ui.user("boss", "admin")
    ui.user("op", "admin")
    ui.login("boss")
    assert ui.client.get("/ui/cases").status_code == 403
    ui.client.cookies.clear()
    ui.login("op")
    page = ui.client.get("/ui/cases")
    assert page.status_code == 200 and "No case yet" in page.text


def test_case_page_shows_status_alerts_notices_and_the_package(
    make_ui: Callable[..., UI], tmp_path: Path
) -> None:
    key_file = tmp_path / "signing.key"
    write_key(generate_key(), key_file)
    ui = make_ui(case_operators=["op"])
    ui.settings.evidence = ui.settings.evidence.model_copy(update={"signing_key_file": key_file})
    number, scan_id = _case_with_alert(ui, tmp_path)
    now = datetime.now(UTC)
    NoticeRepository(ui.store).create(
        tenant="default",
        kind="dsa",
        lang="fr",
        platform="example.social",
        recipient="abuse@example.social",
        sender={"name": "Support"},
        items=[{"url": "https://example.social/p/1"}],
        sent_at=now - timedelta(days=3),
        deadline=now - timedelta(days=1),
        case_number=number,
    )
    ui.user("op", "admin")
    ui.login("op")
    listing = ui.client.get("/ui/cases").text
    assert number in listing
    page = ui.client.get(f"/ui/cases/{number}")
    assert page.status_code == 200
    html = page.text
    assert scan_id in html and "example.social" in html and "overdue" in html
    assert [e.target for e in ui.ctx.audit.list("default", action="ui.case.view")] == [number]
    package = ui.client.get(f"/ui/cases/{number}/evidence")
    assert package.status_code == 200, package.text
    assert package.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(BytesIO(package.content)).namelist()
    assert any(n.endswith(".json") for n in names)
    assert not any(n.endswith((".png", ".jpg")) for n in names)
    assert ui.ctx.audit.list("default", action="ui.case.evidence")
    assert ui.client.get("/ui/cases/RMP-NOPE").status_code == 404


def test_the_case_page_speaks_french(make_ui: Callable[..., UI], tmp_path: Path) -> None:
    ui = make_ui(case_operators=["op"])
    number, _ = _case_with_alert(ui, tmp_path)
    now = datetime.now(UTC)
    NoticeRepository(ui.store).create(
        tenant="default",
        kind="pharos",
        lang="fr",
        platform="example.social",
        recipient="abuse@example.social",
        sender={"name": "Support"},
        items=[{"url": "https://example.social/p/1"}],
        sent_at=now,
        deadline=None,
        case_number=number,
    )
    ui.user("op", "admin")
    ui.login("op")
    html = ui.client.get(f"/ui/cases/{number}?lang=fr").text
    alerts = html[html.index('id="alerts"') : html.index("</table>", html.index('id="alerts"'))]
    assert "courriel\u00a0: aucun" in alerts and "webhook\u00a0: aucun" in alerts
    assert "e-mail:" not in alerts and "hash_match" not in alerts
    assert "empreinte correspondante" in alerts
    notices = html[html.index('id="notices"') :]
    assert "signalement Pharos" in notices and "à envoyer" in notices
    assert "to_send" not in notices and ">pharos<" not in notices
