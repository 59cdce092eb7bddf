"""Victims' cases over HTTP: open a case, follow it, withdraw it -- and the case page.

These routes are **public** (no API key): a victim has a case number and a PIN, nothing
else. They are guarded by a strict body limit, a per-address rate limit (per worker, its
memory bounded) and, for the PIN, the lockout kept in the database (shared by every
worker): per (case number, client address), and per number at a much higher count
(:mod:`rempart.cases.registry`). The PIN always travels in the body, never in the URL, so
it does not end up in access logs. Behind a reverse proxy that is not on the same host,
set ``FORWARDED_ALLOW_IPS`` to its address so the client address is the visitor's (from
``X-Forwarded-For``), not the proxy's.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from rempart.cases.page import choose_lang, render_case_page
from rempart.cases.registry import CaseRepository, load_submission_json
from rempart.cases.submission import FORMAT, SubmissionError
from rempart.errors import RempartError
from rempart.service.body import read_body
from rempart.service.context import ServiceContext, get_context
from rempart.service.problems import RateLimitedError, retry_after_header
from rempart.service.ratelimit import RateLimiter
from rempart.store.notices import NoticeRepository

router = APIRouter(tags=["cases"])

_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_PAGE_HEADERS = {
    **_NO_STORE,
    # No script, no external anything; inline styles only. Framing is refused so the
    # withdraw button cannot be clickjacked.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}
_FORM_LIMIT = 16 * 1024


class TooManyRequests(RateLimitedError):
    """Too many case requests from one address (429, with ``Retry-After``)."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(retry_after_s)
        self.message = "too many requests from your address"
        self.hint = f"wait {max(1, round(retry_after_s))} s and try again"


class PinIn(BaseModel):
    """The PIN of a case, in the body (never in the URL)."""

    pin: str = Field(min_length=1, max_length=64)


def _limiters(request: Request, ctx: ServiceContext) -> dict[str, RateLimiter]:
    state = request.app.state
    limiters: dict[str, RateLimiter] | None = getattr(state, "case_limiters", None)
    if limiters is None:
        cfg = ctx.settings.cases
        per_hour = cfg.submissions_per_hour
        per_min = cfg.pin_checks_per_minute
        limiters = {
            "submit": RateLimiter(per_hour / 3600.0, max(1, int(per_hour))),
            "pin": RateLimiter(per_min / 60.0, max(1, int(per_min))),
        }
        state.case_limiters = limiters
    return limiters


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _throttle(request: Request, ctx: ServiceContext, kind: str) -> None:
    wait = _limiters(request, ctx)[kind].take(_address(request))
    if wait > 0:
        raise TooManyRequests(wait)


def _repo(ctx: ServiceContext) -> CaseRepository:
    return CaseRepository(ctx.store, ctx.settings)


