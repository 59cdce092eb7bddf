"""Rendering pages: one Jinja2 environment, the common page context, security headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Final
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from rempart import __version__
from rempart.service.ui.i18n import (
    DEFAULT,
    LANG_COOKIE,
    LANGUAGES,
    Translator,
    catalogue,
    pick_language,
)

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

#: What a redirect may say in ``?ok=``: catalogue keys of the success banners, nothing else.
OK_CODES: Final = frozenset(
    {"decided.confirm", "decided.reject", "decided.escalate", "bank.created", "bank.saved"}
)


def ok_code(request: Request) -> str | None:
    """The success banner's catalogue key from ``?ok=``, if it is one of :data:`OK_CODES`."""
    code = request.query_params.get("ok")
    return code if code in OK_CODES else None


def error_code(request: Request) -> str | None:
    """The error banner's catalogue key from ``?error=<code>``: ``errcode.<code>`` when the
    catalogue has it, else ``errcode.unknown``.

    Redirects after a failed POST carry an error *code* (``already_decided``), never its
    text: anyone can send a moderator a link, and a banner echoing the URL would show
    whatever words that link chose ("this item is cleared, approve it").
    """
    code = request.query_params.get("error")
    if not code:
        return None
    key = f"errcode.{code}"
    return key if key in catalogue(DEFAULT) else "errcode.unknown"


def lang_url(request: Request, lang: str) -> str:
    """This page in ``lang``: the same path and query, with ``lang`` replaced."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    params.append(("lang", lang))
    return f"{request.url.path}?{urlencode(params)}"


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
            ok=ok_code(request),
            error_key=error_code(request),
            lang_urls={lang: lang_url(request, lang) for lang in LANGUAGES},
            **context,
        )
    )
    return secure(HTMLResponse(page, status_code=status_code), request)  # type: ignore[return-value]


def redirect(request: Request, url: str) -> Response:
    """A 303 to ``url`` (after a POST: the browser then GETs it)."""
    return secure(RedirectResponse(url, status_code=303), request)
