"""Decisions: atomic under concurrency, closed by API feedback too, and telling victims'
cases for real (a case submitted, an alert waiting on review, made active by a confirm)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from ui_helpers import UI, csrf_of, make_image

from rempart.cases import build_submission, load_submission
from rempart.service.ui import decisions
from rempart.settings import MediaLimits
from rempart.store.cases import CaseRepository
from rempart.store.models import Feedback
from rempart.store.reviews import AlreadyDecided


def _feedback_rows(ui: UI, scan_id: str) -> int:
    table = Feedback.__table__
    with ui.store.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(table).where(table.c.scan_id == scan_id)
            ).scalar_one()
        )


def _decide(ui: UI, scan_id: str, **data: str) -> Any:
    token = csrf_of(ui.client.get(f"/ui/queue/{scan_id}").text)
    return ui.client.post(
        f"/ui/queue/{scan_id}/decide", data={"csrf": token, **data}, follow_redirects=False
    )


def _race(
    state: Any, scan_id: str, *contenders: tuple[Any, str, str]
) -> tuple[list[Any], list[Any]]:
    """Every contender ``(user, decision, bank)`` decides ``scan_id`` at the same instant;
    ``(outcomes, refusals)``."""
    start = threading.Barrier(len(contenders))
    won: list[Any] = []
    lost: list[AlreadyDecided] = []

    def go(user: Any, decision: str, bank: str) -> None:
        start.wait()
        try:
            won.append(decisions.decide(state, user, scan_id, decision, bank=bank))
        except AlreadyDecided as refused:
            lost.append(refused)

    threads = [threading.Thread(target=go, args=c) for c in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won, lost


def test_two_concurrent_decisions_exactly_one_wins(ui: UI) -> None:
    ui.store.create_bank("confirmed")
    ui.store.create_bank("known-fp", kind="allow")
    ana, bob = ui.user("ana"), ui.user("bob")
    state = ui.client.app.state.ui  # type: ignore[attr-defined]
    for seed in range(30, 34):
        scan_id = ui.reviewed(seed=seed)["id"]
        matches = len(ui.ctx.scans.get("default", scan_id).result["matches"])
        won, lost = _race(
            state, scan_id, (ana, "confirm", "confirmed"), (bob, "reject", "known-fp")
        )
        assert len(won) == 1 and len(lost) == 1, (won, lost)
        assert lost[0].code == "already_decided"
        # the matches are labelled once, and only the winner's bank got the hashes
        assert _feedback_rows(ui, scan_id) == matches
        loser_bank = "known-fp" if won[0].decision == "confirm" else "confirmed"
        assert not [
            e for e in ui.store.iter_entries(loser_bank, tenant="default") if scan_id in e.source
        ]
    audits = ui.ctx.audit.list("default", action="ui.review.confirm") + ui.ctx.audit.list(
        "default", action="ui.review.reject"
    )
    assert len(audits) == 4


def test_a_failed_decision_gives_the_item_back_to_the_queue(ui: UI) -> None:
    first, second = ui.reviewed(seed=34), ui.reviewed(seed=35)
    ui.store.create_bank("confirmed")
    user = ui.user("mod")
    state = ui.client.app.state.ui  # type: ignore[attr-defined]
    decisions.decide(state, user, second["id"], "escalate", note="for an admin")
    # Labelling fails after the claim (here: the feedback table is gone).
    with ui.store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE feedback")
    with pytest.raises(Exception, match="feedback"):
        decisions.decide(state, user, first["id"], "reject")
    assert state.queue.decision("default", first["id"]) is None
    assert [i.scan_id for i in state.queue.pending("default")] == [first["id"]]
    with pytest.raises(Exception, match="feedback"):
        decisions.decide(state, user, second["id"], "confirm", bank="confirmed")
    back = state.queue.decision("default", second["id"])
    assert (back.decision, back.note) == ("escalate", "for an admin")
    assert [i.scan_id for i in state.queue.pending("default", escalated=True)] == [second["id"]]


def test_api_feedback_closes_the_queue_item(ui: UI) -> None:
    body = ui.reviewed(seed=36)
    key = ui.api_key()
    r = ui.client.post(
        f"/v1/scans/{body['id']}/feedback", headers=key, json={"label": "true_positive"}
    )
    assert r.status_code == 200, r.text
    state = ui.client.app.state.ui  # type: ignore[attr-defined]
    decided = state.queue.decision("default", body["id"])
    assert decided is not None and decided.decision == "confirm"
    assert decided.actor.startswith("key:")
    assert state.previews.get("default", body["id"]) is None  # it has done its job
    labelled = _feedback_rows(ui, body["id"])
    ui.store.create_bank("confirmed")
    ui.user("mod")
    ui.login("mod")
    assert body["id"] not in ui.client.get("/ui/queue").text
    # a later UI decision is refused: the matches are not labelled twice
    again = _decide(ui, body["id"], decision="confirm", block_bank="confirmed")
    assert again.headers["location"].endswith("?error=already_decided")
    assert _feedback_rows(ui, body["id"]) == labelled
    assert ui.store.get_bank("confirmed").entry_count == 0
    # and so is a second API label
    twice = ui.client.post(
        f"/v1/scans/{body['id']}/feedback", headers=key, json={"label": "false_positive"}
    )
    assert twice.status_code == 409 and twice.json()["code"] == "already_decided"
    assert _feedback_rows(ui, body["id"]) == labelled


def test_api_feedback_with_a_bad_allow_bank_changes_nothing(ui: UI) -> None:
    body = ui.reviewed(seed=37)
    r = ui.client.post(
        f"/v1/scans/{body['id']}/feedback",
        headers=ui.api_key(),
        json={"label": "false_positive", "allow_bank": "reported"},  # a block bank
    )
    assert r.status_code == 400 and r.json()["code"] == "not_an_allow_bank"
    assert _feedback_rows(ui, body["id"]) == 0
    assert ui.client.app.state.ui.queue.decision("default", body["id"]) is None  # type: ignore[attr-defined]


def test_confirming_in_the_ui_makes_a_victims_waiting_alert_active(
    make_ui: Callable[..., UI], tmp_path: Path
) -> None:
    ui = make_ui(cases={"alert_after_review": ["default"]})
    folder = tmp_path / "hers"
    folder.mkdir()
    image = make_image(38)
    (folder / "photo.png").write_bytes(image)
    submission = load_submission(build_submission([folder], limits=MediaLimits()).to_json())
    cases = CaseRepository(ui.store, ui.settings)
    number = cases.submit(submission).number
    ui.ctx.scanner.matcher.refresh()
    scan = ui.scan(image)  # a copy uploaded to this platform: matches her case
    assert scan["verdict"] == "review", scan
    ui.ctx.flush()
    [alert] = cases.alerts(number)
    assert (alert.scan_id, alert.status) == (scan["id"], "pending_review")
    ui.store.create_bank("confirmed")
    ui.user("mod")
    ui.login("mod")
    r = _decide(ui, scan["id"], decision="confirm", block_bank="confirmed")
    assert r.status_code == 303 and "error" not in r.headers["location"]
    [alert] = cases.alerts(number)
    assert alert.status == "active"


def test_rejecting_in_the_ui_drops_a_victims_waiting_alert(
    make_ui: Callable[..., UI], tmp_path: Path
) -> None:
    ui = make_ui(cases={"alert_after_review": ["default"]})
    folder = tmp_path / "hers"
    folder.mkdir()
    image = make_image(39)
    (folder / "photo.png").write_bytes(image)
    submission = load_submission(build_submission([folder], limits=MediaLimits()).to_json())
    cases = CaseRepository(ui.store, ui.settings)
    number = cases.submit(submission).number
    ui.ctx.scanner.matcher.refresh()
    scan = ui.scan(image)
    ui.ctx.flush()
    assert [a.status for a in cases.alerts(number)] == ["pending_review"]
    ui.user("mod")
    ui.login("mod")
    assert _decide(ui, scan["id"], decision="reject").status_code == 303
    assert cases.alerts(number) == []


def test_a_failure_to_tell_the_cases_is_logged_and_the_decision_stands(
    ui: UI, caplog: pytest.LogCaptureFixture
) -> None:
    body = ui.reviewed(seed=40)
    ui.store.create_bank("confirmed")
    user = ui.user("mod")
    state = ui.client.app.state.ui  # type: ignore[attr-defined]
    # The case tables are gone (a broken deployment): telling the cases fails for real.
    with ui.store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE case_alerts")
    with caplog.at_level("ERROR", logger="rempart.service.ui"):
        outcome = decisions.decide(state, user, body["id"], "confirm", bank="confirmed")
    assert outcome.alerts is None
    assert "telling victims' cases of the confirm" in caplog.text
    assert state.queue.decision("default", body["id"]).decision == "confirm"
