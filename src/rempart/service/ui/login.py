"""Logging in and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from rempart.errors import NotFoundError
from rempart.service.ui.render import redirect, render, secure
from rempart.service.ui.security import (
    COOKIE_PATH,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Post,
    State,
    is_https,
    login_nonce,
    login_token,
    session_cookie_value,
    session_id_of,
)

router = APIRouter()


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a UI path of this site only (no open redirect)."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/queue"


def _login_page(
    request: Request, state: State, *, next_url: str, error: str | None = None, status: int = 200
) -> Response:
    nonce = login_nonce()
    response = render(
        request,
        "login.html",
        status_code=status,
        login_csrf=login_token(state, nonce),
        next_url=safe_next(next_url),
        login_error=error,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return response


@router.get("/login", include_in_schema=False)
async def login_form(request: Request, state: State, next: str | None = None) -> Response:
    """The login form."""
    return _login_page(request, state, next_url=next or "")


@router.post("/login", include_in_schema=False)
async def login(
    request: Request,
    state: State,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    csrf: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    """Check the password (Argon2id), open a session, set its cookie."""
    from rempart.service.ui.render import translator

    t = translator(request)
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not state.check("login-csrf", nonce, csrf):
        return _login_page(
            request, state, next_url=next, error=t("login.error.expired"), status=403
        )
    ip = request.client.host if request.client else "?"
    wait = state.limiter.wait_s(ip, username)
    if wait > 0:
        minutes = max(1, round(wait / 60))
        response = _login_page(
            request,
            state,
            next_url=next,
            error=t("login.error.too_many", minutes=minutes),
            status=429,
        )
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    user = await run_in_threadpool(state.users.authenticate, username, password)
    audit = state.ctx.audit
    if user is None:
        state.limiter.failed(ip, username)
        try:
            known = await run_in_threadpool(state.users.by_name, username)
        except NotFoundError:
            known = None
        if known is not None:  # failures against real accounts go to their tenant's log
            await run_in_threadpool(
                lambda: audit.append(
                    tenant=known.tenant, actor=known.actor, action="ui.login_failed"
                )
            )
        return _login_page(request, state, next_url=next, error=t("login.error.wrong"), status=401)
    state.limiter.succeeded(username)
    session_id = await run_in_threadpool(
        state.users.open_session, user, state.settings.ui.session_hours
    )
    await run_in_threadpool(
        lambda: audit.append(tenant=user.tenant, actor=user.actor, action="ui.login")
    )
    response = redirect(request, safe_next(next))
    response.set_cookie(
        SESSION_COOKIE,
        session_cookie_value(state, session_id),
        max_age=int(state.settings.ui.session_hours * 3600),
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, state: State, viewer: Post) -> Response:
    """End the session."""
    session_id = session_id_of(state, request)
    if session_id:
        await run_in_threadpool(state.users.close_session, session_id)
    await run_in_threadpool(
        lambda: state.ctx.audit.append(
            tenant=viewer.user.tenant, actor=viewer.user.actor, action="ui.logout"
        )
    )
    response = redirect(request, "/ui/login")
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return secure(response, request)
