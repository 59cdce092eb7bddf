"""API-key authentication, scopes and rate limiting, as FastAPI dependencies.

Keys travel as ``Authorization: Bearer <key>``. ``admin`` implies every scope of its tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rempart.service.context import ServiceContext, get_context
from rempart.service.problems import AuthError, ForbiddenError, RateLimitedError

_bearer = HTTPBearer(auto_error=False, description="An API key from `rempart keys create`.")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's tenant, id and scopes."""

    tenant: str
    key_id: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"key:{self.key_id}"


def require_scope(scope: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that admits keys with ``scope`` (or ``admin``) and applies the rate limit."""

    async def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
        ctx: ServiceContext = Depends(get_context),  # noqa: B008
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise AuthError(
                "no API key given",
                hint="send `Authorization: Bearer <key>`; create one with `rempart keys create`",
            )
        cached, info = ctx.cached_key(credentials.credentials)
        if not cached:  # ask the store (every 2 s per key), off the event loop
            info = await run_in_threadpool(ctx.verify_key, credentials.credentials)
        if info is None:
            raise AuthError(
                "the API key is unknown or revoked",
                hint="check the key, or create a new one with `rempart keys create`",
            )
        wait = ctx.limiter.take(info.key_id)
        if wait > 0:
            raise RateLimitedError(wait)
        if scope not in info.scopes and "admin" not in info.scopes:
            raise ForbiddenError(
                f"this API key lacks the scope {scope!r}",
                hint=f"use a key with {scope!r}: `rempart keys create --scopes {scope}`",
            )
        principal = Principal(info.tenant, info.key_id, frozenset(info.scopes))
        request.state.principal = principal
        return principal

    return dependency
