"""Sessions, CSRF tokens and roles for the UI.

- The session cookie holds a random id and its HMAC (``<id>.<mac>``); the database keeps
  only the id's SHA-256 (:mod:`rempart.store.users`). It is ``HttpOnly``, ``SameSite=Lax``,
  scoped to ``/ui``, and ``Secure`` whenever the request came over HTTPS (behind a proxy,
  uvicorn's ``--proxy-headers`` makes ``X-Forwarded-Proto`` count).
- CSRF: every form carries a synchronizer token, the HMAC of the session id, checked on
  every POST (form field ``csrf`` or header ``X-CSRF-Token`` for the few ``fetch`` calls).
  The login form, which has no session yet, uses a signed double-submit cookie instead.
- Roles: ``moderator`` works the queue, searches and exports banks; ``admin`` also curates
  banks, reads the audit log and opens cases.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, Request

from rempart.service.ui.state import UIState, get_ui
from rempart.store.users import UserInfo

SESSION_COOKIE: Final = "rempart_session"
LOGIN_COOKIE: Final = "rempart_login"
COOKIE_PATH: Final = "/ui"


class LoginRequired(Exception):
    """No valid session: the page answers with a redirect to the login form."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class Forbidden(Exception):
    """A logged-in user without the role a page needs (403 page)."""


class CsrfFailed(Exception):
    """A POST without a valid CSRF token (403 page)."""


@dataclass(frozen=True)
class Viewer:
    """The logged-in user of a request, with the session's CSRF token."""

    user: UserInfo
    session_id: str
    csrf: str


def is_https(request: Request) -> bool:
    """Whether the browser talks to us over HTTPS (so cookies get ``Secure``)."""
    return request.url.scheme == "https"


def session_cookie_value(state: UIState, session_id: str) -> str:
    """What the session cookie holds: the id and its MAC."""
    return f"{session_id}.{state.sign('session', session_id)}"


def session_id_of(state: UIState, request: Request) -> str | None:
    """The session id from a request's cookie, if its MAC is right."""
    raw = request.cookies.get(SESSION_COOKIE, "")
    session_id, _, mac = raw.rpartition(".")
    if not session_id or not mac or not state.check("session", session_id, mac):
        return None
    return session_id


def login_nonce() -> str:
    """A fresh random value for the login form's double-submit cookie."""
    return secrets.token_urlsafe(24)


def login_token(state: UIState, nonce: str) -> str:
    """The login form's CSRF token for the nonce in its cookie."""
    return state.sign("login-csrf", nonce)


def _next_url(request: Request) -> str:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    return path


async def optional_viewer(
    request: Request, state: Annotated[UIState, Depends(get_ui)]
) -> Viewer | None:
    """The logged-in user, or None."""
    from fastapi.concurrency import run_in_threadpool

    session_id = session_id_of(state, request)
    if session_id is None:
        return None
    user = await run_in_threadpool(state.users.session_user, session_id)
    if user is None:
        return None
    viewer = Viewer(user, session_id, state.sign("csrf", session_id))
    request.state.viewer = viewer
    return viewer


async def viewer(
    request: Request, found: Annotated[Viewer | None, Depends(optional_viewer)]
) -> Viewer:
    """The logged-in user; LoginRequired (a redirect to the login form) otherwise."""
    if found is None:
        raise LoginRequired(_next_url(request))
    return found


async def admin(found: Annotated[Viewer, Depends(viewer)]) -> Viewer:
    """The logged-in user if an admin; Forbidden otherwise."""
    if not found.user.is_admin:
        raise Forbidden()
    return found


async def csrf_checked(request: Request, found: Annotated[Viewer, Depends(viewer)]) -> Viewer:
    """For every POST: the logged-in user, after checking the request's CSRF token."""
    token = request.headers.get("x-csrf-token")
    content_type = request.headers.get("content-type", "")
    if token is None and content_type.startswith("application/x-www-form-urlencoded"):
        form = await request.form()
        value = form.get("csrf")
        token = value if isinstance(value, str) else None
    elif token is None and content_type.startswith("multipart/form-data"):
        # File forms (search by file) are read in memory by the route, never parsed into
        # Starlette's spooled temporary files; their token rides in the form's action URL.
        token = request.query_params.get("csrf")
    if not token or not secrets.compare_digest(token, found.csrf):
        raise CsrfFailed()
    return found


async def admin_csrf_checked(found: Annotated[Viewer, Depends(csrf_checked)]) -> Viewer:
    """For admin POSTs: CSRF checked, and the user is an admin."""
    if not found.user.is_admin:
        raise Forbidden()
    return found


Session = Annotated[Viewer, Depends(viewer)]
Admin = Annotated[Viewer, Depends(admin)]
Post = Annotated[Viewer, Depends(csrf_checked)]
AdminPost = Annotated[Viewer, Depends(admin_csrf_checked)]
State = Annotated[UIState, Depends(get_ui)]
