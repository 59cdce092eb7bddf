"""The audit log, filtered by action, actor and date range (admins)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from rempart.service.ui.render import render
from rempart.service.ui.security import Admin, State

router = APIRouter()

PAGE = 100


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@router.get("/audit", include_in_schema=False)
async def audit_page(
    request: Request,
    state: State,
    viewer: Admin,
    action: str = "",
    actor: str = "",
    since: str = "",
    until: str = "",
    before: int | None = None,
) -> Response:
    """The tenant's audit log, newest first, a page at a time."""
    start, end = _day(since), _day(until)
    events = await run_in_threadpool(
        lambda: state.ctx.audit.list(
            viewer.user.tenant,
            action=action.strip() or None,
            actor=actor.strip() or None,
            before_id=before,
            limit=PAGE,
            since=datetime.combine(start, datetime.min.time(), UTC) if start else None,
            # ``until`` is a day the range includes: up to the start of the next one.
            until=datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC)
            if end
            else None,
        )
    )
    return render(
        request,
        "audit.html",
        events=events,
        action=action,
        actor=actor,
        since=since,
        until=until,
        more=events[-1].id if len(events) == PAGE else None,
    )
