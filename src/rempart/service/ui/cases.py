"""Cases, for the service's operator: status, alerts, notices and deadlines, and the signed
evidence package.

A case spans every platform, so a tenant's admin is not enough (the API asks for the
``cases`` scope for the same reason): only admins named in ``ui.case_operators`` see these
pages. Nothing here shows content or hashes -- the case store keeps none -- and every case
opened and every package downloaded goes to the audit log.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from rempart.errors import RempartError
from rempart.service.ui.render import render, secure, translator
from rempart.service.ui.security import Admin, Forbidden, State, Viewer

router = APIRouter()


def _operator(state: State, viewer: Viewer) -> None:
    if viewer.user.username not in state.settings.ui.case_operators:
        raise Forbidden()


def _audit(state: State, viewer: Viewer, action: str, target: str) -> None:
    state.ctx.audit.append(
        tenant=viewer.user.tenant, actor=viewer.user.actor, action=action, target=target
    )


def _cases(state: State) -> list[dict[str, Any]]:
    from rempart.store.cases import CaseRepository

    repo = CaseRepository(state.ctx.store, state.settings)
    out = []
    for case in repo.list():
        alerts = repo.alerts(case.number)
        out.append(
            {
                "info": case,
                "alerts": len(alerts),
                "pending": sum(1 for a in alerts if a.status == "pending_review"),
            }
        )
    return out


def _case(state: State, viewer: Viewer, number: str) -> dict[str, Any]:
    from rempart.store.cases import CaseRepository
    from rempart.store.notices import NoticeRepository

    repo = CaseRepository(state.ctx.store, state.settings)
    info = repo.get(number)
    alerts = repo.alerts(info.number)
    notices = NoticeRepository(state.ctx.store).list(case_number=info.number)
    _audit(state, viewer, "ui.case.view", info.number)
    now = datetime.now(UTC)
    return {
        "info": info,
        "alerts": alerts,
        "notices": [{"n": n, "overdue": n.overdue(now)} for n in notices],
    }


@router.get("/cases", include_in_schema=False)
async def cases_page(request: Request, state: State, viewer: Admin) -> Response:
    """Every case, newest first."""
    _operator(state, viewer)
    try:
        cases = await run_in_threadpool(_cases, state)
    except ImportError:  # the cases module is not installed in this build
        return render(request, "cases.html", coming=True)
    return render(request, "cases.html", cases=cases, coming=False)


@router.get("/cases/{number}", include_in_schema=False)
async def case_page(request: Request, state: State, viewer: Admin, number: str) -> Response:
    """One case: status, alerts, notices and their deadlines, the evidence package."""
    _operator(state, viewer)
    try:
        case = await run_in_threadpool(_case, state, viewer, number)
    except RempartError as e:
        return render(request, "error.html", status_code=e.status, message=e.message)
    return render(request, "case.html", case=case)


@router.get("/cases/{number}/evidence", include_in_schema=False)
async def evidence(request: Request, state: State, viewer: Admin, number: str) -> Response:
    """The case's signed evidence package (a ZIP of reports; no image inside)."""
    _operator(state, viewer)
    from rempart.cases.evidence import package_for_case
    from rempart.cases.signing import load_signing_key

    lang = translator(request).lang

    def build() -> Any:
        state.ctx.flush()
        package = package_for_case(
            state.ctx.store, number, load_signing_key(state.settings), lang=lang
        )
        _audit(state, viewer, "ui.case.evidence", number)
        return package

    try:
        package = await run_in_threadpool(build)
    except RempartError as e:
        t = translator(request)
        return render(
            request, "error.html", status_code=e.status, message=f"{t('error.generic')}{e}"
        )
    return secure(
        Response(
            package.data,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{package.filename}"'},
        ),
        request,
    )
