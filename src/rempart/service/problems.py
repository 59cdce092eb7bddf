"""Errors as RFC 9457 problem details: ``type``, ``title``, ``status``, ``detail``, ``code``.

Every error the API returns has this shape and a stable ``code`` that clients can switch on.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rempart.errors import ImportFormatError, RempartError

log = logging.getLogger("rempart.service")

PROBLEM_TYPE = "https://rempart.dev/problems/"


class AuthError(RempartError):
    """No key, or a key that is unknown or revoked (401)."""

    code = "unauthorized"
    status = 401


class ForbiddenError(RempartError):
    """The key lacks the scope this route needs (403)."""

    code = "forbidden"
    status = 403


class RateLimitedError(RempartError):
    """Too many requests for this key (429, with ``Retry-After``)."""

    code = "rate_limited"
    status = 429

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(
            "too many requests for this API key",
            hint=f"retry after {retry_after_s:.1f} s, or ask for a higher rate limit",
        )
        self.retry_after_s = retry_after_s


class PayloadTooLarge(RempartError):
    """The request body is over the configured limit (413)."""

    code = "too_large"
    status = 413


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem(
    status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(
        body, status_code=status, headers=headers, media_type="application/problem+json"
    )


def retry_after_header(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem."""

    @app.exception_handler(RempartError)
    async def _rempart(request: Request, exc: RempartError) -> JSONResponse:
        headers = None
        # Any 429 that knows when to come back says so (rate limits, a locked case number).
        retry_after = getattr(exc, "retry_after_s", None)
        if isinstance(retry_after, int | float):
            headers = {"Retry-After": retry_after_header(retry_after)}
        elif isinstance(exc, AuthError):
            headers = {"WWW-Authenticate": 'Bearer realm="rempart"'}
        errors = exc.errors if isinstance(exc, ImportFormatError) else None
        return problem(
            exc.status, exc.code, exc.message, headers=headers, hint=exc.hint, errors=errors
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        return problem(422, "invalid_request", "the request is not valid", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        return problem(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "internal_error", "an unexpected error happened; it was logged")
