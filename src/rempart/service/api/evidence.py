"""Evidence packages and takedown notices over HTTP (thin: the work is in rempart.cases).

- A platform downloads a signed package for its own scans (scope ``scan``).
- The operator of the service builds packages and notices for a victim's case (the explicit
  scope ``cases``: a case spans every platform, so a tenant's ``admin`` is not enough).
- Notices are tracked per tenant; ``GET /v1/notices?due=true`` lists those with a message
  due (including those to send by hand, ``to_send``), ``POST /v1/notices/{id}/sent`` records
  one sent by hand, and ``POST /v1/notices/{id}/removed`` stops the reminders.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from rempart.cases.evidence import Package, package_for_case, package_for_scans
from rempart.cases.notices import (
    Notices,
    Sender,
    check_case_number,
    items_for_case,
    items_for_scans,
)
from rempart.cases.signing import load_signing_key
from rempart.service.auth import Principal, require_scope
from rempart.service.context import ServiceContext, get_context
from rempart.service.problems import ForbiddenError

router = APIRouter(prefix="/v1", tags=["evidence"])

Lang = Literal["en", "fr"]
NoticeId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The notice's id")]
Kind = Literal["takeitdown", "dsa", "pharos", "generic"]
Status = Literal["to_send", "sent", "send_failed", "not_removed", "removed", "withdrawn"]
#: What an operator may set (send_failed is only recorded by a failed e-mail).
Markable = Literal["to_send", "sent", "not_removed", "removed", "withdrawn"]
_ZIP_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The signed evidence package (no image inside).",
    }
}


async def _operator(
    principal: Annotated[Principal, Depends(require_scope("cases"))],
) -> Principal:
    """Case routes need the ``cases`` scope itself: a case spans every platform, and a
    tenant's ``admin`` key must not read other platforms' findings."""
    if "cases" not in principal.scopes:
        raise ForbiddenError(
            "case evidence and notices need the scope 'cases' (admin is not enough: a case "
            "spans every platform)",
            hint="the operator uses a key made with `rempart keys create --scopes cases`",
        )
    return principal


def _zip(package: Package) -> Response:
    return Response(
        package.data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{package.filename}"',
            "Cache-Control": "no-store",
        },
    )


def _for_scans(ctx: ServiceContext, tenant: str, scan_ids: list[str], lang: str) -> Package:
    ctx.flush()  # a scan answered a moment ago may still be in the recorder's queue
    key = partial(load_signing_key, ctx.settings)  # loaded once the scans are found
    return package_for_scans(ctx.store, tenant, scan_ids, key, lang=lang)


def _for_case(ctx: ServiceContext, number: str, lang: str) -> Package:
    ctx.flush()
    key = partial(load_signing_key, ctx.settings)
    return package_for_case(ctx.store, number, key, lang=lang)


@router.get(
    "/scans/{scan_id}/evidence",
    summary="Evidence package for one scan",
    response_class=Response,
    responses=_ZIP_DOC,
)
async def scan_evidence(
    scan_id: str,
    principal: Annotated[Principal, Depends(require_scope("scan"))],
    ctx: Annotated[ServiceContext, Depends(get_context)],
    lang: Lang = "en",
) -> Response:
    """A signed ZIP (manifest, HTML and PDF report, signature) for a scan of this tenant.

    Every item in it is a lead for human review, not an identification.
    """
    package = await run_in_threadpool(_for_scans, ctx, principal.tenant, [scan_id], lang)
    return _zip(package)


class EvidenceIn(BaseModel):
    """Scans to package."""

    scan_ids: list[str] = Field(min_length=1, max_length=500)
    lang: Lang = "en"


@router.post(
    "/evidence",
    summary="Evidence package for several scans",
    response_class=Response,
    responses=_ZIP_DOC,
)
async def scans_evidence(
    body: EvidenceIn,
    principal: Annotated[Principal, Depends(require_scope("scan"))],
    ctx: Annotated[ServiceContext, Depends(get_context)],
) -> Response:
    """A signed ZIP over several scans of this tenant."""
    package = await run_in_threadpool(_for_scans, ctx, principal.tenant, body.scan_ids, body.lang)
    return _zip(package)


class CaseEvidenceIn(BaseModel):
    """Options of a case package."""

    lang: Lang = "en"


@router.get(
    "/cases/{number}/evidence",
    summary="Evidence package for a case (operator)",
    response_class=Response,
    responses=_ZIP_DOC,
)
async def case_evidence(
    number: str,
    principal: Annotated[Principal, Depends(_operator)],
    ctx: Annotated[ServiceContext, Depends(get_context)],
    lang: Lang = "en",
) -> Response:
    """A signed ZIP over every scan that raised an alert in the case."""
    package = await run_in_threadpool(_for_case, ctx, number, lang)
    ctx.audit.append(
        tenant=principal.tenant,
        actor=principal.actor,
        action="case.evidence",
        target=number,
        details={"items": len(package.manifest["items"])},
    )
    return _zip(package)


@router.post(
    "/cases/{number}/evidence",
    summary="Evidence package for a case (operator)",
    response_class=Response,
    responses=_ZIP_DOC,
)
async def case_evidence_post(
    number: str,
    principal: Annotated[Principal, Depends(_operator)],
    ctx: Annotated[ServiceContext, Depends(get_context)],
    body: CaseEvidenceIn | None = None,
) -> Response:
    """The same as the GET, with options in a JSON body."""
    return await case_evidence(number, principal, ctx, (body or CaseEvidenceIn()).lang)


class SenderIn(BaseModel):
    """Who signs the notice: the person depicted, or someone authorised to act for her."""

    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=254)
    phone: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=500)
    on_behalf_of: str | None = Field(default=None, max_length=200)


class NoticeIn(BaseModel):
    """A notice to make (and e-mail, when the recipient is an address and SMTP is set)."""

    kind: Kind
    lang: Lang = "en"
    sender: SenderIn
    #: The platform's notice address (e-mail) or where the notice is filed (a form URL).
    recipient: str = Field(min_length=1, max_length=2048)
    #: The platform's name; default: one notice per platform the items were found on.
    platform: str | None = Field(default=None, max_length=128)
    send: bool = True


class ScanNoticeIn(NoticeIn):
    """A notice over scans of this tenant."""

    scan_ids: list[str] = Field(min_length=1, max_length=500)


def _create(
    ctx: ServiceContext,
    principal: Principal,
    body: NoticeIn,
    items: list[dict[str, Any]],
    case_number: str | None,
) -> dict[str, Any]:
    created = Notices(ctx.store, ctx.settings).create(
        tenant=principal.tenant,
        kind=body.kind,
        lang=body.lang,
        sender=Sender.from_dict(body.sender.model_dump()),
        recipient=body.recipient,
        items=items,
        platform=body.platform,
        case_number=case_number,
        send=body.send,
    )
    for c in created:
        ctx.audit.append(
            tenant=principal.tenant,
            actor=principal.actor,
            action="notice.create",
            target=str(c.notice.id),
            details={"kind": c.notice.kind, "case": case_number, "items": len(c.notice.items)},
        )
    return {"notices": [c.to_dict() for c in created]}


@router.get("/cases/{number}/notices", summary="Notices of a case (operator)")
def case_notices(
    number: str,
    principal: Annotated[Principal, Depends(_operator)],
    ctx: Annotated[ServiceContext, Depends(get_context)],
) -> dict[str, Any]:
    """Every notice made for the case, newest first, with status and reminders."""
    notices = Notices(ctx.store, ctx.settings).repo.list(case_number=check_case_number(number))
    return {"notices": [n.to_dict() for n in notices]}


@router.post("/cases/{number}/notices", summary="Make takedown notices for a case (operator)")
def create_case_notices(
    number: str,
    body: NoticeIn,
    principal: Annotated[Principal, Depends(_operator)],
    ctx: Annotated[ServiceContext, Depends(get_context)],
) -> dict[str, Any]:
    """One notice per platform the case's items were found on (or one for ``platform``)."""
    number = check_case_number(number)
    ctx.flush()
    return _create(ctx, principal, body, items_for_case(ctx.store, number), number)