def _text_or_none(value: object, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SubmissionError(f"contact.{name} must be a string", code="bad_contact")
    return value


@router.post(
    "/v1/cases",
    status_code=201,
    summary="Open a case from a submission",
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The submission file written by `rempart protect`, as is; or "
            '`{"submission": <that file>, "contact": {"email": ..., "webhook_url": ...}}` '
            "to be alerted.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def submit_case(
    request: Request, ctx: Annotated[ServiceContext, Depends(get_context)]
) -> JSONResponse:
    """Open a case: returns the case number and PIN (shown once; keep them safe).

    No API key: anyone may submit hashes of her own images. With a webhook, the answer also
    holds the secret that signs alert webhooks (shown once).
    """
    _throttle(request, ctx, "submit")
    body = await read_body(request, ctx.settings.cases.max_submission_bytes)
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SubmissionError("not a valid Rempart submission: it is not JSON") from None
    contact: Any = {}
    if isinstance(doc, dict) and doc.get("format") != FORMAT:
        if not set(doc) <= {"submission", "contact"} or "submission" not in doc:
            raise SubmissionError(
                "the body is a submission file, or {submission, contact}",
                hint="send the file `rempart protect` wrote",
            )
        contact = doc.get("contact") or {}
        doc = doc["submission"]
        if not isinstance(contact, dict) or not set(contact) <= {"email", "webhook_url"}:
            raise SubmissionError("contact is {email, webhook_url}", code="bad_contact", hint=None)
    submission = load_submission_json(doc)
    new = await run_in_threadpool(
        _repo(ctx).submit,
        submission,
        email=_text_or_none(contact.get("email"), "email"),
        webhook_url=_text_or_none(contact.get("webhook_url"), "webhook_url"),
    )
    return JSONResponse(new.to_dict(), status_code=201, headers=_NO_STORE)


@router.post("/v1/cases/{number}/status", summary="Follow a case (number + PIN)")
async def case_status(
    number: str,
    body: PinIn,
    request: Request,
    ctx: Annotated[ServiceContext, Depends(get_context)],
) -> JSONResponse:
    """How many matches, on which platform, when -- never the content."""
    _throttle(request, ctx, "pin")
    status = await run_in_threadpool(
        partial(_repo(ctx).status, number, body.pin, client=_address(request))
    )
    return JSONResponse(status.to_dict(), headers=_NO_STORE)


@router.post("/v1/cases/{number}/withdraw", summary="Withdraw a case (number + PIN)")
async def case_withdraw(
    number: str,
    body: PinIn,
    request: Request,
    ctx: Annotated[ServiceContext, Depends(get_context)],
) -> JSONResponse:
    """Delete the case's hashes, face template and alerts for good (every worker stops
    matching them within a second); a tombstone (number, date) is kept."""
    _throttle(request, ctx, "pin")
    done = await run_in_threadpool(
        partial(_repo(ctx).withdraw, number, body.pin, client=_address(request))
    )
    return JSONResponse(done.to_dict(), headers=_NO_STORE)


# -- the case page ------------------------------------------------------------------------------


def _page(html: str, status_code: int = 200, retry_after_s: float | None = None) -> HTMLResponse:
    headers = dict(_PAGE_HEADERS)
    if retry_after_s is not None:
        headers["Retry-After"] = retry_after_header(retry_after_s)
    return HTMLResponse(html, status_code=status_code, headers=headers)


@router.get("/case", include_in_schema=False)
async def case_page(request: Request) -> HTMLResponse:
    """The form: case number and PIN."""
    lang = choose_lang(request.query_params.get("lang"), request.headers.get("accept-language"))
    return _page(render_case_page(lang, "form"))


@router.post("/case", include_in_schema=False)
async def case_page_post(
    request: Request, ctx: Annotated[ServiceContext, Depends(get_context)]
) -> HTMLResponse:
    """Status (``action=status``), the withdrawal's confirm step (``confirm``) and the
    withdrawal itself (``withdraw``)."""
    lang = choose_lang(request.query_params.get("lang"), request.headers.get("accept-language"))
    form = parse_qs((await read_body(request, _FORM_LIMIT)).decode("utf-8", "replace"))
    number = (form.get("number") or [""])[0][:64]
    pin = (form.get("pin") or [""])[0][:64]
    action = (form.get("action") or ["status"])[0]
    try:
        _throttle(request, ctx, "pin")
        repo = _repo(ctx)
        client = _address(request)
        if action == "withdraw":
            done = await run_in_threadpool(partial(repo.withdraw, number, pin, client=client))
            return _page(render_case_page(lang, "withdrawn", withdrawal=done))
        status = await run_in_threadpool(partial(repo.status, number, pin, client=client))
        if action == "confirm":
            return _page(render_case_page(lang, "confirm", number=status.number, pin=pin))
        notices = await run_in_threadpool(
            NoticeRepository(ctx.store).list, case_number=status.number
        )
        return _page(render_case_page(lang, "status", status=status, pin=pin, notices=notices))
    except RempartError as e:
        page = render_case_page(lang, "form", number=number, error=e.code)
        retry = getattr(e, "retry_after_s", None)
        return _page(
            page,
            status_code=e.status if 400 <= e.status < 600 else 400,
            retry_after_s=retry if isinstance(retry, int | float) else None,
        )
