"""Rendering pages: one Jinja2 environment, the common page context, security headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Final

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from rempart import __version__
from rempart.service.ui.i18n import LANG_COOKIE, LANGUAGES, Translator, pick_language

#: No CDN, no inline script, nothing framed: everything comes from /ui/static.
CSP: Final = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@cache
def environment() -> Environment:
    """The templates (autoescaped HTML)."""
    env = Environment(
        loader=PackageLoader("rempart.service.ui", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ago"] = _ago
    env.filters["when"] = lambda d: d.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if d else ""
    env.filters["pct"] = lambda v: "—" if v is None else f"{v * 100:.0f} %"
    return env


def _ago(value: datetime | timedelta | None) -> str:
    """A short age: 45 s, 12 min, 3 h, 2 d."""
    if value is None:
        return ""
    delta = value if isinstance(value, timedelta) else datetime.now(UTC) - value
    s = max(0, int(delta.total_seconds()))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


def translator(request: Request) -> Translator:
    """The request's translator (cached on the request)."""
    t: Translator | None = getattr(request.state, "t", None)
    if t is None:
        t = Translator(pick_language(request))
        request.state.t = t
    return t


def secure(response: Response, request: Request) -> Response:
    """Security headers, and the language cookie when the switch was used."""
    response.headers.update(SECURITY_HEADERS)
    lang = request.query_params.get("lang")
    if lang in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE,
            lang,
            max_age=365 * 86400,
            path="/ui",
            samesite="lax",
            httponly=True,
            secure=request.url.scheme == "https",
        )
    return response


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page: ``template`` with the common context (translator, user, CSRF token, path)."""
    t = translator(request)
    viewer = getattr(request.state, "viewer", None)
    page = (
        environment()
        .get_template(template)
        .render(
            t=t,
            lang=t.lang,
            languages=LANGUAGES,
            viewer=viewer,
            user=viewer.user if viewer else None,
            csrf=viewer.csrf if viewer else "",
            path=request.url.path,
            version=__version__,
            ok=request.query_params.get("ok"),
            **context,
        )
    )
    return secure(HTMLResponse(page, status_code=status_code), request)  # type: ignore[return-value]


def redirect(request: Request, url: str) -> Response:
    """A 303 to ``url`` (after a POST: the browser then GETs it)."""
    return secure(RedirectResponse(url, status_code=303), request)