@router.post("/notices", summary="Make takedown notices for scans")
def create_scan_notices(
    body: ScanNoticeIn,
    principal: Annotated[Principal, Depends(require_scope("cases"))],
    ctx: Annotated[ServiceContext, Depends(get_context)],
) -> dict[str, Any]:
    """Notices over scans of this tenant (an investigator's crawl, for example)."""
    ctx.flush()
    items = items_for_scans(ctx.store, principal.tenant, body.scan_ids)
    return _create(ctx, principal, body, items, None)


def _scope_tenant(principal: Principal) -> str | None:
    """The operator (scope ``cases``) sees every notice; others their tenant's."""
    return None if "cases" in principal.scopes else principal.tenant


@router.get("/notices", summary="Tracked notices")
def list_notices(
    principal: Annotated[Principal, Depends(require_scope("cases"))],
    ctx: Annotated[ServiceContext, Depends(get_context)],
    due: Annotated[
        bool, Query(description="Only those with a message due now (to_send ones included)")
    ] = False,
    status: Annotated[Status | None, Query()] = None,
    case: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Notices, newest first (with ``due=true``: oldest due first)."""
    repo = Notices(ctx.store, ctx.settings).repo
    if case is not None:
        case = check_case_number(case)
    tenant = _scope_tenant(principal)
    if due:
        notices = repo.due(datetime.now(UTC), tenant)
        if status is not None:
            notices = [n for n in notices if n.status == status]
        if case is not None:
            notices = [n for n in notices if n.case_number == case]
    else:
        notices = repo.list(tenant, case_number=case, status=status)
    return {"notices": [n.to_dict() for n in notices]}


@router.get("/notices/{notice_id}", summary="One tracked notice")
def get_notice(
    notice_id: NoticeId,
    principal: Annotated[Principal, Depends(require_scope("cases"))],
    ctx: Annotated[ServiceContext, Depends(get_context)],
) -> dict[str, Any]:
    """A notice with its status, reminders and the text of its latest message (what to send
    by hand when it is ``to_send``)."""
    notices = Notices(ctx.store, ctx.settings)
    tenant = _scope_tenant(principal)
    notice = notices.repo.get(notice_id, tenant)
    message = notices.message(notice_id, tenant=tenant)
    return {**notice.to_dict(), "message": {"subject": message.subject, "text": message.text}}


def _mark(ctx: ServiceContext, principal: Principal, notice_id: int, status: str) -> dict[str, Any]:
    notice = Notices(ctx.store, ctx.settings).mark(
        notice_id, status, tenant=_scope_tenant(principal)
    )
    ctx.audit.append(
        tenant=principal.tenant,
        actor=principal.actor,
        action=f"notice.{status}",
        target=str(notice_id),
        details={},
    )
    return notice.to_dict()


@router.post("/notices/{notice_id}/removed", summary="The content was removed")
def notice_removed(
    notice_id: NoticeId,
    principal: Annotated[Principal, Depends(require_scope("cases"))],
    ctx: Annotated[ServiceContext, Depends(get_context)],
) -> dict[str, Any]:
    """Mark the notice's content removed: reminders stop."""
    return _mark(ctx, principal, notice_id, "removed")


@router.post("/notices/{notice_id}/sent", summary="Its pending message was sent by hand")
def notice_sent(
    notice_id: NoticeId,
    principal: Annotated[Principal, Depends(require_scope("cases"))],
    ctx: Annotated[ServiceContext, Depends(get_context)],
) -> dict[str, Any]:
    """Record that the notice (or its latest reminder) was sent by hand, through the
    platform's form: it leaves ``to_send`` and the next reminder is due
    ``evidence.renotice_hours`` later."""
    return _mark(ctx, principal, notice_id, "sent")


class StatusIn(BaseModel):
    """A notice's new status."""

    status: Markable


@router.post("/notices/{notice_id}/status", summary="Set a notice's status")
def notice_status(
    notice_id: NoticeId,
    body: StatusIn,
    principal: Annotated[Principal, Depends(require_scope("cases"))],
    ctx: Annotated[ServiceContext, Depends(get_context)],
) -> dict[str, Any]:
    """``sent`` records a message sent by hand; ``not_removed`` keeps the reminders going;
    ``removed`` and ``withdrawn`` stop them."""
    return _mark(ctx, principal, notice_id, body.status)
